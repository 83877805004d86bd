"""Core-seconds of one science exposure, raw -> cframe, on real (simulated) pixels.

A full 30-camera exposure is 10 spectrographs of 3 cameras (b, r, z; 500 fibers
each) that the pipeline processes independently up to the cframe: every step
before stdstars runs per camera, stdstars per spectrograph, fluxcalib and cframe
per camera again.  This script simulates (or reuses) a night of ONE spectrograph
at full size (the ``petal`` preset: 3 full 4k x 4k cameras, 500 fibers) with an
arc, a flat and a science exposure, runs every ``desired`` step on it as the
workflow does (one child process per task, as Snakemake runs them) and records
the CPU time (user + system, from ``os.wait4``) and wall time of each task.

Printed: CPU seconds per step and camera for the science exposure (preproc,
traceshift, extract, sky (fiber flat applied), stdstars, fluxcalib, cframe),
the night calibrations (psf, psfnight, flat preproc/traceshift/extract,
fiberflat, fiberflatnight) reported separately and amortised over the night's
science exposures, and the 30-camera figure obtained as 10 x the one
spectrograph measured (an extrapolation: spectrographs share nothing before
the cframe, so their costs add), compared with desispec's ~10.4 node-minutes
on a 128-core node (~1 330 core-minutes) per exposure.

With ``--preset full`` the simulated night has all 10 spectrographs and every one of the 30
cameras is run and measured (no extrapolation; ~3 000 CPU s and ~30 GB of disk).

Usage::

    python benchmarks/bench_exposure.py [--workdir DIR] [--raw-dir RAW --calib-dir CALIB]
        [--preset petal|full] [--night-arcs 3 --night-flats 3 --night-science 30] [--nproc-extract 1] [--jobs 1]
        [--pixel-steps-nspec 25 | --frame-level]

``--pixel-steps-nspec N`` times only the pixel steps of the science exposure at full
size (preproc, traceshift against the nominal PSF, extraction of the first N
fibers, scaled per fiber): the whole chain at full size costs ~1 000 CPU s per
spectrograph, more than a shared machine can give in an afternoon.
``--frame-level`` times the steps after the extraction (fiberflat, fiberflatnight,
sky, stdstars, fluxcalib, cframe) on full-size frames simulated without pixels
(``desired simulate --level frame``); together the two modes cover every step at
full size.

Without ``--raw-dir`` the night is simulated first (``desired simulate --preset
petal --narc 1 --nflat 1 --nscience 1``; its own cost is printed but is not part
of the pipeline's).  Child processes run with one BLAS/OpenMP thread.
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from desired import paths
from desired.io.raw import read_raw_header

NIGHT = 20261124
#: desispec: ~10.4 node-minutes per science exposure on 128-core Perlmutter nodes (shared/reference anchors)
DESISPEC_CORE_MINUTES = 10.4 * 128
SCIENCE_STEPS = ["fibermap", "preproc", "traceshift", "extract", "sky", "stdstars", "fluxcalib", "cframe"]
NIGHT_STEPS = ["arc preproc", "psf", "psfnight", "flat fibermap", "flat preproc", "flat traceshift", "flat extract",
               "fiberflat", "fiberflatnight"]


def run_task(step, unit, argv, records):
    """Run ``desired argv`` in a child process; record (step, unit, CPU s, wall s, peak RSS MiB)."""
    cmd = [sys.executable, "-m", "desired", "--log-level", "WARNING", *map(str, argv)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = proc.stderr.read().decode(errors="replace")      # drain before waiting (no pipe dead-lock)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    wall = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    records.append((step, unit, cpu, wall, usage.ru_maxrss / 1024.0))
    print(f"{step:16s} {unit:4s} {cpu:8.1f} CPU s {wall:8.1f} s wall {usage.ru_maxrss / 1024:8.0f} MiB "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")


def simulate(root, preset, seed, records):
    """Simulate one arc, one flat and one science exposure of the preset (recorded as step 'simulate')."""
    run_task("simulate", "all", ["simulate", "--preset", preset, "--night", NIGHT, "--raw-dir", root / "raw",
                                 "--calib-dir", root / "calib", "--truth-dir", root / "truth", "--narc", 1,
                                 "--nflat", 1, "--nscience", 1, "--seed", seed, "--nproc", 1], records)
    return root / "raw", root / "calib"


def exposures_by_type(raw):
    """``{OBSTYPE: [expid, ...]}`` of the night under ``raw``."""
    kinds = collections.defaultdict(list)
    for expdir in sorted((raw / str(NIGHT)).iterdir()):
        obstype = str(read_raw_header(expdir / f"desi-{expdir.name}.fits.fz").get("OBSTYPE", "")).upper()
        kinds[obstype].append(int(expdir.name))
    return kinds


class Paths:
    """Product paths of the benchmark's trees (DESI names from :data:`desired.paths.PATTERNS`)."""

    def __init__(self, raw, calib, redux):
        self.roots = {"raw": Path(raw), "calib": Path(calib), "redux": Path(redux)}

    def __call__(self, kind, **fields):
        out = self.roots[paths.PATTERNS[kind][0]] / paths.findfile(kind, night=NIGHT, **fields)
        out.parent.mkdir(parents=True, exist_ok=True)
        return out


