"""``desired psfnight``: combine a night's arc PSFs of one camera.

Example::

    desired psfnight --infiles psf-r0-00000010.fits psf-r0-00000011.fits --outfile psfnight-r0-20261124.fits

Missing or unreadable inputs are skipped with a warning.  With no input at all
a fallback PSF (``run(..., fallback=...)``, used by the workflow's
``psfnight.fallback_psf``) is copied instead.  Exit status: 0 on success, 65 (data error) when
no input is usable or they are inconsistent (nothing written).
"""
from __future__ import annotations

import logging
import os
import shutil

from ..errors import EXIT_DATA_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infiles", nargs="+", required=True, help="arc PSF files of the night")
    parser.add_argument("--outfile", required=True, help="output psfnight file")
    parser.add_argument("--nsig", type=float, default=4.0, help="outlier rejection threshold (robust sigmas)")


def arc_inputs(sidecars, extra_dropped=()):
    """Split the night's arc PSF sidecars into the PSFs to combine and the arcs dropped.

    Parameters
    ----------
    sidecars : list of str
        ok/failed sidecars of the arc PSF fits (``psf-{camera}-{expid}.status``).
    extra_dropped : sequence of (name, reason)
        Arcs dropped before any fit (e.g. marked bad in the exposure table).

    Returns
    -------
    arcs : list of str
        PSF files whose sidecar says ok.
    dropped : list of (str, str)
        (file name, reason) of every other arc.
    """
    from ..workflow_status import read_step_reason, read_step_status
    arcs, dropped = [], [tuple(d) for d in extra_dropped]
    for sidecar in sidecars:
        psf = os.path.splitext(sidecar)[0] + ".fits"
        if read_step_status(sidecar) == "ok":
            arcs.append(psf)
        else:
            dropped.append((os.path.basename(psf), read_step_reason(sidecar) or "fit failed"))
    return arcs, dropped


def combine_files(infiles, outfile, nsig=4.0, dropped=()):
    """Read the PSF files, combine them and write the result, recording the arcs used and dropped.

    Parameters
    ----------
    infiles : list of str
        Arc PSF files of one night and camera; unreadable ones are dropped (recorded) with a warning.
    outfile : str
        Output psfnight file: primary header INPSFnnn names the PSFs used, DRPSFnnn
        those dropped (NINPSF, NDRPSF count them), and table HDU PSFINPUT lists
        every arc with USED and REASON.
    nsig : float
        Outlier rejection threshold, robust sigmas.
    dropped : sequence of (str, str)
        (file name, reason) of arcs dropped before this step.

    Raises
    ------
    ValueError
        If no input is readable or the PSFs cannot be combined (nothing written).
    """
    from ..io.psf import read_psf, write_psf
    from ..io.util import DataModelError
    from ..psfnight import combine_psfs

    psfs, used, dropped = [], [], [tuple(d) for d in dropped]
    for path in infiles:
        try:
            psfs.append(read_psf(path))
            used.append(os.path.basename(path))
        except DataModelError as err:
            log.warning("dropping %s", err)
            dropped.append((os.path.basename(path), f"unreadable: {err.problem}"))
    for name, reason in dropped:
        log.warning("arc %s dropped: %s", name, reason)
    if not psfs:
        raise DataModelError(outfile, f"no readable PSF among {len(infiles)} inputs; nothing written")
    try:
        psf = combine_psfs(psfs, nsig=nsig)
    except ValueError as err:
        raise ValueError(f"{outfile}: cannot combine the PSFs: {err}") from err
    header = {f"INPSF{i:03d}": name for i, name in enumerate(used)}
    header.update({f"DRPSF{i:03d}": name for i, (name, _) in enumerate(dropped)})
    header.update({"NINPSF": len(used), "NDRPSF": len(dropped)})
    write_psf(outfile, psf, header=header, inputs=[(n, True, "") for n in used] + [(n, False, r) for n, r in dropped])
    log.info("wrote %s from %d of %d PSFs (%d arcs dropped)", outfile, len(psfs), len(infiles) + len(dropped)
             - len([d for d in dropped if d[0] in map(os.path.basename, infiles)]), len(dropped))


def copy_fallback(fallback, outfile):
    """Copy the fallback PSF file byte for byte onto ``outfile`` (atomic).

    Raises
    ------
    FileNotFoundError
        If ``fallback`` does not exist.
    """
    from ..io.util import atomic_path
    if not os.path.isfile(fallback):
        raise FileNotFoundError(f"{fallback}: fallback PSF does not exist")
    with atomic_path(outfile) as tmp:
        shutil.copyfile(fallback, tmp)
    log.warning("no arc PSF: %s is a copy of the fallback %s", outfile, fallback)


def run(infiles, outfile, nsig=4.0, fallback=None, dropped=(), sidecars=None):
    """Combine a night's arc PSFs of one camera, or copy the fallback when there are none.

    Parameters
    ----------
    infiles : list of str
        Arc PSF files (may be empty when every arc failed).
    outfile : str
        Output psfnight file.
    nsig : float
        Outlier rejection threshold, robust sigmas.
    fallback : str, optional
        PSF copied to ``outfile`` when ``infiles`` is empty.
    dropped : sequence of (str, str)
        (file name, reason) of arcs dropped before this step, recorded in the output.
    sidecars : list of str, optional
        ok/failed sidecars of the night's arc PSF fits (the workflow's input):
        the PSFs whose sidecar says ok are added to ``infiles``, the others to
        ``dropped`` (see :func:`arc_inputs`).

    Raises
    ------
    ValueError
        No input and no fallback, no readable input, or inconsistent inputs (nothing written).
    """
    infiles = list(infiles or [])
    if sidecars is not None:
        arcs, dropped = arc_inputs(sidecars, extra_dropped=dropped)
        infiles += arcs
    if infiles:
        combine_files(infiles, outfile, nsig=nsig, dropped=dropped)
    elif fallback:
        for name, reason in dropped:
            log.warning("arc %s dropped: %s", name, reason)
        copy_fallback(fallback, outfile)
    else:
        raise ValueError(f"{outfile}: no input PSF and no fallback PSF (no arc PSF succeeded this night and "
                         "psfnight.fallback_psf is not configured); nothing written")


def main(args):
    """Combine the PSFs; return the exit status."""
    try:
        run(infiles=args.infiles, outfile=args.outfile, nsig=args.nsig)
    except ValueError as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    return 0
