"""GAUSS-HERMITE PSF files (specex format, PSFVER 3; desi-datamodel.md §6)."""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..psf import GaussHermitePSF
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array, require_hdu

_STRUCTURAL = {"PSFTYPE", "PSFVER", "WAVEMIN", "WAVEMAX", "NPIX_X", "NPIX_Y", "HSIZEX", "HSIZEY",
               "GHDEGX", "GHDEGY", "LEGDEG", "FIBERMIN", "FIBERMAX", "EXTNAME", "NPARAMS"}


def write_psf(path, psf, header=None, inputs=None):
    """Write a PSF in the specex GAUSS-HERMITE layout (XTRACE, YTRACE, PSF).

    Parameters
    ----------
    path : str
        Output file; written atomically.
    psf : desired.psf.GaussHermitePSF
    header : dict, optional
        Extra keywords for the primary (XTRACE) header.
    inputs : list of (str, bool, str), optional
        (file name, used, reason) of the PSFs a combined PSF was made from:
        written as a last table HDU ``PSFINPUT`` (columns FILE, USED, REASON).
    """
    names = psf.param_names()
    names += [k for k in psf.params if k not in names]
    ncoef = max(v.shape[1] for v in psf.params.values())
    coeff = np.zeros((len(names), psf.nfiber, ncoef))
    for i, name in enumerate(names):
        c = psf.params[name]
        coeff[i, :, :c.shape[1]] = c
    fibermax = psf.fibermin + psf.nfiber - 1

    h0 = fits.Header()
    h0["EXTNAME"] = "XTRACE"
    h0["PSFTYPE"] = "GAUSS-HERMITE"
    h0["PSFVER"] = "3"
    for key, value in {**psf.meta, **(header or {})}.items():
        if key not in _STRUCTURAL:
            h0[key] = value
    h0["WAVEMIN"] = psf.wavemin
    h0["WAVEMAX"] = psf.wavemax
    h0["NPIX_X"] = psf.npix_x
    h0["NPIX_Y"] = psf.npix_y
    h0["FIBERMIN"] = psf.fibermin
    h0["FIBERMAX"] = fibermax
    hx = fits.PrimaryHDU(psf.xcoef, header=h0)

    hy = fits.ImageHDU(psf.ycoef, name="YTRACE")
    for key in ("WAVEMIN", "WAVEMAX", "NPIX_Y"):
        hy.header[key] = h0[key]

    cols = [
        fits.Column(name="PARAM", format="8A", array=np.array([n.ljust(8) for n in names])),
        fits.Column(name="COEFF", format=f"{psf.nfiber * ncoef}D", dim=f"({ncoef},{psf.nfiber})",
                    array=coeff),
        fits.Column(name="LEGDEGX", format="J", array=np.full(len(names), ncoef - 1)),
        fits.Column(name="LEGDEGW", format="J", array=np.full(len(names), ncoef - 1)),
    ]
    ht = fits.BinTableHDU.from_columns(cols, name="PSF")
    for key, value in [("PSFTYPE", "GAUSS-HERMITE"), ("PSFVER", "3"), ("FIBERMIN", psf.fibermin),
                       ("FIBERMAX", fibermax), ("NPIX_X", psf.npix_x), ("NPIX_Y", psf.npix_y),
                       ("HSIZEX", psf.hsizex), ("HSIZEY", psf.hsizey), ("GHDEGX", psf.ghdegx),
                       ("GHDEGY", psf.ghdegy), ("LEGDEG", ncoef - 1), ("WAVEMIN", psf.param_wavemin),
                       ("WAVEMAX", psf.param_wavemax), ("NPARAMS", len(names))]:
        ht.header[key] = value
    hdus = [hx, hy, ht]
    if inputs is not None:
        names = [str(n) for n, _, _ in inputs] or [""]
        reasons = [str(r)[:200] for _, _, r in inputs] or [""]
        hdus.append(fits.BinTableHDU.from_columns([
            fits.Column(name="FILE", format=f"{max(len(n) for n in names) or 1}A", array=np.array(names)),
            fits.Column(name="USED", format="L", array=np.array([bool(u) for _, u, _ in inputs] or [False])),
            fits.Column(name="REASON", format=f"{max(len(r) for r in reasons) or 1}A", array=np.array(reasons)),
        ], name="PSFINPUT"))
        if not inputs:
            hdus[-1] = fits.BinTableHDU.from_columns(hdus[-1].columns, nrows=0, name="PSFINPUT")
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_psf(path):
    """Read a GAUSS-HERMITE PSF file.

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.psf.GaussHermitePSF

    Raises
    ------
    DataModelError
        If the file is unreadable or lacks XTRACE/YTRACE/PSF or their keywords.
    """
    with open_fits(path) as hdus:
        xcoef = read_array(hdus, 0 if hdus[0].name in ("XTRACE", "PRIMARY") else "XTRACE", path, ndim=2)
        h0 = hdus[0].header
        ycoef = read_array(hdus, "YTRACE", path, ndim=2)
        if ycoef.shape[0] != xcoef.shape[0]:
            raise DataModelError(path, f"XTRACE has {xcoef.shape[0]} fibers but YTRACE {ycoef.shape[0]}")
        table = require_hdu(hdus, "PSF", path)
        ht = table.header
        try:
            if str(h0.get("PSFTYPE", ht.get("PSFTYPE"))).strip() != "GAUSS-HERMITE":
                raise DataModelError(path, f"PSFTYPE is {h0.get('PSFTYPE')!r}, expected 'GAUSS-HERMITE'")
            data = table.data
            names = [str(n).strip() for n in data["PARAM"]]
            coeff = np.asarray(data["COEFF"], dtype=np.float64)
            nfiber = xcoef.shape[0]
            if coeff.ndim != 3 or coeff.shape[1] != nfiber:
                raise DataModelError(path, f"PSF COEFF has shape {coeff.shape}, expected (nparam, {nfiber}, ncoef)")
            params = {n: coeff[i] for i, n in enumerate(names)}
            meta = {k: v for k, v in fits_header_to_dict(h0).items() if k not in _STRUCTURAL}
            return GaussHermitePSF(
                xcoef, ycoef, h0["WAVEMIN"], h0["WAVEMAX"], params,
                ghdegx=ht["GHDEGX"], ghdegy=ht["GHDEGY"], hsizex=ht["HSIZEX"], hsizey=ht["HSIZEY"],
                npix_x=ht.get("NPIX_X", h0.get("NPIX_X", 0)), npix_y=ht.get("NPIX_Y", h0.get("NPIX_Y", 0)),
                param_wavemin=ht["WAVEMIN"], param_wavemax=ht["WAVEMAX"],
                fibermin=ht.get("FIBERMIN", h0.get("FIBERMIN", 0)), meta=meta)
        except KeyError as err:
            raise DataModelError(path, f"missing PSF keyword or column {err.args[0]!r}") from None
        except ValueError as err:
            if isinstance(err, DataModelError):
                raise
            raise DataModelError(path, str(err)) from None
