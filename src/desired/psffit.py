"""Fit a GAUSS-HERMITE PSF to an arc-lamp preproc image.

The fit starts from a nominal PSF (calibration tree or a previous night) whose
traces may be off by a pixel or so and whose wavelength solution may be off by a
few Angstrom, and works bundle by bundle (25 fibers) so that bundles can run in
parallel:

1. coarse offsets: the bundle's cross-dispersion profile summed along the nominal
   traces gives a common x offset; cross-correlating each fiber's boxcar spectrum
   with the lamp line list at the nominal line positions gives a common y offset,
   refined by a linear-in-wavelength correction fitted to the brightest lines;
2. line identification: every list line gets a spot per fiber; a line is
   *detected* where the boxcar spectrum shows it above ``min_snr`` and *isolated*
   where no other significant list line lies within a few rows;
3. spot fit: flux and centroid of every detected isolated spot by Gauss-Newton
   on its stamp, with the model of all other spots subtracted (Jacobi sweeps), so
   neighbouring fibers and blended lines are modelled jointly;
4. traces: x(λ) and y(λ) of each fiber as the nominal Legendre series plus a
   Legendre correction fitted to the spot centroids (degree lowered when lines are
   few, outliers clipped);
5. shape: GHSIGX, GHSIGY and the Gauss-Hermite coefficients GH-2-0, GH-0-2,
   GH-1-1 as Legendre series in wavelength (plus a linear term across the bundle's
   fibers and, for the widths, a per-fiber offset), by Levenberg-Marquardt on the
   stamps of bright isolated spots with the spot fluxes solved linearly inside the
   residual (variable projection) and analytic stamp derivatives
   (:func:`fill_stamps_derivatives`), so a fitted parameter costs no extra stamp
   evaluation;
6. steps 3-5 are iterated; fibers without enough lines are flagged and their
   trace corrections interpolated from their neighbours.

Per-fiber status bits (the ``STATUS`` parameter of the output, constant term):
:data:`STATUS_INTERPOLATED` (no usable fit, traces interpolated from neighbours;
also listed in the ``BADFIBER`` keyword), :data:`STATUS_MISSING_LINES` (lines
expected to be bright were not found), :data:`STATUS_LOW_DEGREE` (too few lines
for the full trace degree).
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numba
import numpy as np
from numpy.polynomial import legendre
from scipy import sparse
from scipy.ndimage import gaussian_filter1d

from .arcs import isolated_lines
from .psf import TAIL_PARAMS, GaussHermitePSF, fill_stamps, reduced_wavelength
from .threads import single_threaded_blas

log = logging.getLogger(__name__)

STATUS_INTERPOLATED = 1
STATUS_MISSING_LINES = 2
STATUS_LOW_DEGREE = 4

#: number of fibers per bundle (slit block) of a DESI spectrograph
BUNDLE_SIZE = 25


@dataclasses.dataclass
class FitOptions:
    """Tunable settings of the arc PSF fit.

    Attributes
    ----------
    trace_degree : int
        Legendre degree of the x(λ), y(λ) corrections (and at least of the output traces).
    shape_degree : int
        Legendre degree in wavelength of the fitted shape parameters.
    shape_params : tuple of str
        Spot parameters fitted (others are copied from the nominal PSF): GHSIGX,
        GHSIGY and GH-i-j only.  The even terms GH-2-0/GH-0-2 must be fitted for
        the widths to be right (otherwise the widths absorb them, ~3 %).
    fiber_slope : bool
        Fit a linear variation of each shape parameter across the bundle's fibers.
    min_snr : float
        Detection threshold of a line in a fiber's boxcar spectrum.
    min_lines : int
        Fibers with fewer detected isolated lines are flagged and interpolated.
    max_xshift, max_yshift : float
        Search ranges of the coarse x and y offsets, pixels.
    isolation : float
        Lines closer than this many rows to a significant neighbour are not used
        for positions nor shapes (they are still modelled).
    niter : int
        Outer iterations of spot fit, trace fit and shape fit.
    max_shape_spots : int
        Brightest isolated spots used in the shape fit of one bundle.
    shape_max_iter : int
        Levenberg-Marquardt iterations of each shape fit (warm-started from the
        previous outer iteration).
    fiber_offsets : tuple of str
        Shape parameters that get one constant offset per fiber on top of the
        bundle's smooth model.
    fiber_offset_prior : float
        Width of the zero-mean Gaussian prior on those offsets (parameter units), so
        that fibers without spots keep the bundle's smooth model.
    model_weights : bool
        Weight the shape fit by the variance of the current model (Poisson plus the
        image's read noise) instead of the image's ivar (kept where it is 0).  A
        variance from the data themselves (the preproc ivar of arc spots) biases the
        width / even-term split when the model is complete (synthetic arcs: GHSIGY
        1.1 % low, 0.15 % with model weights); on the simulator's arcs, whose tail and
        GH-2-2 the fit does not model, the image ivar gives the closer widths (0.2-1.0 %
        against 0.7-1.4 %), hence the default.
    """

    trace_degree: int = 5
    shape_degree: int = 2
    shape_params: tuple = ("GHSIGX", "GHSIGY", "GH-2-0", "GH-0-2", "GH-1-1")
    fiber_slope: bool = True
    min_snr: float = 8.0
    min_lines: int = 5
    max_xshift: float = 3.5
    max_yshift: float = 40.0
    isolation: float = 6.0
    niter: int = 3
    max_shape_spots: int = 400
    shape_max_iter: int = 5
    fiber_offsets: tuple = ("GHSIGX", "GHSIGY")
    fiber_offset_prior: float = 0.05
    model_weights: bool = False


@dataclasses.dataclass
class BundleTask:
    """Inputs of the fit of one bundle: an image cut-out and the nominal PSF of its fibers."""

    pix: np.ndarray
    ivar: np.ndarray
    col0: int
    psf: GaussHermitePSF
    line_wave: np.ndarray
    line_intensity: np.ndarray
    options: FitOptions
    readnoise: np.ndarray = None


@dataclasses.dataclass
class BundleResult:
    """Outputs of the fit of one bundle (coordinates of the full image).

    Attributes
    ----------
    xcoef, ycoef : ndarray, shape (nfiber, ncoef)
    params : dict of str to ndarray, shape (nfiber, ncoef_p)
        The fitted shape parameters only.
    status : ndarray of int, shape (nfiber,)
    nlines : ndarray of int, shape (nfiber,)
        Detected isolated lines used for the traces.
    chi2, ndof : float
        Stamp chi2 of the isolated spots with the final model, and its degrees of freedom.
    spots : dict of str to ndarray
        Per-spot table: fiber (bundle-relative), wave, x, y, flux, used.
    """

    xcoef: np.ndarray
    ycoef: np.ndarray
    params: dict
    status: np.ndarray
    nlines: np.ndarray
    chi2: float
    ndof: int
    spots: dict


# ---------------------------------------------------------------------------- spot rendering
def _kernel_inputs(xc, yc, xlo, ylo, values, ghdegx, ghdegy):
    """Contiguous arrays of the spot kernels' arguments from a parameter dict."""
    n = np.size(xc)
    gh = np.empty((n, ghdegx + 1, ghdegy + 1))
    for i in range(ghdegx + 1):
        for j in range(ghdegy + 1):
            gh[:, i, j] = values[f"GH-{i}-{j}"]
    if values.get("TAILAMP") is not None:
        tail = np.stack([np.broadcast_to(values[k], (n,)) for k in TAIL_PARAMS], axis=1)
    else:
        tail = np.zeros((n, len(TAIL_PARAMS)))
        tail[:, 1:4] = 1.0
    return (np.ascontiguousarray(xc, dtype=np.float64), np.ascontiguousarray(yc, dtype=np.float64),
            np.ascontiguousarray(xlo, dtype=np.int64), np.ascontiguousarray(ylo, dtype=np.int64),
            np.ascontiguousarray(values["GHSIGX"], dtype=np.float64),
            np.ascontiguousarray(values["GHSIGY"], dtype=np.float64), gh, tail)


def render_stamps(xc, yc, xlo, ylo, nx, ny, values, ghdegx, ghdegy):
    """Pixel-integrated, normalised spots on given pixel boxes.

    The model of :meth:`desired.psf.GaussHermitePSF.spots` (same compiled kernel)
    with free centres and parameter values, so that fits can move spots and
    change shapes.

    Parameters
    ----------
    xc, yc : array, shape (n,)
        Spot centres, pixels.
    xlo, ylo : array of int, shape (n,)
        First column and row of each box.
    nx, ny : int
        Box size.
    values : dict of str to array, shape (n,)
        Spot parameter values (GHSIGX, GHSIGY, GH-i-j, tail parameters).
    ghdegx, ghdegy : int

    Returns
    -------
    ndarray, shape (n, ny, nx)
    """
    stamps = np.empty((np.size(xc), ny, nx))
    fill_stamps(*_kernel_inputs(xc, yc, xlo, ylo, values, ghdegx, ghdegy), stamps)
    return stamps


def render_stamps_derivatives(xc, yc, xlo, ylo, nx, ny, values, ghdegx, ghdegy, shape_terms=True):
    """Spots of :func:`render_stamps` and their analytic derivatives.

    Parameters
    ----------
    xc, yc, xlo, ylo, nx, ny, values, ghdegx, ghdegy
        As :func:`render_stamps`.
    shape_terms : bool
        Also return the derivatives w.r.t. GHSIGX, GHSIGY and every GH-i-j
        (else only w.r.t. the centre).

    Returns
    -------
    stamps : ndarray, shape (n, ny, nx)
    deriv : ndarray, shape (n, nd, ny, nx)
        Derivatives of the normalised stamps; slots as :func:`fill_stamps_derivatives`
        (``nd = 2`` without shape terms, ``4 + (ghdegx + 1)(ghdegy + 1)`` with).
    """
    n = np.size(xc)
    nd = 4 + (ghdegx + 1) * (ghdegy + 1) if shape_terms else 2
    stamps = np.empty((n, ny, nx))
    deriv = np.empty((n, nd, ny, nx))
    fill_stamps_derivatives(*_kernel_inputs(xc, yc, xlo, ylo, values, ghdegx, ghdegy), stamps, deriv)
    return stamps, deriv


def deriv_slot(name, ghdegy):
    """Derivative slot of spot parameter ``name`` in :func:`fill_stamps_derivatives`.

    Raises
    ------
    ValueError
        For parameters the analytic derivatives do not cover (tail parameters).
    """
    if name == "GHSIGX":
        return DERIV_SIGX
    if name == "GHSIGY":
        return DERIV_SIGY
    if name.startswith("GH-"):
        i, j = (int(v) for v in name[3:].split("-"))
        return 4 + i * (ghdegy + 1) + j
    raise ValueError(f"shape parameter {name} cannot be fitted (only GHSIGX, GHSIGY and GH-i-j)")


# ---------------------------------------------------------------------------- spot derivatives
#: derivative slots of :func:`fill_stamps_derivatives` before the GH-i-j coefficients
DERIV_X, DERIV_Y, DERIV_SIGX, DERIV_SIGY = 0, 1, 2, 3


@numba.njit(cache=True)
def _edge_terms(lo, center, sigma, npix, degree, prim, dens, tdens):
    """Antiderivatives and densities of Gauss-Hermite functions at pixel edges.

    For edge ``k`` (at ``lo + k - 0.5``, ``t`` in sigma units): ``prim[i, k]`` =
    antiderivative of He_i g at t (as :func:`desired.psf._pixel_integrals`),
    ``dens[i, k]`` = He_i(t) g(t), ``tdens[i, k]`` = t He_i(t) g(t).
    """
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    inv_sqrt2pi = 1.0 / math.sqrt(2.0 * math.pi)
    for k in range(npix + 1):
        t = (lo + k - 0.5 - center) / sigma
        g = math.exp(-0.5 * t * t) * inv_sqrt2pi
        prim[0, k] = 0.5 * math.erfc(-t * inv_sqrt2)
        dens[0, k] = g
        tdens[0, k] = t * g
        he_prev, he = 1.0, t
        for i in range(1, degree + 1):
            prim[i, k] = -he_prev * g
            dens[i, k] = he * g
            tdens[i, k] = t * he * g
            he_prev, he = he, t * he - i * he_prev


@numba.njit(cache=True)
def _integrals_and_derivatives(lo, center, sigma, npix, degree, prim, dens, tdens, val, dcen, dsig):
    """Pixel integrals of He_i g (``val[i, p]``) and their derivatives w.r.t. centre and sigma."""
    _edge_terms(lo, center, sigma, npix, degree, prim, dens, tdens)
    for i in range(degree + 1):
        for p in range(npix):
            val[i, p] = prim[i, p + 1] - prim[i, p]
            # t = (edge - centre) / sigma: dt/dcentre = -1/sigma, dt/dsigma = -t/sigma
            dcen[i, p] = -(dens[i, p + 1] - dens[i, p]) / sigma
            dsig[i, p] = -(tdens[i, p + 1] - tdens[i, p]) / sigma


@numba.njit(cache=True)
def fill_stamps_derivatives(xc, yc, xlo, ylo, sigx, sigy, gh, tail, stamps, deriv):
    """Normalised spot stamps and their analytic derivatives.

    The stamps are those of :func:`desired.psf.fill_stamps` (pixel-integrated
    Gauss-Hermite core plus tail at pixel centres, clipped at 0, normalised to
    sum 1).  Derivatives are of the normalised stamp; clipped pixels have zero
    derivative.

    Parameters
    ----------
    xc, yc, xlo, ylo, sigx, sigy, gh, tail
        As :func:`desired.psf.fill_stamps`.
    stamps : ndarray, shape (n, ny, nx)
        Output stamps.
    deriv : ndarray, shape (n, nd, ny, nx)
        Output derivatives.  Slot 0: w.r.t. the centre x, 1: centre y (both
        include the tail); when ``nd > 2`` also 2: GHSIGX, 3: GHSIGY and
        ``4 + i (ghdegy + 1) + j``: GH-i-j.
    """
    n, ny, nx = stamps.shape
    nd = deriv.shape[1]
    shape_terms = nd > 2
    degx = gh.shape[1] - 1
    degy = gh.shape[2] - 1
    px = np.empty((degx + 1, nx + 1))
    qx = np.empty((degx + 1, nx + 1))
    rx = np.empty((degx + 1, nx + 1))
    py = np.empty((degy + 1, ny + 1))
    qy = np.empty((degy + 1, ny + 1))
    ry = np.empty((degy + 1, ny + 1))
    ix = np.empty((degx + 1, nx))
    ixc = np.empty((degx + 1, nx))
    ixs = np.empty((degx + 1, nx))
    iy = np.empty((degy + 1, ny))
    iyc = np.empty((degy + 1, ny))
    iys = np.empty((degy + 1, ny))
    tmp = np.empty((degx + 1, ny))
    tmpc = np.empty((degx + 1, ny))
    tmps = np.empty((degx + 1, ny))
    dsum = np.empty(nd)
    for a in range(n):
        _integrals_and_derivatives(xlo[a], xc[a], sigx[a], nx, degx, px, qx, rx, ix, ixc, ixs)
        _integrals_and_derivatives(ylo[a], yc[a], sigy[a], ny, degy, py, qy, ry, iy, iyc, iys)
        for i in range(degx + 1):
            for y in range(ny):
                acc = 0.0
                accc = 0.0
                accs = 0.0
                for j in range(degy + 1):
                    acc += gh[a, i, j] * iy[j, y]
                    accc += gh[a, i, j] * iyc[j, y]
                    accs += gh[a, i, j] * iys[j, y]
                tmp[i, y] = acc
                tmpc[i, y] = accc
                tmps[i, y] = accs
        amp = tail[a, 0]
        core2 = tail[a, 1] * tail[a, 1]
        power = 1.0 + 0.5 * tail[a, 4]
        total = 0.0
        for k in range(nd):
            dsum[k] = 0.0
        for y in range(ny):
            dy = (ylo[a] + y - yc[a]) * tail[a, 3]
            for x in range(nx):
                v = 0.0
                dvx = 0.0
                dvy = 0.0
                dvsx = 0.0
                dvsy = 0.0
                for i in range(degx + 1):
                    v += tmp[i, y] * ix[i, x]
                    dvx += tmp[i, y] * ixc[i, x]
                    dvy += tmpc[i, y] * ix[i, x]
                    dvsx += tmp[i, y] * ixs[i, x]
                    dvsy += tmps[i, y] * ix[i, x]
                if amp != 0.0:
                    dx = (xlo[a] + x - xc[a]) * tail[a, 2]
                    r2 = dx * dx + dy * dy
                    d = core2 + r2
                    if power == 2.0:
                        v += amp * r2 / (d * d)
                        dtdr2 = amp / (d * d) - 2.0 * amp * r2 / (d * d * d)
                    else:
                        v += amp * r2 / d ** power
                        dtdr2 = amp / d ** power - power * amp * r2 / d ** (power + 1.0)
                    dvx += dtdr2 * (-2.0 * dx * tail[a, 2])
                    dvy += dtdr2 * (-2.0 * dy * tail[a, 3])
                if v < 0.0:
                    stamps[a, y, x] = 0.0
                    for k in range(nd):
                        deriv[a, k, y, x] = 0.0
                    continue
                stamps[a, y, x] = v
                total += v
                deriv[a, 0, y, x] = dvx
                deriv[a, 1, y, x] = dvy
                if shape_terms:
                    deriv[a, 2, y, x] = dvsx
                    deriv[a, 3, y, x] = dvsy
                    for i in range(degx + 1):
                        for j in range(degy + 1):
                            deriv[a, 4 + i * (degy + 1) + j, y, x] = ix[i, x] * iy[j, y]
                for k in range(nd):
                    dsum[k] += deriv[a, k, y, x]
        if total == 0.0:
            total = 1.0
        for y in range(ny):
            for x in range(nx):
                s = stamps[a, y, x] / total
                stamps[a, y, x] = s
                for k in range(nd):
                    deriv[a, k, y, x] = (deriv[a, k, y, x] - s * dsum[k]) / total


def _param_values(psf, fiber, wave, names=None):
    """Values of the PSF's spot parameters for spots (fiber, wave): dict name -> (n,)."""
    u = reduced_wavelength(wave, psf.param_wavemin, psf.param_wavemax)
    out = {}
    for name in (names or psf.params):
        c = psf.params[name]
        out[name] = np.einsum("nk,nk->n", legendre.legvander(u, c.shape[1] - 1), c[fiber])
    return out


# ---------------------------------------------------------------------------- image helpers
def _sample_along(pix, xs, offsets):
    """Linearly interpolated pixel values at columns ``xs[row] + offset`` of every row.

    Returns an array (noffset, nrow); columns off the image give 0.
    """
    ny, nx = pix.shape
    rows = np.arange(ny)
    cols = xs[None, :] + np.asarray(offsets)[:, None]
    c0 = np.floor(cols).astype(np.int64)
    frac = cols - c0
    ok = (c0 >= 0) & (c0 + 1 < nx)
    c0 = np.clip(c0, 0, nx - 2)
    val = pix[rows[None, :], c0] * (1 - frac) + pix[rows[None, :], c0 + 1] * frac
    return np.where(ok, val, 0.0)


def _boxes(xlo, ylo, nx, ny, shape):
    """Row/column index arrays of spot boxes and the mask of their on-image pixels."""
    rows = ylo[:, None, None] + np.arange(ny)[None, :, None]
    cols = xlo[:, None, None] + np.arange(nx)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return np.clip(rows, 0, shape[0] - 1), np.clip(cols, 0, shape[1] - 1), inside


class _ShapeProblem:
    """Least squares of spot shapes: linear coefficients of shape parameters, spot fluxes eliminated.

    The model of spot ``s`` is ``flux_s * S_s(p(s))`` with ``p_k(s) = designs[k][s] . theta_k``
    for every fitted parameter ``k``; fluxes are solved linearly for any ``theta``
    (variable projection) and the Gauss-Newton normal matrix of ``theta`` is the
    Schur complement of the joint (flux, theta) problem, built from the analytic
    stamp derivatives of :func:`render_stamps_derivatives`.  An optional Gaussian
    prior (zero mean, inverse variance ``prior_ivar`` per coefficient) is added to
    the cost.
    """

    def __init__(self, xc, yc, xlo, ylo, nx, ny, base, ghdegx, ghdegy, target, weight, names, slots,
                 designs, prior_ivar=None):
        self.xc, self.yc, self.xlo, self.ylo = xc, yc, xlo, ylo
        self.nx, self.ny = nx, ny
        self.base = base
        self.ghdegx, self.ghdegy = ghdegx, ghdegy
        self.target = target.reshape(target.shape[0], -1)
        self.weight = weight.reshape(weight.shape[0], -1)
        self.names, self.slots, self.designs = names, slots, designs
        self.bounds = np.cumsum([0] + [d.shape[1] for d in designs])
        ntheta = self.bounds[-1]
        # expanded design: spot s, parameter k -> coefficient columns
        self.expanded = np.zeros((target.shape[0], len(names), ntheta))
        for k, d in enumerate(designs):
            self.expanded[:, k, self.bounds[k]:self.bounds[k + 1]] = d
        self.prior_ivar = np.zeros(ntheta) if prior_ivar is None else np.asarray(prior_ivar, dtype=np.float64)

    def values(self, theta):
        """Spot parameter values for coefficients ``theta``: dict name -> (n,)."""
        vals = dict(self.base)
        for k, name in enumerate(self.names):
            vals[name] = self.designs[k] @ theta[self.bounds[k]:self.bounds[k + 1]]
        return vals

    def evaluate(self, theta):
        """Cost, residuals and Gauss-Newton system at ``theta`` (None where the widths are unphysical)."""
        vals = self.values(theta)
        if np.any(vals["GHSIGX"] <= 0.2) or np.any(vals["GHSIGY"] <= 0.2):
            return None
        st, dst = render_stamps_derivatives(self.xc, self.yc, self.xlo, self.ylo, self.nx, self.ny, vals,
                                            self.ghdegx, self.ghdegy)
        n = st.shape[0]
        st = st.reshape(n, -1)
        w = self.weight
        ws = w * st
        norm = (ws * st).sum(axis=1)
        flux = (ws * self.target).sum(axis=1) / np.where(norm > 0, norm, 1.0)
        resid = self.target - flux[:, None] * st
        cost = float((w * resid * resid).sum())
        fd = dst[:, self.slots].reshape(n, len(self.slots), -1) * flux[:, None, None]
        cross = np.einsum("np,nkp->nk", ws, fd)                       # flux-parameter block
        block = np.einsum("nkp,np,nlp->nkl", fd, w, fd)
        grad = np.einsum("nkp,np->nk", fd, w * resid)
        gflux = (ws * resid).sum(axis=1)
        inv = np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0)
        # eliminate the fluxes (Schur complement); grad is J^T W r (descent direction)
        block = block - cross[:, :, None] * cross[:, None, :] * inv[:, None, None]
        grad = grad - cross * (gflux * inv)[:, None]
        flat = self.expanded.reshape(-1, self.expanded.shape[2])          # [n * k, ntheta]
        hess = flat.T @ np.matmul(block, self.expanded).reshape(flat.shape)
        grad = flat.T @ grad.ravel()
        # Gaussian prior
        cost += float((self.prior_ivar * theta * theta).sum())
        hess[np.diag_indices_from(hess)] += self.prior_ivar
        grad -= self.prior_ivar * theta
        return cost, hess, grad

    def solve(self, theta0, max_iter=10, chi2_tol=0.5):
        """Levenberg-Marquardt from ``theta0``; returns the coefficients.

        Stops when an iteration lowers the cost (a chi2) by less than ``chi2_tol``.
        """
        theta = np.array(theta0, dtype=np.float64)
        state = self.evaluate(theta)
        if state is None:
            log.warning("shape fit: unphysical starting widths; kept")
            return theta
        cost, hess, grad = state
        lam = 1e-3
        it = 0
        for it in range(max_iter):
            diag = np.diag(hess) + 1e-12
            improved = False
            while lam < 1e8:
                try:
                    delta = np.linalg.solve(hess + lam * np.diag(diag), grad)
                except np.linalg.LinAlgError:
                    lam *= 10
                    continue
                trial = self.evaluate(theta + delta)
                if trial is not None and trial[0] < cost:
                    improved = True
                    break
                lam *= 10
            if not improved:
                break
            decrease = cost - trial[0]
            theta = theta + delta
            cost, hess, grad = trial
            lam = max(lam / 10, 1e-7)
            if decrease < chi2_tol:
                break
        log.debug("shape fit: %d iterations, chi2 %.6g", it + 1, cost)
        return theta


