"""Combine the arc PSFs of a night into one PSF (per-fiber mean of the agreeing inputs' coefficients)."""
from __future__ import annotations

import logging

import numpy as np

from .psf import GaussHermitePSF
from .psffit import STATUS_INTERPOLATED

log = logging.getLogger(__name__)


def _outliers(deviation, usable, nsig, floor):
    """(PSF, fiber) entries whose deviation exceeds ``nsig`` times the typical one (pooled over fibers) or ``floor``."""
    typical = np.median(deviation[usable]) if usable.any() else 0.0
    return usable & (deviation > max(nsig * 1.4826 * typical, floor))


def _select(psfs, usable, nsig, trace_floor=0.02, width_floor=0.01):
    """Which (PSF, fiber) entries agree with the others.

    Each fiber's trace and core widths in each PSF are compared with their
    median over the PSFs on a wavelength grid.  The deviations (largest trace
    offset in pixels, largest relative GHSIGX/GHSIGY difference) are pooled over
    all fibers to set the typical scatter, which a handful of arcs per fiber
    could not; an entry more than ``nsig`` times that (and more than the floor)
    away is rejected.

    Returns
    -------
    keep : ndarray of bool, shape (npsf, nfiber)
    """
    ref = psfs[0]
    grid = np.linspace(ref.wavemin, ref.wavemax, 25)
    fibers = np.arange(ref.nfiber)[:, None]
    xy = np.array([[p.x(fibers, grid), p.y(fibers, grid)] for p in psfs])          # [npsf, 2, nfiber, ngrid]
    widths = np.array([[p.param(name, fibers, grid) for name in ("GHSIGX", "GHSIGY")] for p in psfs])
    masked = np.where(usable[:, None, :, None], xy, np.nan)
    trace_dev = np.nanmax(np.abs(xy - np.nanmedian(masked, axis=0)[None]), axis=(1, 3))
    wmed = np.nanmedian(np.where(usable[:, None, :, None], widths, np.nan), axis=0)[None]
    width_dev = np.nanmax(np.abs(widths / wmed - 1), axis=(1, 3))
    bad = _outliers(trace_dev, usable, nsig, trace_floor) | _outliers(width_dev, usable, nsig, width_floor)
    keep = usable & ~bad
    # when rejection would leave nothing, fall back to all usable entries
    none_left = ~keep.any(axis=0)
    keep[:, none_left] = usable[:, none_left]
    return keep


def combine_psfs(psfs, nsig=4.0):
    """Combine PSFs of the same camera fiber by fiber.

    Parameters
    ----------
    psfs : list of GaussHermitePSF
        Same fibers and trace domain; coefficient counts may differ (padded with 0).
    nsig : float
        Outlier rejection threshold in robust sigmas.

    Returns
    -------
    GaussHermitePSF
        Mean coefficients of the agreeing inputs (see :func:`_select`); ``STATUS`` is the bitwise AND of the inputs' status bits
        over the PSFs used (a fiber is flagged only when every input flags it), and
        BADFIBER lists fibers no input could fit.

    Raises
    ------
    ValueError
        If no PSF is given or they do not describe the same fibers and wavelength range.
    """
    if not psfs:
        raise ValueError("no PSF to combine")
    ref = psfs[0]
    for p in psfs[1:]:
        if (p.nfiber, p.fibermin) != (ref.nfiber, ref.fibermin):
            raise ValueError(f"PSFs cover different fibers: {p.fibermin}+{p.nfiber} vs {ref.fibermin}+{ref.nfiber}")
        if not np.allclose([p.wavemin, p.wavemax, p.param_wavemin, p.param_wavemax],
                           [ref.wavemin, ref.wavemax, ref.param_wavemin, ref.param_wavemax]):
            raise ValueError("PSFs have different wavelength domains")
        if (p.ghdegx, p.ghdegy) != (ref.ghdegx, ref.ghdegy):
            raise ValueError("PSFs have different Gauss-Hermite degrees")
    npsf = len(psfs)

    def stacked(get):
        arrays = [np.asarray(get(p)) for p in psfs]
        ncoef = max(a.shape[1] for a in arrays)
        out = np.zeros((npsf, ref.nfiber, ncoef))
        for i, a in enumerate(arrays):
            out[i, :, :a.shape[1]] = a
        return out

    status = np.zeros((npsf, ref.nfiber), dtype=np.int64)
    for i, p in enumerate(psfs):
        if "STATUS" in p.params:
            status[i] = np.rint(p.params["STATUS"][:, 0]).astype(np.int64)
    fitted = (status & STATUS_INTERPOLATED) == 0
    # fibers no PSF could fit still get the median of the interpolated values
    usable = fitted | ~fitted.any(axis=0)[None, :]
    # traces and shape parameters vote together: concatenate all coefficients
    names = [k for k in ref.params if k != "STATUS"]
    blocks = [stacked(lambda p: p.xcoef), stacked(lambda p: p.ycoef)]
    blocks += [stacked(lambda p, k=k: p.params[k]) for k in names]
    sizes = [b.shape[2] for b in blocks]
    keep = _select(psfs, usable, nsig)
    nused = keep.sum(axis=0)
    stack = np.concatenate(blocks, axis=2)
    combined = (stack * keep[:, :, None]).sum(axis=0) / nused[:, None]
    parts = np.split(combined, np.cumsum(sizes)[:-1], axis=1)
    xcoef, ycoef = parts[0], parts[1]
    params = {k: parts[2 + i] for i, k in enumerate(names)}
    out_status = np.bitwise_and.reduce(np.where(usable, status, -1), axis=0)
    out_status[~fitted.any(axis=0)] |= STATUS_INTERPOLATED
    params["STATUS"] = np.zeros((ref.nfiber, params[names[0]].shape[1]))
    params["STATUS"][:, 0] = out_status
    bad = ref.fibermin + np.flatnonzero(~fitted.any(axis=0))
    meta = dict(ref.meta)
    meta.update({"NPSFNITE": npsf, "BADFIBER": ",".join(str(int(b)) for b in bad), "NBADFIB": int(bad.size)})
    nrejected = int((usable.sum(axis=0) - nused).sum())
    if nrejected:
        log.info("rejected %d (PSF, fiber) outliers", nrejected)
    return GaussHermitePSF(xcoef, ycoef, ref.wavemin, ref.wavemax, params, ref.ghdegx, ref.ghdegy,
                           ref.hsizex, ref.hsizey, ref.npix_x, ref.npix_y, ref.param_wavemin,
                           ref.param_wavemax, ref.fibermin, meta)
