"""The redshift catalog of a production: every pixel's (or tile's) redshift file stacked.

One row per target per redshift file, as DESI's ``zpix-{survey}-{program}.fits``:
the REDSHIFTS columns, then the coadded FIBERMAP's columns, then TSNR2_*, then
SURVEY/PROGRAM/HEALPIX (or SPGRPVAL) of the file, and ZCAT_NSPEC (rows of the same
TARGETID) with ZCAT_PRIMARY (the one row per TARGETID to use: ZWARN == 0 first,
then the largest TSNR2_LRG when present, else the largest DELTACHI2).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table, vstack

from ..io.redshifts import ZCatalog


def _rows(catalog):
    """One file's rows: REDSHIFTS + FIBERMAP + TSNR2 columns + the file's grouping keywords."""
    table = Table(catalog.redshifts, copy=True)
    for extra in (catalog.fibermap, catalog.tsnr2):
        if extra is None:
            continue
        for name in extra.colnames:
            if name not in table.colnames:
                table[name] = extra[name]
    header = catalog.header
    n = len(table)
    table["SURVEY"] = np.full(n, str(header.get("SURVEY", "")), dtype="U7")
    table["PROGRAM"] = np.full(n, str(header.get("PROGRAM", "")), dtype="U6")
    if "HPXPIXEL" in header or header.get("SPGRP") == "healpix":
        table["HEALPIX"] = np.full(n, int(header.get("HPXPIXEL", header.get("SPGRPVAL", -1))), dtype=np.int32)
    else:
        table["SPGRPVAL"] = np.full(n, int(header.get("SPGRPVAL", -1)), dtype=np.int32)
    return table


def primary_rows(table):
    """ZCAT_NSPEC and ZCAT_PRIMARY of a stacked catalog (see module doc)."""
    n = len(table)
    tid = np.asarray(table["TARGETID"])
    good = np.asarray(table["ZWARN"]) == 0
    score = (np.asarray(table["TSNR2_LRG"], dtype=float) if "TSNR2_LRG" in table.colnames
             else np.asarray(table["DELTACHI2"], dtype=float))
    order = np.lexsort((-np.nan_to_num(score, nan=-np.inf), ~good, tid))
    first = np.ones(n, dtype=bool)
    first[1:] = tid[order][1:] != tid[order][:-1]
    primary = np.zeros(n, dtype=bool)
    primary[order[first]] = True
    _, inverse, counts = np.unique(tid, return_inverse=True, return_counts=True)
    return counts[inverse].astype(np.int16), primary


def build_zcatalog(catalogs, header=None):
    """Stack redshift files into a catalog.

    Parameters
    ----------
    catalogs : list of desired.io.redshifts.RedshiftCatalog
    header : dict, optional
        Keywords of the catalog (SURVEY, PROGRAM, ...).

    Returns
    -------
    desired.io.redshifts.ZCatalog

    Raises
    ------
    ValueError
        No input catalog.
    """
    if not catalogs:
        raise ValueError("no redshift file to stack")
    table = vstack([_rows(c) for c in catalogs], metadata_conflicts="silent")
    table["ZCAT_NSPEC"], table["ZCAT_PRIMARY"] = primary_rows(table)
    exp = [c.exp_fibermap for c in catalogs if c.exp_fibermap is not None]
    exp_fibermap = vstack(exp, metadata_conflicts="silent") if exp else None
    table.meta.clear()
    return ZCatalog(table, exp_fibermap, dict(header or {}))