# ---------------------------------------------------------------------------- one bundle
class _BundleFitter:
    """State of the fit of one bundle (image coordinates of the cut-out)."""

    def __init__(self, task):
        self.t = task
        self.o = task.options
        self.psf = task.psf
        self.pix = task.pix
        self.ivar = task.ivar
        self.ny, self.nx = self.pix.shape
        self.nfib = self.psf.nfiber
        self.hx, self.hy = self.psf.hsizex, self.psf.hsizey
        self.bx, self.by = 2 * self.hx + 1, 2 * self.hy + 1
        # trace corrections (Legendre in the nominal trace domain), per fiber
        self.ncoef_trace = max(self.o.trace_degree + 1, self.psf.xcoef.shape[1], self.psf.ycoef.shape[1])
        self.dxcoef = np.zeros((self.nfib, self.ncoef_trace))
        self.dycoef = np.zeros((self.nfib, self.ncoef_trace))
        self.status = np.zeros(self.nfib, dtype=np.int64)
        self.nlines = np.zeros(self.nfib, dtype=np.int64)
        self.shape_coef = None

    # --- traces -------------------------------------------------------------------
    def trace_x(self, fiber, wave):
        u = reduced_wavelength(wave, self.psf.wavemin, self.psf.wavemax)
        return self.psf.x(fiber, wave) + np.einsum(
            "...k,...k->...", legendre.legvander(u, self.ncoef_trace - 1), self.dxcoef[fiber])

    def trace_y(self, fiber, wave):
        u = reduced_wavelength(wave, self.psf.wavemin, self.psf.wavemax)
        return self.psf.y(fiber, wave) + np.einsum(
            "...k,...k->...", legendre.legvander(u, self.ncoef_trace - 1), self.dycoef[fiber])

    # --- step 1: coarse offsets and identification -------------------------------------
    def coarse(self):
        rows = np.arange(self.ny, dtype=np.float64)
        self.row_x = np.empty((self.nfib, self.ny))
        for f in range(self.nfib):
            self.row_x[f] = self.psf.x(f, self.psf.wavelength(f, rows))
        offsets = np.arange(-self.o.max_xshift, self.o.max_xshift + 1e-9, 0.1)
        prof = np.zeros(offsets.size)
        for f in range(self.nfib):
            prof += _sample_along(self.pix, self.row_x[f], offsets).sum(axis=1)
        prof -= np.median(prof)
        k = int(np.argmax(prof))
        sel = slice(max(k - 10, 0), k + 11)
        w = np.clip(prof[sel], 0, None)
        dx = float((offsets[sel] * w).sum() / w.sum()) if w.sum() > 0 else 0.0
        self.dxcoef[:, 0] = dx
        # boxcar spectra along the shifted traces
        box = np.arange(-2.0, 2.01, 1.0)
        self.spec = np.empty((self.nfib, self.ny))
        self.spec_var = np.empty((self.nfib, self.ny))
        var = np.where(self.ivar > 0, 1.0 / np.where(self.ivar > 0, self.ivar, 1.0), 0.0)
        for f in range(self.nfib):
            self.spec[f] = _sample_along(self.pix, self.row_x[f] + dx, box).sum(axis=0)
            self.spec_var[f] = _sample_along(var, self.row_x[f] + dx, box).sum(axis=0)
        smooth = gaussian_filter1d(self.spec, 1.0, axis=1)
        # common y offset by cross-correlation with the line list
        wave, inten = self.t.line_wave, self.t.line_intensity
        weight = np.sqrt(np.clip(inten, 0, None))
        dgrid = np.arange(-self.o.max_yshift, self.o.max_yshift + 1e-9, 0.25)
        xc = np.zeros(dgrid.size)
        ynom = np.array([self.psf.y(f, wave) for f in range(self.nfib)])      # [nfib, nline]
        for f in range(self.nfib):
            yy = ynom[f][None, :] + dgrid[:, None]
            xc += (np.interp(yy, rows, smooth[f], left=0, right=0) * weight[None, :]).sum(axis=1)
        dy = float(dgrid[int(np.argmax(xc))])
        # linear-in-wavelength refinement with the bright lines
        onccd = (ynom + dy > self.hy) & (ynom + dy < self.ny - 1 - self.hy)
        bright = np.argsort(-inten)[:15]
        uu, oo = [], []
        for f in range(self.nfib):
            for line in bright:
                if not onccd[f, line]:
                    continue
                y0 = ynom[f, line] + dy
                lo, hi = int(max(y0 - 6, 0)), int(min(y0 + 7, self.ny))
                seg = smooth[f, lo:hi]
                if seg.size < 3:
                    continue
                kk = lo + int(np.argmax(seg))
                snr = self.spec[f, kk] / np.sqrt(max(self.spec_var[f, kk], 1e-6))
                if snr < 2 * self.o.min_snr:
                    continue
                s = slice(max(kk - 2, 0), kk + 3)
                w = np.clip(self.spec[f, s], 0, None)
                yc = (np.arange(self.ny)[s] * w).sum() / w.sum()
                uu.append(reduced_wavelength(wave[line], self.psf.wavemin, self.psf.wavemax))
                oo.append(yc - ynom[f, line])
        a, b = dy, 0.0
        if len(oo) >= 3:
            uu, oo = np.array(uu), np.array(oo)
            keep = np.abs(oo - np.median(oo)) < 3.0
            for _ in range(3):
                if keep.sum() < 3:
                    break
                b, a = np.polyfit(uu[keep], oo[keep], 1)
                res = oo - (a + b * uu)
                keep = np.abs(res) < max(4 * 1.4826 * np.median(np.abs(res[keep])), 0.3)
        self.dycoef[:, 0] = a
        self.dycoef[:, 1] = b
        log.debug("bundle at col %d: coarse dx %.3f dy %.3f%+.3f u", self.t.col0, dx, a, b)

    def make_spots(self):
        """One spot per (fiber, list line) on the CCD; detection and isolation flags."""
        wave, inten = self.t.line_wave, self.t.line_intensity
        fib, lin = np.meshgrid(np.arange(self.nfib), np.arange(wave.size), indexing="ij")
        fib, lin = fib.ravel(), lin.ravel()
        ypred = self.trace_y(fib, wave[lin])
        xpred = self.trace_x(fib, wave[lin])
        on = (ypred > self.hy) & (ypred < self.ny - 1 - self.hy) & (xpred > 1) & (xpred < self.nx - 2)
        fib, lin, ypred, xpred = fib[on], lin[on], ypred[on], xpred[on]
        # detection in the boxcar spectra
        snr = np.zeros(fib.size)
        for s in range(fib.size):
            k = int(np.rint(ypred[s]))
            seg = slice(max(k - 2, 0), k + 3)
            sig = self.spec[fib[s], seg].sum()
            var = self.spec_var[fib[s], seg].sum()
            snr[s] = sig / np.sqrt(var) if var > 0 else 0.0
        iso = np.zeros(fib.size, dtype=bool)
        for f in range(self.nfib):
            m = fib == f
            iso[m] = isolated_lines(ypred[m], inten[lin[m]], self.o.isolation)
        self.sfib, self.sline = fib, lin
        self.swave = wave[lin]
        self.sx, self.sy = xpred.copy(), ypred.copy()
        self.sxlo = np.rint(xpred).astype(np.int64) - self.hx
        self.sylo = np.rint(ypred).astype(np.int64) - self.hy
        self.sflux = np.zeros(fib.size)
        self.sxerr = np.full(fib.size, np.inf)
        self.syerr = np.full(fib.size, np.inf)
        self.detected = snr > self.o.min_snr
        self.isolated = iso
        self.snr = snr
        self.rows, self.cols, inside = _boxes(self.sxlo, self.sylo, self.bx, self.by, self.pix.shape)
        self.inside = inside
        self.data = self.pix[self.rows, self.cols]
        self.weight = np.where(inside, self.ivar[self.rows, self.cols], 0.0)
        self.values = _param_values(self.psf, fib, self.swave)

    # --- model ----------------------------------------------------------------------
    def stamps(self, idx, derivatives=False):
        """Stamps of spots ``idx`` at their current centres and shapes (and centre derivatives)."""
        vals = {k: v[idx] for k, v in self.values.items()}
        if derivatives:
            return render_stamps_derivatives(self.sx[idx], self.sy[idx], self.sxlo[idx], self.sylo[idx],
                                             self.bx, self.by, vals, self.psf.ghdegx, self.psf.ghdegy,
                                             shape_terms=False)
        return render_stamps(self.sx[idx], self.sy[idx], self.sxlo[idx], self.sylo[idx], self.bx, self.by,
                             vals, self.psf.ghdegx, self.psf.ghdegy)

    def model_image(self, stamps_all):
        flat = (self.rows * self.nx + self.cols).ravel()
        vals = (stamps_all * self.sflux[:, None, None] * self.inside).ravel()
        return np.bincount(flat, weights=vals, minlength=self.ny * self.nx).reshape(self.pix.shape)

    # --- step 3: fluxes and centroids ----------------------------------------------------
    def fit_spots(self, niter=4, move=True):
        n = self.sfib.size
        allidx = np.arange(n)
        movable = self.detected & self.isolated if move else np.zeros(n, dtype=bool)
        idx = np.flatnonzero(movable)
        for _ in range(niter):
            if idx.size:
                st, dst = self.stamps(allidx, derivatives=True)
            else:
                st = self.stamps(allidx)
            others = self.model_image(st)[self.rows, self.cols] - st * self.sflux[:, None, None]
            resid = self.data - others
            w = self.weight
            # flux of every spot (linear)
            a = (w * st * st).sum(axis=(1, 2))
            self.sflux = np.where(a > 0, (w * st * resid).sum(axis=(1, 2)) / np.where(a > 0, a, 1), 0.0)
            if idx.size == 0:
                continue
            # Gauss-Newton step in (flux, x, y) of every movable spot, analytic derivatives
            s0 = st[idx]
            f = self.sflux[idx][:, None, None]
            jac = np.stack([s0, f * dst[idx, DERIV_X], f * dst[idx, DERIV_Y]], axis=1)
            jac = jac.reshape(idx.size, 3, -1)
            ww = w[idx].reshape(idx.size, -1)
            rr = (resid[idx] - f * s0).reshape(idx.size, -1)
            mat = np.einsum("nkp,np,nlp->nkl", jac, ww, jac) + 1e-12 * np.eye(3)
            vec = np.einsum("nkp,np,np->nk", jac, ww, rr)
            try:
                cov = np.linalg.inv(mat)
            except np.linalg.LinAlgError:
                cov = np.linalg.pinv(mat)
            step = np.einsum("nkl,nl->nk", cov, vec)
            self.sflux[idx] += step[:, 0]
            self.sx[idx] += np.clip(step[:, 1], -0.5, 0.5)
            self.sy[idx] += np.clip(step[:, 2], -0.5, 0.5)
            self.sxerr[idx] = np.sqrt(np.clip(cov[:, 1, 1], 0, None))
            self.syerr[idx] = np.sqrt(np.clip(cov[:, 2, 2], 0, None))
        # spots that wandered out of their box are unusable
        off = (np.abs(self.sx - (self.sxlo + self.hx)) > 1.5) | (np.abs(self.sy - (self.sylo + self.hy)) > 1.5)
        self.sxerr[off] = np.inf
        self.syerr[off] = np.inf

    # --- step 4: traces ----------------------------------------------------------------
    def fit_traces(self):
        o = self.o
        good_fit = np.zeros(self.nfib, dtype=bool)
        for f in range(self.nfib):
            m = (self.sfib == f) & self.detected & self.isolated & np.isfinite(self.sxerr) & np.isfinite(self.syerr)
            m &= self.sflux > 0
            n = int(m.sum())
            self.nlines[f] = n
            if n < o.min_lines:
                self.status[f] |= STATUS_INTERPOLATED
                continue
            self.status[f] &= ~STATUS_INTERPOLATED
            wave = self.swave[m]
            u = reduced_wavelength(wave, self.psf.wavemin, self.psf.wavemax)
            deg = min(o.trace_degree, n - 3)
            if deg < o.trace_degree:
                self.status[f] |= STATUS_LOW_DEGREE
            for coord, err, nominal, target in (
                    (self.sx[m], self.sxerr[m], self.psf.x(f, wave), self.dxcoef),
                    (self.sy[m], self.syerr[m], self.psf.y(f, wave), self.dycoef)):
                delta = coord - nominal
                sig = np.sqrt(err ** 2 + 0.003 ** 2)
                keep = np.ones(n, dtype=bool)
                for _ in range(3):
                    d = min(deg, int(keep.sum()) - 3)
                    c = legendre.legfit(u[keep], delta[keep], max(d, 0), w=1.0 / sig[keep])
                    res = (delta - legendre.legval(u, c)) / sig
                    newkeep = np.abs(res) < 5.0
                    if np.array_equal(newkeep, keep) or newkeep.sum() < 4:
                        break
                    keep = newkeep
                target[f] = 0.0
                target[f, :c.size] = c
            good_fit[f] = True
        # interpolate the corrections of unfitted fibers from their neighbours
        good = np.flatnonzero(good_fit)
        bad = np.flatnonzero(~good_fit)
        if bad.size and good.size:
            for target in (self.dxcoef, self.dycoef):
                for k in range(self.ncoef_trace):
                    target[bad, k] = np.interp(bad, good, target[good, k])
        elif bad.size:
            log.warning("bundle at col %d: no fiber has enough lines; keeping the coarse offsets", self.t.col0)
        # spots that were not fitted follow the traces
        fixed = ~(self.detected & self.isolated) | ~np.isfinite(self.sxerr)
        self.sx[fixed] = self.trace_x(self.sfib[fixed], self.swave[fixed])
        self.sy[fixed] = self.trace_y(self.sfib[fixed], self.swave[fixed])

    # --- step 5: shape -------------------------------------------------------------------
    def _shape_designs(self, idx, names):
        """Design matrices of the shape parameters ``names`` for spots ``idx`` and the prior.

        Columns: Legendre polynomials of the wavelength (degree ``shape_degree``),
        a linear term across the bundle's fibers (``fiber_slope``) and, for the
        parameters of ``fiber_offsets``, one offset per fiber with a zero-mean
        Gaussian prior of width ``fiber_offset_prior``.

        Returns
        -------
        designs : list of ndarray, shape (n, ncol_k)
        prior_ivar : ndarray, shape (sum ncol_k,)
        """
        u = reduced_wavelength(self.swave[idx], self.psf.param_wavemin, self.psf.param_wavemax)
        vand = legendre.legvander(u, self.o.shape_degree)
        if self.o.fiber_slope and self.nfib > 1:
            phi = (self.sfib[idx] - 0.5 * (self.nfib - 1)) / (0.5 * (self.nfib - 1))
            vand = np.hstack([vand, phi[:, None]])
        onehot = (self.sfib[idx][:, None] == np.arange(self.nfib)[None, :]).astype(np.float64)
        designs, prior = [], []
        for name in names:
            if name in self.o.fiber_offsets and self.nfib > 1:
                designs.append(np.hstack([vand, onehot]))
                prior.append(np.r_[np.zeros(vand.shape[1]), np.full(self.nfib, self.o.fiber_offset_prior ** -2)])
            else:
                designs.append(vand)
                prior.append(np.zeros(vand.shape[1]))
        return designs, np.concatenate(prior)

    def fit_shape(self):
        o = self.o
        cand = self.detected & self.isolated & np.isfinite(self.sxerr) & (self.sflux > 0)
        idx = np.flatnonzero(cand)
        if idx.size < 5:
            log.warning("bundle at col %d: only %d isolated spots; shape kept nominal", self.t.col0, idx.size)
            return
        if idx.size > o.max_shape_spots:
            order = np.argsort(-self.snr[idx])
            idx = np.sort(idx[order[:o.max_shape_spots]])
        names = [p for p in o.shape_params if p in self.psf.params]
        designs, prior = self._shape_designs(idx, names)
        if self.shape_coef is not None and self.shape_coef[0] == names:
            theta0 = self.shape_coef[1]                   # warm start from the previous iteration
        else:
            theta0 = []
            for name, design in zip(names, designs):
                # least-squares projection of the current values of the parameter
                c, *_ = np.linalg.lstsq(design, self.values[name][idx], rcond=None)
                theta0.append(c)
            theta0 = np.concatenate(theta0)
        st = self.stamps(np.arange(self.sfib.size))
        others = (self.model_image(st)[self.rows, self.cols] - st * self.sflux[:, None, None])[idx]
        target = self.data[idx] - others
        weight = self.weight[idx]
        if o.model_weights and self.t.readnoise is not None:
            # variance of the current model (Poisson + read noise) instead of the image's ivar
            model = others + st[idx] * self.sflux[idx][:, None, None]
            rn = self.t.readnoise[self.rows[idx], self.cols[idx]]
            var = np.clip(model, 0, None) + rn ** 2
            weight = np.where((weight > 0) & (var > 0), 1.0 / np.where(var > 0, var, 1.0), 0.0)
        base = {k: v[idx] for k, v in self.values.items()}
        slots = [deriv_slot(name, self.psf.ghdegy) for name in names]
        problem = _ShapeProblem(self.sx[idx], self.sy[idx], self.sxlo[idx], self.sylo[idx], self.bx, self.by,
                                base, self.psf.ghdegx, self.psf.ghdegy, target, weight,
                                names, slots, designs, prior)
        theta = problem.solve(theta0, max_iter=o.shape_max_iter)
        self.shape_coef = (names, theta, problem.bounds)
        designs_all, _ = self._shape_designs(np.arange(self.sfib.size), names)
        for k, name in enumerate(names):
            self.values[name] = designs_all[k] @ theta[problem.bounds[k]:problem.bounds[k + 1]]

    # --- outputs --------------------------------------------------------------------------
    def chi2(self):
        """Chi2 of the isolated detected spots' boxes with the model variance."""
        idx = np.flatnonzero(self.detected & self.isolated & np.isfinite(self.sxerr))
        if idx.size == 0:
            return 0.0, 0
        st = self.stamps(np.arange(self.sfib.size))
        model = self.model_image(st)
        m = model[self.rows[idx], self.cols[idx]]
        use = self.weight[idx] > 0
        var = 1.0 / np.where(use, self.weight[idx], 1.0)
        # model-based variance: Poisson of the model plus the read noise implied by the ivar floor
        chi2 = (((self.data[idx] - m) ** 2 / var)[use]).sum()
        ndof = int(use.sum()) - 3 * idx.size
        return float(chi2), ndof

    def result(self):
        ncoef_p = self.o.shape_degree + 1
        params = {}
        if self.shape_coef is not None:
            names, theta, bounds = self.shape_coef
            slope = self.o.fiber_slope and self.nfib > 1
            phi = ((np.arange(self.nfib) - 0.5 * (self.nfib - 1)) / (0.5 * (self.nfib - 1))
                   if self.nfib > 1 else np.zeros(1))
            for k, name in enumerate(names):
                c = theta[bounds[k]:bounds[k + 1]]
                coef = np.tile(c[:ncoef_p], (self.nfib, 1))
                if slope:
                    coef[:, 0] += c[ncoef_p] * phi
                if c.size > ncoef_p + slope:
                    coef[:, 0] += c[ncoef_p + slope:]
                params[name] = coef
        nx = max(self.psf.xcoef.shape[1], self.ncoef_trace)
        xcoef = np.zeros((self.nfib, nx))
        ycoef = np.zeros((self.nfib, nx))
        xcoef[:, :self.psf.xcoef.shape[1]] = self.psf.xcoef
        ycoef[:, :self.psf.ycoef.shape[1]] = self.psf.ycoef
        xcoef[:, :self.ncoef_trace] += self.dxcoef
        ycoef[:, :self.ncoef_trace] += self.dycoef
        xcoef[:, 0] += self.t.col0
        chi2, ndof = self.chi2()
        spots = {"fiber": self.sfib, "wave": self.swave, "x": self.sx + self.t.col0, "y": self.sy,
                 "flux": self.sflux, "used": self.detected & self.isolated & np.isfinite(self.sxerr)}
        return BundleResult(xcoef, ycoef, params, self.status.copy(), self.nlines.copy(), chi2, ndof, spots)


