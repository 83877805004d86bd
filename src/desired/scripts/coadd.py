"""``desired coadd``: coadd the spectra of each target of a spectra file.

Example::

    desired coadd -i spectra-main-dark-27258.fits -o coadd-main-dark-27258.fits [--cameras]

Per band inverse-variance coadd with per-exposure outlier rejection (``--nsig``, 0 to
disable), resolution averaged with the same weights, COADD fibermap and EXP_FIBERMAP,
scores with template S/N² (see :mod:`desired.coadd`).  ``--cameras`` also merges b, r, z onto
one ``BRZ`` grid.  One band of the input is in memory at a time.  Exit status: 0 on success,
1 on unreadable or inconsistent input (nothing written).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("-i", "--infile", required=True, help="spectra file")
    parser.add_argument("-o", "--outfile", required=True, help="output coadd file")
    parser.add_argument("--nsig", type=float, default=4.0,
                        help="outlier (cosmic-ray) rejection threshold in sigma; 0 disables it (default 4)")
    parser.add_argument("--cameras", action="store_true", help="also coadd across cameras onto one brz grid")
    parser.add_argument("--onetile", choices=["auto", "yes", "no"], default="auto",
                        help="keep tile columns in the fibermap (auto: for tile groupings)")


def run(infile, outfile, cosmics_nsig=4.0, cameras=False, onetile=None):
    """Coadd ``infile`` into ``outfile``.

    Parameters
    ----------
    infile, outfile : str
    cosmics_nsig : float
    cameras : bool
    onetile : bool, optional
        Default: True when the file's SPGRP is a tile grouping.

    Returns
    -------
    dict
        :func:`desired.coadd.coadd_arrays` output.
    """
    from ..coadd import coadd_arrays
    from ..io.spectra import read_spectra_band, read_spectra_meta, write_coadd

    meta = read_spectra_meta(infile)
    if onetile is None:
        onetile = str(meta["header"].get("SPGRP", "")).lower() in ("cumulative", "pernight", "perexp")
    res = coadd_arrays(meta["bands"], meta["wave"], lambda b: read_spectra_band(infile, b), meta["fibermap"],
                       cosmics_nsig=cosmics_nsig, onetile=onetile, cameras=cameras)
    header = dict(meta["header"])
    for key in [k for k in header if k.startswith("INFIL")]:
        del header[key]
    import os
    header["INFIL000"] = os.path.basename(infile)
    header["COADDNSG"] = float(cosmics_nsig)
    write_coadd(outfile, header, res)
    ntarget = len(res["fibermap"])
    nrej = sum(int((v > 0).sum()) for v in res["nrejected"].values())
    log.info("wrote %s: %d targets from %d spectra, bands %s; %d input spectra had outlier pixels rejected",
             outfile, ntarget, len(meta["fibermap"]), ",".join(res["bands"]), nrej)
    return res


def main(args):
    """Run from parsed arguments; return the exit status."""
    from ..errors import EXIT_DATA_ERROR
    from ..io.util import DataModelError
    onetile = {"auto": None, "yes": True, "no": False}[args.onetile]
    try:
        run(args.infile, args.outfile, args.nsig, args.cameras, onetile)
    except (DataModelError, ValueError, KeyError) as err:
        log.error("%s: %s", args.infile, err)
        return EXIT_DATA_ERROR
    return 0