def preproc_and_extract(p, expid, cam, psf, prefix, records, nproc):
    """preproc, traceshift and extract of one flat/science camera; returns the frame path."""
    fibermap = p("fibermap", expid=expid)
    run_task(f"{prefix}preproc", cam, ["preproc", "--infile", p("raw", expid=expid), "--camera", cam,
                                       "--calib", p("calib_ccd", camera=cam), "--fibermap", fibermap,
                                       "--outfile", p("preproc", expid=expid, camera=cam)], records)
    sky = p("calib_sky_template")
    run_task(f"{prefix}traceshift", cam, ["traceshift", "--image", p("preproc", expid=expid, camera=cam),
                                          "--psf", psf, "--outfile", p("shifted_psf", expid=expid, camera=cam),
                                          *(["--sky-template", sky] if sky.exists() else [])], records)
    frame = p("frame", expid=expid, camera=cam)
    run_task(f"{prefix}extract", cam, ["extract", "--image", p("preproc", expid=expid, camera=cam),
                                       "--psf", p("shifted_psf", expid=expid, camera=cam), "--fibermap", fibermap,
                                       "--outfile", frame, "--nproc", nproc], records)
    return frame


def make_fibermap(p, expid, prefix, records):
    """The production fibermap of one exposure (step ``{prefix}fibermap``)."""
    run_task(f"{prefix}fibermap", "exp", ["fibermap", "--infile", p("raw_fibermap", expid=expid),
                                          "--raw", p("raw", expid=expid), "--outfile", p("fibermap", expid=expid)],
             records)


