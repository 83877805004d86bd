"""Spectro-perfectionism extraction (Bolton & Schlegel 2010) on the CPU.

A preproc image is modelled as ``pix = A f + noise`` where column ``(fiber, λ)`` of
``A`` is the pixel-integrated PSF stamp of a spot at wavelength ``λ`` of the output
grid (``desired.psf.GaussHermitePSF.spots``) and ``f`` the spot's total counts.
For each patch of fibers x wavelengths the weighted normal equations
``M f = A^T W pix`` with ``M = A^T W A`` (``W`` = the image's inverse variance,
masked pixels at 0) are solved; the deconvolved, correlated ``f`` is then
decorrelated fiber by fiber: with ``C_i`` the fiber's block of ``M^-1`` and
``Q_i = (C_i^-1)^(1/2)`` (symmetric square root), ``R_i = diag(1/s) Q_i`` with
``s`` the row sums of ``Q_i``, the extracted counts are ``R_i f_i`` with inverse
variance ``s^2`` and no correlation between wavelengths of a fiber, and
``E[R_i f_i] = R_i f_true``.  Flux in electron/Angstrom is counts / Δλ.

Patches: each bundle is split in sub-bundles; a patch models the sub-bundle's
fibers plus one neighbour on each side, and ``nwavestep`` output wavelengths plus
``wavepad`` on each side.  The padding also extends beyond the ends of the
output grid (bins on the same step, as specter's ex2d does), so that light from
wavelengths just outside the grid is fitted there instead of being attributed to
the end bins; the padding bins are dropped from the output, and the end
patches decorrelate only their on-grid wavelengths (the padding is marginalised),
so that the stored resolution matrix describes the end bins exactly.  Only pixels covered
by the stamps of the sub-bundle's own fibers, and not touched by the stamps of
unmodelled neighbouring spots, enter the fit; only the sub-bundle's fibers and
the central wavelengths are kept.  Spots with less than ``MIN_ON_CCD`` of their
light on the image (a grid running beyond a cropped CCD) get no data, and
patches made only of such spots are not solved at all, so off-CCD parts of the
grid cost almost nothing.  Bundles are independent, so the result does
not depend on how bundles are distributed over processes.  The resolution band
kept (``ndiag`` diagonals) is renormalised so that its rows sum to 1; the mass of
``R`` beyond it is a few 1e-3 and is dropped.

Speed: stamps are evaluated once per bundle (the compiled kernel behind
:meth:`desired.psf.GaussHermitePSF.spots`) and reused by every patch and pass;
the normal matrices are accumulated from overlapping stamp pairs in a numba
kernel (no dense ``A``; each stamp multiplied once by the weights, both
checkerboard halves of the model-variance weights in one pass); each patch is
solved with one LAPACK Cholesky factorisation (neighbour fibers ordered first,
so that the trailing factor is that of their Schur complement) and only the
core fibers' diagonal blocks of the covariance are formed (``dtrtri``); the
decorrelation takes a batched ``eigh`` of those blocks, with OpenBLAS held to
one thread (parallelism is over bundles).
"""
from __future__ import annotations

import logging
import time

import numba
import numpy as np
from scipy.linalg import lapack

from .frame import Frame
from .maskbits import specmask
from .psf import _add_stamps
from .threads import single_threaded_blas  # noqa: F401  (re-exported for the backends)


log = logging.getLogger(__name__)

#: default output grids per camera band: (wmin, wmax, dw) in Angstrom
DEFAULT_WAVELENGTHS = {"b": (3600.0, 5800.0, 0.8), "r": (5760.0, 7620.0, 0.8), "z": (7520.0, 9824.0, 0.8)}

#: fibers per bundle of a DESI petal
BUNDLESIZE = 25

#: stamp-weighted fraction of masked pixels above which a spot gets SOMEBADPIX / ALLBADPIX
SOMEBAD_FRACTION = 0.01
ALLBAD_FRACTION = 0.99

#: relative ridge added to the normal matrix so that spots without data stay solvable
RIDGE = 1e-9

#: pixels this many sigma above the first model keep their data variance (model-variance weights)
OUTLIER_NSIG = 3.0

#: spots with a smaller fraction of their light on the image get no data (ivar 0, NODATA)
MIN_ON_CCD = 0.01


def wavelength_grid(camera=None, wmin=None, wmax=None, dw=None):
    """Return the output wavelength grid.

    Parameters
    ----------
    camera : str, optional
        Camera name (``b0``, ``r3``...) or band letter; gives the default grid.
    wmin, wmax, dw : float, optional
        Explicit grid in Angstrom; override the camera defaults.

    Returns
    -------
    ndarray, shape (nwave,)
        ``wmin + dw * arange(n)`` up to and including ``wmax`` (within dw/1000).
    """
    if wmin is None or wmax is None or dw is None:
        if not camera or camera[0].lower() not in DEFAULT_WAVELENGTHS:
            raise ValueError(f"no default wavelength grid for camera {camera!r}; give wmin, wmax, dw")
        dmin, dmax, ddw = DEFAULT_WAVELENGTHS[camera[0].lower()]
        wmin = dmin if wmin is None else wmin
        wmax = dmax if wmax is None else wmax
        dw = ddw if dw is None else dw
    if dw <= 0 or wmax <= wmin:
        raise ValueError(f"bad wavelength grid {wmin},{wmax},{dw}")
    n = int(np.floor((wmax - wmin) / dw + 1e-3)) + 1
    return wmin + dw * np.arange(n)


