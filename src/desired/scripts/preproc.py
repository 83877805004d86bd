"""``desired preproc``: one camera of a raw exposure -> preproc file.

Example::

    desired preproc --infile raw/20261124/00000012/desi-00000012.fits.fz --camera b0 \\
        --calib calib/ccd-b0.yaml --outfile redux/preproc/20261124/00000012/preproc-b0-00000012.fits

Exit status: 0 on success, 1 when the camera cannot be processed (missing camera
HDU, unreadable calibration, every amplifier dead); nothing is written then.
"""
from __future__ import annotations

import logging
import time

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


def main(args):
    """Run preproc for one camera; return the exit status."""
    from ..io.calib import read_ccd_calib
    from ..io.image import write_image
    from ..io.raw import read_raw_camera
    from ..io.util import DataModelError
    from ..preproc import DeadCameraError, preproc_camera

    camera = args.camera.lower()
    start = time.perf_counter()
    try:
        raw, header = read_raw_camera(args.infile, camera)
        calib = read_ccd_calib(args.calib) if args.calib else None
        if calib is not None and calib["camera"] != camera:
            raise DataModelError(args.calib, f"calibration is for camera {calib['camera']}, not {camera}")
        fibermap = None
        if args.fibermap:
            from ..io.fibermap import read_fibermap
            fibermap = _petal_rows(read_fibermap(args.fibermap), camera)
        options = {}
        if calib is not None:
            options["bias"] = False if args.no_bias else args.bias
            options["dark"] = False if args.no_dark else args.dark
            options["pixflat"] = False if args.no_pixflat else args.pixflat
            if args.no_dark:
                calib = dict(calib, dark_current=0.0)
        else:
            options["bias"] = False if args.no_bias or not args.bias else args.bias
            options["dark"] = False if args.no_dark or not args.dark else args.dark
            options["pixflat"] = False if args.no_pixflat or not args.pixflat else args.pixflat
        image = preproc_camera(raw, header, calib, cosmics=not args.no_cosmics,
                               overscan_per_row=args.overscan_per_row, variance_model=args.variance_model,
                               cosmics_nsig=args.cosmics_nsig, cosmics_cfudge=args.cosmics_cfudge,
                               cosmics_c2fudge=args.cosmics_c2fudge, **options)
        for key, value in (("CALIB", args.calib), ("CALBIAS", options.get("bias")),
                           ("CALDARK", options.get("dark")), ("CALPIXFL", options.get("pixflat"))):
            if isinstance(value, str):
                image.header[key] = value[-68:]
        write_image(args.outfile, image, fibermap=fibermap)
    except (DataModelError, DeadCameraError, ValueError) as err:
        log.error("preproc %s failed: %s", camera, err)
        return 1
    log.info("preproc %s: wrote %s in %.1f s", camera, args.outfile, time.perf_counter() - start)
    return 0
