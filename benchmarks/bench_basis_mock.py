"""Own GALAXY templates on an independent test set: DESI's GALAXY PCA spectra at random redshifts.

The simulator's galaxies are one source; to judge a change of the project's own
GALAXY basis without tuning it to them, this builds "data" from DESI's own GALAXY
template (``rrtemplate-galaxy-*.fits`` of the redrock template release), which was
made from real-galaxy-like spectra independently of this project:

* the coefficients are those of confident GALAXY fits with DESI's templates to a real
  coadd's targets (``--redrock``: a redshift file made with ``--templates`` = DESI's
  directory), so each mock is a realistic combination of the PCA vectors;
* each mock takes one such coefficient set, a redshift drawn uniformly in
  ``[--zmin, --zmax]``, and the donor target's own wavelength grid, resolution matrix
  and inverse variance; the model is rebinned, convolved with the resolution and given
  Gaussian noise of that ivar (seeded).

The mock coadd is fitted with ``desired redshifts`` and each template directory given
(``--templates``, repeatable; e.g. the own set before and after a change, and DESI's as a
sanity reference), and the efficiency (ZWARN == 0 and |Δv| < 1000 km/s), catastrophic
rate among ZWARN == 0 and velocity rms are printed overall and in redshift bins.

Usage::

    python benchmarks/bench_basis_mock.py /tmp/rrpetal/coadd.fits --redrock /tmp/rrpetal/redrock-desi.fits \\
        --templates /tmp/rrtemplates-old --templates /tmp/rrtemplates-new [--n 300] [--seed 1]
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


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_mock(coadd, redrock, desi_dir, outfile, n=300, seed=1, zmin=0.02, zmax=1.6):
    """Write a mock coadd of DESI GALAXY-template spectra; return its truth (TARGETID, TRUEZ) arrays."""
    from astropy.table import Table

    from desired.io.spectra import read_spectra, write_spectra
    from desired.io.templates import read_templates
    from desired.redshift.zscan import resolution_apply, template_basis
    from desired.spectra import Spectra

    spectra = read_spectra(coadd)
    fit = Table.read(redrock, "REDSHIFTS")
    galaxy = [t for t in read_templates(desi_dir) if t.spectype == "GALAXY"]
    if not galaxy:
        raise ValueError(f"no GALAXY template in {desi_dir}")
    template = galaxy[0]
    tids = np.asarray(spectra.fibermap["TARGETID"])
    row_of = {int(t): i for i, t in enumerate(tids)}
    ok = (np.asarray(fit["ZWARN"]) == 0) & (np.char.strip(np.asarray(fit["SPECTYPE"]).astype(str)) == "GALAXY")
    donors = [(row_of[int(t)], np.asarray(c)[:template.nbasis]) for t, c in
              zip(fit["TARGETID"][ok], fit["COEFF"][ok]) if int(t) in row_of]
    if not donors:
        raise ValueError(f"{redrock}: no confident GALAXY fit to take coefficients from")
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(donors), size=n)
    ztrue = rng.uniform(zmin, zmax, size=n)
    flux = {b: np.zeros((n, spectra.wave[b].size)) for b in spectra.bands}
    ivar = {b: np.zeros((n, spectra.wave[b].size)) for b in spectra.bands}
    rdata = {b: np.zeros((n,) + spectra.resolution_data[b].shape[1:]) for b in spectra.bands}
    for i, (k, z) in enumerate(zip(pick, ztrue)):
        row, coeff = donors[k]
        for b in spectra.bands:
            model = template_basis(template, spectra.wave[b], np.array([z]))[:, 0, :] @ coeff
            model = resolution_apply(spectra.resolution_data[b][row], model)
            iv = spectra.ivar[b][row] * (spectra.mask[b][row] == 0)
            noise = rng.normal(size=model.size) / np.sqrt(np.where(iv > 0, iv, 1.0))
            flux[b][i] = np.where(iv > 0, model + noise, 0.0)
            ivar[b][i] = iv
            rdata[b][i] = spectra.resolution_data[b][row]
    fibermap = spectra.fibermap[[donors[k][0] for k in pick]]
    fibermap["TARGETID"] = np.arange(1, n + 1)
    mask = {b: (ivar[b] == 0).astype(np.int32) for b in spectra.bands}
    write_spectra(outfile, Spectra(spectra.bands, spectra.wave, flux, ivar, mask, rdata, fibermap,
                                   header=spectra.header))
    return np.arange(1, n + 1), ztrue


def score(table, ztrue, zbins=(0.0, 0.4, 0.8, 1.2, 1.7)):
    """Rows (label, N, eff, catastrophic, rms km/s) overall and per true-redshift bin."""
    z = np.asarray(table["Z"], float)
    zwarn = np.asarray(table["ZWARN"])
    galaxy = np.char.strip(np.asarray(table["SPECTYPE"]).astype(str)) == "GALAXY"
    dv = C_KMS * (z - ztrue) / (1 + ztrue)
    conf = zwarn == 0
    good = conf & (np.abs(dv) < 1000.0) & galaxy
    rows = []
    for label, sel in [("all", np.ones(len(z), bool))] + [
            (f"{lo:.1f}-{hi:.1f}", (ztrue >= lo) & (ztrue < hi)) for lo, hi in zip(zbins[:-1], zbins[1:])]:
        rows.append((label, int(sel.sum()), good[sel].mean() if sel.any() else np.nan,
                     (conf & ~good & sel).sum() / max((conf & sel).sum(), 1),
                     float(np.sqrt(np.mean(dv[good & sel] ** 2))) if (good & sel).any() else np.nan))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("coadd", help="coadd whose targets lend wavelength grids, resolution and ivar")
    parser.add_argument("--redrock", required=True, help="redshift file of that coadd fitted with DESI's templates")
    parser.add_argument("--desi", default=DEFAULT_DESI, help="DESI's redrock template directory")
    parser.add_argument("--templates", action="append", required=True, help="template directory to judge")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--zmin", type=float, default=0.02)
    parser.add_argument("--zmax", type=float, default=1.6)
    parser.add_argument("--outdir", default=None)
    args = parser.parse_args()
    if not os.path.isdir(args.desi):
        print(f"SKIP: no DESI templates at {args.desi}")
        return
    from desired.scripts.redshifts import run
    from desired.threads import single_threaded_blas
    outdir = args.outdir or tempfile.mkdtemp(prefix="bench_basis_mock_")
    mock = os.path.join(outdir, "coadd-mock.fits")
    tids, ztrue = make_mock(args.coadd, args.redrock, args.desi, mock, args.n, args.seed, args.zmin, args.zmax)
    print(f"mock: {len(tids)} DESI GALAXY-template spectra, z uniform {args.zmin}-{args.zmax}, seed {args.seed}")
    print(f"{'templates':40} {'z bin':8} {'N':>4} {'eff':>6} {'catast':>6} {'rms km/s':>8}")
    for k, tdir in enumerate(args.templates):
        c0, w0 = _cpu(), time.time()
        with single_threaded_blas():
            table = run(mock, os.path.join(outdir, f"redrock-{k}.fits"), templates=tdir)
        order = np.argsort(np.asarray(table["TARGETID"]))
        table = table[order]
        for label, nsel, eff, cata, rms in score(table, ztrue):
            print(f"{tdir[-40:]:40} {label:8} {nsel:4d} {eff:6.3f} {cata:6.3f} {rms:8.1f}", flush=True)
        print(f"{tdir[-40:]:40} fit: {_cpu() - c0:.1f} CPU s, {time.time() - w0:.1f} s wall (under load)", flush=True)


if __name__ == "__main__":
    main()
