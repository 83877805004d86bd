"""Benchmark and acceptance measurement of the standard-star fit, flux calibration and cframes.

Simulates (or reuses) a frame-level ``petal`` night (one spectrograph, 500 fibers,
40 standard stars), removes the fiber flat and the sky with the simulator's truth so
that the flux calibration is measured by itself, then times and measures:

* ``desired.stdstars.fit_stdstars`` (b+r+z) with the default model grid (grid
  computation timed separately), wall time and peak RSS;
* ``desired.fluxcalib.compute_flux_calibration`` + ``apply_flux_calibration`` per camera;
* the same calibration computed by desispec's ``compute_flux_calibration`` from the same
  frames and *our* stdstars models (desispec's own ``desi_fit_stdstars`` needs DESI's
  stellar templates, $DESI_BASIS_TEMPLATES, which no registry ships: not run);
* acceptance against the truth (``desired.sim.truthcal.true_cframe_flux``), both
  smoothed over 100 Å, for every non-sky target: rms and median of the relative
  difference per camera (targets whose smoothed true flux is above the 1e-17 cgs
  median ... see ``--min-flux``), plus the calibration-only error (our calibration vs the
  true ``R·(T·C)`` divided by the true relative flat), and the b/r and r/z overlaps.

Usage::

    python benchmarks/bench_fluxcalib.py [--root DIR] [--preset petal] [--seed 3] [--no-desispec]

All figures printed are measured in this run.
"""
import argparse
import os
import resource
import tempfile
import time

import numpy as np
from scipy.ndimage import uniform_filter1d

from desired import paths
from desired.frame import Frame
from desired.io.frame import read_frame
from desired.io.fluxcalib import read_flux_calibration
from desired.io.truth import read_camera_truth

NIGHT, EXPID = 20261124, 1


def truth_corrected(frame, truth):
    thru = truth["FIBERFLAT"]
    ff = thru / thru.mean(axis=0)
    sky = frame.convolve(truth["SKY_ELECTRONS"])
    return Frame(frame.wave, (frame.flux - sky) / ff, frame.ivar * ff ** 2, frame.mask, frame.resolution_data,
                 frame.fibermap, None, frame.header, frame.fibers), ff


def smooth100(wave, flux):
    return uniform_filter1d(flux, max(int(round(100.0 / np.median(np.diff(wave)))), 1), axis=-1, mode="nearest")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load(root):
    raw, corr, truth, flats = {}, {}, {}, {}
    for band in "brz":
        cam = f"{band}0"
        raw[band] = read_frame(paths.findfile("frame", root=os.path.join(root, "prod"), night=NIGHT, expid=EXPID,
                                              camera=cam))
        truth[band] = read_camera_truth(paths.findfile("truth_camera", root=os.path.join(root, "truth"), night=NIGHT,
                                                       expid=EXPID, camera=cam))
        corr[band], flats[band] = truth_corrected(raw[band], truth[band])
    return raw, corr, truth, flats


