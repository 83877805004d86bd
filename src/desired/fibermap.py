"""The per-exposure fibermap table: DESI's canonical columns and dtypes.

A fibermap has one row per fiber (desi-datamodel.md §4).  :func:`empty_fibermap`
returns a table with every canonical column of the main survey, filled with the
values DESI uses for an unassigned fiber, so that producers (the simulator, the
fibermap assembly step) only fill the columns they know and every product
carries the same schema.  Reading and writing is done by :mod:`desired.io.fibermap`.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

#: number of fibers per spectrograph (petal)
FIBERS_PER_PETAL = 500

#: (column, numpy dtype, unit) in DESI's order for the main survey
FIBERMAP_COLUMNS = [
    ("TARGETID", "i8", None),
    ("PETAL_LOC", "i2", None),
    ("DEVICE_LOC", "i4", None),
    ("LOCATION", "i8", None),
    ("FIBER", "i4", None),
    ("FIBERSTATUS", "i4", None),
    ("TARGET_RA", "f8", "deg"),
    ("TARGET_DEC", "f8", "deg"),
    ("PMRA", "f4", "mas/yr"),
    ("PMDEC", "f4", "mas/yr"),
    ("REF_EPOCH", "f4", "yr"),
    ("LAMBDA_REF", "f4", "Angstrom"),
    ("FA_TARGET", "i8", None),
    ("FA_TYPE", "u1", None),
    ("OBJTYPE", "U3", None),
    ("FIBERASSIGN_X", "f4", "mm"),
    ("FIBERASSIGN_Y", "f4", "mm"),
    ("PRIORITY", "i4", None),
    ("SUBPRIORITY", "f8", None),
    ("OBSCONDITIONS", "i4", None),
    ("RELEASE", "i2", None),
    ("BRICKNAME", "U8", None),
    ("BRICKID", "i4", None),
    ("BRICK_OBJID", "i4", None),
    ("MORPHTYPE", "U4", None),
    ("EBV", "f4", "mag"),
    ("FLUX_G", "f4", "nanomaggy"),
    ("FLUX_R", "f4", "nanomaggy"),
    ("FLUX_Z", "f4", "nanomaggy"),
    ("FLUX_W1", "f4", "nanomaggy"),
    ("FLUX_W2", "f4", "nanomaggy"),
    ("FLUX_IVAR_G", "f4", "nanomaggy^-2"),
    ("FLUX_IVAR_R", "f4", "nanomaggy^-2"),
    ("FLUX_IVAR_Z", "f4", "nanomaggy^-2"),
    ("FLUX_IVAR_W1", "f4", "nanomaggy^-2"),
    ("FLUX_IVAR_W2", "f4", "nanomaggy^-2"),
    ("FIBERFLUX_G", "f4", "nanomaggy"),
    ("FIBERFLUX_R", "f4", "nanomaggy"),
    ("FIBERFLUX_Z", "f4", "nanomaggy"),
    ("FIBERTOTFLUX_G", "f4", "nanomaggy"),
    ("FIBERTOTFLUX_R", "f4", "nanomaggy"),
    ("FIBERTOTFLUX_Z", "f4", "nanomaggy"),
    ("MASKBITS", "i2", None),
    ("SERSIC", "f4", None),
    ("SHAPE_R", "f4", "arcsec"),
    ("SHAPE_E1", "f4", None),
    ("SHAPE_E2", "f4", None),
    ("REF_ID", "i8", None),
    ("REF_CAT", "U2", None),
    ("GAIA_PHOT_G_MEAN_MAG", "f4", "mag"),
    ("GAIA_PHOT_BP_MEAN_MAG", "f4", "mag"),
    ("GAIA_PHOT_RP_MEAN_MAG", "f4", "mag"),
    ("PARALLAX", "f4", "mas"),
    ("PHOTSYS", "U1", None),
    ("PRIORITY_INIT", "i8", None),
    ("NUMOBS_INIT", "i8", None),
    ("DESI_TARGET", "i8", None),
    ("BGS_TARGET", "i8", None),
    ("MWS_TARGET", "i8", None),
    ("SCND_TARGET", "i8", None),
    ("PLATE_RA", "f8", "deg"),
    ("PLATE_DEC", "f8", "deg"),
    ("NUM_ITER", "i8", None),
    ("FIBER_X", "f8", "mm"),
    ("FIBER_Y", "f8", "mm"),
    ("DELTA_X", "f8", "mm"),
    ("DELTA_Y", "f8", "mm"),
    ("FIBER_RA", "f8", "deg"),
    ("FIBER_DEC", "f8", "deg"),
    ("EXPTIME", "f8", "s"),
]


def fibermap_dtype():
    """Return the numpy structured dtype of one fibermap row."""
    return np.dtype([(name, dtype) for name, dtype, _ in FIBERMAP_COLUMNS])


def empty_fibermap(nfiber, fibermin=0):
    """Return a fibermap of ``nfiber`` unassigned fibers.

    Parameters
    ----------
    nfiber : int
        Number of rows.
    fibermin : int
        Absolute number of the first fiber; rows get consecutive fibers
        ``fibermin ... fibermin + nfiber - 1``.

    Returns
    -------
    astropy.table.Table
        Every column of :data:`FIBERMAP_COLUMNS` with its canonical dtype and unit.
        FIBER, PETAL_LOC (``FIBER // 500``), DEVICE_LOC (the fiber's index in its
        petal, a stand-in for the positioner id), LOCATION (``1000 PETAL_LOC +
        DEVICE_LOC``) are filled; OBJTYPE is ``'NON'``, TARGETID a negative
        placeholder unique per fiber, string columns empty, numbers zero.
    """
    nfiber = int(nfiber)
    if nfiber < 0:
        raise ValueError(f"nfiber must be >= 0, got {nfiber}")
    fiber = np.arange(fibermin, fibermin + nfiber, dtype=np.int64)
    table = Table()
    for name, dtype, unit in FIBERMAP_COLUMNS:
        table[name] = np.zeros(nfiber, dtype=dtype)
        if unit is not None:
            table[name].unit = unit
    table["FIBER"] = fiber.astype("i4")
    table["PETAL_LOC"] = (fiber // FIBERS_PER_PETAL).astype("i2")
    table["DEVICE_LOC"] = (fiber % FIBERS_PER_PETAL).astype("i4")
    table["LOCATION"] = 1000 * table["PETAL_LOC"].astype("i8") + table["DEVICE_LOC"]
    table["OBJTYPE"] = np.full(nfiber, "NON", dtype="U3")
    # DESI's convention for unassigned positioners: negative TARGETID unique per location
    table["TARGETID"] = -(1000000 + table["LOCATION"])
    table["PHOTSYS"] = np.full(nfiber, "", dtype="U1")
    return table