def per_camera(function, cameras, jobs):
    """Call ``function(camera)`` for every camera, ``jobs`` cameras at a time (threads driving child processes)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(cameras, pool.map(function, cameras)))


def night_calibration(p, kinds, cameras, records, nproc, jobs):
    """PSF from the arc(s) and fiber flat from the flat(s) of every camera (the night's calibrations)."""
    for expid in kinds["FLAT"]:
        make_fibermap(p, expid, "flat ", records)

    def one(cam):
        psfs = []
        for expid in kinds["ARC"]:
            run_task("arc preproc", cam, ["preproc", "--infile", p("raw", expid=expid), "--camera", cam,
                                          "--calib", p("calib_ccd", camera=cam),
                                          "--outfile", p("preproc", expid=expid, camera=cam)], records)
            psfs.append(p("psf", expid=expid, camera=cam))
            run_task("psf", cam, ["psf", "--infile", p("preproc", expid=expid, camera=cam),
                                  "--input-psf", p("calib_psf", camera=cam), "--outfile", psfs[-1]], records)
        run_task("psfnight", cam, ["psfnight", "--infiles", *psfs, "--outfile", p("psfnight", camera=cam)], records)
        flats = []
        for expid in kinds["FLAT"]:
            frame = preproc_and_extract(p, expid, cam, p("psfnight", camera=cam), "flat ", records, nproc)
            flats.append(p("fiberflat", expid=expid, camera=cam))
            run_task("fiberflat", cam, ["fiberflat", "--infile", frame, "--outfile", flats[-1]], records)
        run_task("fiberflatnight", cam, ["fiberflatnight", "--infiles", *flats,
                                         "--outfile", p("fiberflatnight", camera=cam)], records)
    per_camera(one, cameras, jobs)


def science_exposure(p, expid, cameras, records, nproc, jobs):
    """Every per-exposure step of one science exposure, raw -> cframe."""
    make_fibermap(p, expid, "", records)

    def one(cam):
        frame = preproc_and_extract(p, expid, cam, p("psfnight", camera=cam), "", records, nproc)
        run_task("sky", cam, ["sky", "--infile", frame, "--fiberflat", p("fiberflatnight", camera=cam),
                              "--outfile", p("sky", expid=expid, camera=cam)], records)
        return frame
    frames = per_camera(one, cameras, jobs)
    calibrate_exposure(p, expid, frames, cameras, records)


def calibrate_exposure(p, expid, frames, cameras, records):
    """stdstars per spectrograph, then fluxcalib and cframe per camera, from the frames and sky models."""
    for spectro in sorted({int(c[1:]) for c in cameras}):
        cams = [c for c in cameras if int(c[1:]) == spectro]
        run_task("stdstars", f"sp{spectro}", [
            "stdstars", "--frames", *[frames[c] for c in cams],
            "--fiberflats", *[p("fiberflatnight", camera=c) for c in cams],
            "--skys", *[p("sky", expid=expid, camera=c) for c in cams],
            "--outfile", p("stdstars", expid=expid, spectrograph=spectro)], records)
        for cam in cams:
            nominal = p("calib_fluxcalib", camera=cam)
            common = ["--fiberflat", p("fiberflatnight", camera=cam), "--sky", p("sky", expid=expid, camera=cam)]
            run_task("fluxcalib", cam, ["fluxcalib", "--infile", frames[cam], *common,
                                        "--models", p("stdstars", expid=expid, spectrograph=spectro),
                                        *(["--nominal", nominal] if nominal.exists() else []),
                                        "--outfile", p("fluxcalib", expid=expid, camera=cam)], records)
            run_task("cframe", cam, ["cframe", "--infile", frames[cam], *common,
                                     "--calib", p("fluxcalib", expid=expid, camera=cam),
                                     "--outfile", p("cframe", expid=expid, camera=cam)], records)


def pixel_steps(p, expid, cameras, records, nspec, jobs):
    """preproc, traceshift (against the calib tree's nominal PSF) and the extraction of ``nspec`` fibers per camera."""
    make_fibermap(p, expid, "", records)
    fibermap = p("fibermap", expid=expid)

    def one(cam):
        pre = p("preproc", expid=expid, camera=cam)
        run_task("preproc", cam, ["preproc", "--infile", p("raw", expid=expid), "--camera", cam,
                                  "--calib", p("calib_ccd", camera=cam), "--fibermap", fibermap,
                                  "--outfile", pre], records)
        sky = p("calib_sky_template")
        shifted = p("shifted_psf", expid=expid, camera=cam)
        run_task("traceshift", cam, ["traceshift", "--image", pre, "--psf", p("calib_psf", camera=cam),
                                     "--outfile", shifted, *(["--sky-template", sky] if sky.exists() else [])],
                 records)
        run_task("extract", cam, ["extract", "--image", pre, "--psf", shifted, "--fibermap", fibermap,
                                  "--specmin", 0, "--nspec", nspec,
                                  "--outfile", p("frame", expid=expid, camera=cam)], records)
    per_camera(one, cameras, jobs)


def frame_level_steps(root, p, args, cameras, records):
    """Fiber flat, sky, stdstars, fluxcalib and cframe on frame-level simulated frames (no pixels, full size)."""
    import fitsio
    run_task("simulate", "all", ["simulate", "--level", "frame", "--preset", args.preset, "--night", NIGHT,
                                 "--frame-dir", root / "redux", "--truth-dir", root / "truth", "--calib-dir",
                                 root / "calib", "--nscience", 1, "--narc", 0, "--nflat", 1, "--seed", args.seed],
             records)
    records.clear()                              # the simulation is not part of the pipeline's cost
    kinds = collections.defaultdict(list)
    for expdir in sorted((root / "redux" / "exposures" / str(NIGHT)).iterdir()):
        frame = p("frame", expid=int(expdir.name), camera=cameras[0])
        kinds[str(fitsio.read_header(frame, 0).get("OBSTYPE", "")).upper()].append(int(expdir.name))
    flat, science = kinds["FLAT"][0], kinds["SCIENCE"][0]
    frames = {}
    for cam in cameras:
        run_task("fiberflat", cam, ["fiberflat", "--infile", p("frame", expid=flat, camera=cam),
                                    "--outfile", p("fiberflat", expid=flat, camera=cam)], records)
        run_task("fiberflatnight", cam, ["fiberflatnight", "--infiles", p("fiberflat", expid=flat, camera=cam),
                                         "--outfile", p("fiberflatnight", camera=cam)], records)
        frames[cam] = p("frame", expid=science, camera=cam)
        run_task("sky", cam, ["sky", "--infile", frames[cam], "--fiberflat", p("fiberflatnight", camera=cam),
                              "--outfile", p("sky", expid=science, camera=cam)], records)
    calibrate_exposure(p, science, frames, cameras, records)
    print(f"\nsteps after the extraction on frame-level {args.preset} frames (CPU s per task):")
    for step, cam, cpu, wall, rss in records:
        print(f"{step:16s} {cam:4s} {cpu:7.1f} CPU s {wall:7.1f} s wall (under load) {rss:6.0f} MiB")


def summarise_pixels(records, cameras, nspec, nfiber):
    """Per-camera CPU seconds of the pixel steps; the extraction scaled from ``nspec`` to ``nfiber`` fibers."""
    print(f"\nfull-size pixel steps of the science exposure (CPU s; extraction of {nspec} fibers measured, "
          f"x{nfiber / nspec:.0f} extrapolated per fiber to {nfiber}):")
    for step, cam, cpu, wall, rss in records:
        scaled = f" -> {cpu * nfiber / nspec:.1f} CPU s for {nfiber} fibers (extrapolated)" if step == "extract" else ""
        print(f"{step:12s} {cam:4s} {cpu:7.1f} CPU s {wall:7.1f} s wall (under load) {rss:6.0f} MiB{scaled}")


def summarise(records, ncam, nspectro, args, nights):
    """Print per-step CPU seconds per camera, the night's amortised share and the 30-camera extrapolation."""
    cpu = collections.defaultdict(float)
    wall = collections.defaultdict(float)
    for step, _, c, w, _ in records:
        cpu[step] += c
        wall[step] += w
    print(f"\nper science exposure, {ncam} cameras of {nspectro} spectrograph(s) measured (CPU s; wall under load):")
    print(f"{'step':16s} {'CPU s/camera':>13s} {'CPU s total':>12s} {'wall s total':>13s}")
    total = 0.0
    for step in SCIENCE_STEPS:
        if step in cpu:
            total += cpu[step]
            print(f"{step:16s} {cpu[step] / ncam:13.1f} {cpu[step]:12.1f} {wall[step]:13.1f}")
    print(f"{'science total':16s} {total / ncam:13.1f} {total:12.1f}")
    # night calibrations: scale the measured arcs/flats to the night's counts, amortise over its science exposures
    night = 0.0
    print(f"\nnight calibrations (measured with {nights['ARC']} arc(s), {nights['FLAT']} flat(s); "
          f"scaled to {args.night_arcs} arcs, {args.night_flats} flats):")
    for step in NIGHT_STEPS:
        if step not in cpu:
            continue
        per = (args.night_arcs / nights["ARC"] if step in ("arc preproc", "psf")
               else args.night_flats / nights["FLAT"] if step.startswith("flat") or step == "fiberflat" else 1.0)
        night += cpu[step] * per
        print(f"{step:16s} {cpu[step] / ncam:13.1f} CPU s/camera measured, x{per:.0f} per night")
    share = night / args.night_science
    print(f"{'night total':16s} {night / ncam:13.1f} CPU s/camera per night; amortised over "
          f"{args.night_science} science exposures: {share / ncam:.1f} CPU s/camera per exposure")
    factor = 30 / ncam
    how = "all 30 cameras measured" if ncam == 30 else f"extrapolated x{factor:.0f} from {ncam} cameras measured"
    for label, seconds in (("science steps", total), ("science + amortised night calibrations", total + share)):
        full = seconds * factor / 60
        print(f"30-camera exposure, {label}: {full:.1f} core-minutes ({how}; "
              f"{seconds / ncam:.1f} CPU s per camera); desispec ~{DESISPEC_CORE_MINUTES:.0f} "
              f"core-minutes: ratio 1/{DESISPEC_CORE_MINUTES / full:.1f} (goal 1/10 = "
              f"{DESISPEC_CORE_MINUTES / 10:.0f} core-minutes, {DESISPEC_CORE_MINUTES / 10 / 30 * 60:.0f} s/camera)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="products go here (default: a temporary directory, kept)")
    parser.add_argument("--raw-dir", help="existing simulated raw tree (skips the simulation)")
    parser.add_argument("--calib-dir", help="its calibration tree")
    parser.add_argument("--preset", default="petal", choices=["full", "petal", "mini", "tiny"],
                        help="petal: one spectrograph (3 cameras), scaled x10; full: all 30 cameras measured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--night-arcs", type=int, default=3, help="arcs per night for the amortisation")
    parser.add_argument("--night-flats", type=int, default=3, help="flats per night for the amortisation")
    parser.add_argument("--night-science", type=int, default=30, help="science exposures per night")
    parser.add_argument("--nproc-extract", type=int, default=1)
    parser.add_argument("--pixel-steps-nspec", type=int, default=0,
                        help="instead of the chain: preproc, traceshift (nominal PSF) and the extraction of this "
                             "many fibers of each science camera, extraction extrapolated per fiber")
    parser.add_argument("--frame-level", action="store_true",
                        help="instead of the chain: the steps after the extraction (fiberflat, sky, stdstars, "
                             "fluxcalib, cframe) on frame-level simulated full-size frames")
    parser.add_argument("--nfiber", type=int, default=500, help="fibers per camera for that extrapolation")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cameras processed at once (each task's CPU time is its own; wall time shrinks)")
    args = parser.parse_args(argv)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_exposure_"))
    records = []
    if args.frame_level:
        cameras = [f"{b}{s}" for s in range(1 if args.preset != "full" else 10) for b in "brz"]
        frame_level_steps(root, Paths(root / "raw", root / "calib", root / "redux"), args, cameras, records)
        return 0
    if args.raw_dir:
        raw, calib = Path(args.raw_dir), Path(args.calib_dir)
    else:
        raw, calib = simulate(root, args.preset, args.seed, records)
        records.clear()                          # the simulation is not part of the pipeline's cost
    p = Paths(raw, calib, root / "redux")
    cameras = sorted((c.name[4:-5] for c in calib.glob("ccd-*.yaml")), key=lambda c: (c[1:], "brz".index(c[0])))
    kinds = exposures_by_type(raw)
    print(f"night {NIGHT}: cameras {cameras}; arcs {kinds['ARC']}, flats {kinds['FLAT']}, "
          f"science {kinds['SCIENCE']}; products under {root}", flush=True)
    t0 = time.perf_counter()
    if args.pixel_steps_nspec:
        pixel_steps(p, kinds["SCIENCE"][0], cameras, records, args.pixel_steps_nspec, args.jobs)
        summarise_pixels(records, cameras, args.pixel_steps_nspec, args.nfiber)
        return 0
    night_calibration(p, kinds, cameras, records, args.nproc_extract, args.jobs)
    science_exposure(p, kinds["SCIENCE"][0], cameras, records, args.nproc_extract, args.jobs)
    print(f"\nall tasks: {time.perf_counter() - t0:.0f} s wall (under load: shared machine)")
    summarise(records, len(cameras), len({c[1:] for c in cameras}), args,
              {"ARC": len(kinds["ARC"]), "FLAT": len(kinds["FLAT"])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
