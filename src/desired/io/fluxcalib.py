"""fluxcalib files (desi-datamodel.md §11).

Layout: HDU0 ``FLUXCALIB`` (float32 [nspec, nwave]), ``IVAR`` (float32, finite and
>= 0), ``MASK`` (int32), ``WAVELENGTH`` (float32 [nwave]), optional ``FIBERCORR``
and ``STDSTAR_FIBERMAP`` tables.  Nominal calibrations of the calibration tree may
add ``EXTINCTION`` (float64 [nwave], mag per airmass: the atmosphere included at the
header's AIRMASS); desispec's reader ignores that HDU.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..fluxcalib import FluxCalib
from .fibermap import build_header, optional_table, table_to_hdu
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array

FLUXCALIB_UNITS = "10**+17 cm2 count s / erg"
FLUXCALIB_IVAR_UNITS = "10**-34 erg2 / (cm4 count2 s2)"


def write_flux_calibration(path, fluxcalib):
    """Write a fluxcalib file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    fluxcalib : desired.fluxcalib.FluxCalib
    """
    hdus = [fits.PrimaryHDU(fluxcalib.calib.astype(np.float32),
                            header=build_header(fluxcalib.header, "FLUXCALIB", FLUXCALIB_UNITS)),
            fits.ImageHDU(fluxcalib.ivar.astype(np.float32), header=build_header(None, "IVAR", FLUXCALIB_IVAR_UNITS)),
            fits.ImageHDU(fluxcalib.mask.astype(np.int32), header=build_header(None, "MASK")),
            fits.ImageHDU(fluxcalib.wave.astype(np.float32), header=build_header(None, "WAVELENGTH", "Angstrom"))]
    if fluxcalib.fibercorr is not None:
        hdus.append(table_to_hdu(fluxcalib.fibercorr, "FIBERCORR"))
    if fluxcalib.stdstar_fibermap is not None:
        hdus.append(table_to_hdu(fluxcalib.stdstar_fibermap, "STDSTAR_FIBERMAP"))
    if fluxcalib.extinction is not None:
        hdus.append(fits.ImageHDU(fluxcalib.extinction.astype(np.float64),
                                  header=build_header(None, "EXTINCTION", "mag")))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_flux_calibration(path):
    """Read a fluxcalib file (ours or desispec's).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.fluxcalib.FluxCalib

    Raises
    ------
    DataModelError
        Unreadable file, missing HDU, inconsistent shapes, or NaN/negative ivar.
    """
    with open_fits(path) as hdus:
        calib = read_array(hdus, 0, path, ndim=2)
        nspec, nwave = calib.shape
        header = fits_header_to_dict(hdus[0].header)
        for key in ("EXTNAME", "BUNIT"):
            header.pop(key, None)
        ivar = read_array(hdus, "IVAR", path, shape=(nspec, nwave))
        if not np.all(np.isfinite(ivar)) or np.any(ivar < 0):
            raise DataModelError(path, "IVAR holds NaN or negative values")
        mask = read_array(hdus, "MASK", path, shape=(nspec, nwave))
        wave = read_array(hdus, "WAVELENGTH", path, ndim=1)
        if wave.size != nwave:
            raise DataModelError(path, f"WAVELENGTH has {wave.size} entries but FLUXCALIB has {nwave} columns")
        fibercorr = optional_table(hdus, "FIBERCORR", path)
        stdfm = optional_table(hdus, "STDSTAR_FIBERMAP", path)
        extinction = read_array(hdus, "EXTINCTION", path, shape=(nwave,)) if "EXTINCTION" in hdus else None
    return FluxCalib(wave, calib, ivar, mask=mask, header=header, fibercorr=fibercorr, stdstar_fibermap=stdfm,
                     extinction=extinction)