def fit_bundle(task):
    """Fit the PSF of one bundle.

    Parameters
    ----------
    task : BundleTask

    Returns
    -------
    BundleResult
    """
    fitter = _BundleFitter(task)
    fitter.coarse()
    fitter.make_spots()
    fitter.fit_spots(niter=3, move=False)          # fluxes at the predicted positions
    for _ in range(task.options.niter):
        fitter.fit_spots(niter=4)
        fitter.fit_traces()
        fitter.fit_shape()
    fitter.fit_spots(niter=4)
    fitter.fit_traces()
    fitter.fit_spots(niter=2, move=False)
    # lines expected bright but not found
    strong = fitter.snr < fitter.o.min_snr
    if np.any(~strong):
        ratio = np.median(fitter.sflux[~strong] / np.maximum(task.line_intensity[fitter.sline[~strong]], 1e-30))
        expected = ratio * task.line_intensity[fitter.sline]
        noise = np.sqrt(np.maximum(expected, 0) + 10.0)
        missing = strong & (expected / noise > 10 * fitter.o.min_snr)
        for f in np.unique(fitter.sfib[missing]):
            fitter.status[f] |= STATUS_MISSING_LINES
    return fitter.result()


# ---------------------------------------------------------------------------- whole camera
def bundle_slices(nfiber, bundle_size=BUNDLE_SIZE, fibermin=0):
    """Fiber index ranges of the bundles present in a PSF.

    Bundles follow the absolute fiber number (``fiber // bundle_size``), so a PSF
    starting mid-bundle gets a partial first bundle.

    Returns
    -------
    list of slice
    """
    out = []
    start = 0
    while start < nfiber:
        absolute = fibermin + start
        stop = min(nfiber, start + bundle_size - absolute % bundle_size)
        out.append(slice(start, stop))
        start = stop
    return out


