"""``desired qa``: QA metrics of an exposure, and the static HTML report of one exposure, a night or the production.

Examples::

    desired qa                                        # whole production of config/config.yaml -> prod/qa/index.html
    desired qa --night 20261124                       # one night
    desired qa --night 20261124 --expid 7             # one exposure
    desired qa --night 20261124 --expid 7 --metrics-only --outfile exposure-qa-00000007.fits

Thresholds (``qa.thresholds``), the outlier limit of the fiber flat and the
nominal zero point and sky of the effective time come from the workflow config.
Products missing from the tree leave their section out; unreadable ones are
reported as alarms.  Exit status 0, 1 when the config is invalid.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the options of ``desired qa``."""
    parser.add_argument("--configfile", default="config/config.yaml",
                        help="workflow config giving the trees, thresholds and status (default config/config.yaml)")
    parser.add_argument("--schema", default=None, help="config schema (default: next to the config file)")
    parser.add_argument("--directory", default=".", help="Snakemake working directory (default .)")
    parser.add_argument("--night", type=int, default=None, help="only this night (YYYYMMDD)")
    parser.add_argument("--expid", type=int, default=None, help="only this exposure (needs --night)")
    parser.add_argument("--outdir", default=None, help="report directory (default {redux_dir}/qa)")
    parser.add_argument("--metrics-only", action="store_true",
                        help="write the exposure-qa file of --night/--expid only (no figures, no HTML)")
    parser.add_argument("--outfile", default=None, help="exposure-qa file with --metrics-only (default: its PATTERNS path)")
    parser.add_argument("--templates", default=None,
                        help="redrock template directory for the best-fit models of the healpix pages when no "
                             "rrmodel file exists (default: the config's templates.redrock_dir)")
    parser.add_argument("--write-metrics", action="store_true",
                        help="also write the exposure-qa file of every exposure in the report")


def qa_options(config):
    """Keyword arguments of the report functions from the config's ``qa`` block."""
    qa = config.get("qa") or {}
    return {"thresholds": qa.get("thresholds") or {}, "nominal": qa.get("nominal") or {},
            "max_flat_offset": float(qa.get("max_flat_offset", 0.15)),
            "min_deltachi2": float(qa.get("min_deltachi2", 25.0))}


def _in(directory, roots):
    return {k: (v if v is None or os.path.isabs(v) else os.path.join(directory, v)) for k, v in roots.items()}


def run(config, directory=".", night=None, expid=None, outdir=None, metrics_only=False, outfile=None,
        write_metrics=False, running=None, templates=None):
    """Build the report (or one exposure-qa file) of the production described by ``config``.

    Parameters
    ----------
    config : dict
        Validated workflow config.
    directory : str
        Snakemake working directory (relative roots and logs are found from it).
    night, expid : int, optional
        Restrict to one night / one exposure.
    outdir : str, optional
        Report directory.
    metrics_only : bool
        Write only the exposure-qa file of (night, expid) to ``outfile``.
    running : bool, optional
        Whether a Snakemake run is active (default: judged from its lock); the workflow's
        ``onerror`` handler passes False (it holds the lock, but no job runs any more).
    templates : str, optional
        Redrock template directory (default: the config's ``templates.redrock_dir``).

    Returns
    -------
    str
        The index.html written, or the exposure-qa file.
    """
    from .. import paths
    from ..qa import report
    from ..workflow_status import production_roots
    roots = _in(directory, production_roots(config))
    opts = qa_options(config)
    if expid is not None and night is None:
        raise ValueError("--expid needs --night")
    if metrics_only:
        if night is None or expid is None:
            raise ValueError("--metrics-only needs --night and --expid")
        nominal = opts["nominal"]
        usable = nominal if all((nominal.get("zeropoint") or {}).get(b) is not None for b in "brz") else None
        outfile = outfile or paths.findfile("qa_exposure", root=roots["redux"], night=night, expid=expid)
        report.write_exposure_metrics(roots, night, expid, outfile, thresholds=opts["thresholds"], nominal=usable,
                                      max_flat_offset=opts["max_flat_offset"])
        log.info("wrote %s", outfile)
        return outfile
    return report.build_report(roots, outdir=outdir, config=config, workdir=directory,
                               nights=None if night is None else [night], expid=expid,
                               thresholds=opts["thresholds"], nominal=opts["nominal"],
                               max_flat_offset=opts["max_flat_offset"], min_deltachi2=opts["min_deltachi2"],
                               write_metrics=write_metrics, running=running,
                               templates=templates or (config.get("templates") or {}).get("redrock_dir"))


def main(args):
    """Run ``desired qa``; return the exit status."""
    from ..workflow_status import load_config
    schema = args.schema or os.path.join(os.path.dirname(os.path.abspath(args.configfile)), "config.schema.yaml")
    try:
        config = load_config(args.configfile, schema)
        out = run(config, args.directory, args.night, args.expid, args.outdir, args.metrics_only, args.outfile,
                  args.write_metrics, templates=args.templates)
    except ValueError as err:
        log.error("%s", err)
        return 1
    print(out)
    return 0
