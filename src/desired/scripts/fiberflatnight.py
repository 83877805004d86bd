"""``desired fiberflatnight``: robust combination of a night's fiber flats of one camera.

Example::

    desired fiberflatnight --infiles fiberflat-r0-00000002.fits fiberflat-r0-00000003.fits \\
        --outfile fiberflatnight-r0-20261124.fits

Unreadable inputs are skipped with a warning.  Exit status: 0 on success, 1 when no
input is usable or they are inconsistent (nothing written).
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infiles", nargs="+", required=True, help="fiberflat files of the night (one camera)")
    parser.add_argument("--outfile", required=True, help="output fiberflatnight file")
    parser.add_argument("--nsig", type=float, default=4.0, help="outlier rejection threshold, sigma (default 4)")


def run(infiles, outfile, nsig=4.0):
    """Combine the night's fiber flats of one camera and write the result.

    Parameters
    ----------
    infiles : list of str
        fiberflat files; unreadable ones are skipped with a warning.
    outfile : str
        Output fiberflatnight file (header INFLTnnn name the inputs used).
    nsig : float

    Raises
    ------
    ValueError
        No readable input, or inconsistent inputs (nothing written).
    """
    from ..fiberflat import average_fiberflats
    from ..io.fiberflat import read_fiberflat, write_fiberflat
    from ..io.util import DataModelError

    flats, used = [], []
    for path in infiles:
        try:
            flats.append(read_fiberflat(path))
            used.append(os.path.basename(path))
        except DataModelError as err:
            log.warning("skipping %s", err)
    if not flats:
        raise ValueError(f"{outfile}: no readable fiberflat among {len(infiles)} inputs; nothing written")
    cameras = {str(f.header.get("CAMERA", "")).lower() for f in flats}
    if len(cameras) > 1:
        raise ValueError(f"{outfile}: inputs mix cameras {sorted(cameras)}; nothing written")
    try:
        night = average_fiberflats(flats, nsig=nsig)
    except ValueError as err:
        raise ValueError(f"{outfile}: {err}") from err
    for key in ("EXPID", "IN_FRAME"):
        night.header.pop(key, None)
    night.header.update({f"INFLT{i:03d}": name for i, name in enumerate(used)})
    write_fiberflat(outfile, night)
    log.info("wrote %s from %d of %d flats", outfile, len(flats), len(infiles))


def main(args):
    """Combine the flats; return the exit status."""
    try:
        run(args.infiles, args.outfile, nsig=args.nsig)
    except ValueError as err:
        log.error("%s", err)
        return 1
    return 0
