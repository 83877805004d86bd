"""``desired traceshift``: measure trace shifts of a flat/science exposure and write its shifted PSF.

Example::

    desired traceshift --image preproc-r0-00000012.fits --psf psfnight-r0-20261124.fits \\
        --outfile shifted-psf-r0-00000012.fits --lines-from sky

Exit status: 0 on success, 1 when the inputs cannot be read (nothing written).
"""
from __future__ import annotations

import logging

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--image", required=True, help="flat or science preproc image")
    parser.add_argument("--psf", required=True, help="reference PSF (arc or psfnight)")
    parser.add_argument("--outfile", required=True, help="output shifted PSF")
    parser.add_argument("--lines-from", default="sky", choices=["sky", "continuum"],
                        help="y shifts from sky lines (default) or the continuum edges")
    parser.add_argument("--sky-template", default=None,
                        help="two-column night-sky template (vacuum Angstrom, flux), e.g. the calibration "
                             "tree's spec-sky.dat: y shifts of science frames from fitting it to every fiber "
                             "instead of the built-in sky-line list")
    parser.add_argument("--edges", type=float, nargs=2, default=None, metavar=("WMIN", "WMAX"),
                        help="continuum start/end wavelengths (Angstrom) for --lines-from continuum")


def run(image, psf, outfile, sky_template=None, lines_from="sky", edges=None):
    """Measure the trace shifts of one exposure's camera and write its shifted PSF.

    Parameters
    ----------
    image : str
        Flat or science preproc file.
    psf : str
        Reference PSF file (psfnight or an arc PSF).
    outfile : str
        Shifted PSF to write.
    sky_template : str, optional
        Night-sky template file (see :func:`desired.io.calib.read_sky_template`);
        represented on the camera's default extraction grid.
    lines_from : {'sky', 'continuum'}
    edges : (float, float), optional
        Continuum start/end wavelengths for ``lines_from='continuum'``.

    Raises
    ------
    desired.io.util.DataModelError
        If an input cannot be read (nothing is written).
    """
    from ..extract import DEFAULT_WAVELENGTHS
    from ..io.calib import read_sky_template
    from ..io.image import read_image
    from ..io.psf import read_psf, write_psf
    from ..traceshift import compute_trace_shifts

    img = read_image(image)
    ref = read_psf(psf)
    template = read_sky_template(sky_template) if sky_template else None
    band = (img.camera or "")[:1].lower()
    grid = (DEFAULT_WAVELENGTHS[band][0], DEFAULT_WAVELENGTHS[band][2]) if band in DEFAULT_WAVELENGTHS else None
    shifted, _, _ = compute_trace_shifts(img, ref, lines_from=lines_from, sky_template=template,
                                         template_grid=grid, edge_wave=tuple(edges) if edges else None)
    for key in ("EXPID", "NIGHT"):
        if key in img.header:
            shifted.meta[key] = img.header[key]
    write_psf(outfile, shifted)
    log.info("wrote %s: mean shift x %.3f y %.3f px (%s)", outfile, shifted.meta["TRSHIFTX"],
             shifted.meta["TRSHIFTY"], shifted.meta["TRLINES"])


def main(args):
    """Measure the shifts and write the PSF; return the exit status."""
    from ..io.util import DataModelError

    try:
        run(args.image, args.psf, args.outfile, sky_template=args.sky_template, lines_from=args.lines_from,
            edges=args.edges)
    except DataModelError as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    return 0
