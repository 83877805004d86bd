"""``desired fiberflat``: fiber flat of one camera from an extracted flat exposure.

Example::

    desired fiberflat --infile frame-r0-00000002.fits --outfile fiberflat-r0-00000002.fits

Exit status: 0 on success, 1 when the frame cannot be read or has nothing to fit (nothing written).
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="extracted flat frame")
    parser.add_argument("--outfile", required=True, help="output fiberflat file")
    parser.add_argument("--nsig", type=float, default=10.0, help="outlier threshold, sigma (default 10)")
    parser.add_argument("--smoothing-res", type=float, default=5.0,
                        help="spline knot spacing of the smooth flat, Angstrom (default 5)")


def run(infile, outfile, nsig=10.0, smoothing_res=5.0):
    """Compute and write the fiber flat of one flat frame.

    Parameters
    ----------
    infile : str
        Extracted flat frame (electron/Angstrom, with RESOLUTION).
    outfile : str
        Output fiberflat file (header IN_FRAME names the input).
    nsig, smoothing_res : float
        See :func:`desired.fiberflat.compute_fiberflat`.

    Raises
    ------
    desired.io.util.DataModelError
        Unreadable frame.
    ValueError
        Nothing to fit (the message names the file).
    """
    from ..fiberflat import compute_fiberflat
    from ..io.fiberflat import write_fiberflat
    from ..io.frame import read_frame

    frame = read_frame(infile)
    if str(frame.header.get("OBSTYPE", "FLAT")).upper() != "FLAT":
        log.warning("%s: OBSTYPE is %s, not FLAT", infile, frame.header.get("OBSTYPE"))
    try:
        flat = compute_fiberflat(frame, nsig_clip=nsig, smoothing_res=smoothing_res)
    except ValueError as err:
        raise ValueError(f"{infile}: {err}") from err
    flat.header["IN_FRAME"] = os.path.basename(infile)
    write_fiberflat(outfile, flat)
    log.info("wrote %s", outfile)


def main(args):
    """Compute the fiber flat; return the exit status."""
    from ..io.util import DataModelError

    try:
        run(args.infile, args.outfile, nsig=args.nsig, smoothing_res=args.smoothing_res)
    except (DataModelError, ValueError) as err:
        log.error("%s", err)
        return 1
    return 0
