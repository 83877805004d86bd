"""``desired traceshift``: measure trace shifts of a flat/science exposure and write its shifted PSF.

Example::

    desired traceshift --image preproc-r0-00000012.fits --psf psfnight-r0-20261124.fits \\
        --outfile shifted-psf-r0-00000012.fits --lines-from sky

Exit status: 0 on success, 1 when the inputs cannot be read (nothing written).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--image", required=True, help="flat or science preproc image")
    parser.add_argument("--psf", required=True, help="reference PSF (arc or psfnight)")
    parser.add_argument("--outfile", required=True, help="output shifted PSF")
    parser.add_argument("--lines-from", default="sky", choices=["sky", "continuum"],
                        help="y shifts from sky lines (default) or the continuum edges")
    parser.add_argument("--edges", type=float, nargs=2, default=None, metavar=("WMIN", "WMAX"),
                        help="continuum start/end wavelengths (Angstrom) for --lines-from continuum")


def main(args):
    """Measure the shifts and write the PSF; return the exit status."""
    from ..io.image import read_image
    from ..io.psf import read_psf, write_psf
    from ..io.util import DataModelError
    from ..traceshift import compute_trace_shifts

    try:
        image = read_image(args.image)
        psf = read_psf(args.psf)
    except DataModelError as err:
        log.error("%s", err)
        return 1
    shifted, xmodel, ymodel = compute_trace_shifts(image, psf, lines_from=args.lines_from,
                                                   edge_wave=tuple(args.edges) if args.edges else None)
    for key in ("EXPID", "NIGHT"):
        if key in image.header:
            shifted.meta[key] = image.header[key]
    write_psf(args.outfile, shifted)
    log.info("wrote %s: mean shift x %.3f y %.3f px", args.outfile, shifted.meta["TRSHIFTX"],
             shifted.meta["TRSHIFTY"])
    return 0
