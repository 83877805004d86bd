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

* per science exposure, the flux calibration through the whole chain as the workflow
  runs it (fiberflatnight, sky, ``fit_stdstars`` with the config's default model grid,
  ``compute_flux_calibration`` with the calibration tree's nominal fallback,
  ``apply_flux_calibration``): cframe of every non-sky target vs the truth in DESI's
  point-source convention (both smoothed over 100 Å, ``bench_fluxcalib.accuracy``), rms and
  median per camera, and the b/r, r/z overlap flux ratios (``--no-fluxcalib`` skips it).
  Per camera also with the first and last 100 Å included (where the dichroics cut the
  throughput), and the calibration alone (no photon noise).  Overlaps: the median flux ratio of
  the brighter half of the targets; each camera's cframe flux summed over the truly brighter
  half vs its summed truth (with its photon noise: where a camera's throughput is a few % of
  its peak, 1/calibration amplifies the noise); and the calibration alone, true / ours
  (fiberflatnight × fluxcalib) weighted by the cframe ivar as a coadd weights the cameras; and the
  summed flux weighted by the cframe ivar.  The noise quoted for the sums adds the sky model's
  statistical error linearly over targets: one sky spectrum is subtracted from every target of a
  camera, so with few sky fibers (``mini``: 5) it does not average down with the number of targets.
  ``--no-shape-prior`` runs the calibration without fluxcalib's nominal-shape prior (side by side).

The default number of flats is DESI's nightly sequence (``desired.sim.night.DESI_NFLAT``).

Usage::

    python benchmarks/calib_accuracy.py --preset mini --root /tmp/calib_mini
    python benchmarks/calib_accuracy.py --preset petal --root /tmp/calib_petal
