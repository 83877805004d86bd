"""Our redshift fitter on real DESI coadds, beside the production's redrock answer and redrock 0.21.

For each (coadd, redrock) pair of real DESI files — a coadd as desispec writes it and the
redrock file DESI's production made from it — fits the coadd with ``desired redshifts``
using each template directory given (``--templates``, default DESI's templates beside the
checkout; add the project's own set with another ``--templates``), and with redrock 0.21
(``rrdesi``, the test extra) on the first template directory when ``--redrock`` is given.
Prints per target: SPECTYPE, Z, the velocity difference to the production's Z, ZERR, ZWARN,
DELTACHI2 and CHI2 of every fit, then the agreement counts (same SPECTYPE and |Δv| < 3 ZERR
or < 1000 km/s, 3000 for quasars, among the targets both call confident).

The production may have used newer templates than the directory given (its header's
TEMVERnn say which): a disagreement is then a template difference as much as a fitter one,
which the redrock 0.21 column on the same templates separates.

Public real DESI coadds with their production redrock files: desihub/fastspecfit keeps two
one-target files as test data (``py/fastspecfit/test/data/{coadd,redrock}-4-80613-thru20210324.fits``
and ``...-special-dark-27247.fits``); the DESI Early Data Release (data.desi.lbl.gov/public/edr,
``spectro/redux/fuji/healpix/...``) has thousands per file.  Nothing is downloaded here.

Usage::

    python benchmarks/bench_real_coadds.py --pair coadd-X.fits redrock-X.fits [--pair ...] \\
        [--templates ../shared/data/redrock-templates --templates /tmp/own] [--redrock] [--outdir DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DESI = os.path.join(HERE, "..", "..", "shared", "data", "redrock-templates")
C_KMS = 299792.458


def _fits(coadd, templates, outdir, label):
    """Our fit and (optionally) redrock 0.21's; returns {label: (table, wall s)}."""
    from astropy.table import Table

    from desired.scripts.redshifts import run
    out = {}
    for k, tdir in enumerate(templates):
        path = os.path.join(outdir, f"desired{k}-{label}.fits")
        t0 = time.time()
        run(coadd, path, templates=tdir)
        out[f"desired/{os.path.basename(os.path.normpath(tdir))}"] = (Table.read(path, "REDSHIFTS"), time.time() - t0)
    return out


def run_redrock(coadd, templates, path):
    """rrdesi (redrock 0.21) of this interpreter on ``coadd`` into ``path``; returns (REDSHIFTS, wall s).

    Raises subprocess.CalledProcessError (with its stderr) when rrdesi fails.
    """
    from astropy.table import Table
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import sys, redrock.external.desi as d; d.rrdesi(sys.argv[1:])",
                    "-i", coadd, "-o", path, "-t", templates], check=True, capture_output=True, text=True)
    return Table.read(path, "REDSHIFTS"), time.time() - t0


def _agree(a, b):
    """Same SPECTYPE and |Δv| below 3 ZERR (both) or the class's catastrophic limit."""
    if a["SPECTYPE"].strip() != b["SPECTYPE"].strip():
        return False
    dv = abs(a["Z"] - b["Z"]) / (1 + b["Z"]) * C_KMS
    limit = 3000.0 if b["SPECTYPE"].strip() == "QSO" else 1000.0
    return dv < limit or abs(a["Z"] - b["Z"]) < 3 * np.hypot(a["ZERR"], b["ZERR"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=2, action="append", required=True, metavar=("COADD", "REDROCK"))
    parser.add_argument("--templates", action="append", default=None)
    parser.add_argument("--redrock", action="store_true", help="also run rrdesi (redrock 0.21) on the first --templates")
    parser.add_argument("--outdir", default=None)
    args = parser.parse_args()
    from astropy.io import fits
    from astropy.table import Table
    templates = args.templates or [DEFAULT_DESI]
    outdir = args.outdir or tempfile.mkdtemp(prefix="real_coadds_")
    counts = {}
    for coadd, rrfile in args.pair:
        label = os.path.basename(coadd).replace(".fits", "")
        ref = Table.read(rrfile, "REDSHIFTS")
        hdr = fits.getheader(rrfile, 0)
        print(f"{label}: production RRVER {hdr.get('RRVER')} templates "
              + ", ".join(f"{hdr[k]} {hdr.get('TEMVER' + k[6:], '')}" for k in hdr if k.startswith("TEMNAM")))
        fits_ = _fits(coadd, templates, outdir, label)
        if args.redrock:
            fits_["rrdesi 0.21/" + os.path.basename(os.path.normpath(templates[0]))] = run_redrock(
                coadd, templates[0], os.path.join(outdir, f"rrdesi-{label}.fits"))
        for row in ref:
            tid = row["TARGETID"]
            print(f"  {tid} production {row['SPECTYPE'].strip():6s} z {row['Z']:.6f} zerr {row['ZERR'] * C_KMS:.1f} "
                  f"km/s zwarn {row['ZWARN']} dchi2 {row['DELTACHI2']:.0f} chi2 {row['CHI2']:.0f}")
            for name, (tab, wall) in fits_.items():
                r = tab[tab["TARGETID"] == tid][0]
                dv = (r["Z"] - row["Z"]) / (1 + row["Z"]) * C_KMS
                ok = r["ZWARN"] == 0 and row["ZWARN"] == 0
                same = _agree(r, row)
                n = counts.setdefault(name, [0, 0])
                n[0] += ok
                n[1] += ok and same
                print(f"    {name:32s} {r['SPECTYPE'].strip():6s} z {r['Z']:.6f} dv {dv:+10.1f} km/s zerr "
                      f"{r['ZERR'] * C_KMS:6.1f} zwarn {r['ZWARN']} dchi2 {r['DELTACHI2']:8.0f} chi2 {r['CHI2']:8.0f}"
                      f"{'' if same else '   <- differs'}")
        print("  wall s: " + ", ".join(f"{k} {v[1]:.1f}" for k, v in fits_.items()))
    for name, (nboth, nsame) in counts.items():
        print(f"{name}: agrees with the production on {nsame} of {nboth} targets both call confident")


if __name__ == "__main__":
    main()
