"""The exposure table: which exposures a raw data tree holds and what they are.

The workflow discovers its work by scanning the raw tree
(``{raw}/{night}/{expid}/desi-{expid}.fits.fz``, the ``raw`` entry of
:data:`desired.paths.PATTERNS`) and reading each file's exposure header.  One row
per exposure: NIGHT, EXPID, OBSTYPE (``ARC``, ``FLAT``, ``SCIENCE``, ...),
TILEID, EXPTIME (s), CAMERAS (the camera HDUs present, ``;``-separated),
LASTSTEP (``all``, or ``ignore`` for an exposure not to process: its raw file is
unreadable, or an override says so) and COMMENTS (why, for an ignored one).
The table is cached as csv per night (``exposure_table`` in the path table); a
user-supplied csv in the same format overrides the scan (for example to drop a
bad exposure or to fix a wrong OBSTYPE).
"""
from __future__ import annotations

import csv
import logging
import os
import re

from .io.raw import raw_cameras, read_raw_header
from .io.util import DataModelError, atomic_path
from .paths import findfile

log = logging.getLogger(__name__)

#: the columns of the table, in file order
COLUMNS = ("NIGHT", "EXPID", "OBSTYPE", "TILEID", "EXPTIME", "CAMERAS", "LASTSTEP", "COMMENTS")

#: columns a table must have (LASTSTEP/COMMENTS default to "all"/"" when absent)
REQUIRED_COLUMNS = COLUMNS[:6]

#: LASTSTEP of an exposure that is processed / left out (DESI's exposure-table values)
LASTSTEP_ALL = "all"
LASTSTEP_IGNORE = "ignore"

#: OBSTYPE values the pipeline processes, normalised to upper case
OBSTYPES = ("ARC", "FLAT", "SCIENCE", "ZERO", "DARK", "OTHER")

_NIGHT = re.compile(r"^\d{8}$")


def _normalise_obstype(header):
    """Return the upper-case OBSTYPE of an exposure header (FLAVOR as fallback)."""
    value = header.get("OBSTYPE") or header.get("FLAVOR") or "OTHER"
    value = str(value).strip().upper()
    return value if value in OBSTYPES else "OTHER"


def list_nights(raw_dir):
    """Return the sorted YYYYMMDD night directories of a raw tree (ints).

    Parameters
    ----------
    raw_dir : str
        Root of the raw data tree.
    """
    if not os.path.isdir(raw_dir):
        return []
    return sorted(int(name) for name in os.listdir(raw_dir)
                  if _NIGHT.match(name) and os.path.isdir(os.path.join(raw_dir, name)))


def scan_night(raw_dir, night):
    """Scan one night of a raw tree into exposure-table rows.

    Parameters
    ----------
    raw_dir : str
        Root of the raw data tree.
    night : int
        YYYYMMDD.

    Returns
    -------
    list of dict
        One row per exposure directory holding a raw file, sorted by EXPID; keys
        :data:`COLUMNS`.  EXPID and NIGHT are ints, EXPTIME float (s), CAMERAS a
        list of lower-case camera names.  A raw file that cannot be read (truncated,
        corrupt, not a raw exposure) keeps its row, marked LASTSTEP ``ignore`` with
        the reason in COMMENTS (OBSTYPE/CAMERAS from whatever header is still
        readable), and is logged as an error.
    """
    night_dir = os.path.join(raw_dir, str(int(night)))
    rows = []
    if not os.path.isdir(night_dir):
        return rows
    for name in sorted(os.listdir(night_dir)):
        if not name.isdigit():
            continue
        path = findfile("raw", root=raw_dir, night=int(night), expid=int(name))
        if not os.path.exists(path):
            continue
        try:
            header = read_raw_header(path)
            cameras = raw_cameras(path)
            laststep, comment = LASTSTEP_ALL, ""
        except (DataModelError, OSError) as err:
            log.error("unreadable raw exposure, marked bad (LASTSTEP ignore): %s", err)
            header, cameras = _salvage_header(path)
            laststep, comment = LASTSTEP_IGNORE, f"unreadable raw file: {getattr(err, 'problem', err)}"
        expid = int(header.get("EXPID", int(name)))
        if expid != int(name):
            log.warning("%s: header EXPID %d differs from its directory %s; using the directory",
                        path, expid, name)
            expid = int(name)
        rows.append({"NIGHT": int(night), "EXPID": expid, "OBSTYPE": _normalise_obstype(header),
                     "TILEID": int(header.get("TILEID", -1) if header.get("TILEID") is not None else -1),
                     "EXPTIME": float(header.get("EXPTIME", 0.0)), "CAMERAS": list(cameras),
                     "LASTSTEP": laststep, "COMMENTS": comment})
    return rows


