"""fiberflat files (fiberflat, fiberflatnight, fiberflatexp; desi-datamodel.md §8).

Layout: HDU0 ``FIBERFLAT`` (float32 [nspec, nwave], dimensionless), ``IVAR``
(float32), ``MASK`` (int32), ``MEANSPEC`` (float32 [nwave], electron/Angstrom),
``WAVELENGTH`` (float32 [nwave], Angstrom), optional ``FIBERMAP``.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..fiberflat import FiberFlat
from .fibermap import build_header, optional_table, table_to_hdu
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array


def write_fiberflat(path, fiberflat):
    """Write a fiberflat file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    fiberflat : desired.fiberflat.FiberFlat
    """
    keywords = dict(fiberflat.header)
    keywords["FIBERMIN"] = int(fiberflat.fibers.min()) if fiberflat.nspec else 0
    hdus = [fits.PrimaryHDU(fiberflat.fiberflat.astype(np.float32), header=build_header(keywords, "FIBERFLAT", "")),
            fits.ImageHDU(fiberflat.ivar.astype(np.float32), header=build_header(None, "IVAR", "")),
            fits.ImageHDU(fiberflat.mask.astype(np.int32), header=build_header(None, "MASK")),
            fits.ImageHDU(fiberflat.meanspec.astype(np.float32),
                          header=build_header(None, "MEANSPEC", "electron/Angstrom")),
            fits.ImageHDU(fiberflat.wave.astype(np.float32), header=build_header(None, "WAVELENGTH", "Angstrom"))]
    if fiberflat.fibermap is not None:
        hdus.append(table_to_hdu(fiberflat.fibermap, "FIBERMAP"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_fiberflat(path):
    """Read a fiberflat file (ours or desispec's).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.fiberflat.FiberFlat

    Raises
    ------
    DataModelError
        Unreadable file, one of the five image HDUs missing, or inconsistent shapes.
    """
    with open_fits(path) as hdus:
        flat = read_array(hdus, 0, path, ndim=2)
        nspec, nwave = flat.shape
        header = fits_header_to_dict(hdus[0].header)
        for key in ("EXTNAME", "BUNIT"):
            header.pop(key, None)
        ivar = read_array(hdus, "IVAR", path, shape=(nspec, nwave))
        mask = read_array(hdus, "MASK", path, shape=(nspec, nwave))
        meanspec = read_array(hdus, "MEANSPEC", path, shape=(nwave,))
        wave = read_array(hdus, "WAVELENGTH", path, ndim=1)
        if wave.size != nwave:
            raise DataModelError(path, f"WAVELENGTH has {wave.size} entries but FIBERFLAT has {nwave} columns")
        fibermap = optional_table(hdus, "FIBERMAP", path)
    fibers = None
    if fibermap is None or "FIBER" not in fibermap.colnames:
        fibers = int(header.get("FIBERMIN", 500 * int(header.get("SPECGRPH", 0)))) + np.arange(nspec)
    return FiberFlat(wave, flat, ivar, mask=mask, meanspec=meanspec, header=header, fibermap=fibermap,
                     fibers=fibers)
