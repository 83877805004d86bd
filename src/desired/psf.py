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
                   r² = (dx/TAILXSCA)² + (dy/TAILYSCA)²

with ``He`` the probabilists' Hermite polynomials and ``g`` the unit normal
density.  The core is integrated exactly over each pixel; the tail is evaluated
at pixel centres.  Each stamp of ``(2 HSIZEY + 1) x (2 HSIZEX + 1)`` pixels is
normalised to sum to 1, so a spot of ``F`` electrons deposits ``F`` electrons.
"""
from __future__ import annotations

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
        fiber = np.atleast_1d(np.asarray(fiber, dtype=np.int64))
        wave = np.atleast_1d(np.asarray(wave, dtype=np.float64))
        fiber, wave = np.broadcast_arrays(fiber, wave)
        xc = self.x(fiber, wave)
        yc = self.y(fiber, wave)
        xlo = np.rint(xc).astype(np.int64) - self.hsizex
        ylo = np.rint(yc).astype(np.int64) - self.hsizey
        nx, ny = 2 * self.hsizex + 1, 2 * self.hsizey + 1
        u = reduced_wavelength(wave, self.param_wavemin, self.param_wavemax)
        degree = max(v.shape[1] for v in self.params.values()) - 1
        vander = legendre.legvander(u, degree)                      # [n, deg+1]

        def value(name):
            c = self.params[name]
            return np.einsum("nk,nk->n", vander[:, :c.shape[1]], c[fiber])

        sigx, sigy = value("GHSIGX"), value("GHSIGY")
        xedges = (xlo[:, None] + np.arange(nx + 1)[None, :] - 0.5 - xc[:, None]) / sigx[:, None]
        yedges = (ylo[:, None] + np.arange(ny + 1)[None, :] - 0.5 - yc[:, None]) / sigy[:, None]
        ix = hermite_pixel_integrals(xedges, self.ghdegx)           # [n, dx+1, nx]
        iy = hermite_pixel_integrals(yedges, self.ghdegy)           # [n, dy+1, ny]
        gh = np.empty((fiber.size, self.ghdegx + 1, self.ghdegy + 1))
        for i in range(self.ghdegx + 1):
            for j in range(self.ghdegy + 1):
                gh[:, i, j] = value(f"GH-{i}-{j}")
        # core[n, y, x] = Σ_ij gh[n,i,j] iy[n,j,y] ix[n,i,x]
        tmp = np.einsum("nij,njy->niy", gh, iy)
        stamps = np.einsum("niy,nix->nyx", tmp, ix)
        amp = value("TAILAMP")
        if np.any(amp != 0):
            dx = (xlo[:, None] + np.arange(nx)[None, :] - xc[:, None]) / value("TAILXSCA")[:, None]
            dy = (ylo[:, None] + np.arange(ny)[None, :] - yc[:, None]) / value("TAILYSCA")[:, None]
            r2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
            core2 = value("TAILCORE")[:, None, None] ** 2
            index = value("TAILINDE")[:, None, None]
            stamps = stamps + amp[:, None, None] * r2 / (core2 + r2) ** (1.0 + 0.5 * index)
        norm = stamps.sum(axis=(1, 2))
        norm[norm == 0] = 1.0
        return xlo, ylo, stamps / norm[:, None, None]

    def project(self, fiber, wave, flux, shape=None):
        """Render spots onto an image.

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
        ny, nx = (self.npix_y, self.npix_x) if shape is None else shape
        image = np.zeros((ny, nx))
        fiber = np.atleast_1d(fiber)
        wave = np.atleast_1d(wave)
        flux = np.broadcast_to(np.atleast_1d(np.asarray(flux, dtype=np.float64)), wave.shape)
        chunk = 20000
        for start in range(0, wave.size, chunk):
            sl = slice(start, start + chunk)
            xlo, ylo, stamps = self.spots(fiber[sl] if fiber.size > 1 else fiber, wave[sl])
            sy, sx = stamps.shape[1:]
            rows = ylo[:, None, None] + np.arange(sy)[None, :, None]
            cols = xlo[:, None, None] + np.arange(sx)[None, None, :]
            rows, cols = np.broadcast_arrays(rows, cols)
            vals = stamps * flux[sl][:, None, None]
            ok = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
            np.add.at(image, (rows[ok], cols[ok]), vals[ok])
        return image

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
