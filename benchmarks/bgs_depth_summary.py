"""BGS redshift figures of several ``bench_sim_redrock.py --classes BGS`` runs, per seed and pooled.

Reads, in each run directory (``--outdir`` of ``bench_sim_redrock.py``), the truth of
the night, rrdesi's ``redrock-BGS.fits`` and, when present, the tables that
``bench_templates.py <dir>/coadd-BGS.fits --outdir <dir>/tmpl`` writes
(``redrock-desi.fits``: our fitter with DESI's templates; ``redrock-ours.fits``: our
fitter with the templates of ``desired templates``).  Prints, per fitter and seed and
pooled over the seeds: N, efficiency (ZWARN = 0, right SPECTYPE and |Δv| < 1000 km/s,
over all BGS), catastrophic rate (ZWARN = 0 but wrong, over the ZWARN = 0 ones), and
the rms and NMAD of Δv = c (z − z_true)/(1 + z_true) of the correct ones; then every
BGS that is not correct with what it was fitted as, its r magnitude, true z,
star-forming (τ ≥ 1 Gyr) or quiescent, ZWARN and Δχ²; and the median χ²/pixel of the
best fit of the correct ones per r-magnitude bin (how well the templates fit).

Usage::

    python benchmarks/bgs_depth_summary.py /tmp/bright/s3 /tmp/bright/s4 ...
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

C_KMS = 299792.458
FITTERS = (("redrock 0.21 + DESI", "redrock-BGS.fits"), ("ours + DESI", "tmpl/redrock-desi.fits"),
           ("ours + own", "tmpl/redrock-ours.fits"))


def read_truth(rundir):
    from astropy.table import Table
    path = sorted(glob.glob(f"{rundir}/truth/*/*/truth-[0-9]*.fits"))[0]
    t = Table.read(path, "TRUTH")
    return t[np.asarray(t["TEMPLATETYPE"]).astype(str) == "BGS"]


def match(table, truth):
    """Per-BGS arrays (truth order) of the fit: z, zwarn, spectype, subtype, deltachi2; None if absent."""
    pos = {int(t): k for k, t in enumerate(table["TARGETID"])}
    rows = [pos.get(int(t)) for t in truth["TARGETID"]]
    if any(r is None for r in rows):
        return None
    rows = np.array(rows)
    col = lambda name, fill: (np.asarray(table[name])[rows] if name in table.colnames  # noqa: E731
                              else np.full(rows.size, fill))
    return {"z": np.asarray(col("Z", np.nan), float), "zwarn": np.asarray(col("ZWARN", -1), int),
            "spectype": np.char.strip(np.asarray(col("SPECTYPE", "")).astype(str)),
            "subtype": np.char.strip(np.asarray(col("SUBTYPE", "")).astype(str)),
            "dchi2": np.asarray(col("DELTACHI2", np.nan), float),
            "chi2pix": np.asarray(col("CHI2", np.nan), float) / np.maximum(np.asarray(col("NPIXELS", 1), float), 1)}


def figures(fit, truth):
    """(n, n correct, n confident, n catastrophic, correct mask, Δv) of one run."""
    ztrue = np.asarray(truth["TRUEZ"], float)
    dv = C_KMS * (fit["z"] - ztrue) / (1 + ztrue)
    conf = fit["zwarn"] == 0
    right = (fit["spectype"] == "GALAXY") & (np.abs(dv) < 1000.0)
    return len(ztrue), int((conf & right).sum()), int(conf.sum()), int((conf & ~right).sum()), conf & right, dv


def line(label, n, ngood, nconf, ncat, dv_good):
    rms = np.sqrt(np.mean(dv_good ** 2)) if dv_good.size else np.nan
    nmad = 1.4826 * np.median(np.abs(dv_good - np.median(dv_good))) if dv_good.size else np.nan
    return (f"{label:28s} {n:4d} {ngood / n:8.1%} ({ngood:3d}) {ncat / max(nconf, 1):9.1%} ({ncat:2d}/{nconf:3d})"
            f" {rms:8.1f} {nmad:7.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rundirs", nargs="+")
    args = parser.parse_args(argv)
    runs = [(os.path.basename(os.path.normpath(d)), d, read_truth(d)) for d in args.rundirs]
    failures = []
    print(f"{'fitter / seed':28s} {'N':>4s} {'efficiency':>14s} {'catastrophic':>18s} {'rms km/s':>8s} {'NMAD':>7s}")
    for name, fname in FITTERS:
        tot = [0, 0, 0, 0]
        dvs, chis, mags = [], [], []
        for seed, d, truth in runs:
            path = os.path.join(d, fname)
            if not os.path.exists(path):
                continue
            from astropy.table import Table
            fit = match(Table.read(path, "REDSHIFTS"), truth)
            if fit is None:
                print(f"{name} {seed}: targets missing from {path}")
                continue
            n, ngood, nconf, ncat, good, dv = figures(fit, truth)
            print(line(f"{name} {seed}", n, ngood, nconf, ncat, dv[good]))
            tot = [a + b for a, b in zip(tot, (n, ngood, nconf, ncat))]
            dvs.append(dv[good])
            chis.append(fit["chi2pix"][good])
            mags.append(np.asarray(truth["MAG_R"], float)[good])
            tau = np.asarray(truth["PAR_TAU"], float)
            for k in np.nonzero(~good)[0]:
                failures.append((name, seed, int(truth["TARGETID"][k]), float(truth["MAG_R"][k]),
                                 float(truth["TRUEZ"][k]), "quiescent" if tau[k] < 1 else "star-forming",
                                 f"{fit['spectype'][k]} {fit['subtype'][k]}".strip(), float(fit["z"][k]),
                                 int(fit["zwarn"][k]), float(fit["dchi2"][k])))
        if tot[0]:
            print(line(f"{name} pooled", *tot, np.concatenate(dvs)))
            chi = np.concatenate(chis)
            mag = np.concatenate(mags)
            bins = [(lo, lo + 0.5) for lo in np.arange(16.0, 19.5, 0.5)]
            print("    median chi2/pixel of the correct ones, r bins: " + "  ".join(
                f"{lo:.1f}-{hi:.1f}: {np.median(chi[(mag >= lo) & (mag < hi)]):.2f}"
                for lo, hi in bins if np.any((mag >= lo) & (mag < hi))))
        print()
    print("not correct (fitter, seed, TARGETID, r, true z, kind, fitted as, z, ZWARN, DELTACHI2):")
    for f in failures:
        print(f"  {f[0]:20s} {f[1]:4s} {f[2]} r={f[3]:.2f} ztrue={f[4]:.3f} {f[5]:12s} -> {f[6]:10s} "
              f"z={f[7]:.4f} zwarn={f[8]} dchi2={f[9]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