def _salvage_header(path):
    """Best-effort (exposure header dict, cameras) of an unreadable raw file; ({}, []) if nothing reads."""
    from astropy.io import fits
    header, cameras = {}, []
    try:
        with fits.open(path, memmap=False, ignore_missing_end=True, lazy_load_hdus=True) as hdus:
            for hdu in hdus:
                name = hdu.name
                if len(name) == 2 and name[0] in "BRZ" and name[1].isdigit():
                    cameras.append(name.lower())
                if not header and "EXPTIME" in hdu.header:
                    header = {k: hdu.header[k] for k in ("EXPID", "OBSTYPE", "FLAVOR", "TILEID", "EXPTIME")
                              if k in hdu.header}
    except Exception:                   # a salvage attempt: whatever astropy raises, keep what was read
        pass
    return header, cameras


def write_exposure_table(path, rows):
    """Write exposure-table rows as csv (atomically).

    Parameters
    ----------
    path : str
    rows : list of dict
        Rows with the keys of :data:`COLUMNS` (CAMERAS a list of names).
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow([row["NIGHT"], f"{int(row['EXPID']):08d}", row["OBSTYPE"], row["TILEID"],
                                 f"{float(row['EXPTIME']):.3f}", ";".join(row["CAMERAS"]),
                                 row.get("LASTSTEP") or LASTSTEP_ALL, " ".join(str(row.get("COMMENTS", "")).split())])


def read_exposure_table(path):
    """Read an exposure-table csv.

    Parameters
    ----------
    path : str

    Returns
    -------
    list of dict
        Rows as written by :func:`write_exposure_table`.

    Raises
    ------
    DataModelError
        If the file is missing, lacks a column or has an unparsable row.
    """
    if not os.path.exists(path):
        raise DataModelError(path, "exposure table does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataModelError(path, f"exposure table lacks column(s) {', '.join(missing)}")
        rows = []
        for lineno, rec in enumerate(reader, start=2):
            try:
                obstype = rec["OBSTYPE"].strip().upper()
                rows.append({"NIGHT": int(rec["NIGHT"]), "EXPID": int(rec["EXPID"]),
                             "OBSTYPE": obstype if obstype in OBSTYPES else "OTHER",
                             "TILEID": int(rec["TILEID"]) if rec["TILEID"].strip() else -1,
                             "EXPTIME": float(rec["EXPTIME"]) if rec["EXPTIME"].strip() else 0.0,
                             "CAMERAS": [c for c in rec["CAMERAS"].replace(",", ";").split(";") if c],
                             "LASTSTEP": (rec.get("LASTSTEP") or LASTSTEP_ALL).strip().lower(),
                             "COMMENTS": (rec.get("COMMENTS") or "").strip()})
            except (ValueError, AttributeError) as err:
                raise DataModelError(path, f"line {lineno}: {err}") from None
    return rows


def is_bad(row):
    """True when an exposure-table row is not to be processed (LASTSTEP ``ignore``)."""
    return row.get("LASTSTEP", LASTSTEP_ALL) == LASTSTEP_IGNORE


def select_rows(rows, night=None, obstypes=None, cameras=None, bad=False):
    """Return the rows of one night / obstypes, with CAMERAS restricted to ``cameras``.

    Parameters
    ----------
    rows : list of dict
    night : int, optional
    obstypes : sequence of str, optional
        Upper-case OBSTYPE values to keep.
    cameras : sequence of str, optional
        Cameras the production processes; rows keep only these (rows left with
        none are dropped).
    bad : bool
        False (default): only the exposures to process; True: only the bad ones
        (LASTSTEP ``ignore``; kept even when no camera could be read).

    Returns
    -------
    list of dict
        New row dicts; the input is not modified.
    """
    out = []
    for row in rows:
        if night is not None and int(row["NIGHT"]) != int(night):
            continue
        if obstypes is not None and row["OBSTYPE"] not in obstypes:
            continue
        if is_bad(row) != bool(bad):
            continue
        cams = [c for c in row["CAMERAS"] if cameras is None or c in cameras]
        if not cams and not bad:
            continue
        out.append({**row, "CAMERAS": cams})
    return out


def override_rows(scanned, override):
    """Replace the scanned rows of the nights present in ``override``.

    Parameters
    ----------
    scanned, override : list of dict

    Returns
    -------
    list of dict
        ``override``'s rows for every night it mentions, ``scanned`` rows for
        the others, sorted by (NIGHT, EXPID).
    """
    nights = {int(r["NIGHT"]) for r in override}
    rows = [r for r in scanned if int(r["NIGHT"]) not in nights] + list(override)
    return sorted(rows, key=lambda r: (int(r["NIGHT"]), int(r["EXPID"])))
