"""Redshift accuracy with the project's own templates and with DESI's, same fitter, same coadd.

Fits one coadd (``benchmarks/redshift_inputs.py``: a truth-calibrated, desispec-coadded
frame-level simulation) with ``desired redshifts`` twice — once with the templates
``desired templates`` builds, once with DESI's redrock templates — and prints per
truth class: efficiency (ZWARN == 0 and |Δv| < 1000 km/s, 3000 for QSO, over all
targets of the class), catastrophic rate (|Δv| above that limit among ZWARN == 0),
velocity rms, median, NMAD and rms without the 3 largest |Δv| of the good ones, the fraction
fitted as the right SPECTYPE,
and sky fibres with a confident GALAXY or QSO redshift.  CPU seconds of each fit.

Usage::

    nice -n 10 python benchmarks/redshift_inputs.py /tmp/rrpetal --preset petal --nscience 2 --seed 3
    nice -n 10 python -m desired templates --outdir /tmp/rrtemplates
    nice -n 10 python benchmarks/bench_templates.py /tmp/rrpetal/coadd.fits --truth /tmp/rrpetal/truth.fits \\
        --ours /tmp/rrtemplates [--desi ../shared/data/redrock-templates]
"""
import argparse
import os
import resource
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DESI = os.path.join(HERE, "..", "..", "shared", "data", "redrock-templates")
C_KMS = 299792.458
TRUE_SPECTYPE = {"BGS": "GALAXY", "LRG": "GALAXY", "ELG": "GALAXY", "QSO": "QSO", "STD": "STAR", "SKY": None}


def _cpu():
    """CPU seconds of this process and its finished children (the --nproc workers)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def fit(coadd, templates, outfile, nproc=1):
    """Fit with our fitter; return (table, cpu s, wall s)."""
    from desired.scripts.redshifts import run
    from desired.threads import single_threaded_blas
    c0, w0 = _cpu(), time.time()
    with single_threaded_blas():
        table = run(coadd, outfile, templates=templates, nproc=nproc)
    return table, _cpu() - c0, time.time() - w0


def score(table, truth):
    """Per-class figures against the truth; returns list of dict rows."""
    idx = {int(t): i for i, t in enumerate(truth["TARGETID"])}
    rows = np.array([idx[int(t)] for t in table["TARGETID"]])
    cls = np.array([str(truth["TEMPLATETYPE"][r]).strip() for r in rows])
    ztrue = np.asarray(truth["TRUEZ"], dtype=float)[rows]
    z = np.asarray(table["Z"], dtype=float)
    zwarn = np.asarray(table["ZWARN"])
    spectype = np.char.strip(np.asarray(table["SPECTYPE"]).astype(str))
    dv = C_KMS * (z - ztrue) / (1 + ztrue)
    out = []
    for c in sorted(set(cls)):
        sel = cls == c
        lim = 3000.0 if c == "QSO" else 1000.0
        conf = sel & (zwarn == 0)
        good = conf & (np.abs(dv) < lim)
        row = dict(cls=c, n=int(sel.sum()), conf=int(conf.sum()),
                   eff=good.sum() / max(sel.sum(), 1),
                   cata=(conf & ~good).sum() / max(conf.sum(), 1),
                   rms=float(np.sqrt(np.mean(dv[good] ** 2))) if good.any() else np.nan,
                   med=float(np.median(dv[good])) if good.any() else np.nan,
                   nmad=float(1.4826 * np.median(np.abs(dv[good] - np.median(dv[good])))) if good.any() else np.nan,
                   rms3=(float(np.sqrt(np.mean(np.sort(dv[good] ** 2)[:-3]))) if good.sum() > 3 else np.nan),
                   type_ok=(np.mean(spectype[sel] == TRUE_SPECTYPE[c]) if TRUE_SPECTYPE.get(c) else np.nan))
        if c == "SKY":
            row["sky_conf_gq"] = int((sel & (zwarn == 0) & np.isin(spectype, ["GALAXY", "QSO"])).sum())
        out.append(row)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("coadd")
    parser.add_argument("--truth", required=True)
    parser.add_argument("--ours", required=True, help="directory written by `desired templates`")
    parser.add_argument("--desi", default=DEFAULT_DESI, help="DESI's redrock templates (skipped when absent)")
    parser.add_argument("--outdir", default=None)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--only", choices=["ours", "desi"], default=None,
                        help="fit with one template set only (run the two in separate processes)")
    args = parser.parse_args()
    from astropy.table import Table
    truth = Table.read(args.truth)
    outdir = args.outdir or tempfile.mkdtemp(prefix="bench_tmpl_")
    sets = [("ours", args.ours)] + ([("desi", args.desi)] if os.path.isdir(args.desi) else [])
    sets = [s for s in sets if args.only in (None, s[0])]
    print(f"{'templates':9} {'class':5} {'N':>4} {'conf':>4} {'eff':>6} {'catast':>6} {'rms km/s':>8} "
          f"{'med km/s':>8} {'type ok':>7} {'NMAD':>6} {'rms-3':>6}")
    for name, tdir in sets:
        table, cpu, wall = fit(args.coadd, tdir, os.path.join(outdir, f"redrock-{name}.fits"), args.nproc)
        for r in score(table, truth):
            extra = f"  sky fibres with confident GALAXY/QSO: {r['sky_conf_gq']}" if "sky_conf_gq" in r else ""
            print(f"{name:9} {r['cls']:5} {r['n']:4d} {r['conf']:4d} {r['eff']:6.3f} {r['cata']:6.3f} "
                  f"{r['rms']:8.1f} {r['med']:8.1f} {r['type_ok']:7.3f} {r['nmad']:6.1f} {r['rms3']:6.1f}{extra}", flush=True)
        print(f"{name:9} fit of {len(table)} targets: {cpu:.1f} CPU s, {wall:.1f} s wall (under load)", flush=True)


if __name__ == "__main__":
    main()
