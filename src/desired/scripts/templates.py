"""``desired templates``: build the project's own redrock-format template set.

Example::

    desired templates --outdir calib/templates/desired-1.0          # full set (a few minutes)
    desired templates --outdir /tmp/rrtemplates --quick             # reduced set (tests, ~1 minute)

Writes ``rrtemplate-GALAXY-desired-1.0.fits``, ``rrtemplate-QSO-desired-1.0.fits``,
``rrtemplate-STAR-{B,A,F,G,K,M,WD}-desired-1.0.fits`` and ``templates-default.txt``
into ``--outdir``; both ``desired redshifts --templates DIR`` and redrock's
``rrdesi --templates DIR`` read the directory.  How the spectra are made and why
they are independent of the simulator: :mod:`desired.redshift.basis`.  The same
seed gives the same files.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--outdir", required=True, help="directory for the rrtemplate-*.fits files")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="reduced stellar library and fewer spectra (tests)")


def run(outdir, seed=1, quick=False):
    """Build the template set and write it to ``outdir``; return the written paths."""
    from ..io.templates import write_template_set
    from ..redshift.basis import build_template_set

    templates = build_template_set(seed=seed, quick=quick)
    paths = write_template_set(outdir, templates, seed=seed)
    for t in templates:
        log.info("%s%s: %d vectors from %d spectra, power fractions %s", t.spectype,
                 f":{t.subtype}" if t.subtype else "", t.flux.shape[0], t.nspec,
                 " ".join(f"{v:.2g}" for v in t.variance))
    return paths


def main(args):
    """Build the templates; return the exit status."""
    run(args.outdir, seed=args.seed, quick=args.quick)
    return 0
