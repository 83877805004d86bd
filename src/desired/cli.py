"""The ``desired`` command: one subcommand per pipeline step.

Each subcommand lives in ``desired.scripts.<module>`` and provides
``add_arguments(parser)`` and ``main(args) -> int``.  Modules are imported only when
their subcommand runs, so ``desired --help`` stays fast and a step that does not
exist yet says so clearly instead of failing on import.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module under desired.scripts, one-line help); in pipeline order
SUBCOMMANDS = {
    "simulate": ("simulate", "simulate a raw night (or extracted frames) with truth"),
    "exposure-table": ("exposure_table", "scan a raw data tree and write the exposure table"),
    "check-raw": ("check_raw", "verify that a raw exposure can be read (every camera)"),
    "fibermap": ("fibermap", "assemble the per-exposure fibermap"),
    "preproc": ("preproc", "raw camera image -> preproc image (electrons, ivar, mask)"),
    "psf": ("psf", "fit a GAUSS-HERMITE PSF to an arc preproc image"),
    "psfnight": ("psfnight", "combine a night's arc PSFs"),
    "traceshift": ("traceshift", "measure trace shifts and write the exposure's shifted PSF"),
    "extract": ("extract", "spectro-perfectionism extraction: preproc + PSF -> frame"),
    "fiberflat": ("fiberflat", "fiber flat from an extracted flat exposure"),
    "fiberflatnight": ("fiberflatnight", "combine a night's fiber flats"),
    "sky": ("sky", "sky model from the sky fibers of a frame"),
    "stdstars": ("stdstars", "fit standard-star models for one spectrograph"),
    "fluxcalib": ("fluxcalib", "flux calibration vector from standard stars"),
    "cframe": ("cframe", "apply fiberflat, sky and flux calibration -> cframe"),
    "group-spectra": ("group_spectra", "regroup cframes into healpix spectra files"),
    "coadd": ("coadd", "coadd the spectra of each target"),
    "redshifts": ("redshifts", "fit redshifts to a coadd (redrock-format output)"),
    "zcatalog": ("zcatalog", "stack redshift files into a catalog"),
    "templates": ("templates", "build the project's own redrock-format template set"),
    "qa": ("qa", "quality-assurance metrics and plots"),
    "status": ("status", "live table of the production's progress (done/ready/waiting/failed/running)"),
    "rerun": ("rerun", "rerun one task (e.g. extract_20261124_r0_00000012) and its dependents"),
}


def build_parser():
    """Return the top-level argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="desired", description="DESI-style spectroscopic pipeline: raw exposures to redshifts.")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    parser.add_argument("--log-file", default=None, help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="STEP")
    for name, (module, helptext) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(f"desired.scripts.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"desired.scripts.{module}":
                raise
            p.set_defaults(_missing=True)
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            continue
        mod.add_arguments(p)
    return parser


def setup_logging(level="INFO", logfile=None):
    """Route the library's ``logging`` output to stderr and optionally a file."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile))
    logging.basicConfig(level=getattr(logging, level), handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv=None):
    """Entry point of the ``desired`` console script.

    Every error ends in one line on stderr and a non-zero exit status (the
    traceback only with ``--log-level DEBUG``): :data:`desired.errors.EXIT_DATA_ERROR`
    when the input data are bad, 1 for anything else (a missing module, a bug),
    130 on Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "DEBUG" in argv and "--log-level" in argv
    command = "desired"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        command = f"desired {args.command}"
        if getattr(args, "_missing", False):
            print(f"{command}: not yet implemented", file=sys.stderr)
            return 3
        setup_logging(args.log_level, args.log_file)
        mod = importlib.import_module(f"desired.scripts.{args._module}")
        return int(mod.main(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:                      # one clear line; the traceback only with DEBUG
        return report_error(command, err, debug)


def report_error(command, err, debug=False):
    """Log ``err`` as one line (with its traceback when ``debug``); return the exit status."""
    from .errors import EXIT_DATA_ERROR, is_data_error
    log = logging.getLogger("desired")
    if isinstance(err, ModuleNotFoundError):
        text = (f"{err} (interpreter {sys.executable}); install it into that environment, "
                f"e.g. {sys.executable} -m pip install {err.name}")
    else:
        text = f"{type(err).__name__}: {err}" if not str(err) else str(err)
    data = is_data_error(err)
    if debug:
        log.exception("%s failed", command)
    if logging.getLogger().handlers:
        log.error("%s: %s%s", command, "data error: " if data else "error: ", text)
    else:
        print(f"{command}: {'data error' if data else 'error'}: {text}", file=sys.stderr)
    return EXIT_DATA_ERROR if data else 1


if __name__ == "__main__":
    sys.exit(main())
