"""``desired extract``: preproc image + PSF -> frame (spectro-perfectionism or boxcar).

Example::

    desired extract --image redux/preproc/20261124/00000012/preproc-b0-00000012.fits \\
        --psf redux/exposures/20261124/00000012/psf-b0-00000012.fits \\
        --outfile redux/exposures/20261124/00000012/frame-b0-00000012.fits --nproc 2

Under ``srun``/``mpiexec`` add ``--mpi``: bundles are dealt round-robin to the
ranks, rank 0 gathers and writes.  The serial, multiprocess and MPI paths run the
same per-bundle code, so the frame does not depend on how it was parallelised.

Exit status: 0 on success, 65 (data error) when an input cannot be read or does not match
(nothing is written then).
"""
from __future__ import annotations

import logging
import time

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--image", required=True, help="preproc file")
    parser.add_argument("--psf", required=True, help="GAUSS-HERMITE PSF file")
    parser.add_argument("--outfile", required=True, help="output frame file")
    parser.add_argument("--fibermap", default=None,
                        help="fibermap file (default: the preproc file's FIBERMAP HDU, if any)")
    parser.add_argument("--wavelength", default=None,
                        help="wmin,wmax,dw in Angstrom (default from the camera: b 3600,5800,0.8; "
                             "r 5760,7620,0.8; z 7520,9824,0.8)")
    parser.add_argument("--specmin", type=int, default=0, help="first fiber index (relative to the PSF)")
    parser.add_argument("--nspec", type=int, default=None, help="number of fibers (default: all)")
    parser.add_argument("--bundlesize", type=int, default=25, help="fibers per bundle (default 25)")
    parser.add_argument("--nsubbundle", type=int, default=5, help="sub-bundles per bundle (default 5)")
    parser.add_argument("--nwavestep", type=int, default=30, help="wavelengths kept per patch (default 30)")
    parser.add_argument("--wavepad", type=int, default=6, help="wavelengths of padding per side of a patch, also beyond the grid ends (default 6)")
    parser.add_argument("--data-variance", action="store_true",
                        help="weight pixels by the preproc ivar (the data's own counts) instead of by a first "
                             "model of each patch plus read noise (the default, which avoids a low flux bias)")
    parser.add_argument("--boxcar", action="store_true", help="quick-look boxcar extraction instead")
    parser.add_argument("--boxcar-width", type=int, default=3, help="boxcar half width in columns (default 3)")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--mpi", action="store_true", help="distribute bundles over MPI ranks (mpi4py)")
    parser.add_argument("--gpu", action="store_true", help="use the CuPy backend (needs cupy and a GPU)")


def parse_wavelength(text):
    """Parse ``wmin,wmax,dw``; raise ValueError with the offending text."""
    try:
        wmin, wmax, dw = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--wavelength must be wmin,wmax,dw; got {text!r}") from None
    return wmin, wmax, dw


def _fibermap_rows(fibermap, psf, lo, hi):
    """Fibermap rows of PSF fibers ``lo..hi-1`` (matched on FIBER when present)."""
    import numpy as np
    if fibermap is None:
        return None
    want = psf.fibermin + np.arange(psf.nfiber)
    if "FIBER" in fibermap.colnames:
        index = {int(f): i for i, f in enumerate(np.asarray(fibermap["FIBER"]))}
        if not all(int(f) in index for f in want[lo:hi]):
            raise ValueError(f"fibermap lacks fibers {want[lo]}-{want[hi - 1]}")
        return fibermap[[index[int(f)] for f in want[lo:hi]]]
    if len(fibermap) != psf.nfiber:
        raise ValueError(f"fibermap has {len(fibermap)} rows for {psf.nfiber} PSF fibers and no FIBER column")
    return fibermap[lo:hi]


