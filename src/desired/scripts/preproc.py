"""``desired preproc``: one camera of a raw exposure -> preproc file.

Example::

    desired preproc --infile raw/20261124/00000012/desi-00000012.fits.fz --camera b0 \\
        --calib calib/ccd-b0.yaml --outfile redux/preproc/20261124/00000012/preproc-b0-00000012.fits

Exit status: 0 on success, 65 (data error) when the camera cannot be processed (missing camera
HDU, unreadable calibration, every amplifier dead); nothing is written then.
"""
from __future__ import annotations

import logging
import time

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="raw exposure desi-EXPID.fits.fz")
    parser.add_argument("--camera", required=True, help="camera, e.g. b0")
    parser.add_argument("--calib", default=None, help="ccd-{camera}.yaml calibration file")
    parser.add_argument("--outfile", required=True, help="output preproc-{camera}-{EXPID}.fits")
    parser.add_argument("--fibermap", default=None,
                        help="fibermap file; this petal's rows are copied into the FIBERMAP HDU")
    parser.add_argument("--bias", default=None, help="master bias FITS (overrides the calibration's)")
    parser.add_argument("--dark", default=None, help="master dark FITS in e-/s (overrides the calibration's)")
    parser.add_argument("--pixflat", default=None, help="pixel flat FITS (overrides the calibration's)")
    parser.add_argument("--no-bias", action="store_true", help="skip master bias subtraction")
    parser.add_argument("--no-dark", action="store_true", help="skip dark subtraction (image and scalar)")
    parser.add_argument("--no-pixflat", action="store_true", help="skip the pixel flat")
    parser.add_argument("--no-cosmics", action="store_true", help="skip cosmic-ray rejection")
    parser.add_argument("--overscan-per-row", action="store_true", help="subtract a per-row overscan level")
    parser.add_argument("--variance-model", default="smooth", choices=["smooth", "pixel"],
                        help="Poisson term from a column-neighbour model (default) or the pixel itself")
    parser.add_argument("--cosmics-nsig", type=float, default=5.0, help="cosmic candidate threshold (sigma)")
    parser.add_argument("--cosmics-cfudge", type=float, default=3.0, help="sigma inconsistent with the PSF")
    parser.add_argument("--cosmics-c2fudge", type=float, default=0.5, help="factor applied to the PSF gradients")


def _petal_rows(fibermap, camera):
    """Return the fibermap rows of the camera's petal (PETAL_LOC, else FIBER // 500)."""
    import numpy as np
    petal = int(camera[1:])
    if "PETAL_LOC" in fibermap.colnames:
        keep = np.asarray(fibermap["PETAL_LOC"]) == petal
    elif "FIBER" in fibermap.colnames:
        keep = np.asarray(fibermap["FIBER"]) // 500 == petal
    else:
        return fibermap
    return fibermap[keep]


def run(infile, camera, outfile, calib=None, fibermap=None, bias=None, dark=None, pixflat=None,
        subtract_bias=True, subtract_dark=True, apply_pixflat=True, reject_cosmics=True,
        overscan_per_row=False, variance_model="smooth", cosmics_nsig=5.0, cosmics_cfudge=3.0,
        cosmics_c2fudge=0.5):
    """Preprocess one camera of a raw exposure and write the preproc file.

    Parameters
    ----------
    infile : str
        Raw exposure ``desi-{EXPID}.fits.fz``.
    camera : str
        Camera, e.g. ``b0`` (case-insensitive).
    outfile : str
        Output ``preproc-{camera}-{EXPID}.fits``.
    calib : str, optional
        ``ccd-{camera}.yaml`` calibration file (gains, read noise, masters).
    fibermap : str, optional
        Fibermap file; this petal's rows go into the FIBERMAP HDU.
    bias, dark, pixflat : str, optional
        Master bias / dark (e-/s) / pixel-flat FITS overriding the calibration's.
    subtract_bias, subtract_dark, apply_pixflat : bool
        Apply the master bias, the dark (image and scalar) and the pixel flat.
    reject_cosmics : bool
        Run cosmic-ray rejection.
    overscan_per_row : bool
        Subtract a per-row overscan level.
    variance_model : {"smooth", "pixel"}
        Poisson term from a column-neighbour model or the pixel itself.
    cosmics_nsig, cosmics_cfudge, cosmics_c2fudge : float
        Cosmic-ray rejection thresholds (see :mod:`desired.preproc`).

    Raises
    ------
    DataModelError
        Missing camera HDU, unreadable or mismatched calibration (nothing written).
    DeadCameraError
        Every amplifier is dead (nothing written).
    """
    from ..io.calib import read_ccd_calib
    from ..io.image import write_image
    from ..io.raw import read_raw_camera
    from ..io.util import DataModelError
    from ..preproc import preproc_camera

    camera = camera.lower()
    start = time.perf_counter()
    raw, header = read_raw_camera(infile, camera)
    calib_data = read_ccd_calib(calib) if calib else None
    if calib_data is not None and calib_data["camera"] != camera:
        raise DataModelError(calib, f"calibration is for camera {calib_data['camera']}, not {camera}")
    rows = None
    if fibermap:
        from ..io.fibermap import read_fibermap
        rows = _petal_rows(read_fibermap(fibermap), camera)
    options = {}
    if calib_data is not None:
        options["bias"] = bias if subtract_bias else False
        options["dark"] = dark if subtract_dark else False
        options["pixflat"] = pixflat if apply_pixflat else False
        if not subtract_dark:
            calib_data = dict(calib_data, dark_current=0.0)
    else:
        options["bias"] = bias if subtract_bias and bias else False
        options["dark"] = dark if subtract_dark and dark else False
        options["pixflat"] = pixflat if apply_pixflat and pixflat else False
    image = preproc_camera(raw, header, calib_data, cosmics=reject_cosmics,
                           overscan_per_row=overscan_per_row, variance_model=variance_model,
                           cosmics_nsig=cosmics_nsig, cosmics_cfudge=cosmics_cfudge,
                           cosmics_c2fudge=cosmics_c2fudge, **options)
    for key, value in (("CALIB", calib), ("CALBIAS", options.get("bias")),
                       ("CALDARK", options.get("dark")), ("CALPIXFL", options.get("pixflat"))):
        if isinstance(value, str):
            image.header[key] = value[-68:]
    write_image(outfile, image, fibermap=rows)
    log.info("preproc %s: wrote %s in %.1f s", camera, outfile, time.perf_counter() - start)


def main(args):
    """Run preproc for one camera; return the exit status."""
    from ..io.util import DataModelError
    from ..preproc import DeadCameraError

    try:
        run(infile=args.infile, camera=args.camera, outfile=args.outfile, calib=args.calib,
            fibermap=args.fibermap, bias=args.bias, dark=args.dark, pixflat=args.pixflat,
            subtract_bias=not args.no_bias, subtract_dark=not args.no_dark, apply_pixflat=not args.no_pixflat,
            reject_cosmics=not args.no_cosmics, overscan_per_row=args.overscan_per_row,
            variance_model=args.variance_model, cosmics_nsig=args.cosmics_nsig,
            cosmics_cfudge=args.cosmics_cfudge, cosmics_c2fudge=args.cosmics_c2fudge)
    except (DataModelError, DeadCameraError, ValueError) as err:
        log.error("preproc %s failed: %s", args.camera.lower(), err)
        return EXIT_DATA_ERROR
    return 0
