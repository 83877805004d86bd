"""The Gauss-Hermite PSF model: traces, wavelength solution and spot shapes.

This is the model specex fits and specter/desispec evaluate (the GAUSS-HERMITE
PSF, PSFVER 3; desi-datamodel.md §6), shared by the simulator (which renders
images with the true PSF), the arc fit (which fits it) and the extraction (which
projects spectra through it).

Coordinates: ``x`` is the CCD column (grows with fiber), ``y`` the CCD row (grows
with wavelength); pixel centres sit at integer coordinates.  Every quantity is a
Legendre series in the reduced wavelength ``u = 2 (λ - wavemin)/(wavemax - wavemin) - 1``.

Spot model, for a spot centred at ``(xc, yc)`` with ``dx = x - xc``, ``dy = y - yc``::

    core(dx, dy) = Σ_ij GH-i-j · He_i(dx/σx) He_j(dy/σy) · g(dx/σx)/σx · g(dy/σy)/σy
    tail(dx, dy) = TAILAMP · r² / (TAILCORE² + r²)^(1 + TAILINDE/2),
                   r² = (dx·TAILXSCA)² + (dy·TAILYSCA)²

with ``He`` the probabilists' Hermite polynomials and ``g`` the unit normal
density.  The core is integrated exactly over each pixel; the tail is evaluated
at pixel centres (the tail scales multiply the offsets, as specter evaluates
specex files).  Negative pixels are clipped to 0 and each stamp of
``(2 HSIZEY + 1) x (2 HSIZEX + 1)`` pixels is normalised to sum to 1, so a spot
of ``F`` electrons deposits ``F`` electrons.

Every evaluation of the model in the project goes through the compiled kernel
:func:`fill_stamps` (simulator, extraction and :meth:`GaussHermitePSF.spots`).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numpy.polynomial import legendre
from scipy.special import ndtr

#: the five tail parameters every GAUSS-HERMITE file carries
TAIL_PARAMS = ("TAILAMP", "TAILCORE", "TAILXSCA", "TAILYSCA", "TAILINDE")

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def reduced_wavelength(wave, wavemin, wavemax):
    """Map wavelengths onto the Legendre domain [-1, 1]."""
    return 2.0 * (np.asarray(wave, dtype=np.float64) - wavemin) / (wavemax - wavemin) - 1.0


def legendre_eval(coef, fiber, u):
    """Evaluate per-fiber Legendre series.

    Parameters
    ----------
    coef : array, shape (nfiber, ncoef)
    fiber : int or array of int
        Fiber index (0-based, relative to the PSF's first fiber); broadcast with ``u``.
    u : array
        Reduced wavelength.

    Returns
    -------
    ndarray with the broadcast shape of ``fiber`` and ``u``.
    """
    fiber, u = np.broadcast_arrays(np.asarray(fiber), np.asarray(u, dtype=np.float64))
    vander = legendre.legvander(u, coef.shape[1] - 1)          # [..., ncoef]
    return np.einsum("...k,...k->...", vander, coef[fiber])


def hermite_pixel_integrals(edges, degree):
    """Integrals of Gauss-Hermite functions over pixels.

    Parameters
    ----------
    edges : array, shape (n, npix + 1)
        Pixel edges in units of sigma, relative to the spot centre.
    degree : int
        Highest Hermite degree.

    Returns
    -------
    ndarray, shape (n, degree + 1, npix)
        ``out[:, i, p] = ∫ He_i(t) g(t) dt`` over pixel ``p``, using
        ``∫ He_i g = -He_{i-1} g`` for ``i ≥ 1``.
    """
    g = np.exp(-0.5 * edges ** 2) * _INV_SQRT_2PI
    out = np.empty(edges.shape[:-1] + (degree + 1, edges.shape[-1] - 1))
    cdf = ndtr(edges)
    out[..., 0, :] = np.diff(cdf, axis=-1)
    he_prev = np.ones_like(edges)           # He_0
    he = edges.copy()                       # He_1
    for i in range(1, degree + 1):
        prim = -he_prev * g                 # antiderivative of He_i g is -He_{i-1} g
        out[..., i, :] = np.diff(prim, axis=-1)
        he_prev, he = he, edges * he - i * he_prev     # He_{i+1} = t He_i - i He_{i-1}
    return out


@numba.njit(cache=True)
def _pixel_integrals(lo, center, sigma, npix, degree, out):
    """``out[i, p]`` = integral of He_i(t) g(t) over pixel ``lo + p`` (edges ± 0.5, in sigma units)."""
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    inv_sqrt2pi = 1.0 / math.sqrt(2.0 * math.pi)
    prev = np.zeros(degree + 1)
    prim = np.empty(degree + 1)
    for k in range(npix + 1):
        t = (lo + k - 0.5 - center) / sigma
        g = math.exp(-0.5 * t * t) * inv_sqrt2pi
        prim[0] = 0.5 * math.erfc(-t * inv_sqrt2)
        he_prev, he = 1.0, t
        for i in range(1, degree + 1):
            prim[i] = -he_prev * g              # antiderivative of He_i g is -He_{i-1} g
            he_prev, he = he, t * he - i * he_prev
        if k > 0:
            for i in range(degree + 1):
                out[i, k - 1] = prim[i] - prev[i]
        prev[:] = prim


@numba.njit(cache=True)
def fill_stamps(xc, yc, xlo, ylo, sigx, sigy, gh, tail, stamps):
    """Evaluate normalised spot stamps (the module's spot model) in place.

    Parameters
    ----------
    xc, yc : ndarray, shape (n,)
        Spot centres, pixels.
    xlo, ylo : ndarray of int64, shape (n,)
        CCD column/row of each stamp's first pixel.
    sigx, sigy : ndarray, shape (n,)
        GHSIGX, GHSIGY.
    gh : ndarray, shape (n, ghdegx + 1, ghdegy + 1)
        GH-i-j coefficients.
    tail : ndarray, shape (n, 5)
        TAILAMP, TAILCORE, TAILXSCA, TAILYSCA, TAILINDE.
    stamps : ndarray, shape (n, ny, nx)
        Output; each stamp is clipped at 0 and sums to 1.
    """
    n, ny, nx = stamps.shape
    degx = gh.shape[1] - 1
    degy = gh.shape[2] - 1
    ix = np.empty((degx + 1, nx))
    iy = np.empty((degy + 1, ny))
    tmp = np.empty((degx + 1, ny))
    for a in range(n):
        _pixel_integrals(xlo[a], xc[a], sigx[a], nx, degx, ix)
        _pixel_integrals(ylo[a], yc[a], sigy[a], ny, degy, iy)
        for i in range(degx + 1):
            for y in range(ny):
                acc = 0.0
                for j in range(degy + 1):
                    acc += gh[a, i, j] * iy[j, y]
                tmp[i, y] = acc
        amp = tail[a, 0]
        core2 = tail[a, 1] * tail[a, 1]
        power = 1.0 + 0.5 * tail[a, 4]
        total = 0.0
        for y in range(ny):
            dy = (ylo[a] + y - yc[a]) * tail[a, 3]
            for x in range(nx):
                v = 0.0
                for i in range(degx + 1):
                    v += tmp[i, y] * ix[i, x]
                if amp != 0.0:
                    dx = (xlo[a] + x - xc[a]) * tail[a, 2]
                    r2 = dx * dx + dy * dy
                    if power == 2.0:
                        d = core2 + r2
                        v += amp * r2 / (d * d)
                    else:
                        v += amp * r2 / (core2 + r2) ** power
                if v < 0.0:
                    v = 0.0
                stamps[a, y, x] = v
                total += v
        if total == 0.0:
            total = 1.0
        for y in range(ny):
            for x in range(nx):
                stamps[a, y, x] /= total


@numba.njit(cache=True)
def _add_stamps(image, xlo, ylo, stamps, counts):
    """image[ylo+y, xlo+x] += counts * stamps, dropping pixels off the image."""
    nrow, ncol = image.shape
    n, ny, nx = stamps.shape
    for a in range(n):
        for y in range(ny):
            r = ylo[a] + y
            if r < 0 or r >= nrow:
                continue
            for x in range(nx):
                c = xlo[a] + x
                if 0 <= c < ncol:
                    image[r, c] += counts[a] * stamps[a, y, x]


def render_spots(shape, xc, yc, sigx, sigy, gh, tail, counts, hsizex, hsizey, chunk=50000):
    """Render spots with given parameters onto a new image.

    Parameters
    ----------
    shape : (int, int)
        Image (rows, cols).
    xc, yc, sigx, sigy : ndarray, shape (n,)
    gh : ndarray, shape (n, ghdegx + 1, ghdegy + 1)
    tail : ndarray, shape (n, 5)
    counts : ndarray, shape (n,)
        Electrons of each spot.
    hsizex, hsizey : int
        Stamp half sizes.
    chunk : int
        Spots evaluated at once (bounds the memory of the stamps).

    Returns
    -------
    ndarray, shape ``shape``
        Electrons; stamp pixels falling off the image are dropped.
    """
    image = np.zeros(shape)
    nx, ny = 2 * hsizex + 1, 2 * hsizey + 1
    for s in range(0, xc.size, chunk):
        sl = slice(s, s + chunk)
        xlo = np.rint(xc[sl]).astype(np.int64) - hsizex
        ylo = np.rint(yc[sl]).astype(np.int64) - hsizey
        stamps = np.empty((xlo.size, ny, nx))
        fill_stamps(xc[sl], yc[sl], xlo, ylo, sigx[sl], sigy[sl],
                    np.ascontiguousarray(gh[sl]), np.ascontiguousarray(tail[sl]), stamps)
        _add_stamps(image, xlo, ylo, stamps, np.ascontiguousarray(counts[sl], dtype=np.float64))
    return image


class GaussHermitePSF:
    """A GAUSS-HERMITE PSF of one camera.

    Parameters
    ----------
    xcoef, ycoef : array, shape (nfiber, ncoef)
        Legendre coefficients of the trace x(λ) and y(λ), in pixels.
    wavemin, wavemax : float
        Legendre domain of the traces, Angstrom.
    params : dict of str to array, shape (nfiber, legdeg + 1)
        Legendre coefficients of every spot parameter (GHSIGX, GHSIGY, GH-i-j,
        the tail parameters, optionally CONT), over ``[param_wavemin, param_wavemax]``.
    ghdegx, ghdegy : int
        Hermite degrees of the core.
    hsizex, hsizey : int
        Half sizes of the evaluated stamp in pixels.
    npix_x, npix_y : int
        CCD size of the trimmed image.
    param_wavemin, param_wavemax : float, optional
        Legendre domain of ``params``; the trace domain when omitted.
    fibermin : int
        Absolute fiber number of the first fiber (``500 * spectrograph`` for a full petal).
    meta : dict, optional
        Extra header keywords (CAMERA, MJD, ARCEXP ...).
    """

    def __init__(self, xcoef, ycoef, wavemin, wavemax, params, ghdegx, ghdegy,
                 hsizex=8, hsizey=5, npix_x=4096, npix_y=4096,
                 param_wavemin=None, param_wavemax=None, fibermin=0, meta=None):
        self.xcoef = np.array(xcoef, dtype=np.float64)
        self.ycoef = np.array(ycoef, dtype=np.float64)
        if self.xcoef.ndim != 2 or self.ycoef.ndim != 2 or self.xcoef.shape[0] != self.ycoef.shape[0]:
            raise ValueError("xcoef and ycoef must be 2-D with the same number of fibers")
        self.nfiber = self.xcoef.shape[0]
        self.wavemin, self.wavemax = float(wavemin), float(wavemax)
        self.param_wavemin = self.wavemin if param_wavemin is None else float(param_wavemin)
        self.param_wavemax = self.wavemax if param_wavemax is None else float(param_wavemax)
        self.params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
        for k, v in self.params.items():
            if v.ndim != 2 or v.shape[0] != self.nfiber:
                raise ValueError(f"PSF parameter {k} must have shape ({self.nfiber}, ncoef); got {v.shape}")
        self.ghdegx, self.ghdegy = int(ghdegx), int(ghdegy)
        missing = [k for k in self.param_names() if k not in self.params]
        if missing:
            raise ValueError(f"PSF is missing parameters {missing}")
        self.hsizex, self.hsizey = int(hsizex), int(hsizey)
        self.npix_x, self.npix_y = int(npix_x), int(npix_y)
        self.fibermin = int(fibermin)
        self.meta = dict(meta) if meta else {}

    # ------------------------------------------------------------------ parameters
    def param_names(self):
        """Names of the parameters the spot model needs, in file order."""
        names = ["GHSIGX", "GHSIGY"]
        names += [f"GH-{i}-{j}" for i in range(self.ghdegx + 1) for j in range(self.ghdegy + 1)]
        return names + list(TAIL_PARAMS)

    def param(self, name, fiber, wave):
        """Evaluate parameter ``name`` for fibers ``fiber`` at wavelengths ``wave`` (broadcast)."""
        u = reduced_wavelength(wave, self.param_wavemin, self.param_wavemax)
        return legendre_eval(self.params[name], fiber, u)

    def x(self, fiber, wave):
        """CCD column of the trace of ``fiber`` at ``wave`` (broadcast), pixels."""
        return legendre_eval(self.xcoef, fiber, reduced_wavelength(wave, self.wavemin, self.wavemax))

    def y(self, fiber, wave):
        """CCD row of the trace of ``fiber`` at ``wave`` (broadcast), pixels."""
        return legendre_eval(self.ycoef, fiber, reduced_wavelength(wave, self.wavemin, self.wavemax))

    def wavelength(self, fiber, y, ngrid=2001):
        """Invert y(λ): wavelength of ``fiber`` at CCD rows ``y``.

        Parameters
        ----------
        fiber : int
        y : array
            CCD rows.
        ngrid : int
            Size of the wavelength grid the monotonic y(λ) is interpolated on.
        """
        grid = np.linspace(self.wavemin, self.wavemax, ngrid)
        ygrid = self.y(fiber, grid)
        return np.interp(y, ygrid, grid)

    # ------------------------------------------------------------------ evaluation
    def spot_parameters(self, fiber, wave):
        """Centres and shape parameters of many spots.

        Parameters
        ----------
        fiber : array of int, shape (n,)
            Fiber index relative to the first fiber of the PSF.
        wave : array, shape (n,)
            Wavelengths, Angstrom.

        Returns
        -------
        xc, yc, sigx, sigy : ndarray, shape (n,)
            Spot centre (pixels) and GHSIGX, GHSIGY.
        gh : ndarray, shape (n, ghdegx + 1, ghdegy + 1)
            GH-i-j coefficients.
        tail : ndarray, shape (n, 5)
            TAILAMP, TAILCORE, TAILXSCA, TAILYSCA, TAILINDE.
        """
        fiber = np.atleast_1d(np.asarray(fiber, dtype=np.int64))
        wave = np.atleast_1d(np.asarray(wave, dtype=np.float64))
        fiber, wave = (a.ravel() for a in np.broadcast_arrays(fiber, wave))
        u = reduced_wavelength(wave, self.param_wavemin, self.param_wavemax)
        degree = max(v.shape[1] for v in self.params.values()) - 1
        vander = legendre.legvander(u, degree)                      # [n, deg+1]

        def value(name):
            c = self.params[name]
            return np.einsum("nk,nk->n", vander[:, :c.shape[1]], c[fiber])

        gh = np.empty((fiber.size, self.ghdegx + 1, self.ghdegy + 1))
        for i in range(self.ghdegx + 1):
            for j in range(self.ghdegy + 1):
                gh[:, i, j] = value(f"GH-{i}-{j}")
        tail = np.stack([value(k) for k in TAIL_PARAMS], axis=1)
        return self.x(fiber, wave), self.y(fiber, wave), value("GHSIGX"), value("GHSIGY"), gh, tail

    def spots(self, fiber, wave):
        """Pixel-integrated, normalised stamps of many spots.

        Parameters
        ----------
        fiber : array of int, shape (n,)
            Fiber index relative to the first fiber of the PSF.
        wave : array, shape (n,)
            Wavelength of each spot, Angstrom.

        Returns
        -------
        xlo, ylo : ndarray of int, shape (n,)
            CCD column and row of the stamp's first pixel (may lie off the CCD).
        stamps : ndarray, shape (n, 2 hsizey + 1, 2 hsizex + 1)
            Fraction of the spot's flux falling in each pixel; sums to 1.
        """
        xc, yc, sigx, sigy, gh, tail = self.spot_parameters(fiber, wave)
        xlo = np.rint(xc).astype(np.int64) - self.hsizex
        ylo = np.rint(yc).astype(np.int64) - self.hsizey
        stamps = np.empty((xc.size, 2 * self.hsizey + 1, 2 * self.hsizex + 1))
        fill_stamps(xc, yc, xlo, ylo, sigx, sigy, gh, tail, stamps)
        return xlo, ylo, stamps

    def project(self, fiber, wave, flux, shape=None):
        """Render spots onto a new image.

        Parameters
        ----------
        fiber, wave, flux : arrays, shape (n,)
            Spot fiber index, wavelength (Angstrom) and total counts (electrons).
        shape : tuple, optional
            Image shape (ny, nx); ``(npix_y, npix_x)`` by default.

        Returns
        -------
        ndarray, shape ``shape``
            Sum of the spots; pixels of stamps falling off the image are dropped.
        """
        shape = (self.npix_y, self.npix_x) if shape is None else tuple(shape)
        fiber, wave, flux = (a.ravel() for a in np.broadcast_arrays(
            np.asarray(fiber, dtype=np.int64), np.asarray(wave, dtype=np.float64),
            np.asarray(flux, dtype=np.float64)))
        params = self.spot_parameters(fiber, wave)
        return render_spots(shape, *params, flux, self.hsizex, self.hsizey)

    def copy(self):
        """Return a deep copy."""
        return GaussHermitePSF(self.xcoef, self.ycoef, self.wavemin, self.wavemax,
                               {k: v.copy() for k, v in self.params.items()},
                               self.ghdegx, self.ghdegy, self.hsizex, self.hsizey,
                               self.npix_x, self.npix_y, self.param_wavemin,
                               self.param_wavemax, self.fibermin, dict(self.meta))

    def shifted(self, dx=0.0, dy=0.0):
        """Return a copy with the traces moved by ``dx`` columns and ``dy`` rows.

        Parameters
        ----------
        dx, dy : float or array, shape (nfiber,)
            Shift of each fiber's trace, pixels (the constant Legendre term absorbs it).
        """
        out = self.copy()
        out.xcoef[:, 0] += dx
        out.ycoef[:, 0] += dy
        return out
