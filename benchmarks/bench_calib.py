"""Benchmark fiberflat and sky on full 500-fiber cameras, ours next to desispec's, on the same frames.

Simulates (or reuses, ``--root``) a frame-level ``petal`` night (500 fibers per
camera, 3 flats, 1 science exposure), then for every camera runs, each in a fresh
child process (so its peak memory is its own):

* fiberflat: ``desired.fiberflat.compute_fiberflat`` and
  ``desispec.fiberflat.compute_fiberflat`` on the first flat frame; accuracy = rms of
  (flat - true throughput), both normalised to the mean over fibers at each wavelength;
* sky: ``desired.sky.compute_sky`` and ``desispec.sky.compute_sky`` on the science
  frame divided by our fiberflatnight; accuracy = rms of (model - true sky) over all
  fibers, and rms of residual/sigma on the sky fibers after our subtraction.

Prints wall time, CPU time of the process (the meaningful figure on a loaded
machine; both steps run single-threaded), peak memory allocated during the call
(tracemalloc: numpy buffers included), accuracy against the truth, and the ratios.

Usage::

    python benchmarks/bench_calib.py [--root DIR] [--cameras b0,r0,z0] [--steps fiberflat,sky] [--no-desispec]
"""
import argparse
import concurrent.futures
import multiprocessing
import os
import tempfile
import time

import numpy as np

NIGHT = 20261125


def _paths(root, expid, camera):
    from desired.paths import findfile
    return (findfile("frame", root=os.path.join(root, "prod"), night=NIGHT, expid=expid, camera=camera),
            findfile("truth_camera", root=os.path.join(root, "truth"), night=NIGHT, expid=expid, camera=camera))


def _desispec_frame(frame):
    import desispec.frame
    return desispec.frame.Frame(frame.wave, frame.flux.copy(), frame.ivar.copy(), mask=frame.mask.astype(np.uint32),
                                resolution_data=frame.resolution_data, fibermap=frame.fibermap,
                                meta=dict(frame.header))


class Meter:
    """Wall time, CPU time and tracemalloc peak (MB) of the enclosed block."""

    def __enter__(self):
        import tracemalloc
        tracemalloc.start()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        import tracemalloc
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()


def task(kind, who, root, camera, flatfile=None):
    """One measurement in a child process: returns (Meter figures, accuracy dict)."""
    os.environ.setdefault("DESI_LOGLEVEL", "WARNING")
    import logging
    from desiutil.log import get_logger
    get_logger().setLevel(logging.WARNING)
    from desired.io.frame import read_frame
    from desired.io.truth import read_camera_truth
    if kind == "fiberflat":
        fpath, tpath = _paths(root, 1, camera)
        frame, truth = read_frame(fpath), read_camera_truth(tpath)
        if who == "ours":
            from desired.fiberflat import compute_fiberflat
            compute_fiberflat(frame.select(slice(0, 2)))             # compile numba kernels outside the timing
            with Meter() as meter:
                flat = compute_fiberflat(frame).fiberflat
        else:
            import desispec.fiberflat
            dframe = _desispec_frame(frame)
            with Meter() as meter:
                flat = desispec.fiberflat.compute_fiberflat(dframe).fiberflat
        true = truth["FIBERFLAT"] / truth["FIBERFLAT"].mean(axis=0)
        return (meter.wall, meter.cpu, meter.peak), {"rms_vs_truth": float(np.std(flat / flat.mean(axis=0) - true))}
    from desired.fiberflat import apply_fiberflat
    from desired.io.fiberflat import read_fiberflat
    from desired.sky import compute_sky, sky_fibers, subtract_sky
    fpath, tpath = _paths(root, 4, camera)
    frame = apply_fiberflat(read_frame(fpath), read_fiberflat(flatfile))
    truth = read_camera_truth(tpath)
    if who == "ours":
        compute_sky(frame.select(np.arange(frame.nspec)[:60]))      # compile numba kernels outside the timing
        with Meter() as meter:
            sky = compute_sky(frame)
    else:
        import desispec.sky
        dframe = _desispec_frame(frame)
        with Meter() as meter:
            sky = desispec.sky.compute_sky(dframe)
    thru = truth["FIBERFLAT"] / np.median(truth["FIBERFLAT"], axis=0)
    true_sky = frame.convolve(truth["SKY_ELECTRONS"]) / thru
    ok = sky.ivar > 0
    out = {"rms_vs_truth": float(np.sqrt(np.mean((sky.flux - true_sky)[ok] ** 2)))}
    if who == "ours":
        sub = subtract_sky(frame, sky)
        skyf = sky_fibers(frame)
        pull = ((sub.flux - frame.convolve(truth["OBJ_ELECTRONS"]) / thru) * np.sqrt(sub.ivar))[skyf]
        out["skyfiber_resid_over_sigma_rms"] = float(np.std(pull[sub.ivar[skyf] > 0]))
    return (meter.wall, meter.cpu, meter.peak), out


