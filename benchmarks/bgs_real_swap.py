"""Are simulated BGS ellipticals harder for DESI's templates than a real one?  A real-spectrum swap.

``bench_sim_redrock.py --classes BGS --program bright`` finds redrock with DESI's templates
calling ~3 % of the simulated BGS galaxies STAR at z ≈ 0 with ZWARN 0, almost all of
them quiescent.  This benchmark asks whether a *real* elliptical does the same at the same
redshift, fibre flux and noise.  For every quiescent BGS galaxy (truth PAR_QUIESCENT) of
one or more benchmark output directories it writes two coadds with the same fibermap,
resolution matrices and ivar:

* ``sim``: the galaxy's noiseless truth spectrum (OBJ_FLUX of the first exposure times
  its PAR_FIBER_RATIO, i.e. in the units of the truth-calibrated coadd), through the
  coadd's resolution, plus Gaussian noise of the coadd's ivar;
* ``real``: the SDSS DR18 spectrum of NGC 3522 (a bright elliptical, S/N ~ 60 per pixel;
  shipped as an example of ``pip install ppxf``, not a dependency of this project),
  shifted to the galaxy's true redshift and scaled to the same r+z-band flux, through the
  same resolution and noise.  SDSS stops at 3826 Å rest; below 3830 Å the simulated
  spectrum is spliced in, scaled to the real one over 3830-3930 Å, so that both files
  cover the same observed range (masking it instead removes the 4000 Å break and makes
  QSO fits at z ~ 1.6 win for both).  The real spectrum keeps its own SDSS resolution
  (R ~ 2000) under DESI's: its lines are a little broader than the simulated ones.

``--nreal`` noise realisations of each.  rrdesi (redrock 0.21) with ``--templates`` fits
both files; per file it prints the fraction correct and confident (ZWARN 0, GALAXY,
|Δv| < 1000 km/s), the catastrophic ones among ZWARN 0, and the ZWARN-0 STARs, with the
issue's confidence (ZWARN 0, i.e. Δχ² > 9) and with DESI's production cut for BGS
(Δχ² > 40, desispec.validredshifts).

Usage::

    pip install ppxf        # once, for the data
    python benchmarks/bgs_real_swap.py /tmp/bgs3 /tmp/bgs4 /tmp/bgs5 [--nreal 3] [--workdir DIR]
        [--ours DIR]        # also our fitter with the templates of DIR (e.g. ``desired templates``' set)
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_real_sdss import ppxf_spectra  # noqa: E402
from bench_sim_redrock import NIGHT, TEMPLATES, truth_table  # noqa: E402

C_KMS = 299792.458
SEAM = (3830.0, 3930.0)          # rest Å: where the simulated blue end is matched to the real spectrum


def real_elliptical():
    """Rest-frame vacuum wavelength (Å) and flux of SDSS's NGC 3522, or None without ppxf."""
    import fitsio
    files = ppxf_spectra("NGC3522_SDSS_DR18.fits")
    if not files:
        return None
    d = fitsio.read(files[0], "COADD")
    z = float(fitsio.read(files[0], "SPECOBJ")["Z"][0])
    wave = 10 ** d["loglam"].astype(np.float64) / (1 + z)
    flux = d["flux"].astype(np.float64)
    good = (d["and_mask"] == 0) & (d["ivar"] > 0)
    return wave, np.interp(wave, wave[good], flux[good])


def truth_flux(outdir, truth):
    """Per-band wavelength (Å) and noiseless object flux (nfiber, nwave) of the first exposure."""
    expdir = sorted(glob.glob(f"{outdir}/truth/{NIGHT}/*/"))[0]
    import fitsio
    out = {}
    for band in "brz":
        path = glob.glob(f"{expdir}/truth-{band}0-*.fits")[0]
        out[band] = (fitsio.read(path, "WAVELENGTH"), fitsio.read(path, "OBJ_FLUX"))
    return out


def source_spectrum(mode, band, wave, z, sim, real, real_scale):
    """Noiseless observed flux of one galaxy in one band: its simulated truth, or the real spectrum."""
    if mode == "sim":
        return sim[band]
    rwave, rflux = real
    flux = real_scale * np.interp(wave / (1 + z), rwave, rflux, left=0.0, right=0.0)
    if band == "b":
        rest = wave / (1 + z)
        seam = (rest > SEAM[0]) & (rest < SEAM[1])
        if seam.sum() > 10:
            k = flux[seam].sum() / sim[band][seam].sum()
            flux = np.where(rest < SEAM[0], k * sim[band], flux)
    return flux