"""
import argparse
import os
import tempfile

import numpy as np
from scipy.ndimage import median_filter

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--nflat", type=int, default=None, help="flats (default: DESI's sequence, 12)")
    parser.add_argument("--no-fluxcalib", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--night", type=int, default=20261124)
    parser.add_argument("--root", default=None)
    parser.add_argument("--no-shape-prior", action="store_true",
                        help="fit the calibration spline to the calibration itself, not to its ratio to the nominal "
                             "shape (the side by side of fluxcalib's shape_prior)")
    args = parser.parse_args()
    from desired.fiberflat import apply_fiberflat, average_fiberflats, compute_fiberflat
    from desired.io.frame import read_frame
    from desired.io.truth import read_camera_truth
    from desired.paths import findfile
    from desired.scripts.simulate import run
    from desired.sky import compute_sky, sky_fibers, subtract_sky
    # imported now: the models and calibration of this run are the code at its start
    import desired.fluxcalib  # noqa: F401
    import desired.stdmodels  # noqa: F401
    import desired.stdstars  # noqa: F401
    from desired.sim.night import DESI_NFLAT
    args.nflat = DESI_NFLAT if args.nflat is None else args.nflat
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
    nights, corrected, skies = {}, {}, {}
    for camera in ("b0", "r0", "z0"):
        fframes = [frame(e, camera) for e in flats]
        night = nights[camera] = average_fiberflats([compute_fiberflat(f) for f in fframes])
        true = truth(flats[0], camera)["FIBERFLAT"]
        d = night.fiberflat / night.fiberflat.mean(axis=0) - true / true.mean(axis=0)
        photon = np.sqrt(np.mean(1.0 / sum(f.ivar * f.flux ** 2 for f in fframes)))
        print(f"{camera} fiberflatnight rms vs truth {100 * d.std():.3f} %, photon-noise limit {100 * photon:.3f} %, "
              f"ratio {d.std() / photon:.3f}")
        for e in science:
            raw, t = frame(e, camera), truth(e, camera)
            ff = apply_fiberflat(raw, night)
            sky = skies[e, camera] = compute_sky(ff)
            sub = corrected[e, camera] = subtract_sky(ff, sky)
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

    if not args.no_fluxcalib:
        for e in science:
            flux_accuracy({c[0]: corrected[e, c] for c in ("b0", "r0", "z0")},
                          {c[0]: frame(e, c) for c in ("b0", "r0", "z0")},
                          {c[0]: truth(e, c) for c in ("b0", "r0", "z0")}, os.path.join(root, "calib"), e,
                          {c[0]: nights[c] for c in ("b0", "r0", "z0")}, shape_prior=not args.no_shape_prior,
                          skies={c[0]: skies[e, c] for c in ("b0", "r0", "z0")})


def flux_accuracy(corr, raw, truth, calib_dir, expid, nights, shape_prior=True, skies=None):
    """Standard stars, flux calibration and cframes of one exposure as the workflow makes them, vs the truth.

    ``skies`` (band -> SkyModel of this exposure) adds the sky model's statistical error, common to every
    target of a camera, to the noise quoted for the summed overlap statistics.
    """
    import sys
    import time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_fluxcalib import accuracy, overlap

    import yaml
    from desired.fluxcalib import apply_flux_calibration, compute_flux_calibration
    from desired.io.fluxcalib import read_flux_calibration
    from desired.paths import findfile
    from desired.stdmodels import model_grid
    from desired.stdstars import fit_stdstars
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "config.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    st, fc = cfg["stdstars"], cfg["fluxcalib"]
    t0 = time.time()
    grid = model_grid(teff=np.arange(st["teff"][0], st["teff"][1] + st["teff"][2] / 2, st["teff"][2]),
                      logg=st["logg"], feh=st["feh"])
    stars = fit_stdstars(corr, grid, delta_color=st["delta_color"], color_sys=st["color_sys"],
                         color_correct=st["color_correct"])
    print(f"  expid {expid}: {stars.nstd} standards fitted in {time.time() - t0:.0f} s (model grid included, under load)")
    cframes, chain_cal, calibs = {}, {}, {}
    for band in "brz":
        nominal = read_flux_calibration(findfile("calib_fluxcalib", root=calib_dir, camera=f"{band}0"))
        cal = compute_flux_calibration(corr[band], stars, nominal=nominal, min_std=fc["min_std"],
                                       knot_spacing=fc["knot_spacing"], penalty=fc["penalty"],
                                       max_scale_dev=fc["max_scale_dev"], max_shape_rms=fc["max_shape_rms"],
                                       shape_prior=shape_prior, telluric_spacing=fc["telluric_spacing"])
        cframes[band] = cf = apply_flux_calibration(corr[band], cal)
        calibs[band] = cal.calib
        # the calibration of the chain: fiberflatnight x fluxcalib (frame = cframe x this)
        chain_cal[band] = nights[band].fiberflat * cal.calib
        thru = truth[band]["FIBERFLAT"]
        acc = accuracy(cf, raw[band], truth[band], thru / thru.mean(axis=0), cal.calib)
        acc0 = accuracy(cf, raw[band], truth[band], thru / thru.mean(axis=0), cal.calib, edge=0.0)
        print(f"  {band}0 expid {expid}: {cal.header['CALMODE']} {cal.header['NSTDUSED']}/{cal.header['NSTDSTAR']} "
              f"stars; cframe vs truth (100 A) rms {100 * acc['rms']:.2f} %, median {100 * acc['median']:+.2f} % "
              f"over {acc['n_bright']}/{acc['n_targets']} targets" +
              (f"; rms above 4100 A {100 * acc['rms_above4100']:.2f} %" if "rms_above4100" in acc else "") +
              f"; with the first/last 100 A: rms {100 * acc0['rms']:.2f} %, median {100 * acc0['median']:+.2f} %, "
              f"calibration alone rms {100 * acc0['cal_rms']:.2f} %, worst |median over fibers| "
              f"{100 * acc0['cal_maxabs']:.2f} %")
    tgt = np.flatnonzero(np.char.strip(np.asarray(corr["b"].fibermap["OBJTYPE"]).astype(str)) != "SKY")
    from desired.sim.truthcal import true_calibration, true_cframe_flux
    # each camera's true cframe flux and true calibration, computed once for every overlap statistic below
    true_flux = {band: true_cframe_flux(raw[band], truth[band]) for band in cframes}
    true_cal = {band: true_calibration(raw[band], truth[band]) for band in cframes}
    for a, b in (("b", "r"), ("r", "z")):
        ratio, lo, hi = overlap(cframes[a], cframes[b], tgt)
        # the same agreement with less of the targets' photon noise: each camera's cframe flux summed over the
        # truly brighter half of the targets in the overlap, relative to its summed truth, then a / b
        sums = {}
        for band in (a, b):
            cf = cframes[band]
            sel = (cf.wave > lo) & (cf.wave < hi)
            good = np.where(cf.ivar[tgt][:, sel] > 0, 1.0, 0.0)
            true = true_flux[band][tgt][:, sel]
            sums[band] = (np.sum(cf.flux[tgt][:, sel] * good, axis=1), np.sum(true * good, axis=1))
        tot = sums[a][1] + sums[b][1]
        bright = tot > np.median(tot)

        def noise(band, weights=None):
            """Noise of the summed statistic sum(w f) / sum(w f_true) of ``band`` over the brighter half.

            Returns (total, common), relative.  Each target's own noise adds in quadrature; the sky model's
            statistical error is one draw for every target of the camera (one deconvolved sky spectrum), so it
            adds linearly over targets (``common``; 0 without ``skies``).  ``weights`` (ntarget, npix): default
            1 where the cframe ivar > 0.
            """
            cf = cframes[band]
            sel = (cf.wave > lo) & (cf.wave < hi)
            iv = cf.ivar[tgt][:, sel][bright]
            w = np.where(iv > 0, 1.0, 0.0) if weights is None else weights
            true = true_flux[band][tgt][:, sel][bright]
            var = np.where(iv > 0, 1.0 / np.where(iv > 0, iv, 1.0), 0.0)
            norm = np.sum(w * true)
            if skies is None:
                return np.sqrt(np.sum(w ** 2 * var)) / norm, 0.0
            sky_iv = skies[band].stat_ivar[tgt][:, sel][bright]
            cal = calibs[band][tgt][:, sel][bright]
            ok = (sky_iv > 0) & (cal > 0) & (iv > 0)
            sky_sig = np.where(ok, 1.0 / np.sqrt(np.where(ok, sky_iv, 1.0)) / np.where(ok, cal, 1.0), 0.0)
            own = np.sum(w ** 2 * np.clip(var - sky_sig ** 2, 0.0, None))
            common = np.sum(np.sum(w * sky_sig, axis=0) ** 2)
            return np.sqrt(own + common) / norm, np.sqrt(common) / norm
        cal = [np.sum(sums[band][0][bright]) / np.sum(sums[band][1][bright]) for band in (a, b)]
        na, nb = noise(a), noise(b)
        print(f"  overlap {a}/{b} ({lo:.0f}-{hi:.0f} A) expid {expid}: median flux ratio of the brighter half "
              f"{ratio:.4f}; summed over the truly brighter {bright.sum()} targets, each camera vs truth: "
              f"{cal[0]:.4f} / {cal[1]:.4f} = {cal[0] / cal[1]:.4f} (noise {100 * na[0]:.2f} % / {100 * nb[0]:.2f} %, "
              f"of which the sky model's, common to all targets, {100 * na[1]:.2f} % / {100 * nb[1]:.2f} %)")
        # the same sums weighted by the cframe ivar, as a coadd weights the two cameras pixel by pixel: where a
        # camera's throughput is a few % of its peak its pixels count little, as in the spectrum the user gets
        wsum = []
        for band in (a, b):
            cf = cframes[band]
            sel = (cf.wave > lo) & (cf.wave < hi)
            w = cf.ivar[tgt][:, sel][bright]
            true = true_flux[band][tgt][:, sel][bright]
            wsum.append((np.sum(w * cf.flux[tgt][:, sel][bright]) / np.sum(w * true), noise(band, w)))
        print(f"    ivar-weighted, same targets and pixels: {wsum[0][0]:.4f} / {wsum[1][0]:.4f} = "
              f"{wsum[0][0] / wsum[1][0]:.4f} (noise {100 * wsum[0][1][0]:.2f} % / {100 * wsum[1][1][0]:.2f} %, "
              f"common sky {100 * wsum[0][1][1]:.2f} % / {100 * wsum[1][1][1]:.2f} %)")
        # the calibration alone, without photon noise: true / our chain calibration in the overlap, weighted by the
        # cframe ivar (as a coadd weights the two cameras), per camera, then a / b
        calonly = []
        for band in (a, b):
            sel = (cframes[band].wave > lo) & (cframes[band].wave < hi)
            w = cframes[band].ivar[tgt][:, sel]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio_cal = np.where(w > 0, true_cal[band][tgt][:, sel] /
                                     chain_cal[band][tgt][:, sel], 0.0)
            calonly.append(np.sum(w * ratio_cal) / np.sum(w))
        print(f"    calibration alone in the overlap (true / ours, ivar-weighted over all targets): "
              f"{calonly[0]:.4f} / {calonly[1]:.4f} = {calonly[0] / calonly[1]:.4f}")
        # the summed statistic where both cameras' true throughput is above 10 % of its peak (elsewhere one camera's
        # cframe is its noise and sky residual divided by a calibration of a few % of its peak)
        peak = {band: np.median(true_cal[band], axis=0) for band in (a, b)}
        strong = {band: np.interp(cframes[band].wave, cframes[o].wave, peak[o] / peak[o].max(), left=0.0, right=0.0)
                  for band, o in ((a, b), (b, a))}
        usable = []
        for band in (a, b):
            cf = cframes[band]
            sel = (cf.wave > lo) & (cf.wave < hi) & (peak[band] > 0.1 * peak[band].max()) & (strong[band] > 0.1)
            good = np.where(cf.ivar[tgt][:, sel] > 0, 1.0, 0.0)[bright]
            usable.append((np.sum(cf.flux[tgt][:, sel][bright] * good) /
                           np.sum(true_flux[band][tgt][:, sel][bright] * good), int(sel.sum())))
        print(f"    summed where both throughputs are > 10 % of their peaks ({usable[0][1]}, {usable[1][1]} px): "
              f"{usable[0][0]:.4f} / {usable[1][0]:.4f} = {usable[0][0] / usable[1][0]:.4f}")


if __name__ == "__main__":
    main()
