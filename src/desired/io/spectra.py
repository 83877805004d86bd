"""spectra and coadd files (desi-datamodel.md §13 and §14).

Layout as written: empty PRIMARY (keywords), ``FIBERMAP``, ``EXP_FIBERMAP`` (coadds
only), then for each band ``{B}_WAVELENGTH`` (float64), ``{B}_FLUX`` and ``{B}_IVAR``
(float32 [nspec, nwave]), ``{B}_MASK`` (int32), ``{B}_RESOLUTION`` (float32
[nspec, ndiag, nwave]), optional ``{B}_MODEL``, then ``SCORES`` and ``EXTRA_CATALOG``.
"""
from __future__ import annotations

import logging
import re

import numpy as np
from astropy.io import fits

from ..spectra import Spectra
from .fibermap import build_header, read_table, table_to_hdu
from .frame import CFRAME_UNITS, ivar_units
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array

log = logging.getLogger(__name__)

_TABLES = ("FIBERMAP", "EXP_FIBERMAP", "SCORES", "EXTRA_CATALOG")
_ARRAY_HDU = re.compile(r"^(.+)_(WAVELENGTH|FLUX|IVAR|MASK|RESOLUTION|MODEL)$")


def write_spectra(path, spectra, units=None):
    """Write a spectra file, or a coadd file when ``spectra.exp_fibermap`` is set.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    spectra : desired.spectra.Spectra
    units : str, optional
        BUNIT of the fluxes; 1e-17 erg/s/cm2/Angstrom by default.
    """
    units = units or CFRAME_UNITS
    hdus = [fits.PrimaryHDU(header=build_header(spectra.header))]
    if spectra.fibermap is not None:
        hdus.append(table_to_hdu(spectra.fibermap, "FIBERMAP"))
    if spectra.exp_fibermap is not None:
        hdus.append(table_to_hdu(spectra.exp_fibermap, "EXP_FIBERMAP"))
    for band in spectra.bands:
        b = band.upper()
        hdus.append(fits.ImageHDU(spectra.wave[band].astype(np.float64),
                                  header=build_header(None, f"{b}_WAVELENGTH", "Angstrom")))
        hdus.append(fits.ImageHDU(spectra.flux[band].astype(np.float32), header=build_header(None, f"{b}_FLUX", units)))
        hdus.append(fits.ImageHDU(spectra.ivar[band].astype(np.float32),
                                  header=build_header(None, f"{b}_IVAR", ivar_units(units))))
        hdus.append(fits.ImageHDU(spectra.mask[band].astype(np.int32), header=build_header(None, f"{b}_MASK")))
        if spectra.resolution_data is not None:
            hdus.append(fits.ImageHDU(spectra.resolution_data[band].astype(np.float32),
                                      header=build_header(None, f"{b}_RESOLUTION")))
        if spectra.model is not None:
            hdus.append(fits.ImageHDU(spectra.model[band].astype(np.float32),
                                      header=build_header(None, f"{b}_MODEL", units)))
    if spectra.scores is not None:
        hdus.append(table_to_hdu(spectra.scores, "SCORES"))
    if spectra.extra_catalog is not None:
        hdus.append(table_to_hdu(spectra.extra_catalog, "EXTRA_CATALOG"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_spectra(path):
    """Read a spectra or coadd file (ours or desispec's).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.spectra.Spectra
        Bands lower-cased in file order; ``exp_fibermap`` set for coadds.

    Raises
    ------
    DataModelError
        Unreadable file, a band without WAVELENGTH/FLUX/IVAR, or inconsistent shapes
        (between arrays of a band, between bands, or with the tables).
    """
    with open_fits(path) as hdus:
        header = fits_header_to_dict(hdus[0].header)
        header.pop("EXTNAME", None)
        arrays, tables, bands = {}, {}, []
        for i, hdu in enumerate(hdus[1:], start=1):
            name = hdu.name.strip().upper()
            if not name:
                raise DataModelError(path, f"HDU {i} has no EXTNAME")
            if name in _TABLES:
                tables[name] = read_table(hdus, i, path)
                continue
            match = _ARRAY_HDU.match(name)
            if match is None:
                log.warning("%s: skipping unknown HDU %s", path, name)
                continue
            band, kind = match.group(1).lower(), match.group(2)
            if band not in bands:
                bands.append(band)
            arrays[band, kind] = read_array(hdus, i, path)
    if not bands:
        raise DataModelError(path, "no {BAND}_WAVELENGTH/FLUX/IVAR HDUs")
    nspec = None
    for band in bands:
        for kind in ("WAVELENGTH", "FLUX", "IVAR"):
            if (band, kind) not in arrays:
                raise DataModelError(path, f"missing HDU {band.upper()}_{kind}")
        wave, flux = arrays[band, "WAVELENGTH"], arrays[band, "FLUX"]
        if wave.ndim != 1 or flux.ndim != 2 or flux.shape[1] != wave.size:
            raise DataModelError(path, f"{band.upper()}_FLUX has shape {flux.shape} but "
                                       f"{band.upper()}_WAVELENGTH has {wave.size} entries")
        for kind in ("IVAR", "MASK", "MODEL"):
            if (band, kind) in arrays and arrays[band, kind].shape != flux.shape:
                raise DataModelError(path, f"{band.upper()}_{kind} has shape {arrays[band, kind].shape}, "
                                           f"expected {flux.shape}")
        res = arrays.get((band, "RESOLUTION"))
        if res is not None and (res.ndim != 3 or res.shape[0] != flux.shape[0] or res.shape[2] != wave.size):
            raise DataModelError(path, f"{band.upper()}_RESOLUTION has shape {res.shape}, "
                                       f"expected ({flux.shape[0]}, ndiag, {wave.size})")
        if nspec is not None and flux.shape[0] != nspec:
            raise DataModelError(path, f"{band.upper()}_FLUX has {flux.shape[0]} spectra, other bands {nspec}")
        nspec = flux.shape[0]
    for name in ("FIBERMAP", "SCORES", "EXTRA_CATALOG"):
        if name in tables and len(tables[name]) != nspec:
            raise DataModelError(path, f"{name} has {len(tables[name])} rows but the spectra {nspec}")

    def collect(kind):
        if not all((b, kind) in arrays for b in bands):
            return None
        return {b: arrays[b, kind] for b in bands}

    return Spectra(bands, collect("WAVELENGTH"), collect("FLUX"), collect("IVAR"), mask={b: arrays.get((b, "MASK")) for b in bands},
                   resolution_data=collect("RESOLUTION"), fibermap=tables.get("FIBERMAP"),
                   exp_fibermap=tables.get("EXP_FIBERMAP"), scores=tables.get("SCORES"),
                   extra_catalog=tables.get("EXTRA_CATALOG"), header=header, model=collect("MODEL"))