def accuracy(cf, raw, truth, flat, calib, edge=100.0):
    """Per-camera figures of a cframe against the truth (the first and last ``edge`` Å left out)."""
    from desired.sim.truthcal import true_calibration, true_cframe_flux
    fm = cf.fibermap
    tgt = np.char.strip(np.asarray(fm["OBJTYPE"]).astype(str)) != "SKY"
    inner = (cf.wave >= cf.wave[0] + edge) & (cf.wave <= cf.wave[-1] - edge)
    ours, exp = smooth100(cf.wave, cf.flux[tgt])[:, inner], smooth100(cf.wave, true_cframe_flux(raw, truth)[tgt])[:, inner]
    # noise of the 100-A smoothed expectation: keep pixels where it is < 1 % (photon noise is not calibration error)
    npix = max(int(round(100.0 / np.median(np.diff(cf.wave)))), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = np.sqrt(smooth100(cf.wave, np.where(cf.ivar[tgt] > 0, 1 / cf.ivar[tgt], 0.0)) / npix)[:, inner]
        rel = ours / exp - 1
    good = np.isfinite(rel) & (exp > 0) & (sig < 0.01 * exp)
    cal_true = true_calibration(raw, truth) / flat
    crel = smooth100(cf.wave, calib)[:, inner] / smooth100(cf.wave, cal_true)[:, inner] - 1
    blue = cf.wave[inner] < 4100.0
    out_blue = {}
    if np.any(blue) and np.any(~blue):
        out_blue = {"cal_rms_below4100": float(np.sqrt(np.mean(crel[:, blue] ** 2))),
                    "cal_rms_above4100": float(np.sqrt(np.mean(crel[:, ~blue] ** 2))),
                    "rms_above4100": float(np.sqrt(np.mean(rel[:, ~blue][good[:, ~blue]] ** 2)))}
    return {**out_blue, "n_targets": int(tgt.sum()), "n_bright": int(np.any(good, axis=1).sum()),
            "rms": float(np.sqrt(np.mean(rel[good] ** 2))), "median": float(np.median(rel[good])),
            "cal_rms": float(np.sqrt(np.mean(crel ** 2))), "cal_median": float(np.median(crel)),
            "cal_maxabs": float(np.max(np.abs(np.median(crel, axis=0))))}


def overlap(cfa, cfb, tgt):
    lo, hi = max(cfa.wave[0], cfb.wave[0]) + 10, min(cfa.wave[-1], cfb.wave[-1]) - 10
    ma = (cfa.wave > lo) & (cfa.wave < hi)
    mb = (cfb.wave > lo) & (cfb.wave < hi)
    fa = np.array([np.average(cfa.flux[i, ma], weights=cfa.ivar[i, ma]) if cfa.ivar[i, ma].sum() > 0 else np.nan
                   for i in tgt])
    fb = np.array([np.average(cfb.flux[i, mb], weights=cfb.ivar[i, mb]) if cfb.ivar[i, mb].sum() > 0 else np.nan
                   for i in tgt])
    ok = np.isfinite(fa) & np.isfinite(fb) & (fa > 0) & (fb > 0)
    bright = ok & (fb > np.percentile(fb[ok], 50))
    return float(np.median(fa[bright] / fb[bright])), lo, hi


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="existing or new simulation root (default: a temp dir)")
    parser.add_argument("--preset", default="petal")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--no-desispec", action="store_true")
    parser.add_argument("--reuse-stdstars", action="store_true", help="reuse ROOT/stdstars-0-00000001.fits")
    parser.add_argument("--no-model-error", action="store_true",
                        help="calibration weights from photon noise only (compute_flux_calibration model_error=False)")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="bench_fluxcalib_")
    if not os.path.exists(os.path.join(root, "prod")):
        from desired.scripts import simulate
        t0 = time.time()
        simulate.run(NIGHT, calib_dir=os.path.join(root, "calib"), truth_dir=os.path.join(root, "truth"),
                     preset=args.preset, seed=args.seed, narc=0, nflat=0, nscience=1, level="frame",
                     frame_dir=os.path.join(root, "prod"))
        print(f"simulate ({args.preset}, frame level): {time.time() - t0:.1f} s")
    raw, corr, truth, flats = load(root)

    from desired.fluxcalib import apply_flux_calibration, compute_flux_calibration
    from desired.stdmodels import model_grid
    from desired.stdstars import fit_stdstars
    from desired.io.stdstars import read_stdstar_models, write_stdstar_models
    saved = os.path.join(root, "stdstars-0-00000001.fits")
    if args.reuse_stdstars and os.path.exists(saved):
        stars = read_stdstar_models(saved)
        print(f"reusing {saved} ({stars.nstd} stars)")
    else:
        t0 = time.time()
        grid = model_grid(teff=np.arange(5000.0, 7501.0, 250.0), logg=(3.5, 4.0, 4.5), feh=(-2.0, -1.0, -0.5, 0.0))
        t_grid = time.time() - t0
        t0 = time.time()
        stars = fit_stdstars(corr, grid)
        t_fit = time.time() - t0
        write_stdstar_models(saved, stars)
        print(f"model grid: {grid.nmodel} models in {t_grid:.1f} s; fit_stdstars: {stars.nstd} stars in {t_fit:.1f} s "
              f"({t_fit / max(stars.nstd, 1):.2f} s/star); peak RSS {peak_rss_mb():.0f} MB")
    meta = stars.metadata
    print(f"  Teff {np.min(meta['TEFF']):.0f}-{np.max(meta['TEFF']):.0f} K, chi2/dof median "
          f"{np.median(meta['CHI2DOF']):.2f}, |model-data g-r| median "
          f"{np.median(np.abs(meta['MODEL_G-R'] - meta['DATA_G-R'])):.3f} mag (before colour correction)")
    _velocities(stars, root)
    cframes, calibs = {}, {}
    for band in "brz":
        nominal = read_flux_calibration(paths.findfile("calib_fluxcalib", root=os.path.join(root, "calib"),
                                                       camera=f"{band}0"))
        t0 = time.time()
        fc = compute_flux_calibration(corr[band], stars, nominal=nominal, model_error=not args.no_model_error)
        cf = apply_flux_calibration(corr[band], fc)
        dt = time.time() - t0
        cframes[band], calibs[band] = cf, fc
        acc = accuracy(cf, raw[band], truth[band], flats[band], fc.calib)
        print(f"{band}0: fluxcalib+cframe {dt:.2f} s, {fc.header['CALMODE']} {fc.header['NSTDUSED']}/"
              f"{fc.header['NSTDSTAR']} stars; cframe vs truth (100 A): rms {100 * acc['rms']:.2f} %, median "
              f"{100 * acc['median']:+.2f} % over {acc['n_bright']}/{acc['n_targets']} targets; calibration vs truth: "
              f"rms {100 * acc['cal_rms']:.2f} %, median {100 * acc['cal_median']:+.2f} %, "
              f"worst 100-A bin {100 * acc['cal_maxabs']:.2f} %")
        if "cal_rms_below4100" in acc:
            print(f"    b below/above 4100 A: calibration rms {100 * acc['cal_rms_below4100']:.2f} / "
                  f"{100 * acc['cal_rms_above4100']:.2f} %, cframe rms above 4100 A {100 * acc['rms_above4100']:.2f} %")
        sfm = fc.stdstar_fibermap
        if sfm is not None and "STD_SHAPE_RMS" in sfm.colnames:
            print(f"    standards' ratio to the calibration, rms over 100-A bins (model mismatch + noise): median "
                  f"{100 * np.median(sfm['STD_SHAPE_RMS'][sfm['STD_USED']]):.2f} %")
    tgt = np.flatnonzero(np.char.strip(np.asarray(corr["b"].fibermap["OBJTYPE"]).astype(str)) != "SKY")
    for a, b in (("b", "r"), ("r", "z")):
        ratio, lo, hi = overlap(cframes[a], cframes[b], tgt)
        print(f"overlap {a}/{b} ({lo:.0f}-{hi:.0f} A): median flux ratio {ratio:.4f}")
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    if not args.no_desispec:
        _desispec(corr, stars, calibs, raw, truth, flats)


