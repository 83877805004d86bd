"""stdstars files (desi-datamodel.md §10).

Layout: HDU0 ``FLUX`` (float32 [nstd, nwave_model], 1e-17 erg/s/cm2/Angstrom),
``WAVELENGTH`` (float32 [nwave_model]), ``FIBERS`` (int32 [nstd]), ``METADATA``
table, optional ``COEFF`` (float64 [nstd, ntemplate]), ``FIBERMAP`` and ``INPUT_FRAMES``.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from ..stdstars import StdStars
from .fibermap import build_header, optional_table, read_table, table_to_hdu
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array

FLUX_UNITS = "10**-17 erg/(s cm2 Angstrom)"


def write_stdstar_models(path, stdstars):
    """Write a stdstars file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    stdstars : desired.stdstars.StdStars
    """
    metadata = stdstars.metadata
    multi = [c for c in metadata.colnames if np.asarray(metadata[c]).ndim > 1]
    if multi:
        raise ValueError(f"cannot write {path}: METADATA columns {multi} are multidimensional")
    hdus = [fits.PrimaryHDU(stdstars.flux.astype(np.float32), header=build_header(stdstars.header, "FLUX", FLUX_UNITS)),
            fits.ImageHDU(stdstars.wave.astype(np.float32), header=build_header(None, "WAVELENGTH", "Angstrom")),
            fits.ImageHDU(stdstars.fibers.astype(np.int32), header=build_header(None, "FIBERS")),
            table_to_hdu(metadata, "METADATA")]
    if stdstars.coeff is not None:
        hdus.append(fits.ImageHDU(stdstars.coeff.astype(np.float64), header=build_header(None, "COEFF")))
    if stdstars.fibermap is not None:
        hdus.append(table_to_hdu(stdstars.fibermap, "FIBERMAP"))
    if stdstars.input_frames is not None:
        hdus.append(table_to_hdu(stdstars.input_frames, "INPUT_FRAMES"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_stdstar_models(path):
    """Read a stdstars file (ours or desispec's).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.stdstars.StdStars

    Raises
    ------
    DataModelError
        Unreadable file, missing FLUX/WAVELENGTH/FIBERS/METADATA, or inconsistent sizes.
    """
    with open_fits(path) as hdus:
        flux = read_array(hdus, "FLUX", path, ndim=2)
        nstd, nwave = flux.shape
        header = fits_header_to_dict(hdus["FLUX"].header)
        for key in ("EXTNAME", "BUNIT"):
            header.pop(key, None)
        wave = read_array(hdus, "WAVELENGTH", path, ndim=1)
        if wave.size != nwave:
            raise DataModelError(path, f"WAVELENGTH has {wave.size} entries but FLUX has {nwave} columns")
        fibers = read_array(hdus, "FIBERS", path, shape=(nstd,))
        metadata = read_table(hdus, "METADATA", path)
        if len(metadata) != nstd:
            raise DataModelError(path, f"METADATA has {len(metadata)} rows but FLUX has {nstd} stars")
        coeff = read_array(hdus, "COEFF", path, shape=(nstd, None)) if "COEFF" in hdus else None
        fibermap = optional_table(hdus, "FIBERMAP", path)
        input_frames = optional_table(hdus, "INPUT_FRAMES", path)
    return StdStars(wave, flux, fibers, metadata, coeff=coeff, fibermap=fibermap, input_frames=input_frames,
                    header=header)