def run_child(*args, **kwargs):
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(task, *args, **kwargs).result()


def report(step, camera, who, figures, accuracy):
    wall, cpu, peak = figures
    acc = " ".join(f"{k}={v:.5g}" for k, v in accuracy.items())
    print(f"{step:9s} {camera:6s} {who:9s} {wall:8.2f} {cpu:8.2f} {peak:8.0f}  {acc}", flush=True)


def ratios(step, camera, results):
    (w0, c0, m0), a0 = results["ours"]
    (w1, c1, m1), a1 = results["desispec"]
    print(f"{step:9s} {camera:6s} desispec/ours: wall x{w1 / w0:.1f}, cpu x{c1 / c0:.1f}, peak memory x{m1 / m0:.1f}, "
          f"error vs truth ratio ours/desispec {a0['rms_vs_truth'] / a1['rms_vs_truth']:.4f}", flush=True)


def simulate(root):
    from desired.scripts.simulate import run
    run(NIGHT, preset="petal", level="frame", frame_dir=os.path.join(root, "prod"),
        truth_dir=os.path.join(root, "truth"), calib_dir=os.path.join(root, "calib"),
        narc=0, nflat=3, nscience=1, seed=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="frame-level petal night (simulated here when absent)")
    parser.add_argument("--cameras", default="b0,r0,z0")
    parser.add_argument("--steps", default="fiberflat,sky", help="which of fiberflat, sky to time")
    parser.add_argument("--no-desispec", action="store_true")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="bench_calib_")
    if not os.path.exists(_paths(root, 4, args.cameras.split(",")[0])[0]):
        print(f"simulating a frame-level petal night under {root} ...", flush=True)
        simulate(root)
    from desired.fiberflat import average_fiberflats, compute_fiberflat
    from desired.io.fiberflat import write_fiberflat
    from desired.io.frame import read_frame
    who = ["ours"] + ([] if args.no_desispec else ["desispec"])
    print(f"{'step':9s} {'camera':6s} {'who':9s} {'wall s':>8s} {'cpu s':>8s} {'peak MB':>8s}  accuracy")
    for camera in args.cameras.split(","):
        results = {}
        for w in who if "fiberflat" in args.steps else []:
            results[w] = run_child("fiberflat", w, root, camera)
            report("fiberflat", camera, w, *results[w])
        if "desispec" in results:
            ratios("fiberflat", camera, results)
        results = {}
        flats = [compute_fiberflat(read_frame(_paths(root, e, camera)[0])) for e in (1, 2, 3)]
        with Meter() as meter:
            night = average_fiberflats(flats)
        print(f"{'flatnight':9s} {camera:6s} {'ours':9s} {meter.wall:8.2f} {meter.cpu:8.2f} {meter.peak:8.0f}  (3 flats)")
        flatfile = os.path.join(root, f"fiberflatnight-{camera}.fits")
        write_fiberflat(flatfile, night)
        for w in who if "sky" in args.steps else []:
            results[w] = run_child("sky", w, root, camera, flatfile=flatfile)
            report("sky", camera, w, *results[w])
        if "desispec" in results:
            ratios("sky", camera, results)


if __name__ == "__main__":
    main()