def main(args):
    """Run the extraction; return the exit status."""
    import numpy as np

    from ..io.frame import write_frame
    from ..io.image import read_image
    from ..io.psf import read_psf
    from ..io.util import DataModelError

    comm = None
    rank, size = 0, 1
    if args.mpi:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        rank, size = comm.rank, comm.size
    if args.gpu:
        from .. import extract_gpu as backend
    else:
        from .. import extract as backend
    from ..extract import assemble_frame, bundle_ranges, variance_options, wavelength_grid

    t0 = time.perf_counter()
    try:
        image = read_image(args.image)
        psf = read_psf(args.psf)
        fibermap = getattr(image, "fibermap", None)
        if args.fibermap:
            from ..io.fibermap import read_fibermap
            fibermap = read_fibermap(args.fibermap)
        if args.wavelength:
            wave = wavelength_grid(image.camera, *parse_wavelength(args.wavelength))
        else:
            wave = wavelength_grid(image.camera)
        if image.shape != (psf.npix_y, psf.npix_x):
            raise ValueError(f"image shape {image.shape} differs from the PSF's "
                             f"({psf.npix_y}, {psf.npix_x}) ({args.image} vs {args.psf})")
        lo = args.specmin
        hi = psf.nfiber if args.nspec is None else lo + args.nspec
        if not (0 <= lo < hi <= psf.nfiber):
            raise ValueError(f"fibers {lo}-{hi - 1} outside the PSF's {psf.nfiber} fibers ({args.psf})")
        fibermap = _fibermap_rows(fibermap, psf, lo, hi)
    except (DataModelError, OSError, ValueError) as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    log.info("read inputs in %.1f s", time.perf_counter() - t0)

    if args.boxcar:
        if rank == 0:
            from ..boxcar import boxcar_extract
            frame = boxcar_extract(image, psf, wave, width=args.boxcar_width, fibers=(lo, hi))
            frame.fibermap = fibermap
            write_frame(args.outfile, frame)
            log.info("wrote %s (boxcar)", args.outfile)
        return 0

    options = dict(nsubbundles=args.nsubbundle, nwavestep=args.nwavestep, wavepad=args.wavepad)
    if comm is None:
        frame = backend.extract_frame(image, psf, wave, fibers=(lo, hi), bundlesize=args.bundlesize,
                                      nproc=args.nproc, model_variance=not args.data_variance, **options)
    else:
        bundles = [(max(a, lo), min(b, hi)) for a, b in bundle_ranges(psf.nfiber, args.bundlesize)
                   if b > lo and a < hi]
        mine = bundles[rank::size]
        ivar = image.good_ivar()
        options = variance_options(image, not args.data_variance, options)
        with backend.single_threaded_blas():
            results = backend.extract_bundles(image.pix, ivar, psf, wave, mine, **options)
        gathered = comm.gather((mine, results, MPI.Get_processor_name()), root=0)
        if rank != 0:
            return 0
        hosts = [h for _, _, h in gathered]
        log.info("%d ranks on %d node(s): %s", size, len(set(hosts)),
                 ", ".join(f"{h} x{hosts.count(h)}" for h in sorted(set(hosts))))
        allb = [b for m, _, _ in gathered for b in m]
        allr = [r for _, rs, _ in gathered for r in rs]
        header = dict(image.header)
        header["BUNIT"] = "electron/Angstrom"
        header["EXTVAR"] = "model" if "readnoise" in options else "data"
        frame = assemble_frame(allr, allb, wave, psf, header)
    frame.fibermap = fibermap
    frame.header["IN_PSF"] = str(args.psf)[-68:]
    frame.header["IN_IMG"] = str(args.image)[-68:]
    write_frame(args.outfile, frame)
    log.info("wrote %s: %d fibers x %d wavelengths in %.1f s (%d ranks)", args.outfile, frame.nspec,
             frame.nwave, time.perf_counter() - t0, size)
    n_nodata = int(np.sum(frame.ivar == 0))
    if n_nodata:
        log.info("%d of %d flux values have no data (ivar 0)", n_nodata, frame.flux.size)
    return 0