def subset_psf(psf, fibers, col0=0):
    """Return a PSF with only fibers ``fibers`` (a slice) and columns shifted by ``-col0``."""
    params = {k: v[fibers].copy() for k, v in psf.params.items()}
    xcoef = psf.xcoef[fibers].copy()
    xcoef[:, 0] -= col0
    return GaussHermitePSF(xcoef, psf.ycoef[fibers], psf.wavemin, psf.wavemax, params,
                           psf.ghdegx, psf.ghdegy, psf.hsizex, psf.hsizey, psf.npix_x, psf.npix_y,
                           psf.param_wavemin, psf.param_wavemax, psf.fibermin + fibers.start,
                           dict(psf.meta))


def make_tasks(image, nominal, line_wave, line_intensity, options=None, bundle_size=BUNDLE_SIZE, margin=12):
    """Split an arc image into per-bundle fit tasks.

    Parameters
    ----------
    image : desired.image.Image
    nominal : GaussHermitePSF
        Starting PSF for this camera.
    line_wave, line_intensity : array, shape (nline,)
        Lamp lines (vacuum Angstrom, relative intensity).
    options : FitOptions, optional
    bundle_size : int
    margin : int
        Columns kept on each side of a bundle's nominal traces.

    Returns
    -------
    slices : list of slice
    tasks : list of BundleTask
    """
    options = options or FitOptions()
    ivar = image.good_ivar()
    ny, nx = image.shape
    line_wave = np.asarray(line_wave, dtype=np.float64)
    line_intensity = np.asarray(line_intensity, dtype=np.float64)
    inrange = (line_wave > nominal.wavemin) & (line_wave < nominal.wavemax)
    line_wave, line_intensity = line_wave[inrange], line_intensity[inrange]
    grid = np.linspace(nominal.wavemin, nominal.wavemax, 64)
    slices, tasks = bundle_slices(nominal.nfiber, bundle_size, nominal.fibermin), []
    for sl in slices:
        fibers = np.arange(sl.start, sl.stop)
        xs = nominal.x(fibers[:, None], grid[None, :])
        c0 = int(max(np.floor(xs.min()) - margin - options.max_xshift, 0))
        c1 = int(min(np.ceil(xs.max()) + margin + options.max_xshift + 1, nx))
        sub = subset_psf(nominal, sl, c0)
        tasks.append(BundleTask(image.pix[:, c0:c1].copy(), ivar[:, c0:c1].copy(), c0, sub,
                                line_wave, line_intensity, options, image.readnoise[:, c0:c1].copy()))
    return slices, tasks


