"""Real spectra: the redshift fitter on public SDSS galaxy spectra, beside SDSS's own redshift and redrock.

The only real galaxy spectra a package registry ships that we know of are the examples
of ``ppxf`` (``pip install ppxf``; not a dependency of this project: its licence is
non-commercial, so it is used here only when the user has installed it, and nothing of
it is copied): SDSS DR18 coadds of NGC 3522 (a bright elliptical, S/N ~ 60 per
pixel) and NGC 3073 (a dwarf S0 with emission lines).  Each is converted to a one-band
DESI coadd file (vacuum log-λ wavelengths, 1e-17 erg/s/cm²/Å; resolution: a Gaussian
of SDSS's per-pixel ``wdisp`` in DESI's 11-diagonal layout) and fitted

* by ``desired redshifts`` with the project's own templates and with DESI's, in the
  default double-precision coarse scan and in the optional single-precision one;
* by redrock 0.21 (``rrdesi``) with DESI's templates, on the same file.

Also ppxf's LEGA-C DR3 spectrum of a massive quiescent galaxy at z ~ 0.7 (VLT/VIMOS, air
wavelengths converted to vacuum, R = 2500): an LRG-like real spectrum at LRG redshift.
The file has no redshift, so its velocities are relative to redrock's.

Printed: Z, its velocity difference from SDSS's pipeline Z (SPECOBJ.Z, fitted with
SDSS's own templates; not a truth, but an independent real-data reference), ZERR,
ZWARN and SPECTYPE, every fit with the full template set (GALAXY, QSO, STAR).

Usage::

    pip install ppxf        # once, for the data
    python -m desired templates --outdir /tmp/rrtemplates
    python benchmarks/bench_real_sdss.py --ours /tmp/rrtemplates [--desi ../shared/data/redrock-templates]
"""
import argparse
import glob
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DESI = os.path.join(HERE, "..", "..", "shared", "data", "redrock-templates")
C_KMS = 299792.458


def ppxf_spectra(pattern):
    """Files of ppxf's example spectra matching ``pattern``, or [] when ppxf is not installed."""
    try:
        import importlib.util
        spec = importlib.util.find_spec("ppxf")
    except ModuleNotFoundError:
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "spectra", pattern)))


def gaussian_rdata(sigma_pix):
    """DESI resolution diagonals (11, npix) of a Gaussian LSF of ``sigma_pix`` pixels (0.5-5)."""
    from desired.resolution import Resolution
    return Resolution.from_sigma(np.clip(sigma_pix, 0.5, 5.0)).data


def write_one(outfile, targetid, wave, flux, ivar, rdata, ra, dec):
    """Write one spectrum as a one-band DESI coadd (the columns rrdesi and desired need)."""
    from astropy.table import Table
    from desired.io.spectra import write_spectra
    from desired.spectra import Spectra

    fibermap = Table({"TARGETID": np.array([targetid], dtype=np.int64), "OBJTYPE": np.array(["TGT"]),
                      "COADD_FIBERSTATUS": np.zeros(1, dtype=np.int32), "TARGET_RA": [ra], "TARGET_DEC": [dec]})
    exp = Table({"TARGETID": fibermap["TARGETID"], "NIGHT": [20000101], "EXPID": [1]})
    scores = Table({"TARGETID": fibermap["TARGETID"], "TSNR2_LRG": [0.0]})   # rrdesi requires SCORES
    spectra = Spectra(["b"], {"b": wave}, {"b": flux[None].astype(np.float32)}, {"b": ivar[None].astype(np.float32)},
                      resolution_data={"b": rdata[None].astype(np.float32)}, fibermap=fibermap,
                      exp_fibermap=exp, scores=scores,
                      header={"SPGRP": "healpix", "SPGRPVAL": 0, "HPXPIXEL": 0, "SURVEY": "real", "PROGRAM": "real"})
    write_spectra(outfile, spectra)


def legac_to_coadd(path, outfile, targetid):
    """Write LEGA-C DR3's spectrum (VIMOS, air wavelengths, R 2500, 1e-19 units) as a DESI coadd."""
    import fitsio
    from desired.sim.arclines import air_to_vacuum

    d = fitsio.read(path, "PHASE3SPECTRA")
    hdr = fitsio.read_header(path, 0)
    wave = air_to_vacuum(d["WAVE"][0].astype(np.float64))
    flux, err = d["FLUX"][0] * 0.01, d["ERR"][0] * 0.01
    good = np.isfinite(flux) & np.isfinite(err) & (err > 0) & (d["QUAL"][0] == 0)
    ivar = np.where(good, 1.0 / np.where(good, err, 1.0) ** 2, 0.0)
    flux = np.where(good, flux, 0.0)
    sigma = wave / float(hdr.get("SPEC_RES", 2500)) / 2.3548 / np.gradient(wave)
    write_one(outfile, targetid, wave, flux, ivar, gaussian_rdata(sigma), float(hdr["RA"]), float(hdr["DEC"]))