def _velocities(stars, root):
    from astropy.io import fits
    truth = fits.getdata(paths.findfile("truth", root=os.path.join(root, "truth"), night=NIGHT, expid=EXPID), "TRUTH")
    tz = {int(t): z for t, z in zip(truth["TARGETID"], truth["TRUEZ"])}
    dv = np.array([(z - tz[int(t)]) * 299792.458 for z, t in zip(stars.metadata["REDSHIFT"], stars.metadata["TARGETID"])
                   if int(t) in tz])
    if dv.size:
        print(f"  radial velocity vs truth: median {np.median(dv):+.1f} km/s, rms {np.std(dv):.1f} km/s")


def _desispec(corr, stars, calibs, raw, truth, flats):
    """desispec's compute_flux_calibration on the same frames with our models, side by side."""
    try:
        import desispec.fluxcalibration
        import desispec.io
        from desispec.fluxcalibration import compute_flux_calibration as desi_compute
    except ImportError:
        print("desispec not importable: side-by-side skipped")
        return
    # desispec's point-source (seeing) correction reads desimodel's galsim-fiber-acceptance.fits, which the
    # registry's desimodel does not ship; the simulator has the same aperture for every fiber, so the
    # correction is 1: replace it by ones (printed, so nobody mistakes this for DESI's full recipe)
    import desispec.fiberfluxcorr
    desispec.fiberfluxcorr.flat_to_psf_flux_correction = lambda fibermap, fwhm: np.ones(len(fibermap))
    desispec.fiberfluxcorr.psf_to_fiber_flux_correction = lambda fibermap, fwhm: np.ones(len(fibermap))
    print("desispec side by side: flat_to_psf / psf_to_fiber flux corrections replaced by 1 (no desimodel data)")
    from desired.io.frame import write_frame
    tmp = tempfile.mkdtemp(prefix="bench_fluxcalib_desi_")
    for band in "brz":
        path = os.path.join(tmp, f"frame-{band}0-{EXPID:08d}.fits")
        write_frame(path, corr[band])
        frame = desispec.io.read_frame(path)
        t0 = time.time()
        try:
            dfc = desi_compute(frame, stars.wave, stars.flux, stars.fibers % 500)
        except Exception as err:          # report, do not hide
            print(f"{band}0: desispec compute_flux_calibration failed: {type(err).__name__}: {err}")
            continue
        dt = time.time() - t0
        ours = calibs[band].calib
        ratio = np.median(smooth100(frame.wave, dfc.calib)[:, 150:-150] / smooth100(frame.wave, ours)[:, 150:-150])
        from desired.fluxcalib import apply_flux_calibration
        from desired.fluxcalib import FluxCalib
        cf = apply_flux_calibration(corr[band], FluxCalib(corr[band].wave, dfc.calib, dfc.ivar))
        acc = accuracy(cf, raw[band], truth[band], flats[band], dfc.calib)
        print(f"{band}0: desispec compute_flux_calibration {dt:.2f} s; median desispec/ours calibration {ratio:.4f}; "
              f"desispec calibration vs truth: rms {100 * acc['cal_rms']:.2f} %, median {100 * acc['cal_median']:+.2f} %, "
              f"worst 100-A bin {100 * acc['cal_maxabs']:.2f} %; its cframe vs truth rms {100 * acc['rms']:.2f} %")


if __name__ == "__main__":
    main()
