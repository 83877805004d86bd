"""``desired psf``: fit a GAUSS-HERMITE PSF to an arc preproc image.

Example::

    desired psf --infile preproc-r0-00000010.fits --input-psf psf-nominal-r0.fits \\
        --outfile psf-r0-00000010.fits --nproc 2

Bundles are fitted in parallel: by MPI ranks (mpi4py) when ``--mpi`` is given or
the command runs under an MPI launcher with more than one rank, else by ``--nproc``
worker processes (a plain loop for 1).  The result does not depend on the choice.
Exit status: 0 on success, 65 (data error) when the inputs cannot be read (nothing written).
"""
from __future__ import annotations

import logging
import os
import time

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)

#: environment variables through which MPI launchers announce the number of ranks
_MPI_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infile", required=True, help="arc preproc image")
    parser.add_argument("--input-psf", required=True, help="starting (nominal or previous) PSF")
    parser.add_argument("--outfile", required=True, help="output PSF file")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes for the bundles (default 1)")
    parser.add_argument("--mpi", action="store_true", help="distribute bundles over MPI ranks (mpi4py)")
    parser.add_argument("--bundle-size", type=int, default=25, help="fibers per bundle (default 25)")
    parser.add_argument("--trace-degree", type=int, default=5, help="Legendre degree of the traces (default 5)")
    parser.add_argument("--band", default=None, help="lamp line list band b/r/z (default: from CAMERA)")


def launched_under_mpi():
    """Return True when an MPI launcher started this process with more than one rank."""
    for name in _MPI_SIZE_VARIABLES:
        value = os.environ.get(name)
        if value and value.isdigit() and int(value) > 1:
            return True
    return False


def mpi_mapper():
    """Return ``(mapper, rank)``: a map over MPI ranks (round-robin, results gathered on rank 0)."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    def mapper(func, tasks):
        tasks = list(tasks)
        mine = {i: func(t) for i, t in enumerate(tasks) if i % size == rank}
        gathered = comm.gather(mine, root=0)
        if rank != 0:
            return None
        merged = {}
        for part in gathered:
            merged.update(part)
        return [merged[i] for i in range(len(tasks))]

    return mapper, rank


def main(args):
    """Fit the PSF; return the exit status."""
    from ..arcs import lamp_lines
    from ..io.image import read_image
    from ..io.psf import read_psf, write_psf
    from ..io.util import DataModelError
    from ..psffit import FitOptions, assemble_psf, fit_bundle_one_thread, make_tasks

    start = time.perf_counter()
    try:
        image = read_image(args.infile)
        nominal = read_psf(args.input_psf)
    except DataModelError as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    band = args.band or (image.camera or "")[:1]
    if band not in ("b", "r", "z"):
        log.error("%s: cannot tell the band from CAMERA %r; give --band", args.infile, image.camera)
        return EXIT_DATA_ERROR
    wave, intensity = lamp_lines(band)
    options = FitOptions(trace_degree=args.trace_degree)
    slices, tasks = make_tasks(image, nominal, wave, intensity, options, args.bundle_size)
    rank = 0
    if args.mpi or launched_under_mpi():
        mapper, rank = mpi_mapper()
        results = mapper(fit_bundle_one_thread, tasks)
    elif args.nproc > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=args.nproc) as pool:
            results = list(pool.map(fit_bundle_one_thread, tasks))
    else:
        results = [fit_bundle_one_thread(t) for t in tasks]
    if rank != 0:
        return 0
    meta = {"CAMERA": image.camera, "IN_PSF": os.path.basename(args.input_psf),
            "IN_IMG": os.path.basename(args.infile)}
    for key in ("EXPID", "NIGHT", "MJD-OBS"):
        if key in image.header:
            meta[key] = image.header[key]
    psf = assemble_psf(nominal, slices, results, options, meta)
    write_psf(args.outfile, psf)
    if psf.meta["NBADFIB"]:
        log.warning("fibers flagged as not fitted: %s", psf.meta["BADFIBER"])
    log.info("wrote %s (%d bundles, chi2/dof %.3f) in %.1f s", args.outfile, len(tasks),
             psf.meta["CHI2PDF"], time.perf_counter() - start)
    return 0