def sdss_to_coadd(path, outfile, targetid):
    """Write one SDSS DR18 spec file as a one-band DESI coadd; return SDSS's (Z, Z_ERR, CLASS)."""
    import fitsio

    d = fitsio.read(path, "COADD")
    obj = fitsio.read(path, "SPECOBJ")
    wave = 10 ** d["loglam"].astype(np.float64)
    ivar = np.where(d["and_mask"] == 0, d["ivar"], 0.0)
    rdata = gaussian_rdata(d["wdisp"].astype(np.float64))              # wdisp: sigma in 1e-4 dex pixels
    write_one(outfile, targetid, wave, d["flux"].astype(np.float64), ivar, rdata,
              float(obj["PLUG_RA"][0]), float(obj["PLUG_DEC"][0]))
    return float(obj["Z"][0]), float(obj["Z_ERR"][0]), str(obj["CLASS"][0]).strip()


def fit_ours(coadd, outfile, templates, precision):
    from desired.scripts.redshifts import run
    return run(coadd, outfile, templates=templates, precision=precision)[0]


def fit_redrock(coadd, outfile, templates):
    """rrdesi's REDSHIFTS row, or None (with the reason printed) when redrock is missing or fails."""
    from bench_real_coadds import run_redrock
    try:
        return run_redrock(coadd, templates, outfile)[0][0]
    except subprocess.CalledProcessError as err:
        print(f"  redrock failed: {err.stderr.strip().splitlines()[-1] if err.stderr.strip() else err.returncode}")
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", required=True, help="directory written by `desired templates`")
    parser.add_argument("--desi", default=DEFAULT_DESI, help="DESI's redrock templates")
    parser.add_argument("--outdir", default=None)
    args = parser.parse_args()
    files = ppxf_spectra("*_SDSS_*.fits") + ppxf_spectra("legac_*.fits")
    if not files:
        print("SKIP: no real spectra (pip install ppxf to get its example SDSS DR18 and LEGA-C spectra)")
        return
    outdir = args.outdir or tempfile.mkdtemp(prefix="bench_sdss_")
    print(f"{'spectrum':26} {'fit':28} {'Z':>9} {'dv km/s':>8} {'ZERR km/s':>9} {'ZWARN':>5} SPECTYPE")
    for i, path in enumerate(files):
        name = os.path.basename(path).replace(".fits", "")
        coadd = os.path.join(outdir, f"coadd-{name}.fits")
        if "legac" in name:
            legac_to_coadd(path, coadd, 1000 + i)
            zsdss = None
            print(f"{name:26} (no redshift in the file: dv is from redrock's Z)")
        else:
            zsdss, zerr, cls = sdss_to_coadd(path, coadd, 1000 + i)
            print(f"{name:26} {'SDSS pipeline (' + cls + ')':28} {zsdss:9.6f} {0.0:8.1f} {zerr * C_KMS:9.1f}")
        fits = [(f"desired, own, {p}", lambda o, p=p: fit_ours(coadd, o, args.ours, p)) for p in ("double", "single")]
        if os.path.isdir(args.desi):
            fits += [(f"desired, DESI's, {p}", lambda o, p=p: fit_ours(coadd, o, args.desi, p))
                     for p in ("double", "single")]
            fits.append(("redrock 0.21, DESI's", lambda o: fit_redrock(coadd, o, args.desi)))
        rows = [(label, fn(os.path.join(outdir, f"redrock-{name}-{k}.fits"))) for k, (label, fn) in enumerate(fits)]
        if zsdss is None:
            zsdss = float(rows[-1][1]["Z"]) if rows[-1][1] is not None else float(rows[0][1]["Z"])
        for label, row in rows:
            if row is None:
                continue
            dv = C_KMS * (row["Z"] - zsdss) / (1 + zsdss)
            print(f"{'':26} {label:28} {row['Z']:9.6f} {dv:8.1f} {row['ZERR'] * C_KMS:9.1f} {row['ZWARN']:5d} "
                  f"{str(row['SPECTYPE']).strip()}", flush=True)


if __name__ == "__main__":
    main()
