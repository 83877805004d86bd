"""``desired psfnight``: combine a night's arc PSFs of one camera.

Example::

    desired psfnight --infiles psf-r0-00000010.fits psf-r0-00000011.fits --outfile psfnight-r0-20261124.fits

Missing or unreadable inputs are skipped with a warning.  With no input at all
a fallback PSF (``run(..., fallback=...)``, used by the workflow's
``psfnight.fallback_psf``) is copied instead.  Exit status: 0 on success, 1 when
no input is usable or they are inconsistent (nothing written).
"""
from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infiles", nargs="+", required=True, help="arc PSF files of the night")
    parser.add_argument("--outfile", required=True, help="output psfnight file")
    parser.add_argument("--nsig", type=float, default=4.0, help="outlier rejection threshold (robust sigmas)")


def combine_files(infiles, outfile, nsig=4.0):
    """Read the PSF files, combine them and write the result.

    Parameters
    ----------
    infiles : list of str
        Arc PSF files of one night and camera; unreadable ones are skipped with a warning.
    outfile : str
        Output psfnight file (header INPSFnnn names the inputs used).
    nsig : float
        Outlier rejection threshold, robust sigmas.

    Raises
    ------
    ValueError
        If no input is readable or the PSFs cannot be combined (nothing written).
    """
    from ..io.psf import read_psf, write_psf
    from ..io.util import DataModelError
    from ..psfnight import combine_psfs

    psfs, used = [], []
    for path in infiles:
        try:
            psfs.append(read_psf(path))
            used.append(os.path.basename(path))
        except DataModelError as err:
            log.warning("skipping %s", err)
    if not psfs:
        raise ValueError(f"{outfile}: no readable PSF among {len(infiles)} inputs; nothing written")
    try:
        psf = combine_psfs(psfs, nsig=nsig)
    except ValueError as err:
        raise ValueError(f"{outfile}: cannot combine the PSFs: {err}") from err
    header = {f"INPSF{i:03d}": name for i, name in enumerate(used)}
    write_psf(outfile, psf, header=header)
    log.info("wrote %s from %d of %d PSFs", outfile, len(psfs), len(infiles))


def copy_fallback(fallback, outfile):
    """Copy the fallback PSF file byte for byte onto ``outfile`` (atomic).

    Raises
    ------
    FileNotFoundError
        If ``fallback`` does not exist.
    """
    from ..io.util import atomic_path
    if not os.path.isfile(fallback):
        raise FileNotFoundError(f"{fallback}: fallback PSF does not exist")
    with atomic_path(outfile) as tmp:
        shutil.copyfile(fallback, tmp)
    log.warning("no arc PSF: %s is a copy of the fallback %s", outfile, fallback)


def run(infiles, outfile, nsig=4.0, fallback=None):
    """Combine a night's arc PSFs of one camera, or copy the fallback when there are none.

    Parameters
    ----------
    infiles : list of str
        Arc PSF files (may be empty when every arc failed).
    outfile : str
        Output psfnight file.
    nsig : float
        Outlier rejection threshold, robust sigmas.
    fallback : str, optional
        PSF copied to ``outfile`` when ``infiles`` is empty.

    Raises
    ------
    ValueError
        No input and no fallback, no readable input, or inconsistent inputs (nothing written).
    """
    if infiles:
        combine_files(list(infiles), outfile, nsig=nsig)
    elif fallback:
        copy_fallback(fallback, outfile)
    else:
        raise ValueError(f"{outfile}: no input PSF and no fallback PSF; nothing written")


def main(args):
    """Combine the PSFs; return the exit status."""
    try:
        run(infiles=args.infiles, outfile=args.outfile, nsig=args.nsig)
    except ValueError as err:
        log.error("%s", err)
        return 1
    return 0
