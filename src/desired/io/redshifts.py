"""redrock-format redshift files and the redshift catalog (desi-datamodel.md §15 and §17).

redrock file: empty PRIMARY (RRVER, TEMNAMnn, TEMVERnn, TEMFILnn, SPGRP, ...),
``REDSHIFTS`` (one row per target, redrock's column names and dtypes),
``FIBERMAP`` (row-matched), ``EXP_FIBERMAP`` and ``TSNR2`` (row-matched).

zcatalog file: PRIMARY (keywords), ``ZCATALOG`` table, ``EXP_FIBERMAP``.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .fibermap import build_header, optional_table, read_table, table_to_hdu
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits

log = logging.getLogger(__name__)

#: REDSHIFTS columns in redrock's order with their on-disk dtypes (COEFF is f8[ncoeff])
REDSHIFT_COLUMNS = (("TARGETID", "i8"), ("Z", "f8"), ("ZERR", "f8"), ("ZWARN", "i8"), ("CHI2", "f8"),
                    ("COEFF", "f8"), ("FITMETHOD", "S4"), ("NPIXELS", "i8"), ("SPECTYPE", "S6"),
                    ("SUBTYPE", "S20"), ("NCOEFF", "i8"), ("DELTACHI2", "f8"))


@dataclasses.dataclass
class RedshiftCatalog:
    """Contents of a redrock-format file.

    Attributes
    ----------
    redshifts : astropy.table.Table
        REDSHIFTS, one row per target (string columns as ``str``).
    fibermap : astropy.table.Table or None
        Row-matched coadded fibermap.
    exp_fibermap : astropy.table.Table or None
        Per-exposure fibermap.
    tsnr2 : astropy.table.Table or None
        Row-matched TARGETID + TSNR2_* columns.
    header : dict
        PRIMARY keywords (RRVER, TEMNAMnn, SPGRP, ...).
    """

    redshifts: Table
    fibermap: Table | None = None
    exp_fibermap: Table | None = None
    tsnr2: Table | None = None
    header: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ZCatalog:
    """Contents of a zcatalog file: the ZCATALOG table, the stacked EXP_FIBERMAP and keywords."""

    zcatalog: Table
    exp_fibermap: Table | None = None
    header: dict = dataclasses.field(default_factory=dict)


def template_keywords(templates):
    """Return the TEMNAMnn/TEMVERnn/TEMFILnn keywords describing the templates used.

    Parameters
    ----------
    templates : list of (spectype, subtype, version, filename)
        ``subtype`` may be blank.

    Returns
    -------
    dict
        ``TEMNAMnn = 'SPECTYPE:::SUBTYPE'`` (or just SPECTYPE), ``TEMVERnn``, ``TEMFILnn``.
    """
    out = {}
    for i, (spectype, subtype, version, filename) in enumerate(templates):
        out[f"TEMNAM{i:02d}"] = f"{spectype}:::{subtype}" if subtype else str(spectype)
        out[f"TEMVER{i:02d}"] = str(version)
        out[f"TEMFIL{i:02d}"] = str(filename)
    return out


def _redshift_table(table, path):
    """Return REDSHIFTS with redrock's dtypes and column order (extra columns appended)."""
    missing = [name for name, _ in REDSHIFT_COLUMNS if name not in table.colnames and name != "FITMETHOD"]
    if missing:
        raise ValueError(f"cannot write {path}: REDSHIFTS lacks columns {missing}")
    out = Table()
    n = len(table)
    for name, dtype in REDSHIFT_COLUMNS:
        if name == "FITMETHOD" and name not in table.colnames:
            out[name] = np.full(n, b"PCA", dtype="S4")
            continue
        col = np.asarray(table[name])
        if dtype.startswith("S"):
            width = int(dtype[1:])
            text = col.astype(str) if col.dtype.kind != "S" else np.char.decode(col, "ascii")
            if n and max(len(s) for s in text) > width:
                raise ValueError(f"cannot write {path}: {name} values longer than {width} characters")
            out[name] = np.char.encode(text, "ascii").astype(dtype)
        elif name == "COEFF":
            out[name] = np.atleast_2d(col.astype(np.float64)).reshape(n, -1)
        else:
            out[name] = col.astype(dtype)
    for name in table.colnames:
        if name not in out.colnames:
            out[name] = table[name]
    return out


def _row_match_problem(table, redshifts, name):
    """Return why ``table`` is not row-matched to ``redshifts``, or None when it is (or is absent)."""
    if table is None:
        return None
    if len(table) != len(redshifts):
        return f"{name} has {len(table)} rows but REDSHIFTS {len(redshifts)}"
    if "TARGETID" in table.colnames and not np.array_equal(np.asarray(table["TARGETID"]),
                                                           np.asarray(redshifts["TARGETID"])):
        return f"{name} TARGETIDs are not row-matched to REDSHIFTS"
    return None