def swap_coadd(outdir, mode, real, nreal, rng, id0):
    """Spectra of the quiescent BGS galaxies of ``outdir`` remade from ``mode``.

    Returns the spectra (new TARGETIDs from ``id0``) and a dict TARGETID -> true redshift.
    """
    import desispec.io
    import desispec.spectra
    truth = truth_table(outdir)
    row = {int(t): k for k, t in enumerate(truth["TARGETID"])}
    sp = desispec.io.read_spectra(f"{outdir}/coadd-BGS.fits")
    keep = [i for i, t in enumerate(sp.fibermap["TARGETID"])
            if truth["TEMPLATETYPE"][row[int(t)]] == "BGS" and truth["PAR_QUIESCENT"][row[int(t)]] == 1]
    tflux = truth_flux(outdir, truth)
    parts, ztrue = [], {}
    for rep in range(nreal):
        new = sp[keep]
        new.fibermap["TARGETID"] = id0 + rep * len(keep) + np.arange(len(keep))
        for j, i in enumerate(keep):
            k = row[int(sp.fibermap["TARGETID"][i])]
            z, fiber = float(truth["TRUEZ"][k]), int(truth["FIBER"][k])
            sim = {b: tflux[b][1][fiber] * float(truth["PAR_FIBER_RATIO"][k]) for b in "brz"}
            real_scale = 1.0
            if mode == "real":
                w = np.concatenate([tflux[b][0] for b in "rz"])
                r = np.interp(w / (1 + z), real[0], real[1], left=0.0, right=0.0)
                s = np.concatenate([sim[b] for b in "rz"])
                real_scale = s[r > 0].sum() / r[r > 0].sum()
            for b in "brz":
                wave = new.wave[b]
                src = source_spectrum(mode, b, wave, z, sim, real, real_scale)
                ivar = new.ivar[b][j].copy()
                ivar[wave > real[0][-1] * (1 + z) - 20.0] = 0.0      # both files: where SDSS stops in the red
                sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 0.0)
                new.flux[b][j] = new.R[b][j].dot(src) + sigma * rng.standard_normal(wave.size)
                new.ivar[b][j] = ivar
            ztrue[int(new.fibermap['TARGETID'][j])] = z
        parts.append(new)
    return desispec.spectra.stack(parts), ztrue


def score(path, ztrue):
    """Printed figures of one rrdesi output; ``ztrue`` maps TARGETID to the true redshift."""
    from astropy.table import Table
    r = Table.read(path, "REDSHIFTS")
    ztrue = np.array([ztrue[int(t)] for t in r["TARGETID"]])
    spectype = np.char.strip(np.asarray(r["SPECTYPE"]).astype(str))
    dv = C_KMS * (np.asarray(r["Z"]) - ztrue) / (1 + ztrue)
    right = (spectype == "GALAXY") & (np.abs(dv) < 1000.0)
    parts = []
    for cut in (9.0, 40.0):
        conf = (np.asarray(r["ZWARN"]) == 0) & (np.asarray(r["DELTACHI2"]) > cut)
        parts.append(f"Δχ²>{cut:.0f}: {np.mean(conf & right):.3f} correct, "
                     f"{(conf & ~right).sum()}/{conf.sum()} catastrophic, "
                     f"{(conf & (spectype == 'STAR')).sum()} STAR")
    return "; ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdirs", nargs="+", help="bench_sim_redrock.py --classes BGS output directories")
    parser.add_argument("--nreal", type=int, default=3, help="noise realisations per galaxy")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--templates", default=TEMPLATES, help="redrock template directory")
    parser.add_argument("--ours", default=None,
                        help="also fit both files with our fitter and this template directory (e.g. the own set)")
    parser.add_argument("--workdir", default=None, help="where the coadds and redrock files go (default: a temp dir)")
    args = parser.parse_args(argv)
    real = real_elliptical()
    if real is None:
        print("SKIPPED: the real spectrum comes with ppxf's examples (pip install ppxf)")
        return 0
    if not os.path.isdir(args.templates):
        print(f"SKIPPED: redrock templates not found in {os.path.normpath(args.templates)}")
        return 0
    import desispec.io
    import desispec.spectra
    workdir = args.workdir or tempfile.mkdtemp(prefix="bgs_swap_")
    os.makedirs(workdir, exist_ok=True)
    bindir = os.path.dirname(sys.executable)
    procs, ztrue = {}, {}
    for mode in ("sim", "real"):
        rng = np.random.default_rng(args.seed)           # the same noise draws for both files
        parts, ztrue[mode] = [], {}
        for n, outdir in enumerate(args.outdirs):
            sp, z = swap_coadd(outdir, mode, real, args.nreal, rng, id0=1_000_000 * (n + 1))
            parts.append(sp)
            ztrue[mode].update(z)
        coadd, rr = f"{workdir}/coadd-{mode}.fits", f"{workdir}/redrock-{mode}.fits"
        desispec.io.write_spectra(coadd, desispec.spectra.stack(parts))
        procs[mode] = subprocess.Popen([f"{bindir}/rrdesi", "-i", coadd, "-o", rr, "-t", args.templates,
                                        "--mp", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{len(ztrue['sim'])} spectra per file ({args.nreal} noise draws of each quiescent BGS galaxy), "
          f"templates {os.path.normpath(args.templates)}")
    for mode, proc in procs.items():
        if proc.wait() != 0:
            print(f"{mode}: rrdesi failed (rc {proc.returncode})")
            continue
        print(f"{mode:4s} rrdesi: {score(f'{workdir}/redrock-{mode}.fits', ztrue[mode])}")
    if args.ours:
        from desired.scripts.redshifts import run
        from desired.threads import single_threaded_blas
        for mode in ("sim", "real"):
            out = f"{workdir}/ours-{mode}.fits"
            with single_threaded_blas():
                run(f"{workdir}/coadd-{mode}.fits", out, templates=args.ours, nproc=2)
            print(f"{mode:4s} ours + {os.path.basename(os.path.normpath(args.ours))}: {score(out, ztrue[mode])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
