"""``desired fluxcalib``: flux calibration of one camera and exposure from the fitted standard stars.

Example::

    desired fluxcalib --infile frame-b0-00000012.fits --fiberflat fiberflatnight-b0-20261124.fits \\
        --sky sky-b0-00000012.fits --models stdstars-0-00000012.fits \\
        --nominal calib/fluxcalib-nominal-b0.fits --outfile fluxcalib-b0-00000012.fits

With fewer than ``--min-std`` good standards the nominal calibration (scaled) is
written instead, flagged (header CALMODE/FLUXFALL, warning in the log).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="frame file")
    parser.add_argument("--fiberflat", default=None, help="fiberflat (or fiberflatnight) file")
    parser.add_argument("--sky", default=None, help="sky file")
    parser.add_argument("--models", required=True, help="stdstars file of the spectrograph")
    parser.add_argument("--nominal", default=None, help="nominal calibration (calib tree) for the fallback")
    parser.add_argument("--outfile", required=True, help="output fluxcalib file")
    parser.add_argument("--min-std", type=int, default=3, help="fewest good standards before falling back")
    parser.add_argument("--knot-spacing", type=float, default=10.0, help="calibration spline knot spacing, A")
    parser.add_argument("--penalty", type=float, default=0.2, help="calibration spline curvature penalty")
    parser.add_argument("--telluric-spacing", type=float, default=1.0,
                        help="spline knot spacing in the telluric bands, A (0: --knot-spacing everywhere)")
    parser.add_argument("--max-scale-dev", type=float, default=0.3, help="clip stars whose scale differs more")
    parser.add_argument("--max-shape-rms", type=float, default=0.03, help="clip stars whose shape rms exceeds")


def run(infile, models, outfile, fiberflat=None, sky=None, nominal=None, min_std=3, knot_spacing=10.0,
        penalty=0.2, max_scale_dev=0.3, max_shape_rms=0.03, telluric_spacing=1.0):
    """Read, calibrate and write; returns the FluxCalib.

    Raises
    ------
    ValueError
        Too few standards and no nominal calibration, or inconsistent inputs.
    """
    from ..fluxcalib import compute_flux_calibration
    from ..io.fluxcalib import read_flux_calibration, write_flux_calibration
    from ..io.stdstars import read_stdstar_models
    from .calibrate import read_corrected_frame
    frame = read_corrected_frame(infile, fiberflat, sky)
    stars = read_stdstar_models(models)
    nom = read_flux_calibration(nominal) if nominal else None
    try:
        calib = compute_flux_calibration(frame, stars, nominal=nom, min_std=min_std, knot_spacing=knot_spacing,
                                         penalty=penalty, max_scale_dev=max_scale_dev, max_shape_rms=max_shape_rms,
                                         telluric_spacing=telluric_spacing)
    except ValueError as err:
        raise ValueError(f"{infile}: {err}") from None
    write_flux_calibration(outfile, calib)
    log.info("wrote %s (%s, %d of %d standards used)", outfile, calib.header["CALMODE"], calib.header["NSTDUSED"],
             calib.header["NSTDSTAR"])
    return calib


def main(args):
    """Compute the calibration; return the exit status."""
    try:
        run(args.infile, args.models, args.outfile, fiberflat=args.fiberflat, sky=args.sky, nominal=args.nominal,
            min_std=args.min_std, knot_spacing=args.knot_spacing, penalty=args.penalty,
            max_scale_dev=args.max_scale_dev, max_shape_rms=args.max_shape_rms,
            telluric_spacing=args.telluric_spacing)
    except ValueError as err:
        log.error("%s", err)
        return 1
    return 0