def bundle_ranges(nfiber, bundlesize=BUNDLESIZE):
    """Return ``[(first, stop), ...]`` fiber-index ranges of the bundles."""
    return [(b, min(b + bundlesize, nfiber)) for b in range(0, nfiber, bundlesize)]


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _paint_stamps(region, xlo, ylo, sy, sx, y0, x0, value):
    """Set the pixels of ``region`` (origin ``y0, x0``) covered by ``sy x sx`` stamps to ``value``."""
    ny, nx = region.shape
    for a in range(xlo.size):
        for j in range(sy):
            yy = ylo[a] + j - y0
            if yy < 0 or yy >= ny:
                continue
            for i in range(sx):
                xx = xlo[a] + i - x0
                if 0 <= xx < nx:
                    region[yy, xx] = value


@numba.njit(cache=True)
def _patch_pixels(stamps, xlo, ylo, is_core, xlo_out, ylo_out, pix, ivar, y0, x0, ny, nx):
    """Weights and values of the pixels of one patch rectangle that enter its fit.

    Parameters
    ----------
    stamps : (n, sy, sx) float64
    xlo, ylo : (n,) int64, CCD position of each stamp's first pixel
    is_core : (n,) bool, spots whose stamp pixels enter the fit
    xlo_out, ylo_out : (m,) int64, stamps of spots that are not modelled; their
        pixels are left out of the fit so that unmodelled flux cannot bias it
    pix, ivar : (NY, NX) full image and weights (masked pixels at 0)
    y0, x0, ny, nx : the patch rectangle on the CCD

    Returns
    -------
    w : (ny, nx) weights used (0 outside the fit), d : (ny, nx) pixel values
    """
    n, sy, sx = stamps.shape
    NY, NX = pix.shape
    inside = np.zeros((ny, nx), np.bool_)
    _paint_stamps(inside, xlo[is_core], ylo[is_core], sy, sx, y0, x0, True)
    _paint_stamps(inside, xlo_out, ylo_out, sy, sx, y0, x0, False)
    w = np.zeros((ny, nx))
    d = np.zeros((ny, nx))
    for yy in range(ny):
        Y = y0 + yy
        if Y < 0 or Y >= NY:
            continue
        for xx in range(nx):
            X = x0 + xx
            if X < 0 or X >= NX or not inside[yy, xx]:
                continue
            w[yy, xx] = ivar[Y, X]
            d[yy, xx] = pix[Y, X]
    return w, d


@numba.njit(cache=True)
def _accumulate_normal(stamps, xlo, ylo, w, d, y0, x0):
    """``M = A^T W A`` and ``A^T W d`` of one patch from its pixel weights ``w`` and values ``d`` [ny, nx]."""
    M, rhs = _accumulate_normals(stamps, xlo, ylo, w.reshape((1,) + w.shape), d, y0, x0)
    return M[0], rhs[0]


@numba.njit(cache=True)
def _accumulate_normals(stamps, xlo, ylo, weights, d, y0, x0):
    """Normal matrices and right-hand sides of several weight planes in one pass over the stamp pairs.

    Each spot's stamp is multiplied once by every weight plane (zero off the
    rectangle); the products with the overlapping stamps then need no weight
    look-up and no branch in the inner loop.

    Parameters
    ----------
    stamps : (n, sy, sx) float64
    xlo, ylo : (n,) int64, CCD position of each stamp's first pixel
    weights : (k, ny, nx) float64, pixel weights of the patch rectangle (one plane per matrix)
    d : (ny, nx) float64, pixel values
    y0, x0 : CCD position of the rectangle

    Returns
    -------
    M : (k, n, n), rhs : (k, n)
    """
    n, sy, sx = stamps.shape
    k, ny, nx = weights.shape
    M = np.zeros((k, n, n))
    rhs = np.zeros((k, n))
    ws = np.zeros((k, sy, sx))
    for a in range(n):
        ya0 = max(ylo[a], y0)
        ya1 = min(ylo[a] + sy, y0 + ny)
        xa0 = max(xlo[a], x0)
        xa1 = min(xlo[a] + sx, x0 + nx)
        if ya0 >= ya1 or xa0 >= xa1:
            continue
        ws[:] = 0.0
        for q in range(k):
            s = 0.0
            for Y in range(ya0, ya1):
                j = Y - ylo[a]
                for X in range(xa0, xa1):
                    v = stamps[a, j, X - xlo[a]] * weights[q, Y - y0, X - x0]
                    ws[q, j, X - xlo[a]] = v
                    s += v * d[Y - y0, X - x0]
            rhs[q, a] = s
        for c in range(a, n):
            yc0 = max(ya0, ylo[c])
            yc1 = min(ya1, ylo[c] + sy)
            if yc0 >= yc1:
                continue
            xc0 = max(xa0, xlo[c])
            xc1 = min(xa1, xlo[c] + sx)
            if xc0 >= xc1:
                continue
            da = xc0 - xlo[a]
            dc = xc0 - xlo[c]
            nxo = xc1 - xc0
            if k == 2:                      # the two checkerboard halves: one pass, shared loads
                s0 = 0.0
                s1 = 0.0
                for Y in range(yc0, yc1):
                    ja = Y - ylo[a]
                    jc = Y - ylo[c]
                    for i in range(nxo):
                        v = stamps[c, jc, dc + i]
                        s0 += ws[0, ja, da + i] * v
                        s1 += ws[1, ja, da + i] * v
                M[0, a, c] = M[0, c, a] = s0
                M[1, a, c] = M[1, c, a] = s1
                continue
            for q in range(k):
                s = 0.0
                for Y in range(yc0, yc1):
                    ja = Y - ylo[a]
                    jc = Y - ylo[c]
                    for i in range(nxo):
                        s += ws[q, ja, da + i] * stamps[c, jc, dc + i]
                M[q, a, c] = s
                M[q, c, a] = s
    return M, rhs


