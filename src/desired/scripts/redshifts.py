"""``desired redshifts``: fit redshifts to a coadd (redrock-format output).

Example::

    desired redshifts --infile redux/healpix/main/dark/180/18071/coadd-main-dark-18071.fits \\
        --outfile redux/healpix/main/dark/180/18071/redrock-main-dark-18071.fits \\
        --templates /path/to/redrock-templates --nproc 4

Under ``srun``/``mpiexec`` add ``--mpi``: batches of targets are dealt to the
ranks, rank 0 writes.  The output does not depend on ``--nproc`` or the number of
ranks (targets are cut into the same batches either way).

Exit status: 0 on success, 1 when the coadd or the templates cannot be used
(nothing is written then).
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="coadd (or spectra) file")
    parser.add_argument("--outfile", required=True, help="output redrock-format redshift file")
    parser.add_argument("--templates", default=None,
                        help="redrock template directory, templates-default.txt list or single file "
                             "(default: the redrock package's templates, if installed)")
    parser.add_argument("--model", default=None, help="also write the best-fit models (rrmodel file)")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--mpi", action="store_true", help="distribute target batches over MPI ranks (mpi4py)")
    parser.add_argument("--gpu", action="store_true", help="coarse redshift scan on a GPU (CuPy)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="targets per batch of the coarse scan (default 256)")
    parser.add_argument("--nminima", type=int, default=3, help="solutions kept per template class (default 3)")
    parser.add_argument("--single-scan", action="store_true",
                        help="coarse scan's M products in single precision: ~20 %% faster, but its chi2 can be "
                             "wrong by more than chi2 itself at high S/N with many-vector bases (default double)")
    parser.add_argument("--no-skymask", action="store_true", help="do not mask the 5577 and 9793 A sky lines")


def default_template_dir():
    """The redrock package's template directory, or None when redrock is not installed."""
    try:
        import importlib.resources
        path = importlib.resources.files("redrock").joinpath("data/templates")
    except ModuleNotFoundError:
        return None
    return str(path) if path.is_dir() else None


def run(infile, outfile, templates=None, model=None, nproc=1, comm=None, use_gpu=False, batch_size=256,
        nminima=3, precision="double", skymask=True):
    """Fit every target of ``infile`` and write ``outfile`` (rank 0 under MPI); return the table.

    Raises
    ------
    desired.io.util.DataModelError, ValueError, OSError
        Unreadable coadd, no usable template, no template directory.
    """
    from ..io.redshifts import RedshiftCatalog, template_keywords, write_redshifts, write_rrmodel
    from ..io.spectra import read_spectra
    from ..io.templates import read_templates
    from ..redshift import zfind

    rank = 0 if comm is None else comm.rank
    t0 = time.perf_counter()
    templates = templates or default_template_dir()
    if templates is None:
        raise ValueError("no template directory given (--templates) and redrock is not installed")
    spectra = read_spectra(infile)
    tmpl = read_templates(templates)
    bands = zfind.prepare_bands(spectra, skymask=skymask)
    fibermap = spectra.fibermap
    targetids = (fibermap["TARGETID"] if fibermap is not None and "TARGETID" in fibermap.colnames
                 else list(range(bands[0].flux.shape[0])))
    log.info("read %d targets (%s) and %d templates in %.1f s", len(targetids), "".join(spectra.bands),
             len(tmpl), time.perf_counter() - t0)
    usable = zfind.usable_templates(tmpl, bands)
    best = zfind.fit_redshifts(bands, usable, targetids, nproc=nproc, batch_size=batch_size, nminima=nminima,
                               comm=comm, use_gpu=use_gpu, precision=precision)
    if rank != 0:
        return None
    table = zfind.redshift_table(best, targetids, fibermap, ncoeff=max(t.nbasis for t in usable))
    header = {"RRVER": f"desired-{_version()}"}
    header.update(template_keywords([(t.spectype, t.subtype, t.version, t.filename) for t in usable]))
    for key in ("SPGRP", "SPGRPVAL", "TILEID", "SPECTRO", "PETAL", "NIGHT", "EXPID", "HPXPIXEL", "HPXNSIDE",
                "HPXNEST", "SURVEY", "PROGRAM", "FAPRGRM"):
        if key in spectra.header:
            header[key] = spectra.header[key]
    write_redshifts(outfile, RedshiftCatalog(table, fibermap, spectra.exp_fibermap, _tsnr2(spectra, table), header))
    if model:
        waves = {b: spectra.wave[b] for b in spectra.bands}
        write_rrmodel(model, table, waves, zfind.best_models(bands, usable, table, spectra.bands), header)
    nconf = int(((table["ZWARN"] == 0)).sum())
    log.info("wrote %s: %d targets, %d with ZWARN=0, in %.1f s", outfile, len(table), nconf,
             time.perf_counter() - t0)
    return table


def _version():
    try:
        from importlib.metadata import version
        return version("desired")
    except Exception:  # noqa: BLE001 - an uninstalled checkout has no metadata
        return "dev"


def _tsnr2(spectra, table):
    """TARGETID + TSNR2_* columns of the coadd's SCORES, row-matched (None when absent)."""
    scores = spectra.scores
    if scores is None:
        return None
    from astropy.table import Table
    out = Table()
    out["TARGETID"] = table["TARGETID"]
    for name in scores.colnames:
        if name.startswith("TSNR2_"):
            out[name] = scores[name]
    return out


def main(args):
    """Run the fit; return the exit status."""
    from ..io.util import DataModelError

    comm = None
    if args.mpi:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    try:
        run(args.infile, args.outfile, templates=args.templates, model=args.model, nproc=args.nproc, comm=comm,
            use_gpu=args.gpu, batch_size=args.batch_size, nminima=args.nminima,
            precision="single" if args.single_scan else "double", skymask=not args.no_skymask)
    except (DataModelError, OSError, ValueError) as err:
        log.error("%s", err)
        return 1
    return 0
