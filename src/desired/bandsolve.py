"""Banded linear algebra for the calibration fits (deconvolved mean spectra, smoothing splines).

The fiberflat and sky fits solve for one deconvolved spectrum ``x`` (nwave) seen by
every fiber through its own banded resolution matrix ``R_f`` (half width ``h``)::

    minimise  sum_f sum_i w[f, i] (d[f, i] - (R_f x)_i)^2

whose normal matrix ``A = sum_f R_f^T W_f R_f`` is symmetric with half bandwidth
``2h``.  It is accumulated directly in LAPACK's lower banded storage
(``ab[k, j] = A[j + k, j]``), solved by banded Cholesky (``scipy.linalg``), and
the band of its inverse (all that the variance of ``R_f x`` needs) comes from
the selected-inversion recurrence on the Cholesky factor, ``O(nwave h^2)``
instead of the dense ``O(nwave^3)``.

The per-fiber smoothing splines (cubic B-splines with uniform knots) are solved
the same way, all fibers in one numba loop.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.linalg


@numba.njit(cache=True)
def _accumulate_normal(rdata, weight, data, fibers):
    nspec, ndiag, nwave = rdata.shape
    h = ndiag // 2
    band = 2 * h + 1
    ab = np.zeros((band, nwave))
    rhs = np.zeros(nwave)
    row = np.empty(ndiag)
    for f in fibers:
        for i in range(nwave):
            w = weight[f, i]
            if w <= 0.0:
                continue
            # row i of R_f: R[i, i + o] = rdata[f, h - o, i + o]
            for a in range(ndiag):
                o = a - h
                c = i + o
                row[a] = rdata[f, h - o, c] if 0 <= c < nwave else 0.0
            wd = w * data[f, i]
            for a in range(ndiag):
                ra = row[a]
                if ra == 0.0:
                    continue
                ca = i + a - h
                rhs[ca] += ra * wd
                wra = w * ra
                for b in range(a, ndiag):
                    ab[b - a, ca] += wra * row[b]
    return ab, rhs


def normal_equations(rdata, weight, data, fibers=None):
    """Normal equations of the deconvolved fit ``d_f ≈ R_f x`` over ``fibers``.

    Parameters
    ----------
    rdata : array, shape (nspec, ndiag, nwave)
        Resolution diagonals (DESI storage, see :mod:`desired.resolution`).
    weight : array, shape (nspec, nwave)
        Weights (inverse variances); pixels with weight <= 0 are ignored.
    data : array, shape (nspec, nwave)
    fibers : array of int, optional
        Rows used; all when omitted.

    Returns
    -------
    ab : ndarray, shape (ndiag, nwave)
        ``A`` in lower banded storage (``ab[k, j] = A[j + k, j]``), half bandwidth ndiag - 1.
    rhs : ndarray, shape (nwave,)
    """
    rdata = np.ascontiguousarray(rdata, dtype=np.float64)
    fibers = np.arange(rdata.shape[0]) if fibers is None else np.asarray(fibers, dtype=np.int64)
    return _accumulate_normal(rdata, np.ascontiguousarray(weight, dtype=np.float64),
                              np.ascontiguousarray(data, dtype=np.float64), fibers)


def cholesky_band(ab, ridge=1e-10):
    """Cholesky factor of a banded SPD matrix, robust to empty rows and near-singularity.

    Rows with a zero diagonal (no data) are decoupled (diagonal set to 1).  A ridge
    of ``ridge`` times the mean diagonal is added, increased tenfold until the
    factorisation succeeds.

    Parameters
    ----------
    ab : array, shape (nband, n)
        Lower banded storage.
    ridge : float

    Returns
    -------
    chol : ndarray, shape (nband, n)
        Lower banded Cholesky factor (``scipy.linalg.cholesky_banded`` convention).
    empty : ndarray of bool, shape (n,)
        Rows without data.
    """
    ab = np.array(ab, dtype=np.float64)
    empty = ab[0] <= 0
    ab[0, empty] = 1.0
    scale = np.mean(ab[0, ~empty]) if np.any(~empty) else 1.0
    for _ in range(12):
        trial = ab.copy()
        trial[0] += ridge * scale
        try:
            return scipy.linalg.cholesky_banded(trial, lower=True), empty
        except np.linalg.LinAlgError:
            ridge *= 10.0
    raise np.linalg.LinAlgError("banded normal matrix is not positive definite")


def solve_band(chol, rhs):
    """Solve ``A x = rhs`` with the factor from :func:`cholesky_band`."""
    return scipy.linalg.cho_solve_banded((chol, True), rhs)


@numba.njit(cache=True)
def _selected_inverse(chol):
    p = chol.shape[0] - 1
    n = chol.shape[1]
    z = np.zeros((p + 1, n))            # z[d, i] = Z[i + d, i]
    for i in range(n - 1, -1, -1):
        lii = chol[0, i]
        kmax = min(p, n - 1 - i)
        # off-diagonal Z[j, i], j = i + dj, from the largest j down
        for dj in range(kmax, 0, -1):
            j = i + dj
            s = 0.0
            for dk in range(1, kmax + 1):
                k = i + dk
                lki = chol[dk, i]
                if j >= k:
                    s += z[j - k, k] * lki
                else:
                    s += z[k - j, j] * lki
            z[dj, i] = -s / lii
        s = 0.0
        for dk in range(1, kmax + 1):
            s += z[dk, i] * chol[dk, i]
        z[0, i] = (1.0 / lii - s) / lii
    return z


def inverse_band(chol):
    """Band of ``A^-1`` (same bandwidth as ``A``) from its banded Cholesky factor.

    Returns
    -------
    ndarray, shape (nband, n)
        ``z[d, i] = (A^-1)[i + d, i]``.
    """
    return _selected_inverse(np.ascontiguousarray(chol))


@numba.njit(cache=True)
def _convolved_variance(rdata, zband):
    nspec, ndiag, nwave = rdata.shape
    h = ndiag // 2
    out = np.zeros((nspec, nwave))
    row = np.empty(ndiag)
    for f in range(nspec):
        for i in range(nwave):
            for a in range(ndiag):
                c = i + a - h
                row[a] = rdata[f, 2 * h - a, c] if 0 <= c < nwave else 0.0
            s = 0.0
            for a in range(ndiag):
                if row[a] == 0.0:
                    continue
                ca = i + a - h
                s += row[a] * row[a] * zband[0, ca]
                for b in range(a + 1, ndiag):
                    s += 2.0 * row[a] * row[b] * zband[b - a, ca]
            out[f, i] = s
    return out


def convolved_variance(rdata, zband):
    """Diagonal of ``R_f C R_f^T`` for every fiber, given the band of the covariance ``C``.

    Parameters
    ----------
    rdata : array, shape (nspec, ndiag, nwave)
    zband : array, shape (>= ndiag, nwave)
        Lower band of ``C`` (from :func:`inverse_band`).

    Returns
    -------
    ndarray, shape (nspec, nwave)
    """
    return _convolved_variance(np.ascontiguousarray(rdata, dtype=np.float64), np.ascontiguousarray(zband))


def convolve(rdata, x):
    """``R_f x`` for every fiber (one spectrum ``x`` shared by all fibers), shape (nspec, nwave)."""
    rdata = np.asarray(rdata)
    nspec, ndiag, nwave = rdata.shape
    h = ndiag // 2
    out = np.zeros((nspec, nwave))
    for a in range(ndiag):
        o = h - a                       # storage row a holds offset o: R[c - o, c] = rdata[:, a, c]
        if o >= 0:
            out[:, :nwave - o] += rdata[:, a, o:] * x[None, o:]
        else:
            out[:, -o:] += rdata[:, a, :nwave + o] * x[None, :nwave + o]
    return out


# ---------------------------------------------------------------- smoothing splines
def spline_basis(wave, spacing):
    """Cubic B-spline basis with uniform knots every ``spacing`` (same unit as ``wave``).

    Returns
    -------
    first : ndarray of int, shape (nwave,)
        Index of the first of the 4 non-zero basis functions at each wavelength.
    values : ndarray, shape (nwave, 4)
    ncoef : int
    """
    from scipy.interpolate import BSpline
    wave = np.asarray(wave, dtype=np.float64)
    nint = max(1, int(np.ceil((wave[-1] - wave[0]) / spacing)))
    inner = np.linspace(wave[0], wave[-1], nint + 1)
    step = inner[1] - inner[0]
    knots = np.concatenate([inner[0] - step * np.arange(3, 0, -1), inner, inner[-1] + step * np.arange(1, 4)])
    ncoef = knots.size - 4
    design = BSpline.design_matrix(wave, knots, 3).tocsr()
    first = np.empty(wave.size, dtype=np.int64)
    values = np.zeros((wave.size, 4))
    for i in range(wave.size):
        cols = design.indices[design.indptr[i]:design.indptr[i + 1]]
        vals = design.data[design.indptr[i]:design.indptr[i + 1]]
        start = min(int(cols.min()), ncoef - 4)
        first[i] = start
        values[i, cols - start] = vals
    return first, values, ncoef


@numba.njit(cache=True)
def _band_cholesky_solve(ab, rhs):
    """In-place lower banded Cholesky solve; returns False when not positive definite."""
    p = ab.shape[0] - 1
    n = ab.shape[1]
    for j in range(n):
        s = ab[0, j]
        for k in range(max(0, j - p), j):
            s -= ab[j - k, k] * ab[j - k, k]
        if s <= 0.0:
            return False
        d = np.sqrt(s)
        ab[0, j] = d
        for i in range(j + 1, min(n, j + p + 1)):
            s = ab[i - j, j]
            for k in range(max(0, i - p), j):
                s -= ab[i - k, k] * ab[j - k, k]
            ab[i - j, j] = s / d
    for i in range(n):
        s = rhs[i]
        for k in range(max(0, i - p), i):
            s -= ab[i - k, k] * rhs[k]
        rhs[i] = s / ab[0, i]
    for i in range(n - 1, -1, -1):
        s = rhs[i]
        for k in range(i + 1, min(n, i + p + 1)):
            s -= ab[k - i, i] * rhs[k]
        rhs[i] = s / ab[0, i]
    return True


@numba.njit(cache=True)
def _fit_splines(first, values, ncoef, data, weight, penalty):
    nspec, nwave = data.shape
    out = np.zeros((nspec, nwave))
    ok = np.zeros(nspec, dtype=np.bool_)
    for f in range(nspec):
        ab = np.zeros((4, ncoef))
        rhs = np.zeros(ncoef)
        for i in range(nwave):
            w = weight[f, i]
            if w <= 0.0:
                continue
            s = first[i]
            for a in range(4):
                wa = w * values[i, a]
                rhs[s + a] += wa * data[f, i]
                for b in range(a, 4):
                    ab[b - a, s + a] += wa * values[i, b]
        scale = 0.0
        for j in range(ncoef):
            scale += ab[0, j]
        if scale <= 0.0:
            continue
        lam = penalty * scale / ncoef
        # second-difference penalty lam * D^T D (D rows: c[j] - 2 c[j+1] + c[j+2]) fills gaps smoothly
        for j in range(ncoef - 2):
            dv = (1.0, -2.0, 1.0)
            for a in range(3):
                for b in range(a, 3):
                    ab[b - a, j + a] += lam * dv[a] * dv[b]
        for j in range(ncoef):
            ab[0, j] += 1e-12 * scale / ncoef
        if not _band_cholesky_solve(ab, rhs):
            continue
        ok[f] = True
        for i in range(nwave):
            s = first[i]
            v = 0.0
            for a in range(4):
                v += values[i, a] * rhs[s + a]
            out[f, i] = v
    return out, ok


def smooth_splines(wave, data, weight, spacing, penalty=1e-4):
    """Weighted least-squares cubic smoothing spline of every row, knots every ``spacing``.

    Parameters
    ----------
    wave : array, shape (nwave,)
    data, weight : array, shape (nspec, nwave)
        Values and weights (inverse variances; <= 0 ignored).
    spacing : float
        Knot spacing, same unit as ``wave``.
    penalty : float
        Relative weight of a second-difference penalty on the coefficients (bridges masked gaps).

    Returns
    -------
    fit : ndarray, shape (nspec, nwave)
        The splines at ``wave`` (zeros for rows that cannot be fitted).
    ok : ndarray of bool, shape (nspec,)
        Rows fitted.
    """
    first, values, ncoef = spline_basis(wave, spacing)
    return _fit_splines(first, values, ncoef, np.ascontiguousarray(data, dtype=np.float64),
                        np.ascontiguousarray(weight, dtype=np.float64), float(penalty))
