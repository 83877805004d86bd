"""frame, sframe, fframe and cframe files (desi-datamodel.md §7 and §12).

Layout: HDU0 ``FLUX`` (float32 [nspec, nwave]), ``IVAR`` (float32), ``MASK`` (int32
specmask), ``WAVELENGTH`` (float64 [nwave], Angstrom), ``RESOLUTION`` (float32
[nspec, ndiag, nwave]), then optional ``FIBERMAP``, ``CHI2PIX`` and ``SCORES`` tables.
"""
from __future__ import annotations

import logging

import numpy as np
from astropy.io import fits

from ..frame import Frame
from .fibermap import build_header, optional_table, table_to_hdu
from .util import DataModelError, atomic_path, fits_header_to_dict, open_fits, read_array

log = logging.getLogger(__name__)

#: BUNIT of frame/sframe/fframe flux (extracted electrons)
FRAME_UNITS = "electron/Angstrom"
#: BUNIT of cframe flux
CFRAME_UNITS = "10**-17 erg/(s cm2 Angstrom)"

_IVAR_UNITS = {FRAME_UNITS: "Angstrom2/electron2",
               CFRAME_UNITS: "10**+34 (s2 cm4 Angstrom2) / erg2"}

_FRAME_STRUCTURAL = {"FIBERMIN", "NSPEC"}


def ivar_units(units):
    """Return the BUNIT of the inverse variance of a quantity in ``units``."""
    return _IVAR_UNITS.get(units, f"1/({units})**2" if units else None)


def write_frame(path, frame, units=None):
    """Write a frame-like product (frame, sframe, fframe or cframe).

    Parameters
    ----------
    path : str
        Output file; written atomically.
    frame : desired.frame.Frame
    units : str, optional
        BUNIT of FLUX: :data:`FRAME_UNITS` (default) or :data:`CFRAME_UNITS` for a
        cframe.  ``frame.header['BUNIT']`` is used when omitted.

    Notes
    -----
    FIBERMIN, NSPEC and (when the camera is known and the header lacks it) SPECGRPH
    are added so that ``desispec.io.read_frame`` finds the fiber numbers even
    without a FIBERMAP.
    """
    units = units or frame.header.get("BUNIT") or FRAME_UNITS
    keywords = dict(frame.header)
    keywords["FIBERMIN"] = int(frame.fibers.min()) if frame.nspec else 0
    keywords["NSPEC"] = frame.nspec
    if frame.camera and "SPECGRPH" not in keywords and frame.camera[-1:].isdigit():
        keywords["SPECGRPH"] = int(frame.camera[-1])
    hdus = [fits.PrimaryHDU(frame.flux.astype(np.float32), header=build_header(keywords, "FLUX", units)),
            fits.ImageHDU(frame.ivar.astype(np.float32), header=build_header(None, "IVAR", ivar_units(units))),
            fits.ImageHDU(frame.mask.astype(np.int32), header=build_header(None, "MASK")),
            fits.ImageHDU(frame.wave.astype(np.float64), header=build_header(None, "WAVELENGTH", "Angstrom"))]
    if frame.resolution_data is not None:
        hdus.append(fits.ImageHDU(frame.resolution_data.astype(np.float32),
                                  header=build_header({"NDIAG": frame.resolution_data.shape[1]}, "RESOLUTION")))
    if frame.fibermap is not None:
        hdus.append(table_to_hdu(frame.fibermap, "FIBERMAP"))
    if frame.chi2pix is not None:
        hdus.append(fits.ImageHDU(frame.chi2pix.astype(np.float32), header=build_header(None, "CHI2PIX")))
    if frame.scores is not None:
        hdus.append(table_to_hdu(frame.scores, "SCORES"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def _fiber_numbers(path, header, fibermap, nspec):
    """Fiber numbers the way desispec finds them: FIBERMAP.FIBER, SPECGRPH, CAMERA, FIBERMIN."""
    if fibermap is not None:
        if "FIBER" not in fibermap.colnames:
            raise DataModelError(path, "FIBERMAP HDU has no FIBER column")
        if len(fibermap) != nspec:
            raise DataModelError(path, f"FIBERMAP has {len(fibermap)} rows but FLUX has {nspec} spectra")
        return np.asarray(fibermap["FIBER"], dtype=np.int64)
    if "FIBERMIN" in header:
        return int(header["FIBERMIN"]) + np.arange(nspec)
    if "SPECGRPH" in header:
        return 500 * int(header["SPECGRPH"]) + np.arange(nspec)
    camera = str(header.get("CAMERA", ""))
    if camera[-1:].isdigit():
        return 500 * int(camera[-1]) + np.arange(nspec)
    raise DataModelError(path, "cannot determine fiber numbers: no FIBERMAP, FIBERMIN, SPECGRPH or CAMERA")


def read_frame(path):
    """Read a frame, sframe, fframe or cframe file (also ``.fits.gz`` files written by desispec).

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.frame.Frame
        float64 arrays; header keywords of HDU0 (BUNIT included) in ``frame.header``.
        MASK defaults to zeros and RESOLUTION/CHI2PIX/FIBERMAP/SCORES to None when absent.

    Raises
    ------
    DataModelError
        Unreadable file, missing FLUX/IVAR/WAVELENGTH, or arrays of inconsistent shapes.
    """
    with open_fits(path) as hdus:
        flux = read_array(hdus, "FLUX", path, ndim=2)
        nspec, nwave = flux.shape
        header = fits_header_to_dict(hdus["FLUX"].header)
        header.pop("EXTNAME", None)
        ivar = read_array(hdus, "IVAR", path, shape=(nspec, nwave))
        wave = read_array(hdus, "WAVELENGTH", path, ndim=1)
        if wave.size != nwave:
            raise DataModelError(path, f"WAVELENGTH has {wave.size} entries but FLUX has {nwave} columns")
        mask = read_array(hdus, "MASK", path, shape=(nspec, nwave)) if "MASK" in hdus else None
        resolution = None
        if "RESOLUTION" in hdus:
            resolution = read_array(hdus, "RESOLUTION", path, shape=(nspec, None, nwave))
        else:
            log.warning("%s has no RESOLUTION HDU", path)
        chi2pix = read_array(hdus, "CHI2PIX", path, shape=(nspec, nwave)) if "CHI2PIX" in hdus else None
        fibermap = optional_table(hdus, "FIBERMAP", path)
        scores = optional_table(hdus, "SCORES", path)
        if scores is not None and len(scores) != nspec:
            raise DataModelError(path, f"SCORES has {len(scores)} rows but FLUX has {nspec} spectra")
        fibers = _fiber_numbers(path, header, fibermap, nspec)
    for key in _FRAME_STRUCTURAL:
        header.pop(key, None)
    header["FIBERMIN"] = int(fibers.min()) if nspec else 0
    return Frame(wave, flux, ivar, mask=mask, resolution_data=resolution, fibermap=fibermap,
                 chi2pix=chi2pix, header=header, fibers=fibers, scores=scores)
