"""Combine the arc PSFs of a night into one PSF (per-fiber robust median of coefficients)."""
from __future__ import annotations

import logging

import numpy as np

from .psf import GaussHermitePSF
from .psffit import STATUS_INTERPOLATED

log = logging.getLogger(__name__)


def _robust_combine(stack, usable, nsig=4.0):
    """Median of ``stack`` along axis 0 over usable entries after outlier rejection.

    Parameters
    ----------
    stack : array, shape (npsf, nfiber, ncoef)
    usable : array of bool, shape (npsf, nfiber)
    nsig : float
        Entries further than ``nsig`` robust sigmas (1.4826 MAD across PSFs, per fiber
        and coefficient) from the median are rejected before the final median.

    Returns
    -------
    combined : ndarray, shape (nfiber, ncoef)
    nused : ndarray of int, shape (nfiber,)
        PSFs kept for each fiber (all coefficients agreeing).
    """
    data = np.where(usable[:, :, None], stack, np.nan)
    med = np.nanmedian(data, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(data - med[None]), axis=0)
    # a floor avoids rejecting everything when the PSFs agree to rounding error
    scale = np.maximum(mad, 1e-6 * np.maximum(np.abs(med), 1.0))
    outlier = np.abs(data - med[None]) > nsig * scale[None]
    bad_psf = outlier.any(axis=2) & usable                 # one bad coefficient rejects the fiber's PSF
    keep = usable & ~bad_psf
    # when rejection would leave nothing, fall back to all usable entries
    none_left = ~keep.any(axis=0)
    keep[:, none_left] = usable[:, none_left]
    combined = np.nanmedian(np.where(keep[:, :, None], stack, np.nan), axis=0)
    return combined, keep.sum(axis=0)


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
        Median coefficients; ``STATUS`` is the bitwise AND of the inputs' status bits
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
    combined, nused = _robust_combine(np.concatenate(blocks, axis=2), usable, nsig)
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