def assemble_psf(nominal, slices, results, options=None, meta=None):
    """Combine per-bundle results into one PSF of the camera.

    Parameters
    ----------
    nominal : GaussHermitePSF
    slices : list of slice
    results : list of BundleResult
    options : FitOptions, optional
    meta : dict, optional
        Extra header keywords.

    Returns
    -------
    GaussHermitePSF
        Fitted PSF; ``meta`` has BADFIBER (absolute numbers of interpolated fibers,
        comma separated), NBADFIB, CHI2PDF; the ``STATUS`` parameter holds the
        per-fiber status bits.
    """
    options = options or FitOptions()
    ncoef = max(r.xcoef.shape[1] for r in results)
    xcoef = np.zeros((nominal.nfiber, ncoef))
    ycoef = np.zeros((nominal.nfiber, ncoef))
    status = np.zeros(nominal.nfiber, dtype=np.int64)
    ncoef_p = max(max(v.shape[1] for v in nominal.params.values()), options.shape_degree + 1)
    params = {}
    for name, v in nominal.params.items():
        if name == "STATUS":
            continue
        params[name] = np.zeros((nominal.nfiber, ncoef_p))
        params[name][:, :v.shape[1]] = v
    chi2, ndof = 0.0, 0
    for sl, res in zip(slices, results):
        xcoef[sl, :res.xcoef.shape[1]] = res.xcoef
        ycoef[sl, :res.ycoef.shape[1]] = res.ycoef
        status[sl] = res.status
        for name, c in res.params.items():
            params[name][sl] = 0.0
            params[name][sl, :c.shape[1]] = c
        chi2 += res.chi2
        ndof += res.ndof
    params["STATUS"] = np.zeros((nominal.nfiber, ncoef_p))
    params["STATUS"][:, 0] = status
    bad = nominal.fibermin + np.flatnonzero(status & STATUS_INTERPOLATED)
    out_meta = dict(nominal.meta)
    out_meta.update(meta or {})
    out_meta["BADFIBER"] = ",".join(str(int(b)) for b in bad)
    out_meta["NBADFIB"] = int(bad.size)
    out_meta["CHI2PDF"] = float(chi2 / ndof) if ndof > 0 else 0.0
    return GaussHermitePSF(xcoef, ycoef, nominal.wavemin, nominal.wavemax, params,
                           nominal.ghdegx, nominal.ghdegy, nominal.hsizex, nominal.hsizey,
                           nominal.npix_x, nominal.npix_y, nominal.param_wavemin,
                           nominal.param_wavemax, nominal.fibermin, out_meta)


