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


def main(args):
    """Scan, optionally override, write; return 0 (1 when the night has no exposures)."""
    rows = scan_night(args.raw_dir, args.night)
    if args.override:
        rows = override_rows(rows, [r for r in read_exposure_table(args.override)
                                    if int(r["NIGHT"]) == args.night])
    if not rows:
        log.error("no raw exposures found for night %d under %s", args.night, args.raw_dir)
        return 1
    write_exposure_table(args.outfile, rows)
    counts = {}
    for row in rows:
        counts[row["OBSTYPE"]] = counts.get(row["OBSTYPE"], 0) + 1
    log.info("night %d: %d exposures (%s) -> %s", args.night, len(rows),
             ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())), args.outfile)
    return 0
