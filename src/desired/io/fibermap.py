"""Fibermap files and the table/header helpers shared by the product writers.

A fibermap file (desi-datamodel.md §4) is an empty primary HDU holding the
exposure keywords plus one ``FIBERMAP`` binary table, one row per fiber.  The
helpers here (:func:`build_header`, :func:`table_to_hdu`, :func:`read_table`)
are used by every product module of :mod:`desired.io` so that headers and tables
are encoded the same way everywhere: string columns as fixed-width ASCII on
disk and as ``str`` in memory, numpy scalars as plain Python values.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, require_hdu

log = logging.getLogger(__name__)

#: keywords that the writers set themselves and never copy from a container header
RESERVED_KEYWORDS = {"EXTNAME", "BUNIT", "SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT",
                     "GCOUNT", "TFIELDS", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY"}

# DESIGN_X/Y were renamed FIBERASSIGN_X/Y in the DESI data model
_RENAMED_COLUMNS = {"DESIGN_X": "FIBERASSIGN_X", "DESIGN_Y": "FIBERASSIGN_Y"}


def _plain(value):
    """Return ``value`` as a FITS-storable Python scalar (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return value


def build_header(keywords=None, extname=None, bunit=None, skip=()):
    """Return a FITS header holding ``keywords`` plus EXTNAME/BUNIT.

    Parameters
    ----------
    keywords : dict-like, optional
        Keyword -> value.  ``None`` values, structural keywords and the names in
        ``skip`` are left out; keys longer than 8 characters become HIERARCH cards.
    extname : str, optional
        EXTNAME of the HDU.
    bunit : str, optional
        BUNIT of the HDU.
    skip : iterable of str
        Further keywords to leave out.

    Returns
    -------
    astropy.io.fits.Header
    """
    header = fits.Header()
    if extname is not None:
        header["EXTNAME"] = extname
    if bunit is not None:
        header["BUNIT"] = bunit
    skip = set(skip) | RESERVED_KEYWORDS
    for key, value in dict(keywords or {}).items():
        key = str(key).upper()
        if key in skip or value is None or key.startswith(("NAXIS", "TTYPE", "TFORM", "TUNIT", "TDIM")):
            continue
        value = _plain(value)
        if isinstance(value, float) and not np.isfinite(value):
            value = str(value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            header[key] = value
    return header


def table_to_hdu(table, extname, keywords=None):
    """Return a binary-table HDU of ``table`` with string columns encoded as ASCII.

    Parameters
    ----------
    table : astropy.table.Table or numpy structured array
    extname : str
    keywords : dict-like, optional
        Extra header keywords; ``table.meta`` is used when omitted.

    Returns
    -------
    astropy.io.fits.BinTableHDU
    """
    table = Table(table, copy=True)
    meta = dict(table.meta) if keywords is None else dict(keywords)
    table.meta.clear()
    for name in table.colnames:
        col = table[name]
        if col.dtype.kind == "U":
            # keep the declared width (np.char.encode shrinks to the longest value: MORPHTYPE 'PSF' would be
            # written 3A where DESI's data model and desispec's annotate_fibermap expect 4A)
            width = max(col.dtype.itemsize // 4, 1)
            table[name] = np.char.encode(np.asarray(col), "ascii").astype(f"S{width}")
        elif col.dtype.kind == "O":
            table[name] = np.char.encode(np.asarray(col).astype(str), "ascii")
    # units go into TUNITn as DESI's files spell them (:func:`unit_string`): astropy would drop
    # the nanomaggies, which the FITS unit format cannot hold
    units = {}
    for name in table.colnames:
        if table[name].unit is not None:
            units[name] = unit_string(table[name].unit)
            table[name].unit = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdu = fits.table_to_hdu(table)
    for i, name in enumerate(table.colnames, start=1):
        if name in units:
            hdu.header[f"TUNIT{i}"] = units[name]
    hdu.header.update(build_header(meta, skip={"EXTNAME"}))
    hdu.header["EXTNAME"] = extname
    return hdu


def unit_string(unit):
    """TUNIT string of ``unit`` as DESI's files write it.

    The FITS format where it can hold the unit (``deg``, ``mas yr-1``, ``mag``); DESI's
    spelling of the Legacy Surveys' nanomaggies otherwise (``nanomaggy``,
    ``nanomaggy^-2``), which astropy's generic format would write ``nmgy``, ``1 / nmgy2``.

    Parameters
    ----------
    unit : astropy.units.UnitBase

    Returns
    -------
    str
    """
    import astropy.units as u
    try:
        return unit.to_string("fits")
    except ValueError:
        pass
    for power in (1, -1, -2):
        if unit == u.nanomaggy ** power:
            return "nanomaggy" if power == 1 else f"nanomaggy^{power}"
    return unit.to_string()


def hdu_to_table(hdu, path):
    """Return an astropy Table (native byte order, ``str`` columns) of a binary-table HDU.

    Parameters
    ----------
    hdu : astropy.io.fits.BinTableHDU
    path : str
        File name for error messages.
    """
    try:
        data = hdu.data
    except Exception as err:
        raise DataModelError(path, f"table HDU {hdu.name!r} cannot be read ({type(err).__name__}: {err})") from err
    if data is None:
        return Table(meta=fits_header_to_dict(hdu.header))
    if not isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        raise DataModelError(path, f"HDU {hdu.name!r} is not a table")
    table = Table()
    for name in data.columns.names:
        # field access (not the raw record array) applies TSCAL/TZERO and turns 'L' columns into bool
        col = np.array(data[name])
        if col.dtype.kind in "SU":
            if col.dtype.kind == "S":
                col = np.char.decode(col, "ascii", errors="replace")
            col = np.char.rstrip(col)
        else:
            col = col.astype(col.dtype.newbyteorder("="), copy=False)
        newname = _RENAMED_COLUMNS.get(name, name)
        table[newname] = col
        unit = data.columns[name].unit
        if unit:
            table[newname].unit = unit
    meta = fits_header_to_dict(hdu.header)
    meta.pop("EXTNAME", None)
    table.meta.update(meta)
    return table


def read_table(hdus, extname, path, required=True):
    """Return HDU ``extname`` of an open file as a Table, or None when optional and absent."""
    if not required and extname not in hdus:
        return None
    return hdu_to_table(require_hdu(hdus, extname, path), path)


def optional_table(hdus, extname, path):
    """Return HDU ``extname`` as a Table, or None when the file has no such HDU."""
    return read_table(hdus, extname, path, required=False)


def write_fibermap(path, fibermap, header=None):
    """Write a fibermap file: keywords in HDU0, the table in HDU ``FIBERMAP``.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    fibermap : astropy.table.Table
        One row per fiber (columns of desi-datamodel.md §4).
    header : dict, optional
        Exposure keywords (EXPID, NIGHT, TILEID, ...); ``fibermap.meta`` when omitted.
        They go into both HDU0 and the FIBERMAP header.
    """
    keywords = dict(fibermap.meta) if header is None else dict(header)
    primary = fits.PrimaryHDU(header=build_header(keywords))
    hdu = table_to_hdu(fibermap, "FIBERMAP", keywords)
    with atomic_path(path) as tmp:
        fits.HDUList([primary, hdu]).writeto(tmp)


def read_fibermap(path):
    """Read the ``FIBERMAP`` HDU of a fibermap (or any product holding one).

    Parameters
    ----------
    path : str

    Returns
    -------
    astropy.table.Table
        String columns as ``str``; header keywords (HDU0 merged with the table's) in ``.meta``.

    Raises
    ------
    DataModelError
        Unreadable file or no FIBERMAP HDU.
    """
    with open_fits(path) as hdus:
        table = read_table(hdus, "FIBERMAP", path)
        meta = fits_header_to_dict(hdus[0].header)
        meta.pop("EXTNAME", None)
        meta.update(table.meta)
        table.meta.clear()
        table.meta.update(meta)
    return table
