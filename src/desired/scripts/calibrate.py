"""Shared helpers of the stdstars, fluxcalib and cframe steps: read a frame and apply fiberflat and sky."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def read_corrected_frame(frame_path, fiberflat_path=None, sky_path=None):
    """Read a frame and return it flat-fielded and sky-subtracted (each step only when its file is given).

    Parameters
    ----------
    frame_path : str
    fiberflat_path, sky_path : str, optional
        fiberflat (or fiberflatnight) and sky files of the same camera.

    Returns
    -------
    desired.frame.Frame
        electron/Angstrom; a frame without resolution data is an error.
    """
    from ..io.frame import read_frame
    frame = read_frame(frame_path)
    if frame.resolution_data is None:
        raise ValueError(f"{frame_path}: frame has no RESOLUTION HDU")
    if fiberflat_path:
        from ..fiberflat import apply_fiberflat
        from ..io.fiberflat import read_fiberflat
        frame = apply_fiberflat(frame, read_fiberflat(fiberflat_path))
    if sky_path:
        from ..io.sky import read_sky
        from ..sky import subtract_sky
        frame = subtract_sky(frame, read_sky(sky_path))
    return frame
