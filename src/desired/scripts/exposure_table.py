"""``desired exposure-table``: scan one night of a raw tree and write its exposure table."""
from __future__ import annotations

import logging

from ..exposures import override_rows, read_exposure_table, scan_night, write_exposure_table

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the options of ``desired exposure-table``."""
    parser.add_argument("--raw-dir", required=True, help="root of the raw data tree")
    parser.add_argument("--night", required=True, type=int, help="night YYYYMMDD")
    parser.add_argument("--outfile", required=True, help="output csv (exposure_table_{night}.csv)")
    parser.add_argument("--override", default=None,
                        help="csv in the same format whose rows replace the scanned rows of its nights")


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
    rows = scan_night(raw_dir, night)
    if override:
        rows = override_rows(rows, [r for r in read_exposure_table(override) if int(r["NIGHT"]) == night])
    if not rows:
        raise ValueError(f"{raw_dir}: no raw exposures found for night {night}")
    write_exposure_table(outfile, rows)
    counts = {}
    for row in rows:
        counts[row["OBSTYPE"]] = counts.get(row["OBSTYPE"], 0) + 1
    log.info("night %d: %d exposures (%s) -> %s", night, len(rows),
             ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())), outfile)
    return rows


def main(args):
    """Scan, optionally override, write; return 0 (1 when the night has no exposures)."""
    try:
        run(raw_dir=args.raw_dir, night=args.night, outfile=args.outfile, override=args.override)
    except ValueError as err:
        log.error("%s", err)
        return 1
    return 0
