"""Flux-conserving rebinning of redshifted template bases onto a spectrograph's pixels.

Each basis vector is taken as linear between its samples (as redrock's
``trapz_rebin``); the value in an output pixel is the exact integral of that line
over the pixel, divided by the pixel's width.  The integral is evaluated from the
cumulative integral of the basis at the pixel edges, so the cost per redshift is
proportional to the number of output pixels, not of template samples.
"""
from __future__ import annotations

import numba
import numpy as np


def bin_edges(centers):
    """Pixel edges from pixel centers (midpoints; the end pixels mirrored).

    Parameters
    ----------
    centers : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (n + 1,)
    """
    centers = np.asarray(centers, dtype=np.float64)
    edges = np.empty(centers.size + 1)
    edges[1:-1] = 0.5 * (centers[:-1] + centers[1:])
    edges[0] = centers[0] - (centers[1] - edges[1])
    edges[-1] = centers[-1] + (centers[-1] - edges[-2])
    return edges


def cumulative_integral(wave, flux):
    """Cumulative trapezoid integral of each basis vector at its samples, shape (nbasis, nwave)."""
    steps = 0.5 * (flux[:, 1:] + flux[:, :-1]) * np.diff(wave)[None, :]
    out = np.zeros(flux.shape)
    np.cumsum(steps, axis=1, out=out[:, 1:])
    return out


@numba.njit(cache=True, nogil=True)
def _rebin_kernel(wave, cumul, flux, edges, scale, out):
    """out[k, iz, b] = mean over observed pixel k of basis b at rest-frame scale 1/(1+z)."""
    nwave = wave.size
    nbasis = flux.shape[0]
    prev = np.zeros(nbasis)
    cur = np.zeros(nbasis)
    for iz in range(scale.size):
        j = max(0, np.searchsorted(wave, edges[0] * scale[iz]) - 1)
        uprev = 0.0
        for k in range(edges.size):
            u = edges[k] * scale[iz]
            if u <= wave[0]:
                for b in range(nbasis):
                    cur[b] = 0.0
            elif u >= wave[nwave - 1]:
                for b in range(nbasis):
                    cur[b] = cumul[b, nwave - 1]
            else:
                while wave[j + 1] <= u:
                    j += 1
                t = u - wave[j]
                h = wave[j + 1] - wave[j]
                for b in range(nbasis):
                    cur[b] = cumul[b, j] + t * (flux[b, j] + 0.5 * t * (flux[b, j + 1] - flux[b, j]) / h)
            if k > 0:
                width = u - uprev
                for b in range(nbasis):
                    out[k - 1, iz, b] = (cur[b] - prev[b]) / width
            for b in range(nbasis):
                prev[b] = cur[b]
            uprev = u


def rebin_basis(wave, flux, edges, redshifts, cumul=None):
    """Redshift a template basis and rebin it onto observed pixels, flux-conservingly.

    No factor (1+z) is applied to the values (redrock's convention: the fitted
    coefficients absorb it).  Outside the template's wavelength range the basis is zero.

    Parameters
    ----------
    wave : ndarray, shape (nwave,)
        Rest-frame wavelengths of the basis, increasing, Angstrom.
    flux : ndarray, shape (nbasis, nwave)
    edges : ndarray, shape (npix + 1,)
        Observed pixel edges, increasing, Angstrom (see :func:`bin_edges`).
    redshifts : ndarray, shape (nz,)
    cumul : ndarray, shape (nbasis, nwave), optional
        :func:`cumulative_integral` of ``flux`` (computed when omitted).

    Returns
    -------
    ndarray, shape (npix, nz, nbasis)
        Pixel-major, so that ``reshape(npix, nz * nbasis)`` is a matrix of all trial models.
    """
    wave = np.ascontiguousarray(wave, dtype=np.float64)
    flux = np.ascontiguousarray(flux, dtype=np.float64)
    if cumul is None:
        cumul = cumulative_integral(wave, flux)
    scale = 1.0 / (1.0 + np.atleast_1d(np.asarray(redshifts, dtype=np.float64)))
    out = np.empty((edges.size - 1, scale.size, flux.shape[0]))
    _rebin_kernel(wave, cumul, flux, np.ascontiguousarray(edges, dtype=np.float64), scale, out)
    return out