@numba.njit(cache=True)
def _spot_statistics(stamps, xlo, ylo, coef, w, d, y0, x0, wanted):
    """Model residual statistics around the wanted spots of one patch.

    Returns
    -------
    chi2 : (n,) stamp-weighted mean of ``w (d - model)^2`` over the spot's good pixels
    badfrac : (n,) stamp-weighted fraction of the spot's pixels without weight
    """
    n, sy, sx = stamps.shape
    ny, nx = w.shape
    model = np.zeros((ny, nx))
    _add_stamps(model, xlo - x0, ylo - y0, stamps, coef)
    chi2 = np.zeros(n)
    badfrac = np.ones(n)
    for a in range(n):
        if not wanted[a]:
            continue
        num = 0.0
        good = 0.0
        total = 0.0
        for j in range(sy):
            yy = ylo[a] + j - y0
            for i in range(sx):
                xx = xlo[a] + i - x0
                s = stamps[a, j, i]
                total += s
                if yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    continue
                if w[yy, xx] > 0:
                    r = d[yy, xx] - model[yy, xx]
                    num += s * w[yy, xx] * r * r
                    good += s
        chi2[a] = num / good if good > 0 else 0.0
        badfrac[a] = 1.0 - good / total if total > 0 else 1.0
    return chi2, badfrac


def outlier_safe_variance(model, d, readnoise, nsig, xp=np):
    """``max(model, 0) + rn^2``, or the pixel's own count variance where it sits ``nsig`` sigma above the model."""
    var = xp.clip(model, 0.0, None) + readnoise ** 2
    high = (d - model) > nsig * xp.sqrt(var)
    return xp.where(high, xp.maximum(var, xp.clip(d, 0.0, None) + readnoise ** 2), var)


def smooth_solution(f, nwave, width=3, xp=np):
    """Running mean of a patch solution over ``width`` wavelengths of each fiber.

    Parameters
    ----------
    f : array, shape (..., nfiber * nwave)
        Fiber-major spot fluxes of one patch (or a batch of patches).
    nwave : int
    width : int
    xp : module
        Array module (numpy or cupy).

    Returns
    -------
    ndarray, same shape as ``f``
    """
    g = f.reshape(f.shape[:-1] + (-1, nwave))
    half = width // 2
    padded = xp.concatenate([xp.repeat(g[..., :1], half, axis=-1), g, xp.repeat(g[..., -1:], half, axis=-1)],
                            axis=-1)
    csum = xp.concatenate([xp.zeros(g.shape[:-1] + (1,)), xp.cumsum(padded, axis=-1)], axis=-1)
    return ((csum[..., width:] - csum[..., :-width]) / width).reshape(f.shape)


def checkerboard(shape):
    """Boolean checkerboard over a patch rectangle (True where row + column is even)."""
    return (np.arange(shape[0])[:, None] + np.arange(shape[1])[None, :]) % 2 == 0


