"""Survey-size DAGs: time Snakemake's dry run over N full-size nights of placeholder inputs.

Builds a synthetic production under ``--workdir``: N nights, each with 3 arcs,
3 flats and 30 science exposures of 30 cameras (b/r/z x 10 spectrographs).  The
raw files are empty placeholders and each night's exposure table is written
after them, so the workflow reads the tables while parsing (as it does for a
real production whose tables are up to date) and never opens a raw file.  Then
``snakemake -n`` is run over the whole production (no pixels are read; no job
runs) and its wall time and peak memory (RSS of the Snakemake process) are
measured.  The last line reads::

    jobs N dry-run S s peak-rss M MiB

Usage::

    .venv/bin/python benchmarks/bench_dag.py --nights 1 [--workdir DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CAMERAS = [f"{band}{sp}" for sp in range(10) for band in "brz"]
LAYOUT = ["ARC"] * 3 + ["FLAT"] * 3 + ["SCIENCE"] * 30
FIRST_NIGHT = 20250101


def nights(n):
    """N consecutive YYYYMMDD nights (calendar-correct)."""
    import datetime
    start = datetime.date(2025, 1, 1)
    return [int((start + datetime.timedelta(days=i)).strftime("%Y%m%d")) for i in range(n)]


def build(workdir, nnights):
    """Write placeholder raw files, calib files, exposure tables and the config; return the config path."""
    from desired.exposures import write_exposure_table
    from desired.paths import findfile
    raw, calib, prod = workdir / "raw", workdir / "calib", workdir / "prod"
    calib.mkdir(parents=True, exist_ok=True)
    for cam in CAMERAS:
        for kind in ("calib_ccd", "calib_psf"):
            Path(findfile(kind, root=calib, camera=cam)).touch()
    expid = 0
    for night in nights(nnights):
        rows = []
        for obstype in LAYOUT:
            expid += 1
            path = Path(findfile("raw", root=raw, night=night, expid=expid))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            rows.append({"NIGHT": night, "EXPID": expid, "OBSTYPE": obstype,
                         "TILEID": 1000 + expid if obstype == "SCIENCE" else -1, "EXPTIME": 900.0,
                         "CAMERAS": CAMERAS, "LASTSTEP": "all", "COMMENTS": ""})
        write_exposure_table(findfile("exposure_table", root=prod, night=night), rows)
    config = workdir / "config.yaml"
    config.write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\n")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dag-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    config = build(workdir, args.nights)
    print(f"built {args.nights} night(s) of placeholders in {time.time() - t0:.1f} s", flush=True)
    env = dict(os.environ, PATH="/usr/bin:/bin")
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "-n", "--quiet", "rules"]
    start = time.time()
    run = subprocess.run(cmd, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    if run.returncode != 0:
        sys.exit("dry run failed:\n" + run.stdout[-3000:])
    match = re.findall(r"^total\s+(\d+)", run.stdout, re.M)
    jobs = int(match[-1]) if match else 0
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"nights {args.nights}: {jobs} jobs ({jobs / max(args.nights, 1):.0f} per night)")
    print(f"jobs {jobs} dry-run {wall:.1f} s peak-rss {peak:.0f} MiB")


if __name__ == "__main__":
    main()
