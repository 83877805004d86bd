"""``desired simulate``: write a simulated raw night (or extracted frames) with its truth."""
from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def default_data_dir():
    """``<repo parent>/shared/data`` when it exists (optional real sky/extinction tables), else None."""
    candidate = Path(__file__).resolve().parents[4] / "shared" / "data"
    return str(candidate) if candidate.is_dir() else None


def add_arguments(parser):
    """Register the options of ``desired simulate``."""
    parser.add_argument("--preset", default="mini", choices=["full", "petal", "mini", "tiny"],
                        help="geometry: full (30 cameras), petal (3 cameras, 500 fibers), "
                             "mini (3 cameras, 50 fibers, columns cropped), tiny (b0, 25 fibers, rows cropped)")
    parser.add_argument("--night", type=int, required=True, help="night YYYYMMDD")
    parser.add_argument("--raw-dir", "--outdir", dest="raw_dir", default=None, help="root of the raw data tree")
    parser.add_argument("--calib-dir", default=None, help="root of the calibration tree (ccd yaml, nominal PSFs)")
    parser.add_argument("--truth-dir", default=None, help="root of the truth tree (never read by the pipeline)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the night")
    parser.add_argument("--narc", type=int, default=3, help="short all-lamp arcs (5 s)")
    parser.add_argument("--nlongarc", type=int, default=0, help="long Cd+Xe arcs (30 s)")
    parser.add_argument("--nflat", type=int, default=12,
                        help="LED flats (120 s); default DESI's nightly sequence, 3 from each of 4 calibration units")
    parser.add_argument("--nscience", type=int, default=2, help="science exposures on the tile")
    parser.add_argument("--nzero", type=int, default=0, help="zero (bias) exposures")
    parser.add_argument("--ndark", type=int, default=0, help="300 s dark exposures")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes (cameras in parallel)")
    parser.add_argument("--level", default="raw", choices=["raw", "frame"],
                        help="raw: pixel-level raw files; frame: extracted frames directly")
    parser.add_argument("--frame-dir", default=None, help="production root for --level frame")
    parser.add_argument("--cosmic-rate", type=float, default=1.0, help="cosmic rays per cm^2 per minute")
    parser.add_argument("--bad-column", action="store_true", help="add one dead column per camera")
    parser.add_argument("--expid-start", type=int, default=1, help="first EXPID of the night")
    parser.add_argument("--tileid", type=int, default=1000, help="TILEID of the science exposures")
    parser.add_argument("--science-exptime", type=float, default=900.0, help="science exposure time, s")
    parser.add_argument("--sky", dest="sky_condition", default="dark", choices=["dark", "bright"],
                        help="sky of the science exposures (bright adds moonlight; FAPRGRM=bright)")
    parser.add_argument("--airmass", type=float, default=1.2, help="airmass of the science exposures")
    parser.add_argument("--data-dir", default=None,
                        help="directory with spec-sky-2018.dat / ZenExtinct-KPNO.fits (default: ../shared/data "
                             "next to the repository when present; parametric models otherwise)")
    parser.add_argument("--parametric", action="store_true", help="ignore --data-dir: parametric sky and extinction")


def run(night, raw_dir=None, calib_dir=None, truth_dir=None, preset="mini", seed=0, narc=3, nlongarc=0,
        nflat=12, nscience=2, nzero=0, ndark=0, nproc=1, level="raw", frame_dir=None, cosmic_rate=1.0,
        bad_column=False, expid_start=1, tileid=1000, science_exptime=900.0, sky_condition="dark",
        airmass=1.2, data_dir=None, parametric=False):
    """Simulate one night into the raw/calib/truth trees (or frames with ``level="frame"``).

    Parameters
    ----------
    night : int
        Night YYYYMMDD.
    raw_dir, calib_dir, truth_dir : str, optional
        Roots of the trees written; ``raw_dir`` is required for ``level="raw"``.
    preset : {"full", "petal", "mini", "tiny"}
        Instrument geometry.
    seed : int
        Random seed of the night.
    narc, nlongarc, nflat, nscience, nzero, ndark : int
        Number of exposures of each kind.
    nproc : int
        Worker processes (cameras in parallel).
    level : {"raw", "frame"}
        Pixel-level raw files or extracted frames directly.
    frame_dir : str, optional
        Production root for ``level="frame"`` (required then).
    cosmic_rate : float
        Cosmic rays per cm^2 per minute.
    bad_column : bool
        Add one dead column per camera.
    expid_start, tileid : int
        First EXPID of the night; TILEID of the science exposures.
    science_exptime : float
        Science exposure time, s.
    sky_condition : {"dark", "bright"}
        Sky of the science exposures.
    airmass : float
        Airmass of the science exposures.
    data_dir : str, optional
        Directory with real sky/extinction tables; None = :func:`default_data_dir`.
    parametric : bool
        Ignore ``data_dir`` and use the parametric sky and extinction.

    Returns
    -------
    list
        The simulated exposure sequence.

    Raises
    ------
    ValueError
        If the output root the level needs is not given (nothing written).
    """
    from ..sim.night import NightConfig, simulate_night
    if level == "raw" and not raw_dir:
        raise ValueError("raw_dir is required for level 'raw'")
    if level == "frame" and not frame_dir:
        raise ValueError("frame_dir is required for level 'frame'")
    data_dir = None if parametric else (data_dir or default_data_dir())
    cfg = NightConfig(preset=preset, night=night, seed=seed, narc=narc, nlongarc=nlongarc,
                      nflat=nflat, nscience=nscience, nzero=nzero, ndark=ndark,
                      cosmic_rate=cosmic_rate, bad_column=bad_column, expid_start=expid_start,
                      tileid=tileid, science_exptime=science_exptime, airmass=airmass,
                      sky_condition=sky_condition, data_dir=data_dir)
    t0 = time.time()
    seq = simulate_night(cfg, raw_dir=raw_dir, calib_dir=calib_dir, truth_dir=truth_dir,
                         nproc=nproc, level=level, frame_dir=frame_dir)
    log.info("simulated %d exposures of night %d (%s preset, data_dir=%s) in %.1f s",
             len(seq), night, preset, data_dir, time.time() - t0)
    return seq


def main(args):
    """Run the simulation; returns the exit status (2 when a required output root is missing)."""
    if args.level == "raw" and not args.raw_dir:
        log.error("--raw-dir is required for --level raw")
        return 2
    if args.level == "frame" and not args.frame_dir:
        log.error("--frame-dir is required for --level frame")
        return 2
    run(night=args.night, raw_dir=args.raw_dir, calib_dir=args.calib_dir, truth_dir=args.truth_dir,
        preset=args.preset, seed=args.seed, narc=args.narc, nlongarc=args.nlongarc, nflat=args.nflat,
        nscience=args.nscience, nzero=args.nzero, ndark=args.ndark, nproc=args.nproc, level=args.level,
        frame_dir=args.frame_dir, cosmic_rate=args.cosmic_rate, bad_column=args.bad_column,
        expid_start=args.expid_start, tileid=args.tileid, science_exptime=args.science_exptime,
        sky_condition=args.sky_condition, airmass=args.airmass, data_dir=args.data_dir,
        parametric=args.parametric)
    return 0