def model_weights(stamps, xlo, ylo, halves, w, d, readnoise, y0, x0, nwave, ridge, nsig=OUTLIER_NSIG):
    """Pixel weights from the patch's model instead of from the pixels' own counts.

    Weighting pixels by the inverse of their own counts (the preproc ivar) biases
    the flux low: a pixel that fluctuated up gets less weight (on simulated z
    frames the pulls average -0.06).  The weights here are ``1 / (model +
    readnoise^2)`` with a model that never saw the pixel: the patch is solved on
    the black squares of a checkerboard to model the white ones and the other
    way round, each solution smoothed over 3 output wavelengths per fiber before
    it is rendered (the deconvolved solution is noisy; smoothing keeps the
    weights' noise down).  A model made from all the pixels follows each one
    closely enough to keep part of its noise, and with it part of the bias.

    Pixels above their model by more than ``nsig`` sigma (cosmic-ray residuals
    the preproc missed) keep the variance of their own counts, so they stay as
    down-weighted as with the preproc ivar.

    Parameters
    ----------
    stamps : array, shape (n, sy, sx)
        Spot stamps, fiber-major (``n = nfiber * nwave``).
    xlo, ylo : array of int, shape (n,)
    halves : (array, array), shapes (2, n, n) and (2, n)
        Normal matrices and right-hand sides of the data weights ``w`` on the two
        checkerboard colours (:func:`checkerboard` True, then False; without ridge).
    w : array, shape (ny, nx)
        Data weights of the patch rectangle (1/electron^2).
    d : array, shape (ny, nx)
        Pixel values of the rectangle, electrons.
    readnoise : array, shape (ny, nx)
        Read noise of the rectangle's pixels, electrons.
    y0, x0 : int
        CCD position of the rectangle.
    nwave : int
        Wavelengths per fiber in the patch.
    ridge : float
        Added to the diagonal of each half's normal matrix.
    nsig : float
        Outlier threshold, sigma.

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    black = checkerboard(w.shape)
    rendered_halves = []
    for mh, rh in zip(*halves):
        mh = mh.copy()
        mh.flat[::mh.shape[0] + 1] += ridge     # the diagonal, without index arrays
        chol, info = lapack.dpotrf(mh, lower=True, clean=False, overwrite_a=True)
        if info != 0:
            return w
        f, info = lapack.dpotrs(chol, rh, lower=True)
        rendered = np.zeros(w.shape)
        _add_stamps(rendered, xlo - x0, ylo - y0, stamps, np.ascontiguousarray(smooth_solution(f, nwave)))
        rendered_halves.append(rendered)
    model = np.where(black, rendered_halves[1], rendered_halves[0])   # each pixel from the half that did not see it
    var = outlier_safe_variance(model, d, readnoise, nsig)
    usable = (w > 0) & (var > 0)
    return np.where(usable, 1.0 / np.where(usable, var, 1.0), 0.0)


# --------------------------------------------------------------------------- linear algebra
def solve_patch(M, rhs, core_idx, nw, cols):
    """Solve ``M f = rhs`` and return the core fibers' diagonal blocks of ``M^-1``.

    The core block of ``M^-1`` is the inverse of the Schur complement
    ``S = M_cc - M_co M_oo^-1 M_oc``; with the neighbour spots ordered first, the
    trailing block of the Cholesky factor of ``M`` is that of ``S``.  Only the diagonal blocks of ``S^-1`` are formed, from the inverse Cholesky
    factor ``L^-1`` of ``S = L L^T``: with ``L^-1`` lower triangular, the block of
    columns ``J`` is ``(L^-1)[j0:, J]^T (L^-1)[j0:, J]`` (``j0`` = first of ``J``).

    Parameters
    ----------
    M : array, shape (n, n)
        Symmetric positive-definite normal matrix.
    rhs : array, shape (n,)
    core_idx : array of int
        Contiguous indices of the core spots, fiber-major with ``nw`` per fiber.
    nw : int
        Wavelengths per fiber in the patch.
    cols : (int, int)
        Range ``lo, hi`` of a fiber's wavelengths whose covariance block is returned.

    Returns
    -------
    f : ndarray, shape (n,)
        ``M^-1 rhs``.
    blocks : ndarray, shape (ncore // nw, hi - lo, hi - lo)
        ``(M^-1)[J][:, J]`` with ``J = core_idx[i * nw + lo:i * nw + hi]`` for each core fiber ``i``.
    """
    n = M.shape[0]
    other = np.setdiff1d(np.arange(n), core_idx)
    no = other.size
    # one Cholesky factorisation with the neighbours first: its trailing block is the
    # Cholesky factor of the Schur complement S
    perm = np.concatenate([other, core_idx])
    chol, info = lapack.dpotrf(M[np.ix_(perm, perm)], lower=True, clean=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"normal matrix not positive definite (dpotrf info={info})")
    fp, info = lapack.dpotrs(chol, rhs[perm], lower=True)
    linv, info2 = lapack.dtrtri(chol[no:, no:], lower=True)
    if info != 0 or info2 != 0:
        raise np.linalg.LinAlgError("dpotrs/dtrtri failed")
    lo, hi = cols
    blocks = []
    for i in range(len(core_idx) // nw):
        sub = linv[i * nw + lo:, i * nw + lo:i * nw + hi]
        blocks.append(sub.T @ sub)
    f = np.empty(n)
    f[perm] = fp
    return f, np.stack(blocks)


def decorrelate(cov_blocks):
    """Per-fiber Bolton-Schlegel decorrelation.

    Parameters
    ----------
    cov_blocks : array, shape (nfiber, nw, nw)
        Each fiber's block of the covariance of the deconvolved counts.

    Returns
    -------
    R : ndarray, shape (nfiber, nw, nw)
        Row-normalised square root of the block's inverse; rows sum to 1.
    ivar : ndarray, shape (nfiber, nw)
        Inverse variance of ``R @ f`` (uncorrelated within a fiber).
    """
    # C = V diag(l) V^T  =>  (C^-1)^(1/2) = V diag(l^-1/2) V^T: no explicit inverse
    evals, evecs = np.linalg.eigh(0.5 * (cov_blocks + np.swapaxes(cov_blocks, 1, 2)))
    root = np.where(evals > 0, 1.0 / np.sqrt(np.where(evals > 0, evals, 1.0)), 0.0)
    q = (evecs * root[:, None, :]) @ np.swapaxes(evecs, 1, 2)
    s = q.sum(axis=2)
    safe = np.where(s > 0, s, 1.0)
    R = q / safe[:, :, None]
    return R, np.where(s > 0, s ** 2, 0.0)


# --------------------------------------------------------------------------- patches
def _split(lo, hi, nparts):
    edges = np.linspace(lo, hi, max(1, min(nparts, hi - lo)) + 1).round().astype(int)
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class BundleSpots:
    """Spot stamps of a bundle's fibers on the output grid padded beyond its ends.

    The cache covers fibers ``first - 2 .. stop + 1`` (the modelled neighbours and
    the unmodelled ones next to them) and the output grid extended by
    ``wavepad + 1`` bins of the same step on each side, so that every patch,
    including the two at the ends of the grid, models ``wavepad`` wavelengths
    beyond its kept ones and has an unmodelled neighbour wavelength on each side:
    light of wavelengths beyond the grid ends is fitted by the padding bins
    instead of being attributed to the end bins.

    Parameters
    ----------
    psf : desired.psf.GaussHermitePSF
    wave : array, shape (nwave,)
        Uniform output grid, Angstrom.
    fibers : (int, int)
        Bundle fiber range relative to the PSF's first fiber.
    wavepad : int
        Modelled wavelengths beyond a patch's kept ones, per side.
    shape : (int, int)
        Image shape; gives the fraction of each spot falling on the CCD.

    Attributes
    ----------
    c0 : int
        PSF fiber index of cache row 0.
    pad : int
        Cache column of output wavelength 0 (``wavepad + 1``).
    xlo, ylo : ndarray of int64, shape (nc, nwave + 2 pad)
    stamps : ndarray, shape (nc, nwave + 2 pad, sy, sx)
        Non-finite stamps (PSF parameters extrapolated out of range) are zeroed.
    on_ccd : ndarray, shape (nc, nwave + 2 pad)
        Fraction of each stamp's light that falls on the image.
    """

    def __init__(self, psf, wave, fibers, wavepad, shape):
        f0, f1 = fibers
        dw = float(wave[1] - wave[0])
        self.pad = pad = wavepad + 1
        self.c0, c1 = max(f0 - 2, 0), min(f1 + 2, psf.nfiber)
        steps = np.arange(1, pad + 1)
        wext = np.concatenate([wave[0] - dw * steps[::-1], wave, wave[-1] + dw * steps])
        nc, nwext = c1 - self.c0, wext.size
        cf = np.repeat(np.arange(self.c0, c1), nwext)
        cw = np.tile(wext, nc)
        xlo = np.empty(cf.size, np.int64)
        ylo = np.empty(cf.size, np.int64)
        stamps = None
        chunk = 20000
        for s in range(0, cf.size, chunk):
            xl, yl, st = psf.spots(cf[s:s + chunk], cw[s:s + chunk])
            if stamps is None:
                stamps = np.empty((cf.size,) + st.shape[1:])
            xlo[s:s + chunk], ylo[s:s + chunk], stamps[s:s + chunk] = xl, yl, st
        stamps[~np.isfinite(stamps)] = 0.0
        sy, sx = stamps.shape[1:]
        rows = ylo[:, None] + np.arange(sy)
        cols = xlo[:, None] + np.arange(sx)
        rows_in = ((rows >= 0) & (rows < shape[0])).astype(float)
        cols_in = ((cols >= 0) & (cols < shape[1])).astype(float)
        on_ccd = np.einsum("nj,nji,ni->n", rows_in, stamps, cols_in)
        self.xlo = xlo.reshape(nc, nwext)
        self.ylo = ylo.reshape(nc, nwext)
        self.stamps = stamps.reshape(nc, nwext, sy, sx)
        self.on_ccd = on_ccd.reshape(nc, nwext)

    def unmodelled(self, m0, m1, e0, e1, nfiber):
        """Stamp origins of the spots next to a patch that it does not model.

        These are the wavelengths just outside the patch (cache columns ``e0 - 1``
        and ``e1``) of the modelled fibers ``m0..m1-1``, and the fibers next to
        them over ``e0 - 1 .. e1``; their pixels are left out of the fit.

        Returns
        -------
        xlo, ylo : ndarray of int64
        """
        c = slice(m0 - self.c0, m1 - self.c0)
        ofib = [f - self.c0 for f in (m0 - 1, m1) if 0 <= f < nfiber]
        wr = slice(e0 - 1, e1 + 1)
        xout = np.concatenate([self.xlo[c, [e0 - 1, e1]].ravel()] + [self.xlo[f, wr] for f in ofib])
        yout = np.concatenate([self.ylo[c, [e0 - 1, e1]].ravel()] + [self.ylo[f, wr] for f in ofib])
        return xout, yout


def plan_patches(spots, fibers, nfiber, nwave, nsubbundles, nwavestep, wavepad):
    """Patches of a bundle and whether each has any data.

    Parameters
    ----------
    spots : BundleSpots
    fibers : (int, int)
        Bundle fiber range.
    nfiber, nwave : int
        Fibers of the PSF, output wavelengths.
    nsubbundles, nwavestep, wavepad : int
        See :func:`extract_bundle`.

    Returns
    -------
    list of ((s0, s1, m0, m1, w0, w1, e0, e1), bool)
        Sub-bundle fibers ``s0..s1-1``, modelled fibers ``m0..m1-1``, kept output
        wavelengths ``w0..w1-1``, modelled spot-cache columns ``e0..e1-1``
        (``wavepad`` beyond the kept ones on each side, also at the grid ends);
        the flag is False when every kept spot of the sub-bundle has less than
        :data:`MIN_ON_CCD` of its light on the image: such patches are not solved.
    """
    f0, f1 = fibers
    out = []
    for s0, s1 in _split(f0, f1, nsubbundles):
        m0, m1 = max(s0 - 1, 0), min(s1 + 1, nfiber)
        for w0 in range(0, nwave, nwavestep):
            w1 = min(w0 + nwavestep, nwave)
            e0, e1 = w0 + spots.pad - wavepad, w1 + spots.pad + wavepad
            on = spots.on_ccd[s0 - spots.c0:s1 - spots.c0, w0 + spots.pad:w1 + spots.pad]
            out.append(((s0, s1, m0, m1, w0, w1, e0, e1), bool((on >= MIN_ON_CCD).any())))
    return out


def grid_columns(patch, wavepad, nwave):
    """Columns ``lo..hi-1`` of a patch that lie on the output grid (all but padding beyond its ends)."""
    _, _, _, _, w0, _, e0, e1 = patch
    return max(0, wavepad - w0), min(e1 - e0, nwave - w0 + wavepad)


def empty_result(nfib, nwave, ndiag):
    """Result arrays of a bundle in their no-data state.

    Flux 0, ivar 0, mask SOMEBADPIX | ALLBADPIX | NODATA, chi2pix 0 and an identity
    resolution (rows sum to 1); the patches that are solved overwrite their part.
    """
    rdata = np.zeros((nfib, ndiag, nwave))
    rdata[:, ndiag // 2] = 1.0
    nodata = specmask.SOMEBADPIX | specmask.ALLBADPIX | specmask.NODATA
    return dict(flux=np.zeros((nfib, nwave)), ivar=np.zeros((nfib, nwave)),
                mask=np.full((nfib, nwave), nodata, np.int32), resolution_data=rdata,
                chi2pix=np.zeros((nfib, nwave)))


def resolution_band(R, first, nkeep, ndiag, xp=np):
    """Diagonal band of decorrelation matrices around the kept rows.

    Parameters
    ----------
    R : array (``xp``), shape (..., nw, nw)
    first, nkeep : int
        Kept rows ``first .. first + nkeep - 1``.
    ndiag : int
    xp : module
        Array module of ``R`` (numpy or cupy).

    Returns
    -------
    band : array (``xp``), shape (..., nkeep, ndiag)
        ``band[..., r, j] = R[..., first + r, first + r + j - ndiag // 2]`` (0 beyond ``R``).
    """
    nw = R.shape[-1]
    rows = np.arange(first, first + nkeep)
    cols = rows[:, None] + np.arange(-(ndiag // 2), ndiag // 2 + 1)[None, :]
    inside = (cols >= 0) & (cols < nw)
    band = R[..., xp.asarray(np.broadcast_to(rows[:, None], cols.shape)), xp.asarray(np.clip(cols, 0, nw - 1))]
    return xp.where(xp.asarray(inside), band, 0.0)


def store_patch(result, patch, fibers, dw, flux, ivar, nodata, badfrac, chi2, band):
    """Write the kept part of a solved patch into a bundle result.

    Parameters
    ----------
    result : dict
        Bundle arrays from :func:`empty_result`; modified in place.
    patch : tuple
        ``(s0, s1, m0, m1, w0, w1, e0, e1)`` from :func:`plan_patches`.
    fibers : (int, int)
        Bundle fiber range.
    dw : float
        Output grid step, Angstrom.
    flux, ivar : array, shape (ncore, nkeep)
        Decorrelated counts per bin and their inverse variance.
    nodata, badfrac, chi2 : array, shape (ncore, nkeep)
        Spots without data (stored with flux 0, ivar 0, NODATA and an identity
        resolution row), fraction of their light on unweighted pixels, chi2pix.
    band : array, shape (ncore, nkeep, ndiag)
        :func:`resolution_band` of the kept rows; rows are renormalised to sum to 1
        (the decorrelation's small mass beyond ``ndiag // 2`` is dropped).
    """
    s0, s1, _, _, w0, w1, _, _ = patch
    nwave = result["flux"].shape[1]
    ndiag = band.shape[-1]
    half = ndiag // 2
    of, ow = slice(s0 - fibers[0], s1 - fibers[0]), slice(w0, w1)
    result["flux"][of, ow] = np.where(nodata, 0.0, flux / dw)
    result["ivar"][of, ow] = np.where(nodata, 0.0, ivar * dw ** 2)
    result["chi2pix"][of, ow] = chi2
    m = np.zeros(badfrac.shape, np.int32)
    m[badfrac > SOMEBAD_FRACTION] |= specmask.SOMEBADPIX
    m[badfrac > ALLBAD_FRACTION] |= specmask.ALLBADPIX
    m[nodata] |= specmask.NODATA
    result["mask"][of, ow] = m
    col = w0 + np.arange(w1 - w0)[:, None] + np.arange(-half, half + 1)[None, :]   # output column
    tot = band.sum(axis=2, keepdims=True)
    band = np.where(tot != 0, band / np.where(tot != 0, tot, 1.0), 0.0)
    band[nodata] = 0.0
    band[nodata, half] = 1.0
    rdata = result["resolution_data"]
    for j, off in enumerate(range(-half, half + 1)):
        c = col[:, j]
        ok = (c >= 0) & (c < nwave)
        rdata[of, half - off, c[ok]] = band[:, ok, j]


def finish_result(result):
    """Zero non-finite values and flag every bin without inverse variance NODATA."""
    result["ivar"][~np.isfinite(result["ivar"])] = 0.0
    result["flux"][~np.isfinite(result["flux"])] = 0.0
    result["mask"][result["ivar"] == 0] |= specmask.NODATA
    return result


# --------------------------------------------------------------------------- driver
def extract_bundle(pix, ivar, psf, wave, fibers, nsubbundles=5, nwavestep=30, wavepad=6,
                   ndiag=11, readnoise=None):
    """Extract a range of fibers (normally one bundle).

    Parameters
    ----------
    pix, ivar : array, shape (ny, nx)
        Image (electrons) and inverse variance with masked pixels at 0.
    psf : desired.psf.GaussHermitePSF
    wave : array, shape (nwave,)
        Uniform output grid, Angstrom.
    fibers : (int, int)
        ``(first, stop)`` fiber indices relative to the PSF's first fiber.
    nsubbundles : int
        Number of fiber groups the range is split into.
    nwavestep : int
        Output wavelengths kept per patch.
    wavepad : int
        Extra wavelengths modelled on each side of a patch, also beyond the
        ends of the output grid.
    ndiag : int
        Diagonals of the resolution matrix kept.
    readnoise : array, shape (ny, nx), optional
        Read noise (electrons).  When given, the pixel weights are ``1 / (model +
        readnoise^2)`` with a model of each pixel from the patch solved without it
        (:func:`model_weights`), which removes the low bias of weighting by the
        data's own counts.  Without it the weights are ``ivar``.

    Returns
    -------
    dict with ``flux`` (electron/Angstrom), ``ivar``, ``mask`` (nfib, nwave),
    ``resolution_data`` (nfib, ndiag, nwave) and ``chi2pix`` (nfib, nwave).
    Spots with less than :data:`MIN_ON_CCD` of their light on the image have
    flux 0, ivar 0, mask NODATA (with SOMEBADPIX, ALLBADPIX) and an identity
    resolution row; patches made only of such spots are not solved.
    """
    f0, f1 = fibers
    nwave = wave.size
    dw = float(wave[1] - wave[0])
    half = ndiag // 2
    if wavepad < half:
        raise ValueError(f"wavepad={wavepad} must be at least ndiag//2={half}")
    spots = BundleSpots(psf, wave, fibers, wavepad, pix.shape)
    c0, pad = spots.c0, spots.pad
    result = empty_result(f1 - f0, nwave, ndiag)
    ny_img, nx_img = pix.shape
    sy, sx = spots.stamps.shape[2:]
    for patch, has_data in plan_patches(spots, fibers, psf.nfiber, nwave, nsubbundles, nwavestep, wavepad):
        if not has_data:
            continue
        s0, s1, m0, m1, w0, w1, e0, e1 = patch
        nf, nw = m1 - m0, e1 - e0
        core_rows = np.arange(s0 - m0, s1 - m0)
        sl = (slice(m0 - c0, m1 - c0), slice(e0, e1))
        st = spots.stamps[sl].reshape((nf * nw, sy, sx))
        xl = spots.xlo[sl].reshape(-1)
        yl = spots.ylo[sl].reshape(-1)
        is_core = np.zeros((nf, nw), bool)
        is_core[core_rows] = True
        is_core = is_core.reshape(-1)
        # the patch rectangle: the core stamps' bounding box, clipped to the image
        y0, y1 = max(int(yl[is_core].min()), 0), min(int(yl[is_core].max()) + sy, ny_img)
        x0, x1 = max(int(xl[is_core].min()), 0), min(int(xl[is_core].max()) + sx, nx_img)
        xout, yout = spots.unmodelled(m0, m1, e0, e1, psf.nfiber)
        wloc, dloc = _patch_pixels(st, xl, yl, is_core, xout, yout, pix, ivar, y0, x0, y1 - y0, x1 - x0)
        if readnoise is None:
            M, rhs = _accumulate_normal(st, xl, yl, wloc, dloc, y0, x0)
            diag = np.diag(M).copy()
        else:
            # both checkerboard halves in one pass; the data-weighted matrix is their sum
            black = checkerboard(wloc.shape)
            halves = _accumulate_normals(st, xl, yl, np.stack([np.where(black, wloc, 0.0),
                                                               np.where(black, 0.0, wloc)]), dloc, y0, x0)
            diag = np.diag(halves[0][0]) + np.diag(halves[0][1])
        scale = diag.max() if diag.size and diag.max() > 0 else 1.0
        nodata = diag <= 1e3 * RIDGE * scale
        if readnoise is not None:
            wloc = model_weights(st, xl, yl, halves, wloc, dloc, readnoise[y0:y1, x0:x1], y0, x0, nw,
                                 RIDGE * scale)
            M, rhs = _accumulate_normal(st, xl, yl, wloc, dloc, y0, x0)
        M.flat[::M.shape[0] + 1] += RIDGE * scale
        core_idx = np.arange(core_rows[0] * nw, (core_rows[-1] + 1) * nw)
        # decorrelate the on-grid wavelengths only: padding bins beyond the grid ends
        # are marginalised, so that the stored resolution describes the flux exactly
        lo, hi = grid_columns(patch, wavepad, nwave)
        fdec, blocks = solve_patch(M, rhs, core_idx, nw, (lo, hi))
        R, rivar = decorrelate(blocks)
        rflux = np.einsum("fij,fj->fi", R, fdec.reshape(nf, nw)[core_rows, lo:hi])
        keep = slice(wavepad, wavepad + w1 - w0)               # kept columns of the patch
        keep_r = slice(wavepad - lo, wavepad - lo + w1 - w0)   # kept rows of R
        wanted = np.zeros((nf, nw), bool)
        wanted[core_rows, keep] = True
        chi2, badfrac = _spot_statistics(st, xl, yl, fdec, wloc, dloc, y0, x0, wanted.reshape(-1))
        nod = nodata.reshape(nf, nw)[core_rows, keep]
        nod |= spots.on_ccd[s0 - c0:s1 - c0, w0 + pad:w1 + pad] < MIN_ON_CCD
        store_patch(result, patch, fibers, dw, rflux[:, keep_r], rivar[:, keep_r], nod,
                    badfrac.reshape(nf, nw)[core_rows, keep], chi2.reshape(nf, nw)[core_rows, keep],
                    resolution_band(R, wavepad - lo, w1 - w0, ndiag))
    return finish_result(result)


def extract_bundles(pix, ivar, psf, wave, bundles, **options):
    """Extract several fiber ranges serially; returns the list of :func:`extract_bundle` results."""
    out = []
    for b in bundles:
        t0 = time.perf_counter()
        out.append(extract_bundle(pix, ivar, psf, wave, b, **options))
        log.debug("fibers %d-%d extracted in %.2f s", b[0], b[1] - 1, time.perf_counter() - t0)
    return out


def assemble_frame(results, bundles, wave, psf, header=None, fibermap=None):
    """Stack bundle results (in ``bundles`` order) into a :class:`~desired.frame.Frame`."""
    order = np.argsort([b[0] for b in bundles])
    res = [results[i] for i in order]
    bnd = [bundles[i] for i in order]
    fibers = np.concatenate([np.arange(*b) for b in bnd])
    cat = {k: np.concatenate([r[k] for r in res]) for k in res[0]}
    hdr = dict(header or {})
    hdr["FIBERMIN"] = psf.fibermin + int(fibers.min())
    fm = None if fibermap is None else fibermap[fibers]
    return Frame(wave, cat["flux"], cat["ivar"], cat["mask"], cat["resolution_data"], fm,
                 cat["chi2pix"], hdr, fibers=psf.fibermin + fibers)


#: inputs of the forked workers, inherited through fork instead of being pickled per task
_FORK_INPUTS = {}


def _pool_worker(bundle):
    pix, ivar, psf, wave, options = _FORK_INPUTS["args"]
    with single_threaded_blas():
        return extract_bundle(pix, ivar, psf, wave, bundle, **options)


def plan_bundles(image, psf, wave=None, fibers=None, bundlesize=BUNDLESIZE):
    """Output grid, fiber range and bundles of one extraction (shared by the backends).

    Parameters
    ----------
    image : desired.image.Image
    psf : desired.psf.GaussHermitePSF
    wave : array, optional
        Output grid (Angstrom); the camera band's default grid when omitted.
    fibers : (int, int), optional
        Half-open range of PSF fiber indices; all fibers by default.
    bundlesize : int

    Returns
    -------
    wave : ndarray, shape (nwave,)
    fiber_range : (int, int)
    bundles : list of (int, int)
        Half-open fiber ranges, bundles clipped to ``fiber_range``.
    """
    if wave is None:
        wave = wavelength_grid(image.camera)
    wave = np.asarray(wave, dtype=np.float64)
    lo, hi = (0, psf.nfiber) if fibers is None else fibers
    if not (0 <= lo < hi <= psf.nfiber):
        raise ValueError(f"fiber range {lo}-{hi} outside the PSF's {psf.nfiber} fibers")
    bundles = [(max(a, lo), min(b, hi)) for a, b in bundle_ranges(psf.nfiber, bundlesize)
               if b > lo and a < hi]
    return wave, (lo, hi), bundles


def extract_frame(image, psf, wave=None, fibers=None, bundlesize=BUNDLESIZE, nproc=1,
                  fibermap=None, model_variance=True, **options):
    """Extract every fiber of a preproc image.

    Parameters
    ----------
    image : desired.image.Image
        Preproc image; pixels with bad ccdmask bits get zero weight (``good_ivar``).
    psf : desired.psf.GaussHermitePSF
    wave : array, shape (nwave,), optional
        Output grid; the camera default (:func:`wavelength_grid`) when omitted.
    fibers : (int, int), optional
        Fiber-index range relative to the PSF's first fiber; all fibers by default.
    bundlesize : int
        Fibers per independent bundle.
    nproc : int
        Worker processes (bundles are distributed; results do not depend on nproc).
    fibermap : astropy.table.Table, optional
        One row per PSF fiber; the extracted rows are attached to the frame.
    model_variance : bool
        Weight pixels by ``1 / (model + readnoise^2)`` from a first solution of each
        patch (see :func:`extract_bundle`) rather than by the preproc ivar; needs the
        image's read noise.
    **options
        ``nsubbundles``, ``nwavestep``, ``wavepad``, ``ndiag`` of :func:`extract_bundle`.

    Returns
    -------
    desired.frame.Frame
        Flux in electron/Angstrom.
    """
    wave, (lo, hi), bundles = plan_bundles(image, psf, wave, fibers, bundlesize)
    ivar = image.good_ivar()
    options = variance_options(image, model_variance, options)
    t0 = time.perf_counter()
    if nproc > 1:
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        _FORK_INPUTS["args"] = (image.pix, ivar, psf, wave, options)
        try:
            with ctx.Pool(min(nproc, len(bundles))) as pool:
                results = pool.map(_pool_worker, bundles, chunksize=1)
        finally:
            _FORK_INPUTS.clear()
    else:
        with single_threaded_blas():
            results = extract_bundles(image.pix, ivar, psf, wave, bundles, **options)
    log.info("extracted %d fibers x %d wavelengths in %.1f s", hi - lo, wave.size, time.perf_counter() - t0)
    header = dict(image.header)
    header["BUNIT"] = "electron/Angstrom"
    header["EXTVAR"] = "model" if "readnoise" in options else "data"
    return assemble_frame(results, bundles, wave, psf, header, fibermap)


def variance_options(image, model_variance, options):
    """``options`` with the image's read noise added when model-variance weights are asked for and possible."""
    if not model_variance:
        return dict(options)
    if not np.any(image.readnoise > 0):
        log.warning("the image has no read noise: pixels weighted by the preproc ivar")
        return dict(options)
    return dict(options, readnoise=image.readnoise)
