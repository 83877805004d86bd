"""``desired check-raw``: verify that a raw exposure can be read (every camera).

The workflow runs it for the exposures its exposure-table scan marked bad
(LASTSTEP ``ignore``), so that an unreadable raw file is a failed job of the run
(non-zero exit status, its reason in the job's log and in ``desired status``)
rather than an exposure that silently vanishes.  Exit status: 0 when every
camera reads, 65 (data error) otherwise.
"""
from __future__ import annotations

import logging

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the options of ``desired check-raw``."""
    parser.add_argument("--infile", required=True, help="raw exposure desi-{expid}.fits.fz")
    parser.add_argument("--outfile", default=None, help="marker written when the file reads (optional)")


def run(infile, outfile=None):
    """Read the exposure header and every camera of a raw file; write ``outfile`` ("ok") if all read.

    Parameters
    ----------
    infile : str
        Raw exposure.
    outfile : str, optional
        Marker file written (atomically) when the file is readable.

    Returns
    -------
    list of str
        The cameras read.

    Raises
    ------
    DataModelError
        If the header or a camera cannot be read (the message names the file and camera).
    """
    from ..io.raw import raw_cameras, read_raw_camera, read_raw_header
    from ..io.util import DataModelError, atomic_path
    read_raw_header(infile)
    cameras = raw_cameras(infile)
    if not cameras:
        raise DataModelError(infile, "no camera HDU")
    for camera in cameras:
        read_raw_camera(infile, camera)
    if outfile:
        with atomic_path(outfile) as tmp:
            with open(tmp, "w") as fh:
                fh.write("ok " + " ".join(cameras) + "\n")
    log.info("%s: readable (%s)", infile, ", ".join(cameras))
    return cameras


def main(args):
    """Check the file; return 0, or 65 when it cannot be read."""
    from ..io.util import DataModelError
    try:
        run(args.infile, args.outfile)
    except DataModelError as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    return 0
