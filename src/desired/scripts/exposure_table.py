"""``desired exposure-table``: scan one night of a raw tree and write its exposure table."""
from __future__ import annotations

import logging

from ..exposures import is_bad, override_rows, read_exposure_table, scan_night, write_exposure_table

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the options of ``desired exposure-table``."""
    parser.add_argument("--raw-dir", required=True, help="root of the raw data tree")
    parser.add_argument("--night", required=True, type=int, help="night YYYYMMDD")
    parser.add_argument("--outfile", required=True, help="output csv (exposure_table_{night}.csv)")
    parser.add_argument("--override", default=None,
                        help="csv in the same format whose rows replace the scanned rows of its nights")


def table_rows(raw_dir, night, override=None):
    """Rows of one night: the raw headers scanned, then the override's rows of that night.

    The workflow calls this while the Snakefile is parsed (so a dry run knows every
    job) and the exposure_table rule writes the same rows.
    """
    night = int(night)
    rows = scan_night(raw_dir, night)
    if override:
        rows = override_rows(rows, [r for r in read_exposure_table(override) if int(r["NIGHT"]) == night])
    return rows


def run(raw_dir, night, outfile, override=None):
    """Scan one night of a raw tree, optionally override rows, write the exposure table.

    Parameters
    ----------
    raw_dir : str
        Root of the raw data tree.
    night : int
        Night YYYYMMDD.
    outfile : str
        Output csv (``exposure_table_{night}.csv``).
    override : str, optional
        Csv in the same format whose rows of this night replace the scanned ones.

    Returns
    -------
    list of dict
        The rows written.

    Raises
    ------
    ValueError
        If the night has no exposures (nothing written).
    """
    night = int(night)
    rows = table_rows(raw_dir, night, override)
    if not rows:
        raise ValueError(f"{raw_dir}: no raw exposures found for night {night}")
    write_exposure_table(outfile, rows)
    counts = {}
    for row in rows:
        counts[row["OBSTYPE"]] = counts.get(row["OBSTYPE"], 0) + 1
    log.info("night %d: %d exposures (%s) -> %s", night, len(rows),
             ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())), outfile)
    for row in rows:
        if is_bad(row):
            log.error("night %d expid %d marked bad (LASTSTEP ignore): %s", night, row["EXPID"], row["COMMENTS"])
    return rows


def main(args):
    """Scan, optionally override, write; return 0 (1 when the night has no exposures)."""
    try:
        run(raw_dir=args.raw_dir, night=args.night, outfile=args.outfile, override=args.override)
    except ValueError as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    return 0
