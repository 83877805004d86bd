"""``desired cframe``: calibrated frame = (frame / fiberflat - sky) / flux calibration.

Example::

    desired cframe --infile frame-b0-00000012.fits --fiberflat fiberflatnight-b0-20261124.fits \\
        --sky sky-b0-00000012.fits --calib fluxcalib-b0-00000012.fits --outfile cframe-b0-00000012.fits

Flux in 1e-17 erg/s/cm²/Å (DESI's point-source convention), ivar and mask propagated.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="frame file")
    parser.add_argument("--fiberflat", default=None, help="fiberflat (or fiberflatnight) file")
    parser.add_argument("--sky", default=None, help="sky file")
    parser.add_argument("--calib", required=True, help="fluxcalib file")
    parser.add_argument("--outfile", required=True, help="output cframe file")


def run(infile, calib, outfile, fiberflat=None, sky=None):
    """Read, correct, calibrate and write; returns the cframe (desired.frame.Frame)."""
    from ..fluxcalib import apply_flux_calibration
    from ..io.fluxcalib import read_flux_calibration
    from ..io.frame import CFRAME_UNITS, write_frame
    from .calibrate import read_corrected_frame
    frame = read_corrected_frame(infile, fiberflat, sky)
    try:
        cframe = apply_flux_calibration(frame, read_flux_calibration(calib))
    except ValueError as err:
        raise ValueError(f"{infile}: {err}") from None
    cframe.scores = stage_scores(frame, cframe, skysub=sky is not None)
    write_frame(outfile, cframe, units=CFRAME_UNITS)
    if cframe.header.get("FLUXFALL"):
        log.warning("%s: flux calibration is the nominal fallback (%s)", outfile, cframe.header.get("CALMODE"))
    log.info("wrote %s", outfile)
    return cframe


def stage_scores(corrected, cframe, skysub=True):
    """The cframe's SCORES table: the frame's own scores, then SKYSUB (the corrected frame, in
    electrons) and CALIB (the cframe) count scores of :func:`desired.scores.frame_scores`, as
    desispec's ``desi_proc`` writes them (its grouping needs the HDU)."""
    from astropy.table import Table
    from ..scores import frame_scores
    band = (cframe.camera or "?")[0]
    columns = {} if corrected.scores is None else {n: np.asarray(corrected.scores[n]) for n in corrected.scores.colnames}
    if band in "brz":
        if skysub:
            columns.update(frame_scores(corrected.wave, corrected.flux, corrected.ivar, band, "SKYSUB"))
        columns.update(frame_scores(cframe.wave, cframe.flux, cframe.ivar, band, "CALIB"))
    return Table(columns) if columns else None


def main(args):
    """Calibrate one frame; return the exit status."""
    try:
        run(args.infile, args.calib, args.outfile, fiberflat=args.fiberflat, sky=args.sky)
    except ValueError as err:
        log.error("%s", err)
        return 1
    return 0
