"""preproc files (desi-datamodel.md §5).

Layout: HDU0 ``IMAGE`` (float32 [ny, nx], electrons), ``IVAR`` (float32, 1/e^2),
``MASK`` (int16 ccdmask bits, tile-compressed), ``READNOISE`` (float32, electrons)
and an optional ``FIBERMAP`` table (the petal's fibers).
"""
from __future__ import annotations

import logging

import numpy as np
from astropy.io import fits

from ..image import Image
from .fibermap import build_header, optional_table, table_to_hdu
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array

log = logging.getLogger(__name__)

IMAGE_UNITS = "electron"
IVAR_UNITS = "electron**-2"


def write_image(path, image, fibermap=None):
    """Write a preproc file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    image : desired.image.Image
        Must have a camera (``image.camera`` or ``header['CAMERA']``): desispec's
        reader requires the CAMERA keyword.
    fibermap : astropy.table.Table, optional
        Fibermap rows of this camera's petal; ``image.fibermap`` when omitted and present.

    Raises
    ------
    ValueError
        If the image has no camera or mask bits that do not fit in int16.
    """
    if not image.camera:
        raise ValueError(f"cannot write {path}: the image has no CAMERA")
    if fibermap is None:
        fibermap = getattr(image, "fibermap", None)
    mask = np.asarray(image.mask)
    if mask.size and (mask.min() < np.iinfo(np.int16).min or mask.max() > np.iinfo(np.int16).max):
        raise ValueError(f"cannot write {path}: mask values do not fit in int16")
    keywords = dict(image.header)
    keywords["CAMERA"] = image.camera
    readnoise = np.asarray(image.readnoise)
    hdus = [fits.PrimaryHDU(image.pix.astype(np.float32), header=build_header(keywords, "IMAGE", IMAGE_UNITS)),
            fits.ImageHDU(image.ivar.astype(np.float32), header=build_header(None, "IVAR", IVAR_UNITS)),
            fits.CompImageHDU(mask.astype(np.int16), name="MASK", compression_type="RICE_1"),
            fits.ImageHDU(readnoise.astype(np.float32), header=build_header(None, "READNOISE", IMAGE_UNITS))]
    if fibermap is not None:
        hdus.append(table_to_hdu(fibermap, "FIBERMAP"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_image(path):
    """Read a preproc file (ours or desispec's, ``.fits`` or ``.fits.gz``).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.image.Image
        float64 pixels/ivar/readnoise, int32 mask; HDU0 keywords in ``image.header``.
        The FIBERMAP HDU, when present, is attached as ``image.fibermap`` (else None).

    Raises
    ------
    DataModelError
        Unreadable file, missing IMAGE/IVAR/MASK HDU, no CAMERA keyword, no READNOISE
        HDU and no RDNOISE keyword, or HDUs of different shapes.
    """
    with open_fits(path) as hdus:
        pix = read_array(hdus, "IMAGE", path, ndim=2)
        header = fits_header_to_dict(hdus["IMAGE"].header)
        for key in ("EXTNAME", "BUNIT"):
            header.pop(key, None)
        if "CAMERA" not in header:
            raise DataModelError(path, "IMAGE header has no CAMERA keyword")
        ivar = read_array(hdus, "IVAR", path, shape=pix.shape)
        mask = read_array(hdus, "MASK", path, shape=pix.shape)
        if "READNOISE" in hdus:
            readnoise = read_array(hdus, "READNOISE", path, shape=pix.shape)
        elif "RDNOISE" in header:
            readnoise = float(header["RDNOISE"])
        else:
            raise DataModelError(path, "no READNOISE HDU and no RDNOISE keyword")
        fibermap = optional_table(hdus, "FIBERMAP", path)
    image = Image(pix, ivar, mask=mask, readnoise=readnoise, header=header, camera=str(header["CAMERA"]))
    image.fibermap = fibermap
    return image
