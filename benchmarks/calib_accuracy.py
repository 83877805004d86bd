"""Accuracy of fiberflatnight and sky against the simulator's truth on a frame-level night.

Simulates (or reuses ``--root``) a frame-level night (``--preset``, ``--nflat`` flats,
2 science exposures) and prints per camera:

* fiberflatnight vs the true relative throughput (both normalised to the mean over
  fibers at each wavelength): rms, and the photon-noise limit of a per-pixel flat from
  these flats, ``sqrt(mean(1 / sum_e ivar_e flux_e^2)))``;
* per science exposure, after ``subtract_sky(apply_fiberflat(frame, fiberflatnight),
  compute_sky(...))``: residual/sigma rms on sky fibers in the continuum and on bright
  lines (true sky excess over its 61-pixel running median > the median), pull rms of
  science fibers against R·(true object electrons)/throughput, and the mean residual on
  sky fibers relative to the sky continuum.

Usage::

    python benchmarks/calib_accuracy.py --preset mini --root /tmp/calib_mini
    python benchmarks/calib_accuracy.py --preset petal --nflat 6 --root /tmp/calib_petal6
"""
import argparse
import os
import tempfile

import numpy as np
from scipy.ndimage import median_filter

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--nflat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--night", type=int, default=20261124)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    from desired.fiberflat import apply_fiberflat, average_fiberflats, compute_fiberflat
    from desired.io.frame import read_frame
    from desired.io.truth import read_camera_truth
    from desired.paths import findfile
    from desired.scripts.simulate import run
    from desired.sky import compute_sky, sky_fibers, subtract_sky
    NIGHT = args.night
    root = args.root or tempfile.mkdtemp(prefix="calib_accuracy_")
    prod, truth_dir = os.path.join(root, "prod"), os.path.join(root, "truth")
    flats, science = list(range(1, args.nflat + 1)), [args.nflat + 1, args.nflat + 2]
    if not os.path.exists(findfile("frame", root=prod, night=NIGHT, expid=science[0], camera="b0")):
        run(NIGHT, preset=args.preset, level="frame", frame_dir=prod, truth_dir=truth_dir,
            calib_dir=os.path.join(root, "calib"), narc=0, nflat=args.nflat, nscience=2, seed=args.seed)
    frame = lambda e, c: read_frame(findfile("frame", root=prod, night=NIGHT, expid=e, camera=c))  # noqa: E731
    truth = lambda e, c: read_camera_truth(findfile("truth_camera", root=truth_dir, night=NIGHT, expid=e,  # noqa: E731
                                                    camera=c))
    science = [e for e in science if os.path.exists(findfile("frame", root=prod, night=NIGHT, expid=e, camera="b0"))]
    print(f"{args.preset} frame-level night, {args.nflat} flats, seed {args.seed}, under {root}")
    for camera in ("b0", "r0", "z0"):
        fframes = [frame(e, camera) for e in flats]
        night = average_fiberflats([compute_fiberflat(f) for f in fframes])
        true = truth(flats[0], camera)["FIBERFLAT"]
        d = night.fiberflat / night.fiberflat.mean(axis=0) - true / true.mean(axis=0)
        photon = np.sqrt(np.mean(1.0 / sum(f.ivar * f.flux ** 2 for f in fframes)))
        print(f"{camera} fiberflatnight rms vs truth {100 * d.std():.3f} %, photon-noise limit {100 * photon:.3f} %, "
              f"ratio {d.std() / photon:.3f}")
        for e in science:
            raw, t = frame(e, camera), truth(e, camera)
            ff = apply_fiberflat(raw, night)
            sub = subtract_sky(ff, compute_sky(ff))
            thru = t["FIBERFLAT"] / np.median(t["FIBERFLAT"], axis=0)
            resid = sub.flux - raw.convolve(t["OBJ_ELECTRONS"]) / thru
            pull = resid * np.sqrt(sub.ivar)
            skyf = sky_fibers(raw)
            sci = np.setdiff1d(np.arange(raw.nspec), skyf)
            msky = (raw.convolve(t["SKY_ELECTRONS"]) / thru)[skyf].mean(axis=0)
            cont = median_filter(msky, 61, mode="nearest")
            line = msky - cont > cont
            good = sub.ivar[skyf] > 0
            pc = pull[skyf][:, ~line][good[:, ~line]]
            pl = pull[skyf][:, line][good[:, line]]
            ps = pull[sci][sub.ivar[sci] > 0]
            print(f"  {camera} expid {e}: {skyf.size} sky fibers, resid/sigma rms continuum {pc.std():.3f} "
                  f"lines {pl.std() if pl.size else float('nan'):.3f} ({line.sum()} px); science pulls rms "
                  f"{ps.std():.3f}; mean sky-fiber residual {100 * resid[skyf][good].mean() / cont.mean():+.3f} % "
                  "of the continuum")


if __name__ == "__main__":
    main()
