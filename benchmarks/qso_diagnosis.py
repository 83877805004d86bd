"""Why do quasars fail?  Per-QSO depth and features of a bench_sim_redrock coadd, beside redrock's answer.

For every QSO of a coadd written by ``benchmarks/bench_sim_redrock.py --outdir DIR
--classes QSO`` (``DIR/coadd-QSO.fits``, ``DIR/redrock-QSO.fits``, truth in ``DIR/truth``)
it prints the true z and r magnitude, the noise-free continuum S/N per pixel per band
(median of the true flux × √ivar of the coadd), the strong broad lines that fall in
3600-9800 Å, and

* ``feat``: the noise-free Δχ² the true spectrum's *features* carry: Σ ivar (f − P(f))²
  over the three bands, P = the best 5-term Legendre polynomial per band.  It is the
  χ² a perfect template gains over a featureless continuum at the true z; when it is
  ~10-30 no fitter can be confident (redrock needs ΔCHI2 > 9 to the next solution,
  which also fits part of the same features);
* redrock's Z, SPECTYPE, ZWARN and DELTACHI2, and whether it is correct and confident
  (ZWARN = 0, QSO, |Δv| < 3000 km/s).

Usage::

    python benchmarks/qso_diagnosis.py DIR [--redrock DIR/redrock-QSO.fits]

Noise-free true flux: the truth OBJ_FLUX of the first exposure (the same object in
every exposure), through the coadd's resolution matrix.

Depth in DESI's units: the simulated sky's r-band surface brightness (truth SKY_FLUX,
median fibre, through speclite's decam2014-r) and desispec's own dark-time
effective-time formula (``desispec.efftime.compute_efftime``: EFFTIME_DARK, nominal
1000 s = sky 21.07 mag/arcsec², airmass 1, nominal fibre acceptance), evaluated for
the simulated exposures with FIBERFAC = 1 and EBV = 0 (the simulator's point-source
aperture fraction is its nominal 1.1'' seeing value).  DESI's main survey observes
z < 2.1 quasars to EFFTIME ≈ 1000 s (one pass).
"""
from __future__ import annotations

import argparse
import glob

import numpy as np

C_KMS = 299792.458
LINES = {"Lya": 1215.67, "CIV": 1549.06, "CIII]": 1908.73, "MgII": 2799.49, "Hb": 4862.68, "Ha": 6564.61}


def _legendre_resid(wave, flux, ivar, deg=5):
    x = 2 * (wave - wave[0]) / (wave[-1] - wave[0]) - 1
    design = np.polynomial.legendre.legvander(x, deg - 1)
    w = np.sqrt(ivar)
    coef, *_ = np.linalg.lstsq(design * w[:, None], flux * w, rcond=None)
    return float(np.sum(ivar * (flux - design @ coef) ** 2))


def true_fluxes(outdir):
    """TARGETID -> {band: (wave, true flux 1e-17)} from the first exposure's camera truth files."""
    from desired.io.truth import read_camera_truth
    import fitsio
    out = {}
    first = sorted(glob.glob(f"{outdir}/truth/*/*"))[0]
    truth = fitsio.read(glob.glob(f"{first}/truth-0*.fits")[0], "TRUTH")
    for path in sorted(glob.glob(f"{first}/truth-[brz]?-*.fits")):
        t = read_camera_truth(path)
        band = t["header"]["CAMERA"][0]
        for i, tid in enumerate(truth["TARGETID"]):
            out.setdefault(int(tid), {})[band] = (t["WAVELENGTH"], t["OBJ_FLUX"][i])
    return truth, out


def depth(outdir):
    """(sky r mag/arcsec², [EFFTIME_DARK s of each science exposure]) of the simulated night."""
    import astropy.units as u
    import fitsio
    import speclite.filters
    from astropy.table import Table
    from desispec.efftime import compute_efftime
    from desired.io.truth import read_camera_truth
    from desired.sim import instrument
    rows = []
    for expdir in sorted(glob.glob(f"{outdir}/truth/*/*")):
        waves, flux = [], []
        for band, lo, hi in (("b", 0.0, 5780.0), ("r", 5780.0, 7570.0), ("z", 7570.0, 1e5)):
            t = read_camera_truth(glob.glob(f"{expdir}/truth-{band}?-*.fits")[0])
            sel = (t["WAVELENGTH"] >= lo) & (t["WAVELENGTH"] < hi)
            waves.append(t["WAVELENGTH"][sel])
            flux.append(np.median(t["SKY_FLUX"][:, sel], axis=0) * 1e-17 / instrument.FIBER_AREA_ARCSEC2)
        wave, sb = np.concatenate(waves), np.concatenate(flux)
        wave, sb = np.r_[3300.0, wave, 11000.0], np.r_[sb[0], sb, sb[-1]]      # the filter's full range
        mag = speclite.filters.load_filter("decam2014-r").get_ab_magnitude(
            sb * u.erg / u.s / u.cm ** 2 / u.AA, wave * u.AA)
        hdr = fitsio.read_header(sorted(glob.glob(f"{outdir}/redux/exposures/*/{expdir[-8:]}/frame-r*.fits"))[0])
        rows.append(dict(EXPTIME=float(hdr["EXPTIME"]), SKY_MAG_R_SPEC=float(mag), EBV=0.0, TRANSPARENCY_GFA=1.0,
                         AIRMASS=float(hdr["AIRMASS"]), FIBERFAC_GFA=1.0, FIBERFAC_ELG_GFA=1.0,
                         FIBERFAC_BGS_GFA=1.0, FIBER_FRACFLUX_GFA=0.6, FIBER_FRACFLUX_ELG_GFA=0.45,
                         FIBER_FRACFLUX_BGS_GFA=0.3))
    table = Table(rows=rows)
    dark, _, _ = compute_efftime(table)
    return list(table["SKY_MAG_R_SPEC"]), list(table["AIRMASS"]), list(dark)


