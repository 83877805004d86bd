"""Raw exposures ``desi-{EXPID}.fits.fz`` (desi-datamodel.md §3).

Layout: an empty primary HDU, a compressed dummy ``SPEC`` HDU whose header holds
the exposure keywords, then one tile-compressed uint16 image per camera (EXTNAME
``B0`` ... ``Z9``) whose header carries the amplifier section keywords.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits

#: keywords read from the exposure (SPEC) header when present
EXPOSURE_KEYS = ("EXPID", "NIGHT", "OBSTYPE", "FLAVOR", "EXPTIME", "TILEID", "PROGRAM", "SURVEY",
                 "FAPRGRM", "DATE-OBS", "MJD-OBS", "AIRMASS", "TARGTRA", "TARGTDEC", "SKYRA",
                 "SKYDEC", "REQRA", "REQDEC", "OBSID", "FIBASSGN", "SEEING", "LAMPS")


def write_raw(path, exposure_header, cameras):
    """Write a raw exposure file.

    Parameters
    ----------
    path : str
        Output ``desi-{EXPID:08d}.fits.fz``; written atomically.
    exposure_header : dict
        Exposure keywords (EXPID, NIGHT, OBSTYPE, FLAVOR, EXPTIME, ...; EXPTIME required).
    cameras : dict of str to (ndarray, dict)
        Camera name (``b0``) -> (uint16 image [ny, nx] in ADU, camera header with
        the BIASSECx/DATASECx/CCDSECx/... keywords).
    """
    if "EXPTIME" not in exposure_header:
        raise ValueError("exposure_header needs EXPTIME")
    hdus = [fits.PrimaryHDU()]
    spec = fits.CompImageHDU(np.arange(10, dtype=np.int32).reshape(1, 10), name="SPEC")
    for key, value in exposure_header.items():
        spec.header[key] = value
    hdus.append(spec)
    for camera, (image, header) in cameras.items():
        image = np.asarray(image)
        if image.dtype != np.uint16:
            raise ValueError(f"camera {camera}: raw images are uint16, got {image.dtype}")
        # tiles of 64 full rows: lossless RICE like fpack, ~5x faster to write than 1-row tiles
        hdu = fits.CompImageHDU(image, name=camera.upper(), compression_type="RICE_1",
                                tile_shape=(min(64, image.shape[0]), image.shape[1]))
        for key, value in exposure_header.items():
            hdu.header[key] = value
        for key, value in header.items():
            hdu.header[key] = value
        hdu.header["CAMERA"] = camera.lower()
        hdus.append(hdu)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_raw_header(path):
    """Return the exposure keywords of a raw file as a dict (from the first header with EXPTIME)."""
    with open_fits(path) as hdus:
        for hdu in hdus:
            if "EXPTIME" in hdu.header:
                return fits_header_to_dict(hdu.header)
    raise DataModelError(path, "no HDU carries EXPTIME: not a raw exposure")


def raw_cameras(path):
    """Return the lower-case camera names present in a raw file, in file order."""
    with open_fits(path) as hdus:
        return [h.name.lower() for h in hdus
                if len(h.name) == 2 and h.name[0] in "BRZ" and h.name[1].isdigit()]


def read_raw_camera(path, camera):
    """Read one camera of a raw exposure.

    Parameters
    ----------
    path : str
    camera : str
        ``b0`` ... ``z9`` (case-insensitive).

    Returns
    -------
    image : ndarray of uint16, shape (ny, nx)
        Raw ADU including pre/overscan.
    header : dict
        Exposure keywords merged with the camera keywords (camera wins).

    Raises
    ------
    DataModelError
        If the file is unreadable, the camera HDU is missing or corrupt, or the
        amplifier section keywords are absent.
    """
    extname = camera.upper()
    with open_fits(path) as hdus:
        header = {}
        for hdu in hdus:
            if "EXPTIME" in hdu.header:
                header.update(fits_header_to_dict(hdu.header))
                break
        if extname not in [h.name for h in hdus]:
            raise DataModelError(path, f"camera {extname} is missing (has {[h.name for h in hdus]})")
        hdu = hdus[extname]
        try:
            data = np.asarray(hdu.data)
        except Exception as err:
            raise DataModelError(path, f"camera {extname} cannot be decompressed ({type(err).__name__}: {err})") from err
        if data.ndim != 2:
            raise DataModelError(path, f"camera {extname} image has {data.ndim} dimensions")
        header.update(fits_header_to_dict(hdu.header))
    amps = [a for a in "ABCD" if f"BIASSEC{a}" in header]
    if not amps:
        raise DataModelError(path, f"camera {extname} has no BIASSECx keywords")
    for a in amps:
        for key in (f"DATASEC{a}", f"CCDSEC{a}"):
            if key not in header:
                raise DataModelError(path, f"camera {extname} lacks {key}")
    header["CAMERA"] = camera.lower()
    return data.astype(np.uint16, copy=False), header


def parse_section(section):
    """Turn an IRAF section ``[x1:x2, y1:y2]`` (1-based, inclusive) into numpy slices.

    Returns
    -------
    (slice, slice)
        Row slice and column slice: ``image[rows, cols]``.
    """
    text = section.strip().strip("[]")
    try:
        xpart, ypart = text.split(",")
        x1, x2 = (int(v) for v in xpart.split(":"))
        y1, y2 = (int(v) for v in ypart.split(":"))
    except ValueError:
        raise ValueError(f"bad section string {section!r}") from None
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def format_section(rows, cols):
    """Inverse of :func:`parse_section`: numpy slices -> IRAF section string."""
    return f"[{cols.start + 1}:{cols.stop}, {rows.start + 1}:{rows.stop}]"
