"""Synthetic coadds for the redshift tests: template spectra at known redshifts, noise, DESI-like bands."""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from desired.redshift.templates import Template
from desired.redshift.zscan import resolution_apply, template_basis
from desired.spectra import Spectra

#: DESI's coadd grids (Angstrom): b, r, z
BANDS = {"b": (3600.0, 5800.0), "r": (5760.0, 7620.0), "z": (7520.0, 9824.0)}
TEMPLATE_DIR = "shared/data/redrock-templates"  # relative to the checkout's parent


def gaussian_rdata(nspec, nwave, sigma, ndiag=11):
    """Resolution diagonals of a Gaussian line-spread of ``sigma`` pixels (columns sum to 1)."""
    offsets = ndiag // 2 - np.arange(ndiag)
    prof = np.exp(-0.5 * (offsets[:, None] / np.asarray(sigma)[None, :]) ** 2)
    prof /= prof.sum(axis=0)
    return np.broadcast_to(prof.T[:, :, None], (nspec, ndiag, nwave)).copy()


#: coefficients of :func:`line_template` for a strong-line galaxy (continuum 1, lines 4 in peak)
LINE_COEFF = (1.0, 0.1, 4.0, 4.0, 4.0, 4.0)


def line_template(spectype="GALAXY", zmax=1.0, dlogz=1e-3):
    """A small emission-line + continuum basis (no shared data needed)."""
    wave = np.arange(2000.0, 10000.0, 0.5)
    lines = (3727.1, 4862.7, 5008.2, 6564.6)
    flux = [np.ones_like(wave), (wave - 6000) / 4000]
    for line in lines:
        flux.append(np.exp(-0.5 * ((wave - line) / 2.0) ** 2))
    redshifts = 10 ** np.arange(0, np.log10(1 + zmax), dlogz) - 1
    return Template(spectype, "", wave, np.array(flux), redshifts, version="test", filename="synthetic")


def make_spectra(templates, truth, seed=0, snr=3.0, sigma=1.0, step=0.8):
    """Spectra of targets drawn from templates at known redshifts.

    Parameters
    ----------
    templates : dict fulltype -> Template
    truth : list of (fulltype, z, coeff or None)
    snr : float
        Median |flux| / sigma per pixel.

    Returns
    -------
    Spectra
        Coadd-like (fibermap with TARGETID, OBJTYPE TGT, COADD_FIBERSTATUS 0; exp_fibermap).
    """
    rng = np.random.default_rng(seed)
    nt = len(truth)
    waves = {b: np.arange(lo, hi + step / 2, step) for b, (lo, hi) in BANDS.items()}
    rdata = {b: gaussian_rdata(nt, w.size, np.full(nt, sigma)) for b, w in waves.items()}
    clean = {b: np.zeros((nt, w.size)) for b, w in waves.items()}
    for i, (fulltype, z, coeff) in enumerate(truth):
        t = templates[fulltype]
        c = np.r_[1.0, 0.2 * np.ones(t.nbasis - 1)] if coeff is None else np.asarray(coeff)
        for b, w in waves.items():
            clean[b][i] = resolution_apply(rdata[b][i], template_basis(t, w, np.array([z]))[:, 0, :] @ c)
    scale = np.array([np.median(np.abs(np.concatenate([clean[b][i] for b in waves]))) for i in range(nt)])
    scale[scale == 0] = 1
    flux, ivar = {}, {}
    for b in waves:
        model = clean[b] / scale[:, None] * snr
        flux[b] = model + rng.normal(size=model.shape)
        ivar[b] = np.ones(model.shape)
    fibermap = Table({"TARGETID": np.arange(nt, dtype=np.int64) + 1000, "OBJTYPE": np.full(nt, "TGT"),
                      "COADD_FIBERSTATUS": np.zeros(nt, dtype=np.int32),
                      "TARGET_RA": np.full(nt, 10.0), "TARGET_DEC": np.full(nt, 5.0)})
    exp = Table({"TARGETID": fibermap["TARGETID"], "NIGHT": np.full(nt, 20261124), "EXPID": np.ones(nt, int)})
    return Spectra(list(waves), waves, flux, ivar, resolution_data=rdata, fibermap=fibermap, exp_fibermap=exp,
                   header={"SPGRP": "healpix", "SPGRPVAL": 18071, "HPXPIXEL": 18071, "SURVEY": "main",
                           "PROGRAM": "dark"})


def write_template_file(path, template):
    """Write a Template as a redrock template file (BASIS_VECTORS on a linear grid, REDSHIFTS)."""
    from astropy.io import fits
    step = template.wave[1] - template.wave[0]
    hdr = fits.Header()
    hdr["CRVAL1"], hdr["CDELT1"] = float(template.wave[0]), float(step)
    hdr["RRTYPE"], hdr["RRSUBTYP"], hdr["VERSION"] = template.spectype, template.subtype, template.version
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(template.flux, header=hdr, name="BASIS_VECTORS"),
                         fits.ImageHDU(np.asarray(template.redshifts), name="REDSHIFTS")])
    hdus.writeto(path, overwrite=True)