def diagnose(outdir, rrpath):
    import desispec.io
    from desispec.resolution import Resolution
    import fitsio
    truth, flux_true = true_fluxes(outdir)
    idx = {int(t): k for k, t in enumerate(truth["TARGETID"])}
    sp = desispec.io.read_spectra(f"{outdir}/coadd-QSO.fits")
    rr = fitsio.read(rrpath, "REDSHIFTS")
    rrow = {int(t): k for k, t in enumerate(rr["TARGETID"])}
    rows = []
    for i, tid in enumerate(sp.fibermap["TARGETID"]):
        tr = truth[idx[int(tid)]]
        z = float(tr["TRUEZ"])
        snr, feat = {}, 0.0
        for b in sp.bands:
            wave = sp.wave[b]
            tw, tf = flux_true[int(tid)][b]
            model = Resolution(sp.resolution_data[b][i]).dot(np.interp(wave, tw, tf))
            ivar = sp.ivar[b][i] * (sp.mask[b][i] == 0)
            snr[b] = float(np.median(model * np.sqrt(ivar)))
            feat += _legendre_resid(wave, model, ivar)
        r = rr[rrow[int(tid)]]
        dv = C_KMS * (r["Z"] - z) / (1 + z)
        ok = r["ZWARN"] == 0 and r["SPECTYPE"].strip() == "QSO" and abs(dv) < 3000
        lines = [n for n, w in LINES.items() if 3600 < w * (1 + z) < 9800]
        rows.append(dict(tid=int(tid), z=z, r=float(tr["MAG_R"]), snr=snr, feat=feat, lines=lines, ok=ok,
                         zrr=float(r["Z"]), type=r["SPECTYPE"].strip(), zwarn=int(r["ZWARN"]),
                         dchi2=float(r["DELTACHI2"]), ew=float(tr["PAR_EW_SCALE"]), vciv=float(tr["PAR_V_CIV"])))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--redrock", default=None)
    args = parser.parse_args(argv)
    sky, airmass, eff = depth(args.outdir)
    print("depth: sky r " + ", ".join(f"{m:.2f}" for m in sky) + " mag/arcsec2 (DESI nominal dark 21.07), airmass "
          + ", ".join(f"{a:.2f}" for a in airmass) + "; desispec EFFTIME_DARK " + " + ".join(f"{e:.0f}" for e in eff)
          + f" = {sum(eff):.0f} s (DESI main-survey QSO pass: ~1000 s)\n")
    rows = diagnose(args.outdir, args.redrock or f"{args.outdir}/redrock-QSO.fits")
    rows.sort(key=lambda d: d["r"])
    print(" ok   true z  r mag  S/N b   r    z    feat  ew_scale v_CIV  redrock: type z zwarn dchi2  "
          "lines in 3600-9800")
    for d in rows:
        s = d["snr"]
        print(f" {'Y' if d['ok'] else 'n'}  {d['z']:7.3f} {d['r']:6.2f}  {s['b']:4.2f} {s['r']:4.2f} {s['z']:4.2f} "
              f"{d['feat']:7.0f}  {d['ew']:5.2f} {d['vciv']:6.0f}   {d['type']:6s} {d['zrr']:6.3f} {d['zwarn']:4d} "
              f"{d['dchi2']:8.1f}   {' '.join(d['lines'])}")
    fails = [d for d in rows if not d["ok"]]
    good = [d for d in rows if d["ok"]]
    print(f"\n{len(good)}/{len(rows)} correct and confident; failures: {len(fails)}")
    for name, sel in (("failures", fails), ("successes", good)):
        if sel:
            print(f"  {name}: median r {np.median([d['r'] for d in sel]):.2f}, median feature chi2 "
                  f"{np.median([d['feat'] for d in sel]):.0f}, median S/N per pixel r-band "
                  f"{np.median([d['snr']['r'] for d in sel]):.2f}")
    faint = [d for d in rows if d["r"] > 22.4]
    print(f"  r > 22.4: {len(faint)} of {len(rows)} ({len(faint) / len(rows):.0%}), "
          f"{sum(d['ok'] for d in faint)} correct and confident")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
