"""``desired zcatalog``: stack a production's redshift files into one catalog.

Example::

    desired zcatalog --infiles redux/healpix/main/dark/*/*/redrock-main-dark-*.fits \\
        --outfile redux/zcatalog/zpix-main-dark.fits

Exit status: 0 on success, 1 when an input cannot be read (nothing is written then).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infiles", nargs="+", required=True, help="redrock-format redshift files")
    parser.add_argument("--outfile", required=True, help="output catalog (zpix-{survey}-{program}.fits)")
    parser.add_argument("--survey", default=None, help="SURVEY keyword (default: from the inputs)")
    parser.add_argument("--program", default=None, help="PROGRAM keyword (default: from the inputs)")


def run(infiles, outfile, survey=None, program=None):
    """Read ``infiles``, stack them and write ``outfile``; return the ZCatalog."""
    from ..io.redshifts import read_redshifts, write_zcatalog
    from ..redshift.zcatalog import build_zcatalog

    catalogs = [read_redshifts(path) for path in sorted(infiles)]
    header = {}
    for key, value in (("SURVEY", survey), ("PROGRAM", program)):
        values = {str(c.header.get(key)) for c in catalogs if key in c.header}
        header[key] = value if value is not None else (values.pop() if len(values) == 1 else None)
    for key in ("RRVER",) + tuple(f"TEMNAM{i:02d}" for i in range(20)):
        if key in catalogs[0].header:
            header[key] = catalogs[0].header[key]
    zcat = build_zcatalog(catalogs, header)
    write_zcatalog(outfile, zcat)
    log.info("wrote %s: %d rows from %d files (%d unique targets)", outfile, len(zcat.zcatalog), len(catalogs),
             int(zcat.zcatalog["ZCAT_PRIMARY"].sum()))
    return zcat


def main(args):
    """Build the catalog; return the exit status."""
    from ..io.util import DataModelError
    try:
        run(args.infiles, args.outfile, args.survey, args.program)
    except (DataModelError, OSError, ValueError) as err:
        log.error("%s", err)
        return 1
    return 0
