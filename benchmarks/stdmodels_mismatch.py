"""Where the standard-star models differ from the simulated stars: model / truth per wavelength bin.

Reads a frame-level simulation written by ``benchmarks/bench_fluxcalib.py`` (``--root``:
``prod/``, ``truth/`` and ``stdstars-0-00000001.fits``) and prints, per 50 Å bin, the
median over standards of (fitted model / true star flux), both averaged over the bin and
each star's ratio normalised to 1 over 5000-6000 Å, with the scatter over stars (NMAD) and
the correlation of the ratio with the true and fitted Teff.  This is the mismatch the flux
calibration inherits from the models; it is measured, never fitted.

Usage::

    python benchmarks/stdmodels_mismatch.py --root /tmp/bench_fluxcalib_xyz [--stdstars FILE]
"""
import argparse
import os

import numpy as np

from desired import paths
from desired.io.stdstars import read_stdstar_models
from desired.io.truth import read_camera_truth

NIGHT, EXPID = 20261124, 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--stdstars", default=None)
    parser.add_argument("--bin", type=float, default=50.0)
    args = parser.parse_args()
    from astropy.io import fits
    stars = read_stdstar_models(args.stdstars or os.path.join(args.root, "stdstars-0-00000001.fits"))
    truth_tab = fits.getdata(paths.findfile("truth", root=os.path.join(args.root, "truth"), night=NIGHT, expid=EXPID),
                             "TRUTH")
    waves, ratios = [], []
    for band in "brz":
        t = read_camera_truth(paths.findfile("truth_camera", root=os.path.join(args.root, "truth"), night=NIGHT,
                                             expid=EXPID, camera=f"{band}0"))
        wave = t["WAVELENGTH"] if "WAVELENGTH" in t else None
        if wave is None:
            from desired.io.frame import read_frame
            wave = read_frame(paths.findfile("frame", root=os.path.join(args.root, "prod"), night=NIGHT, expid=EXPID,
                                             camera=f"{band}0")).wave
        fib0 = 0
        rows = np.asarray(stars.fibers) - fib0
        true = t["OBJ_FLUX"][rows]
        model = np.array([np.interp(wave, stars.wave, f) for f in stars.flux])
        sel = (wave > wave[0] + 20) & (wave < wave[-1] - 20)
        if waves and band != "b":
            sel &= wave > waves[-1][-1]
        waves.append(wave[sel])
        ratios.append((model / true)[:, sel])
    wave = np.concatenate(waves)
    ratio = np.concatenate(ratios, axis=1)
    norm = np.median(ratio[:, (wave > 5000) & (wave < 6000)], axis=1)
    ratio = ratio / norm[:, None]
    meta = stars.metadata
    tid = {int(x): k for k, x in enumerate(truth_tab["TARGETID"])}
    cols = truth_tab.columns.names
    tteff = np.array([truth_tab["PAR_TEFF"][tid[int(x)]] if "PAR_TEFF" in cols and int(x) in tid else np.nan
                      for x in meta["TARGETID"]])
    print(f"{stars.nstd} standards; fitted Teff {np.min(meta['TEFF']):.0f}-{np.max(meta['TEFF']):.0f}, "
          f"[Fe/H] {np.min(meta['FEH']):.1f}-{np.max(meta['FEH']):.1f}; true Teff "
          f"{np.nanmin(tteff):.0f}-{np.nanmax(tteff):.0f}" if np.any(np.isfinite(tteff)) else "")
    edges = np.arange(wave[0], wave[-1] + args.bin, args.bin)
    print(" wave_lo  wave_hi  median(model/true)-1 [%]  NMAD over stars [%]  corr(Teff_fit)  corr(FeH_fit)")
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (wave >= lo) & (wave < hi)
        if not np.any(m):
            continue
        r = np.mean(ratio[:, m], axis=1)
        nmad = 1.4826 * np.median(np.abs(r - np.median(r)))
        ct = np.corrcoef(r, meta["TEFF"])[0, 1]
        cf = np.corrcoef(r, meta["FEH"])[0, 1]
        print(f" {lo:7.0f}  {hi:7.0f}  {100 * (np.median(r) - 1):+8.2f}  {100 * nmad:8.2f}  {ct:+.2f}  {cf:+.2f}")


if __name__ == "__main__":
    main()