def fit_bundle_one_thread(task):
    """:func:`fit_bundle` with BLAS on one thread (bundles are the unit of parallelism)."""
    with single_threaded_blas():
        return fit_bundle(task)


def fit_psf(image, nominal, line_wave, line_intensity, options=None, bundle_size=BUNDLE_SIZE,
            nproc=1, mapper=None):
    """Fit a GAUSS-HERMITE PSF to an arc image, bundle by bundle.

    Parameters
    ----------
    image : desired.image.Image
        Arc preproc image (electrons, ivar, mask).
    nominal : GaussHermitePSF
        Starting PSF of the camera (traces within a few pixels, same fibers).
    line_wave, line_intensity : array, shape (nline,)
        Lamp line list: vacuum wavelengths (Angstrom) and relative intensities.
    options : FitOptions, optional
    bundle_size : int
    nproc : int
        Worker processes for the bundles when ``mapper`` is not given (1: plain loop).
    mapper : callable, optional
        ``mapper(fit_bundle, tasks) -> list of BundleResult`` in task order (e.g. an
        MPI map provided by the command-line layer).

    Returns
    -------
    psf : GaussHermitePSF
        See :func:`assemble_psf`.
    results : list of BundleResult
    """
    options = options or FitOptions()
    slices, tasks = make_tasks(image, nominal, line_wave, line_intensity, options, bundle_size)
    log.info("fitting %d fibers in %d bundles with %d lines", nominal.nfiber, len(tasks), tasks[0].line_wave.size)
    if mapper is not None:
        results = list(mapper(fit_bundle_one_thread, tasks))
    elif nproc > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=nproc) as pool:
            results = list(pool.map(fit_bundle_one_thread, tasks))
    else:
        results = [fit_bundle_one_thread(t) for t in tasks]
    psf = assemble_psf(nominal, slices, results, options)
    nbad = psf.meta["NBADFIB"]
    if nbad:
        log.warning("%d fibers could not be fitted and were interpolated: %s", nbad, psf.meta["BADFIBER"])
    log.info("PSF fit chi2/dof %.3f", psf.meta["CHI2PDF"])
    return psf, results


