"""``desired sky``: sky model of one science camera from its sky fibers.

Example::

    desired sky --infile frame-r0-00000012.fits --fiberflat fiberflatnight-r0-20261124.fits \\
        --outfile sky-r0-00000012.fits

The frame is flat-fielded with ``--fiberflat`` first.  Exit status: 0 on success, 1
when an input cannot be read or the camera has no usable sky fiber (nothing written).
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="extracted science frame")
    parser.add_argument("--fiberflat", required=True, help="fiberflat (or fiberflatnight) of the camera")
    parser.add_argument("--outfile", required=True, help="output sky file")
    parser.add_argument("--nsig", type=float, default=4.0, help="outlier threshold, sigma (default 4)")
    parser.add_argument("--no-extra-variance", action="store_true",
                        help="do not add the bright-line systematics term to the sky variance")
    parser.add_argument("--adjust-wavelength", action="store_true",
                        help="fit a small per-fiber wavelength shift on bright sky lines")
    parser.add_argument("--adjust-lsf", action="store_true",
                        help="fit a small per-fiber line-width change on bright sky lines")


def run(infile, fiberflat, outfile, nsig=4.0, add_variance=True, adjust_wavelength=False, adjust_lsf=False):
    """Flat-field one science frame, fit its sky and write the sky model.

    Parameters
    ----------
    infile : str
        Extracted science frame (electron/Angstrom, with RESOLUTION and FIBERMAP).
    fiberflat : str
        fiberflat or fiberflatnight file of the same camera.
    outfile : str
        Output sky file (header IN_FRAME, FIBERFLT name the inputs).
    nsig : float
    add_variance, adjust_wavelength, adjust_lsf : bool
        See :func:`desired.sky.compute_sky`.

    Raises
    ------
    desired.io.util.DataModelError
        Unreadable input.
    ValueError
        No usable sky fiber, or frame and fiberflat do not match (the message names the files).
    """
    from ..fiberflat import apply_fiberflat
    from ..io.fiberflat import read_fiberflat
    from ..io.frame import read_frame
    from ..io.sky import write_sky
    from ..sky import compute_sky

    frame = read_frame(infile)
    flat = read_fiberflat(fiberflat)
    try:
        sky = compute_sky(apply_fiberflat(frame, flat), nsig_clip=nsig, add_variance=add_variance,
                          adjust_wavelength=adjust_wavelength, adjust_lsf=adjust_lsf)
    except ValueError as err:
        raise ValueError(f"{infile}: {err}") from err
    sky.header.update(IN_FRAME=os.path.basename(infile), FIBERFLT=os.path.basename(fiberflat))
    write_sky(outfile, sky)
    log.info("wrote %s", outfile)


def main(args):
    """Compute the sky; return the exit status (:data:`desired.errors.EXIT_DATA_ERROR` for bad input data)."""
    from ..errors import EXIT_DATA_ERROR
    from ..io.util import DataModelError

    try:
        run(args.infile, args.fiberflat, args.outfile, nsig=args.nsig, add_variance=not args.no_extra_variance,
            adjust_wavelength=args.adjust_wavelength, adjust_lsf=args.adjust_lsf)
    except (DataModelError, ValueError) as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    return 0