def write_redshifts(path, catalog):
    """Write a redrock-format redshift file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    catalog : RedshiftCatalog
        ``redshifts`` must hold TARGETID, Z, ZERR, ZWARN, CHI2, COEFF, NPIXELS,
        SPECTYPE, SUBTYPE, NCOEFF and DELTACHI2 (FITMETHOD defaults to ``PCA``);
        ``fibermap`` and ``tsnr2`` must be row-matched to it.  The header should
        carry RRVER and TEMNAMnn (see :func:`template_keywords`).

    Raises
    ------
    ValueError
        Missing columns, strings too long for their width, or tables not row-matched.
    """
    redshifts = _redshift_table(catalog.redshifts, path)
    for name, table in (("FIBERMAP", catalog.fibermap), ("TSNR2", catalog.tsnr2)):
        problem = _row_match_problem(table, redshifts, name)
        if problem:
            raise ValueError(f"cannot write {path}: {problem}")
    keywords = dict(catalog.header)
    keywords.setdefault("LONGSTRN", "OGIP 1.0")
    hdus = [fits.PrimaryHDU(header=build_header(keywords)), table_to_hdu(redshifts, "REDSHIFTS", keywords)]
    for name, table in (("FIBERMAP", catalog.fibermap), ("EXP_FIBERMAP", catalog.exp_fibermap),
                        ("TSNR2", catalog.tsnr2)):
        if table is not None:
            hdus.append(table_to_hdu(table, name))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_redshifts(path):
    """Read a redrock-format redshift file (ours or redrock's; old files with ZBEST too).

    Parameters
    ----------
    path : str

    Returns
    -------
    RedshiftCatalog

    Raises
    ------
    DataModelError
        Unreadable file, no REDSHIFTS (or ZBEST) HDU, missing TARGETID/Z columns, or
        FIBERMAP/TSNR2 not row-matched.
    """
    with open_fits(path) as hdus:
        header = fits_header_to_dict(hdus[0].header)
        header.pop("EXTNAME", None)
        name = "REDSHIFTS" if "REDSHIFTS" in hdus or "ZBEST" not in hdus else "ZBEST"
        redshifts = read_table(hdus, name, path)
        for col in ("TARGETID", "Z"):
            if col not in redshifts.colnames:
                raise DataModelError(path, f"{name} has no {col} column")
        fibermap = optional_table(hdus, "FIBERMAP", path)
        exp_fibermap = optional_table(hdus, "EXP_FIBERMAP", path)
        tsnr2 = optional_table(hdus, "TSNR2", path)
    redshifts.meta.clear()
    for name, table in (("FIBERMAP", fibermap), ("TSNR2", tsnr2)):
        problem = _row_match_problem(table, redshifts, name)
        if problem:
            raise DataModelError(path, problem)
    return RedshiftCatalog(redshifts, fibermap, exp_fibermap, tsnr2, header)


def write_zcatalog(path, zcat):
    """Write a zcatalog file (PRIMARY, ZCATALOG, EXP_FIBERMAP).

    Parameters
    ----------
    path : str
        Output file; written atomically.
    zcat : ZCatalog
    """
    # the keywords (SURVEY, PROGRAM...) in HDU0 and, as desispec's desi_zcatalog writes them, in ZCATALOG
    hdus = [fits.PrimaryHDU(header=build_header(zcat.header)),
            table_to_hdu(zcat.zcatalog, "ZCATALOG", zcat.header)]
    if zcat.exp_fibermap is not None:
        hdus.append(table_to_hdu(zcat.exp_fibermap, "EXP_FIBERMAP", {}))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_zcatalog(path):
    """Read a zcatalog file.

    Parameters
    ----------
    path : str

    Returns
    -------
    ZCatalog

    Raises
    ------
    DataModelError
        Unreadable file or no ZCATALOG HDU.
    """
    with open_fits(path) as hdus:
        header = fits_header_to_dict(hdus[0].header)
        header.pop("EXTNAME", None)
        zcatalog = read_table(hdus, "ZCATALOG", path)
        exp_fibermap = optional_table(hdus, "EXP_FIBERMAP", path)
    zcatalog.meta.clear()
    if exp_fibermap is not None:
        exp_fibermap.meta.clear()
    return ZCatalog(zcatalog, exp_fibermap, header)


def write_rrmodel(path, redshifts, waves, models, header=None):
    """Write best-fit models as redrock does (PRIMARY, REDSHIFTS, {B}_WAVELENGTH, {B}_MODEL).

    Parameters
    ----------
    path : str
        Output file; written atomically.
    redshifts : astropy.table.Table
        REDSHIFTS, row-matched to the models.
    waves : dict band -> ndarray, shape (npix,)
    models : dict band -> ndarray, shape (ntarget, npix)
    header : dict, optional
        PRIMARY keywords.
    """
    keywords = dict(header or {})
    hdus = [fits.PrimaryHDU(header=build_header(keywords)),
            table_to_hdu(_redshift_table(redshifts, path), "REDSHIFTS", keywords)]
    for band, wave in waves.items():
        b = band.upper()
        hdus.append(fits.ImageHDU(np.asarray(wave, dtype=np.float64), header=build_header(None, f"{b}_WAVELENGTH",
                                                                                       "Angstrom")))
        hdus.append(fits.ImageHDU(np.asarray(models[band], dtype=np.float32), header=build_header(None, f"{b}_MODEL")))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)