# ---------------------------------------------------------------------------- quality
def line_profile_chi2(image, psf, line_wave, line_flux=None, isolation=8.0, min_snr=50.0, halfwidth=3):
    """Chi2 of arc line spots against a PSF's spot model.

    Every list line on the CCD gets a spot per fiber at the PSF's trace position;
    the spots of lines whose boxes overlap are fitted together by weighted linear
    least squares (an amplitude per spot and a constant background per fiber and
    group of lines, the pixels of each fiber's strip being those nearest its trace).
    The chi2 of a spot is summed over its own strip (columns within ``halfwidth``
    of its centre) and the rows of its stamp, with the image's ivar; its degrees of
    freedom are the pixels used minus 2 (amplitude and background).

    Parameters
    ----------
    image : desired.image.Image
        Arc preproc image (electrons; ivar 0 on masked pixels).
    psf : GaussHermitePSF
    line_wave : array, shape (nline,)
        Wavelengths of the lines in the image, Angstrom.
    line_flux : array, shape (nline,), optional
        Relative line strengths; a neighbour weaker than 0.5 % of a line does not
        blend it.  Without it every neighbour counts.
    isolation : float
        A spot is reported only when no other (significant) line lies within this
        many rows in its fiber.
    min_snr : float
        Reported spots have a fitted amplitude above ``min_snr`` times its error.
    halfwidth : int
        Half width in columns of a spot's chi2 strip.

    Returns
    -------
    dict of str to ndarray, shape (nspot,)
        ``fiber`` (PSF-relative), ``wave``, ``flux`` (fitted electrons), ``snr``,
        ``chi2``, ``ndof`` of the reported spots.
    """
    pix, ivar = image.pix, image.good_ivar()
    ny, nx = pix.shape
    line_wave = np.asarray(line_wave, dtype=np.float64)
    strength = np.ones(line_wave.size) if line_flux is None else np.asarray(line_flux, dtype=np.float64)
    fibers = np.arange(psf.nfiber)
    yline = psf.y(fibers[:, None], line_wave[None, :])                      # [nfib, nline]
    hy, hx = psf.hsizey, psf.hsizex
    on = ((yline > -hy) & (yline < ny - 1 + hy)).any(axis=0)
    lines = np.flatnonzero(on)
    # groups of lines whose stamps overlap in some fiber
    order = lines[np.argsort(np.median(yline[:, lines], axis=0))]
    groups, current = [], [order[0]] if order.size else []
    for line in order[1:]:
        if np.any(np.abs(yline[:, line][:, None] - yline[:, current]) <= 2 * hy + 1):
            current.append(line)
        else:
            groups.append(current)
            current = [line]
    if current:
        groups.append(current)
    out = {k: [] for k in ("fiber", "wave", "flux", "snr", "chi2", "ndof")}
    for group in groups:
        fib = np.repeat(fibers, len(group))
        lin = np.tile(np.array(group), fibers.size)
        xlo, ylo, stamps = psf.spots(fib, line_wave[lin])
        rows = ylo[:, None, None] + np.arange(2 * hy + 1)[None, :, None]
        cols = xlo[:, None, None] + np.arange(2 * hx + 1)[None, None, :]
        rows, cols = np.broadcast_arrays(rows, cols)
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        flat = np.unique((rows * nx + cols)[inside])
        r, c = flat // nx, flat % nx
        # nearest fiber of every pixel (trace columns at the group's mean wavelength)
        xgroup = psf.x(fibers, np.full(fibers.size, line_wave[group].mean()))
        owner = np.argmin(np.abs(xgroup[:, None] - c[None, :]), axis=0)
        nspot = fib.size
        index = np.searchsorted(flat, (rows * nx + cols)[inside])
        spot_of = np.broadcast_to(np.arange(nspot)[:, None, None], rows.shape)[inside]
        w = ivar[r, c]
        design = sparse.csr_matrix(
            (np.r_[stamps[inside], np.ones(flat.size)],
             (np.r_[index, np.arange(flat.size)], np.r_[spot_of, nspot + owner])),
            shape=(flat.size, nspot + fibers.size))
        counts = np.asarray(design.T @ (w > 0).astype(np.float64)).ravel()
        used = np.flatnonzero(counts[:nspot] > 0)
        cols_used = np.concatenate([used, nspot + np.unique(owner[w > 0])])
        a = design[:, cols_used]
        mat = (a.T @ a.multiply(w[:, None]).tocsr()).toarray()
        try:
            cov = np.linalg.inv(mat)
        except np.linalg.LinAlgError:
            cov = np.linalg.pinv(mat)
        coef = cov @ (a.T @ (w * pix[r, c]))
        model = a @ coef
        chi = (pix[r, c] - model) ** 2 * w
        amp = np.zeros(nspot)
        err = np.full(nspot, np.inf)
        amp[used] = coef[:used.size]
        err[used] = np.sqrt(np.clip(np.diag(cov)[:used.size], 0, None))
        ycen = psf.y(fib, line_wave[lin])
        xcen = psf.x(fib, line_wave[lin])
        for s in used:
            f, line = fib[s], lin[s]
            near = np.abs(yline[f] - yline[f, line]) < isolation
            near[line] = False
            if np.any(near & (strength > 0.005 * strength[line])):
                continue
            if not amp[s] > min_snr * err[s]:
                continue
            strip = ((owner == f) & (np.abs(c - xcen[s]) <= halfwidth) & (np.abs(r - ycen[s]) <= hy) & (w > 0))
            npix = int(strip.sum())
            if npix <= 2:
                continue
            out["fiber"].append(f)
            out["wave"].append(line_wave[line])
            out["flux"].append(amp[s])
            out["snr"].append(amp[s] / err[s])
            out["chi2"].append(float(chi[strip].sum()))
            out["ndof"].append(npix - 2)
    return {k: np.array(v) for k, v in out.items()}
