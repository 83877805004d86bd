"""sky files (desi-datamodel.md §9).

Layout: HDU0 ``SKY`` (float32 [nspec, nwave], electron/Angstrom), ``IVAR``
(float32), ``MASK`` (int32), ``WAVELENGTH`` (float32 [nwave], Angstrom), optional
``STATIVAR`` (float32 [nspec, nwave]) and ``THRPUTCORR`` (float32 [nspec]).
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..sky import SkyModel
from .frame import FRAME_UNITS, ivar_units
from .fibermap import build_header
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array


def write_sky(path, sky):
    """Write a sky file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    sky : desired.sky.SkyModel
    """
    hdus = [fits.PrimaryHDU(sky.flux.astype(np.float32), header=build_header(sky.header, "SKY", FRAME_UNITS)),
            fits.ImageHDU(sky.ivar.astype(np.float32), header=build_header(None, "IVAR", ivar_units(FRAME_UNITS))),
            fits.ImageHDU(sky.mask.astype(np.int32), header=build_header(None, "MASK")),
            fits.ImageHDU(sky.wave.astype(np.float32), header=build_header(None, "WAVELENGTH", "Angstrom"))]
    if sky.stat_ivar is not None:
        hdus.append(fits.ImageHDU(sky.stat_ivar.astype(np.float32),
                                  header=build_header(None, "STATIVAR", ivar_units(FRAME_UNITS))))
    if sky.throughput_corrections is not None:
        hdus.append(fits.ImageHDU(sky.throughput_corrections.astype(np.float32),
                                  header=build_header(None, "THRPUTCORR")))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_sky(path):
    """Read a sky file (ours or desispec's).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.sky.SkyModel

    Raises
    ------
    DataModelError
        Unreadable file, missing SKY/IVAR/MASK/WAVELENGTH, or inconsistent shapes.
    """
    with open_fits(path) as hdus:
        flux = read_array(hdus, "SKY", path, ndim=2)
        nspec, nwave = flux.shape
        header = fits_header_to_dict(hdus["SKY"].header)
        for key in ("EXTNAME", "BUNIT"):
            header.pop(key, None)
        ivar = read_array(hdus, "IVAR", path, shape=(nspec, nwave))
        mask = read_array(hdus, "MASK", path, shape=(nspec, nwave))
        wave = read_array(hdus, "WAVELENGTH", path, ndim=1)
        if wave.size != nwave:
            raise DataModelError(path, f"WAVELENGTH has {wave.size} entries but SKY has {nwave} columns")
        stat_ivar = read_array(hdus, "STATIVAR", path, shape=(nspec, nwave)) if "STATIVAR" in hdus else None
        thru = read_array(hdus, "THRPUTCORR", path, shape=(nspec,)) if "THRPUTCORR" in hdus else None
    return SkyModel(wave, flux, ivar, mask=mask, header=header, stat_ivar=stat_ivar, throughput_corrections=thru)
