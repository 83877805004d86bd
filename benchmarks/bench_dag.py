"""Survey-size DAGs: time Snakemake's dry run over N full-size nights of placeholder inputs.

Builds a synthetic production under ``--workdir``: N nights, each with 3 arcs,
3 flats and 30 science exposures of 30 cameras (b/r/z x 10 spectrographs).  The
raw files are empty placeholders and each night's exposure table is written
after them, so the workflow reads the tables while parsing (as it does for a
real production whose tables are up to date) and never opens a raw image file
(the raw fibermaps below are read, for the healpix groups).  Then ``snakemake -n``
is run (no pixels are read; no job runs) and its wall time, CPU time and peak
memory (RSS of the Snakemake process) are measured.  The last line reads::

    jobs N dry-run S s peak-rss M MiB

Each science exposure gets a raw fibermap (5000 fibers on a 1.6 deg tile whose centre
moves a little from night to night, so healpix pixels collect several nights), so the
healpix half (spectra, coadds, redshifts, catalogs) is in the DAG too.

``--stages`` picks the half the dry run covers (config ``stages``, see README
"Survey-size productions"): ``all`` (every stage of every night in one DAG),
``night`` (the per-night half of ONE night, the last, inside the N-night
production: what each per-night invocation of a reprocessing costs), ``healpix``
(the healpix half of all N nights over existing cframes; placeholder cframes
are written for it).  CPU seconds of Snakemake (user + system) are printed on
the line before the last.

Usage::

    .venv/bin/python benchmarks/bench_dag.py --nights 1 [--stages all|night|healpix] [--workdir DIR] [--keep]
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


def write_fibermap(path, night_index, exposure_index, expid, night):
    """A raw fibermap of 5000 fibers spread over a 1.6 deg tile (centre moves 0.7 deg per night)."""
    import numpy as np
    from astropy.table import Table
    from desired.io.fibermap import write_fibermap as write
    rng = np.random.default_rng(expid)
    ra0, dec0 = (exposure_index * 3.0 + night_index * 0.7) % 360.0, 10.0 + (night_index % 5)
    radius, angle = 1.6 * np.sqrt(rng.uniform(size=5000)), rng.uniform(0, 2 * np.pi, size=5000)
    table = Table({"TARGETID": np.arange(5000, dtype=np.int64) + 10000 * expid,
                   "FIBER": np.arange(5000, dtype=np.int32),
                   "TARGET_RA": ra0 + radius * np.cos(angle) / np.cos(np.radians(dec0)),
                   "TARGET_DEC": dec0 + radius * np.sin(angle)})
    write(str(path), table, {"NIGHT": night, "EXPID": expid, "TILEID": 1000 + expid,
                             "SURVEY": "main", "FAPRGRM": "dark"})


def build(workdir, nnights, stages="all"):
    """Write placeholder raw files, raw fibermaps, calib files, exposure tables (and, for the
    healpix half, placeholder cframes) and the config; return the config path."""
    from desired.exposures import write_exposure_table
    from desired.paths import findfile
    raw, calib, prod = workdir / "raw", workdir / "calib", workdir / "prod"
    calib.mkdir(parents=True, exist_ok=True)
    for cam in CAMERAS:
        for kind in ("calib_ccd", "calib_psf"):
            Path(findfile(kind, root=calib, camera=cam)).touch()
    expid = 0
    all_nights = nights(nnights)
    for inight, night in enumerate(all_nights):
        rows = []
        for iexp, obstype in enumerate(LAYOUT):
            expid += 1
            path = Path(findfile("raw", root=raw, night=night, expid=expid))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            if obstype == "SCIENCE":
                write_fibermap(findfile("raw_fibermap", root=raw, night=night, expid=expid), inight, iexp,
                               expid, night)
                if stages == "healpix":
                    for cam in CAMERAS:
                        cframe = Path(findfile("cframe", root=prod, night=night, expid=expid, camera=cam))
                        cframe.parent.mkdir(parents=True, exist_ok=True)
                        cframe.touch()
            rows.append({"NIGHT": night, "EXPID": expid, "OBSTYPE": obstype,
                         "TILEID": 1000 + expid if obstype == "SCIENCE" else -1, "EXPTIME": 900.0,
                         "CAMERAS": CAMERAS, "LASTSTEP": "all", "COMMENTS": ""})
        write_exposure_table(findfile("exposure_table", root=prod, night=night), rows)
    config = workdir / "config.yaml"
    # a per-night run covers one night (the last) of the N-night production
    nights_key = f"nights: [{all_nights[-1]}]\n" if stages == "night" else ""
    config.write_text(f"raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\nstages: {stages}\n{nights_key}")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=1)
    parser.add_argument("--stages", default="all", choices=["all", "night", "healpix"],
                        help="the half of the production in the dry run (config stages)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_dag-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    config = build(workdir, args.nights, args.stages)
    print(f"built {args.nights} night(s) of placeholders in {time.time() - t0:.1f} s", flush=True)
    env = dict(os.environ, PATH="/usr/bin:/bin")
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "-n", "--quiet", "rules"]
    start = time.time()
    run = subprocess.run(cmd, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.time() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, cpu = usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime
    if run.returncode != 0:
        sys.exit("dry run failed:\n" + run.stdout[-3000:])
    match = re.findall(r"^total\s+(\d+)", run.stdout, re.M)
    jobs = int(match[-1]) if match else 0
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"nights {args.nights} stages {args.stages}: {jobs} jobs ({jobs / max(args.nights, 1):.0f} per night); "
          f"snakemake cpu {cpu:.1f} s (user+sys), wall {wall:.1f} s")
    print(f"jobs {jobs} dry-run {wall:.1f} s peak-rss {peak:.0f} MiB")


if __name__ == "__main__":
    main()
