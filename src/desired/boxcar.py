"""Quick-look boxcar extraction.

For every fiber and CCD row the pixels within ``±width`` columns of the trace are
summed; the per-row counts are then redistributed onto the output wavelength grid
by the overlap of each row's wavelength interval ``[λ(y - 1/2), λ(y + 1/2)]`` with
each output bin (flux conserving).  No deconvolution: the result is the spectrum
convolved with the PSF's line-spread function and there is no resolution matrix.
"""
from __future__ import annotations

import logging

import numba
import numpy as np

from .extract import wavelength_grid
from .frame import Frame
from .maskbits import specmask

log = logging.getLogger(__name__)


@numba.njit(cache=True)
def _row_sums(pix, ivar, xcen, row0, width):
    """Sum ``pix`` over columns ``round(xcen) ± width`` of rows ``row0 + k``.

    Returns counts, variance and a flag for rows with any zero-weight pixel.
    """
    ny, nx = pix.shape
    n = xcen.size
    counts = np.zeros(n)
    var = np.zeros(n)
    bad = np.zeros(n, np.bool_)
    for k in range(n):
        y = row0 + k
        if y < 0 or y >= ny:
            bad[k] = True
            continue
        xc = int(np.rint(xcen[k]))
        for x in range(xc - width, xc + width + 1):
            if x < 0 or x >= nx or ivar[y, x] <= 0:
                bad[k] = True
                continue
            counts[k] += pix[y, x]
            var[k] += 1.0 / ivar[y, x]
    return counts, var, bad


@numba.njit(cache=True)
def _rebin(row_edges, counts, var, bad, bin_edges):
    """Distribute row counts onto bins by overlap fraction; variance with squared weights."""
    nrow = counts.size
    nbin = bin_edges.size - 1
    out = np.zeros(nbin)
    ovar = np.zeros(nbin)
    obad = np.zeros(nbin, np.bool_)
    cover = np.zeros(nbin)
    b = 0
    for r in range(nrow):
        lo, hi = row_edges[r], row_edges[r + 1]
        if hi <= lo:
            continue
        while b > 0 and bin_edges[b] > lo:
            b -= 1
        while b < nbin and bin_edges[b + 1] <= lo:
            b += 1
        j = b
        while j < nbin and bin_edges[j] < hi:
            ov = min(hi, bin_edges[j + 1]) - max(lo, bin_edges[j])
            if ov > 0:
                frac = ov / (hi - lo)
                cover[j] += ov
                if bad[r]:
                    obad[j] = True
                else:
                    out[j] += frac * counts[r]
                    ovar[j] += frac * frac * var[r]
            j += 1
    return out, ovar, obad, cover


def boxcar_extract(image, psf, wave=None, width=3, fibers=None, fibermap=None):
    """Boxcar-extract every fiber.

    Parameters
    ----------
    image : desired.image.Image
    psf : desired.psf.GaussHermitePSF
        Only its traces x(λ), y(λ) are used.
    wave : array, shape (nwave,), optional
        Uniform output grid (Angstrom); the camera default when omitted.
    width : int
        Half width of the box in columns (the box is ``2 width + 1`` columns).
    fibers : (int, int), optional
        Fiber-index range relative to the PSF's first fiber.
    fibermap : astropy.table.Table, optional
        One row per PSF fiber.

    Returns
    -------
    desired.frame.Frame
        Flux in electron/Angstrom; bins touching a masked pixel get ivar 0 and
        ALLBADPIX|NODATA; no resolution data.
    """
    if wave is None:
        wave = wavelength_grid(image.camera)
    wave = np.asarray(wave, dtype=np.float64)
    dw = float(wave[1] - wave[0])
    bin_edges = np.concatenate([wave - dw / 2, [wave[-1] + dw / 2]])
    lo, hi = (0, psf.nfiber) if fibers is None else fibers
    ivar = image.good_ivar()
    nfib = hi - lo
    flux = np.zeros((nfib, wave.size))
    fivar = np.zeros((nfib, wave.size))
    mask = np.zeros((nfib, wave.size), np.int32)
    for k, fiber in enumerate(range(lo, hi)):
        ylo = float(np.ravel(psf.y(fiber, bin_edges[0]))[0])
        yhi = float(np.ravel(psf.y(fiber, bin_edges[-1]))[0])
        rows = np.arange(int(np.floor(ylo)) - 1, int(np.ceil(yhi)) + 2)
        row_wave = psf.wavelength(fiber, np.concatenate([rows - 0.5, [rows[-1] + 0.5]]))
        row_mid = psf.wavelength(fiber, rows.astype(float))
        counts, var, bad = _row_sums(image.pix, ivar, psf.x(fiber, row_mid), int(rows[0]), int(width))
        c, v, b, cover = _rebin(row_wave, counts, var, bad, bin_edges)
        good = (~b) & (v > 0) & (cover > 0.999 * dw)
        flux[k] = np.where(good, c / dw, 0.0)
        fivar[k] = np.where(good, dw ** 2 / np.where(v > 0, v, 1.0), 0.0)
        mask[k] = np.where(good, 0, specmask.ALLBADPIX | specmask.NODATA)
    header = dict(image.header)
    header["BUNIT"] = "electron/Angstrom"
    header["FIBERMIN"] = psf.fibermin + lo
    fm = None if fibermap is None else fibermap[lo:hi]
    return Frame(wave, flux, fivar, mask, None, fm, None, header, fibers=psf.fibermin + np.arange(lo, hi))
