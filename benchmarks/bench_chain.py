"""Wall time and peak memory of every pixel-chain step on a simulated night.

Simulates a night (default: the ``mini`` preset, b/r/z of spectrograph 0,
50 fibers, full CCD rows; 3 arcs, 3 flats, 2 science) and runs the real
``desired`` CLI steps on it, one subprocess per task, in order:
simulate, preproc (every camera of every exposure), psf (every arc camera,
from the nominal calibration PSF), psfnight, traceshift (flats: continuum
and science: the default sky-line mode, as rules/psf.smk) and extract (shifted PSF).  Each
task's wall time and peak resident memory (``os.wait4`` rusage of the child)
is recorded; the script prints one line per task and a summary per step.

Usage::

    python benchmarks/bench_chain.py [--preset mini] [--outdir DIR] [--nproc-extract 1]

The products are kept under ``--outdir`` (a temporary directory otherwise
removed at the end).
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from desired import paths
from desired.io.raw import read_raw_header

NIGHT = 20261124


def run_task(step, argv, records):
    """Run ``desired argv`` as a child process; record (step, wall s, peak RSS MiB)."""
    cmd = [sys.executable, "-m", "desired", *map(str, argv)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024.0
    records.append((step, wall, peak))
    argv = list(map(str, argv))
    target = os.path.basename(argv[argv.index("--outfile") + 1]) if "--outfile" in argv else " ".join(argv[1:3])
    print(f"{step:10s} {wall:7.2f} s {peak:8.1f} MiB  {target}", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-2000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", choices=["tiny", "mini", "petal"])
    parser.add_argument("--narc", type=int, default=3)
    parser.add_argument("--nflat", type=int, default=3)
    parser.add_argument("--nscience", type=int, default=2)
    parser.add_argument("--nproc-extract", type=int, default=1)
    parser.add_argument("--outdir", help="keep the products here (default: a removed temporary dir)")
    args = parser.parse_args(argv)

    root = Path(args.outdir or tempfile.mkdtemp(prefix="bench_chain_"))
    path = lambda kind, **f: root / paths.PATTERNS[kind][0] / paths.findfile(kind, night=NIGHT, **f)  # noqa: E731
    records = []
    t0 = time.perf_counter()
    try:
        run_task("simulate", ["simulate", "--preset", args.preset, "--night", NIGHT,
                              "--raw-dir", root / "raw", "--calib-dir", root / "calib",
                              "--truth-dir", root / "truth", "--narc", args.narc, "--nflat", args.nflat,
                              "--nscience", args.nscience, "--nproc", 1], records)
        cameras = sorted(p.name[4:-5] for p in (root / "calib").glob("ccd-*.yaml"))
        kinds = collections.defaultdict(list)
        for expdir in sorted((root / "raw" / str(NIGHT)).iterdir()):
            obstype = str(read_raw_header(expdir / f"desi-{expdir.name}.fits.fz").get("OBSTYPE", ""))
            kinds[obstype.upper()].append(int(expdir.name))
        for expid in kinds["ARC"] + kinds["FLAT"] + kinds["SCIENCE"]:
            fibermap = path("raw_fibermap", expid=expid)
            for cam in cameras:
                out = path("preproc", expid=expid, camera=cam)
                out.parent.mkdir(parents=True, exist_ok=True)
                run_task("preproc", ["preproc", "--infile", path("raw", expid=expid), "--camera", cam,
                                     "--calib", path("calib_ccd", camera=cam), "--outfile", out,
                                     *(["--fibermap", fibermap] if fibermap.exists() else [])], records)
        for cam in cameras:
            arc_psfs = []
            for expid in kinds["ARC"]:
                out = path("psf", expid=expid, camera=cam)
                out.parent.mkdir(parents=True, exist_ok=True)
                run_task("psf", ["psf", "--infile", path("preproc", expid=expid, camera=cam),
                                 "--input-psf", path("calib_psf", camera=cam), "--outfile", out], records)
                arc_psfs.append(out)
            night_psf = path("psfnight", camera=cam)
            night_psf.parent.mkdir(parents=True, exist_ok=True)
            run_task("psfnight", ["psfnight", "--infiles", *arc_psfs, "--outfile", night_psf], records)
            for expid in kinds["FLAT"] + kinds["SCIENCE"]:
                shifted = path("shifted_psf", expid=expid, camera=cam)
                shifted.parent.mkdir(parents=True, exist_ok=True)
                # as rules/psf.smk: default mode (sky lines) for flats and science
                run_task("traceshift", ["traceshift", "--image", path("preproc", expid=expid, camera=cam),
                                        "--psf", night_psf, "--outfile", shifted], records)
                run_task("extract", ["extract", "--image", path("preproc", expid=expid, camera=cam),
                                     "--psf", shifted, "--outfile", path("frame", expid=expid, camera=cam),
                                     "--nproc", args.nproc_extract], records)
    finally:
        total = time.perf_counter() - t0
        print(f"\n{args.preset} night: {args.narc} arcs, {args.nflat} flats, {args.nscience} science; "
              f"products in {root}")
        print(f"{'step':10s} {'tasks':>5s} {'total s':>9s} {'mean s':>8s} {'max s':>7s} {'peak MiB':>9s}")
        steps = collections.OrderedDict()
        for step, wall, peak in records:
            steps.setdefault(step, []).append((wall, peak))
        for step, rows in steps.items():
            walls = [w for w, _ in rows]
            print(f"{step:10s} {len(rows):5d} {sum(walls):9.1f} {sum(walls) / len(walls):8.2f} "
                  f"{max(walls):7.2f} {max(p for _, p in rows):9.1f}")
        print(f"{'all':10s} {len(records):5d} {total:9.1f}")
        if not args.outdir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
