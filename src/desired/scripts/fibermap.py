"""``desired fibermap``: copy an exposure's raw fibermap into the production tree.

The raw tree's ``fibermap-{EXPID}.fits`` (written by fiber assignment / the
simulator) is read, the exposure keywords NIGHT, EXPID and TILEID are taken from
the raw exposure header (they win over the fibermap's own values, with a warning
on disagreement) and the result is written to ``preproc/{night}/{expid}/``.
"""
from __future__ import annotations

import logging

from ..io.fibermap import read_fibermap, write_fibermap
from ..io.raw import read_raw_header
from ..io.util import DataModelError

log = logging.getLogger(__name__)

#: exposure keywords copied from the raw header into the fibermap header
COPIED_KEYS = ("NIGHT", "EXPID", "TILEID", "OBSTYPE", "EXPTIME", "PROGRAM", "SURVEY", "FAPRGRM")


def add_arguments(parser):
    """Register the options of ``desired fibermap``."""
    parser.add_argument("--infile", required=True, help="raw fibermap-{EXPID}.fits")
    parser.add_argument("--raw", required=True, help="raw exposure desi-{EXPID}.fits.fz (exposure keywords)")
    parser.add_argument("--outfile", required=True, help="production fibermap-{EXPID}.fits")


def assemble_fibermap(fibermap, raw_header):
    """Return a copy of ``fibermap`` with the exposure keywords of ``raw_header`` in its meta.

    Parameters
    ----------
    fibermap : astropy.table.Table
        One row per fiber.
    raw_header : dict
        Exposure keywords of the raw file.

    Returns
    -------
    astropy.table.Table
    """
    out = fibermap.copy(copy_data=True)
    for key in COPIED_KEYS:
        if key not in raw_header or raw_header[key] is None:
            continue
        old = out.meta.get(key)
        if old is not None and str(old).strip() != str(raw_header[key]).strip():
            log.warning("fibermap %s=%s differs from the raw header's %s; using the raw header",
                        key, old, raw_header[key])
        out.meta[key] = raw_header[key]
    return out


def run(infile, raw, outfile):
    """Copy a raw fibermap into the production tree with the raw exposure's keywords.

    Parameters
    ----------
    infile : str
        Raw ``fibermap-{EXPID}.fits``.
    raw : str
        Raw exposure ``desi-{EXPID}.fits.fz`` (source of NIGHT, EXPID, TILEID...).
    outfile : str
        Production ``fibermap-{EXPID}.fits``.

    Raises
    ------
    DataModelError
        If the raw header lacks NIGHT or EXPID or a file does not follow the data model.
    """
    header = read_raw_header(raw)
    for key in ("NIGHT", "EXPID"):
        if key not in header:
            raise DataModelError(raw, f"raw exposure header lacks {key}")
    fibermap = read_fibermap(infile)
    out = assemble_fibermap(fibermap, header)
    write_fibermap(outfile, out, header=dict(out.meta))
    log.info("fibermap of exposure %s (%d fibers) -> %s", header["EXPID"], len(out), outfile)


def main(args):
    """Read, assemble, write; return 0."""
    run(infile=args.infile, raw=args.raw, outfile=args.outfile)
    return 0
