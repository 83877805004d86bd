"""``desired psfnight``: combine a night's arc PSFs of one camera.

Example::

    desired psfnight --infiles psf-r0-00000010.fits psf-r0-00000011.fits --outfile psfnight-r0-20261124.fits

Missing or unreadable inputs are skipped with a warning.  Exit status: 0 on
success, 1 when no input is usable or they are inconsistent (nothing written).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infiles", nargs="+", required=True, help="arc PSF files of the night")
    parser.add_argument("--outfile", required=True, help="output psfnight file")
    parser.add_argument("--nsig", type=float, default=4.0, help="outlier rejection threshold (robust sigmas)")


def main(args):
    """Combine the PSFs; return the exit status."""
    import os

    from ..io.psf import read_psf, write_psf
    from ..io.util import DataModelError
    from ..psfnight import combine_psfs

    psfs, used = [], []
    for path in args.infiles:
        try:
            psfs.append(read_psf(path))
            used.append(os.path.basename(path))
        except DataModelError as err:
            log.warning("skipping %s", err)
    if not psfs:
        log.error("no readable PSF among %d inputs; nothing written", len(args.infiles))
        return 1
    try:
        psf = combine_psfs(psfs, nsig=args.nsig)
    except ValueError as err:
        log.error("cannot combine the PSFs: %s", err)
        return 1
    header = {f"INPSF{i:03d}": name for i, name in enumerate(used)}
    write_psf(args.outfile, psf, header=header)
    log.info("wrote %s from %d of %d PSFs", args.outfile, len(psfs), len(args.infiles))
    return 0
