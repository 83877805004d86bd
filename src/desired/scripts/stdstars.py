"""``desired stdstars``: fit the standard stars of one spectrograph and exposure (b, r, z jointly).

Example::

    desired stdstars --frames frame-b0-00000012.fits frame-r0-00000012.fits frame-z0-00000012.fits \\
        --fiberflats fiberflatnight-b0-20261124.fits ... --skys sky-b0-00000012.fits ... \\
        --outfile stdstars-0-00000012.fits

The models are desired.stdmodels' LTE spectra (see that module).  A spectrograph
without any usable standard still gets a file (zero stars); the flux calibration
then falls back on the nominal throughput, flagged.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--frames", nargs="+", required=True, help="frame files (b, r, z) of one spectrograph")
    parser.add_argument("--fiberflats", nargs="*", default=None, help="fiberflat files, same order as --frames")
    parser.add_argument("--skys", nargs="*", default=None, help="sky files, same order as --frames")
    parser.add_argument("--outfile", required=True, help="output stdstars file")
    parser.add_argument("--teff", type=float, nargs=3, default=(5000.0, 7500.0, 250.0),
                        metavar=("MIN", "MAX", "STEP"), help="model Teff grid, K")
    parser.add_argument("--logg", type=float, nargs="+", default=[3.5, 4.0, 4.5], help="model log g values")
    parser.add_argument("--feh", type=float, nargs="+", default=[-2.0, -1.0, -0.5, 0.0], help="model [Fe/H] values")
    parser.add_argument("--delta-color", type=float, default=0.1, help="colour preselection window, mag")
    parser.add_argument("--color-sys", type=float, default=0.03, help="systematic colour error, mag")
    parser.add_argument("--no-color-correct", action="store_true", help="do not bend models to the photometry")


def run(frames, outfile, fiberflats=None, skys=None, teff=(5000.0, 7500.0, 250.0), logg=(3.5, 4.0, 4.5),
        feh=(-2.0, -1.0, -0.5, 0.0), delta_color=0.1, color_sys=0.03, color_correct=True):
    """Read, correct, fit and write.

    Parameters
    ----------
    frames : list of str
        Frame files of one spectrograph (any of b, r, z; one per band).
    outfile : str
    fiberflats, skys : list of str, optional
        Same order as ``frames``; omitted when the frames are already corrected.
    teff : (min, max, step)
    logg, feh : sequences of float
    delta_color, color_sys : float
    color_correct : bool

    Returns
    -------
    desired.stdstars.StdStars

    Raises
    ------
    ValueError
        Inconsistent inputs (two frames of one band, different exposures, lists of other lengths).
    """
    from ..io.stdstars import write_stdstar_models
    from ..stdmodels import model_grid
    from ..stdstars import fit_stdstars
    from .calibrate import read_corrected_frame
    for name, lst in (("fiberflats", fiberflats), ("skys", skys)):
        if lst and len(lst) != len(frames):
            raise ValueError(f"{outfile}: {len(lst)} {name} for {len(frames)} frames")
    by_band = {}
    for k, path in enumerate(frames):
        frame = read_corrected_frame(path, fiberflats[k] if fiberflats else None, skys[k] if skys else None)
        band = (frame.camera or "?")[0]
        if band in by_band:
            raise ValueError(f"{outfile}: two {band} frames among the inputs")
        by_band[band] = frame
    expids = {int(f.header.get("EXPID", -1)) for f in by_band.values()}
    if len(expids) > 1:
        raise ValueError(f"{outfile}: frames of different exposures {sorted(expids)}")
    grid = model_grid(teff=np.arange(teff[0], teff[1] + teff[2] / 2, teff[2]), logg=logg, feh=feh)
    stars = fit_stdstars(by_band, grid, delta_color=delta_color, color_sys=color_sys, color_correct=color_correct)
    write_stdstar_models(outfile, stars)
    log.info("wrote %s: %d standard stars", outfile, stars.nstd)
    return stars


def main(args):
    """Fit the standards; return the exit status."""
    try:
        run(args.frames, args.outfile, fiberflats=args.fiberflats, skys=args.skys, teff=args.teff, logg=args.logg,
            feh=args.feh, delta_color=args.delta_color, color_sys=args.color_sys,
            color_correct=not args.no_color_correct)
    except ValueError as err:
        log.error("%s", err)
        return 1
    return 0
