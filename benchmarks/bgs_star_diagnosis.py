"""Why does redrock call a simulated BGS galaxy a STAR?  Diagnosis of issue 17's failures.

Reads an output directory of ``bench_sim_redrock.py --classes BGS`` (truth,
``coadd-BGS.fits``, ``redrock-BGS.fits``) and, for every BGS target redrock got
wrong (or all with ``--all``), fits at the TRUE redshift the joint PCA basis of
DESI's GALAXY template (through each band's resolution, as the benchmark's
template-vs-Legendre check does) and the PCA basis of the STAR subtype redrock
chose at its redshift, then prints

* the total χ² of both, and χ²_GALAXY − χ²_STAR in rest-frame wavelength
  ranges (< 7300 Å: inside the MILES part of the simulator's BC03 grid; > 7400 Å:
  the grid's lower-resolution extension), so one sees which wavelengths make the
  STAR win;
* χ²_GALAXY at velocity offsets of 0-100 km/s from the true z: redrock's coarse
  galaxy scan steps 3e-4 in log10(1+z) (≈ 207 km/s), so a bright galaxy with narrow
  emission lines can have its true minimum missed before the fine fit.

Usage::

    python benchmarks/bgs_star_diagnosis.py --outdir /tmp/bgs/run0 [--all]
"""
from __future__ import annotations

import argparse
import glob
import os

import numpy as np

C_KMS = 299792.458
HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "..", "..", "shared", "data", "redrock-templates")
RANGES = ((0, 7300), (7300, 7400), (7400, 8760), (8760, 20000))


def fit_basis(sp, i, tpl, z):
    """Weighted least-squares fit of template ``tpl``'s basis at redshift ``z`` to coadd row ``i``.

    Returns
    -------
    wave, flux, ivar, model : ndarray, shape (npix,)
        All bands concatenated (observed Å; flux and model in the coadd's units).
    """
    from desispec.resolution import Resolution
    from redrock.rebin import trapz_rebin
    blocks, fl, iv, ws = [], [], [], []
    for b in sp.bands:
        res = Resolution(sp.resolution_data[b][i])
        blocks.append(np.array([res.dot(trapz_rebin(tpl.wave * (1 + z), v, sp.wave[b])) for v in tpl.flux]))
        fl.append(sp.flux[b][i])
        iv.append(sp.ivar[b][i] * (sp.mask[b][i] == 0))
        ws.append(sp.wave[b])
    design, flux, ivar = np.concatenate(blocks, axis=1), np.concatenate(fl), np.concatenate(iv)
    w = np.sqrt(ivar)
    coef, *_ = np.linalg.lstsq((design * w).T, flux * w, rcond=None)
    return np.concatenate(ws), flux, ivar, coef @ design


def diagnose(outdir, templates, show_all=False):
    """Print the diagnosis of each (failed) BGS target of a benchmark output directory."""
    import desispec.io
    from astropy.table import Table
    from redrock.templates import Template
    truth = Table.read(sorted(glob.glob(f"{outdir}/truth/*/*/truth-*.fits"))[0], "TRUTH")
    tindex = {int(t): k for k, t in enumerate(truth["TARGETID"])}
    rr = Table.read(f"{outdir}/redrock-BGS.fits", "REDSHIFTS")
    sp = desispec.io.read_spectra(f"{outdir}/coadd-BGS.fits")
    row = {int(t): k for k, t in enumerate(sp.fibermap["TARGETID"])}
    tpls = {}
    for f in glob.glob(f"{templates}/rrtemplate-*.fits"):
        t = Template(f)
        tpls[(t.template_type.strip(), t.sub_type.strip())] = t
    for r in rr:
        tid = int(r["TARGETID"])
        j = tindex[tid]
        z = float(truth["TRUEZ"][j])
        spectype = str(r["SPECTYPE"]).strip()
        right = spectype == "GALAXY" and abs(r["Z"] - z) / (1 + z) * C_KMS < 1000 and r["ZWARN"] == 0
        if right and not show_all:
            continue
        i = row[tid]
        pars = {c[4:].lower(): round(float(truth[c][j]), 3) for c in
                ("PAR_AGE", "PAR_TAU", "PAR_AV", "PAR_ZMET", "PAR_SIGMA_STAR", "PAR_SIGMA_GAS", "PAR_LOGU")}
        print(f"\n{tid} true z {z:.4f} r {float(truth['MAG_R'][j]):.2f} {pars}")
        print(f"  redrock: {spectype} {str(r['SUBTYPE']).strip()} z={r['Z']:.5f} ZWARN={r['ZWARN']} "
              f"chi2={r['CHI2']:.1f} deltachi2={r['DELTACHI2']:.1f}")
        wave, flux, ivar, mgal = fit_basis(sp, i, tpls[("GALAXY", "")], z)
        sub = str(r["SUBTYPE"]).strip() if spectype == "STAR" else "K"
        zstar = float(r["Z"]) if spectype == "STAR" else 0.0
        _, _, _, mstar = fit_basis(sp, i, tpls[("STAR", sub)], zstar)
        cg, cs = (flux - mgal) ** 2 * ivar, (flux - mstar) ** 2 * ivar
        rest = wave / (1 + z)
        print(f"  at true z: chi2 GALAXY {cg.sum():.1f}, STAR-{sub} (z={zstar:.5f}) {cs.sum():.1f}")
        parts = []
        for lo, hi in RANGES:
            m = (rest >= lo) & (rest < hi) & (ivar > 0)
            if m.any():
                parts.append(f"[{lo},{hi}) {cg[m].sum() - cs[m].sum():+.0f} ({cg[m].mean():.2f}/pix)")
        print("  chi2_GALAXY - chi2_STAR by rest range (GALAXY chi2/pix):", "; ".join(parts))
        offsets = np.array([0.0, 25.0, 50.0, 75.0, 100.0])
        scan = []
        for dv in offsets:
            _, f, v, m = fit_basis(sp, i, tpls[("GALAXY", "")], z + dv / C_KMS * (1 + z))
            scan.append(float(np.sum((f - m) ** 2 * v)))
        print("  chi2_GALAXY at +0/25/50/75/100 km/s from true z:", " ".join(f"{c:.0f}" for c in scan))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", required=True, help="output directory of bench_sim_redrock.py --classes BGS")
    parser.add_argument("--templates", default=TEMPLATES, help="redrock template directory")
    parser.add_argument("--all", action="store_true", help="every BGS target, not only the failures")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.templates):
        print(f"SKIPPED: redrock templates not found in {os.path.normpath(args.templates)}")
        return 0
    diagnose(args.outdir, args.templates, args.all)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
