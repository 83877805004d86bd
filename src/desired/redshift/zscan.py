"""chi2 versus redshift of many targets against one template, shared work in matrix products.

For a target with flux f, weights w (ivar) and resolution matrix R (banded,
``ndiag`` diagonals in DESI's layout), and a template basis T(z) rebinned onto the
band's pixels, the best linear combination at redshift z has

    chi2(z) = f'Wf - y(z)' M(z)^-1 y(z),   y = T' R'W f,   M = T' (R'W R) T.

R'Wf (``g``) and the band matrix A = R'WR (``2 ndiag - 1`` diagonals, symmetric) are
per target; T(z) is the same for every target of a file.  So y for all targets and
trial redshifts is one matrix product ``g @ T``, and M is one matrix product of the
targets' A diagonals with the template's lagged pair products
``S[d, j, z, (a, b)] = T_a(j) T_b(j + d) + T_b(j) T_a(j + d)``:
the cost is BLAS matrix multiplication, and the template work is shared by every
target in a batch.  This is exact (no approximation of R), the same chi2 as
applying R to the template at every redshift (:func:`chi2_direct`, used by the
refinement and by the tests as the reference).

Functions taking ``xp`` run on numpy or on CuPy with the same code.
"""
from __future__ import annotations

import dataclasses
import logging

import numba
import numpy as np

from .rebin import bin_edges, rebin_basis
from .templates import lyman_transmission

log = logging.getLogger(__name__)

#: chi2 given to trial redshifts that cannot be fitted (redrock's value)
HUGE_CHI2 = 9999999.0
#: pixels whose resolution-matrix row sums to less than this are not used (redrock's rule)
MIN_RESOLUTION_INTEGRAL = 0.99
#: sky-line regions whose pixels are ignored, Angstrom (as rrdesi does by default)
SKY_LINE_MASKS = ((5572.0, 5582.0), (9792.0, 9795.0))


@dataclasses.dataclass
class BandSpectra:
    """The spectra of a batch of targets in one band, ready to fit.

    Attributes
    ----------
    wave : ndarray, shape (npix,)
        Vacuum wavelengths, Angstrom.
    flux, weight : ndarray, shape (ntarget, npix)
        Flux and its inverse variance (0 where the pixel is not used).
    rdata : ndarray, shape (ntarget, ndiag, npix)
        Resolution diagonals in DESI's layout: ``R[j - o_k, j] = rdata[k, j]`` with
        offsets ``o_k = ndiag // 2 - k``.
    """

    wave: np.ndarray
    flux: np.ndarray
    weight: np.ndarray
    rdata: np.ndarray

    @property
    def edges(self):
        return bin_edges(self.wave)

    def subset(self, rows):
        """The spectra of ``rows`` (index array or slice)."""
        return BandSpectra(self.wave, self.flux[rows], self.weight[rows], self.rdata[rows])


def clean_band(wave, flux, ivar, mask=None, rdata=None, negflux_nsig=5.0, skymask=True):
    """Return one band's spectra with unusable pixels given zero weight.

    Pixels get weight 0 where the flux or ivar is not finite, ivar < 0, the mask is
    set, the flux is below ``-negflux_nsig`` sigma, the resolution row integrates
    to less than :data:`MIN_RESOLUTION_INTEGRAL`, or (``skymask``) in
    :data:`SKY_LINE_MASKS` -- the rules of redrock and of its DESI reader.  Non-finite flux
    and resolution values are replaced by 0.  Missing resolution = identity.

    Parameters
    ----------
    wave : ndarray, shape (npix,)
    flux, ivar : ndarray, shape (ntarget, npix)
    mask : ndarray, shape (ntarget, npix), optional
    rdata : ndarray, shape (ntarget, ndiag, npix), optional
    negflux_nsig : float
    skymask : bool

    Returns
    -------
    BandSpectra
        New arrays; the inputs are not modified.
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.array(flux, dtype=np.float64)
    ivar = np.array(ivar, dtype=np.float64)
    bad = ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar < 0)
    flux[bad] = 0.0
    ivar[bad] = 0.0
    if mask is not None:
        ivar[np.asarray(mask) != 0] = 0.0
    ivar[flux * np.sqrt(ivar) < -abs(negflux_nsig)] = 0.0
    if skymask:
        for lo, hi in SKY_LINE_MASKS:
            ivar[:, (wave >= lo) & (wave <= hi)] = 0.0
    if rdata is None:
        rdata = np.ones((flux.shape[0], 1, flux.shape[1]))
    rdata = np.nan_to_num(np.asarray(rdata, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    rowsum = np.stack([resolution_apply(r, np.ones(wave.size)) for r in rdata]) if len(rdata) else ivar
    ivar[rowsum < MIN_RESOLUTION_INTEGRAL] = 0.0
    return BandSpectra(wave, flux, ivar, rdata)


def resolution_normal(rdata, weight, xp=np):
    """Diagonals of A = R' W R, a symmetric band matrix with ``2 (ndiag // 2) + 1`` diagonals d >= 0.

    Parameters
    ----------
    rdata : array, shape (ntarget, ndiag, npix)
    weight : array, shape (ntarget, npix)

    Returns
    -------
    array, shape (ntarget, nlag, npix)
        ``A[t, d, j] = A_t[j, j + d]`` (0 beyond the band).
    """
    nt, ndiag, n = rdata.shape
    h = ndiag // 2
    nlag = 2 * h + 1
    out = xp.zeros((nt, nlag, n))
    for d in range(nlag):
        for o1 in range(-h, h + 1):
            o2 = o1 + d
            if o2 > h:
                continue
            lo, hi = max(0, o1), min(n, n + o1, n - d)
            if hi <= lo:
                continue
            out[:, d, lo:hi] += rdata[:, h - o1, lo:hi] * weight[:, lo - o1:hi - o1] * rdata[:, h - o2, lo + d:hi + d]
    return out


def resolution_transpose_apply(rdata, vec, xp=np):
    """R' v for each target: array (ntarget, npix) from rdata (ntarget, ndiag, npix) and v (ntarget, npix)."""
    nt, ndiag, n = rdata.shape
    h = ndiag // 2
    out = xp.zeros((nt, n))
    for k in range(ndiag):
        o = h - k
        lo, hi = max(0, o), min(n, n + o)
        out[:, lo:hi] += rdata[:, k, lo:hi] * vec[:, lo - o:hi - o]
    return out


def resolution_apply(rdata, model):
    """R T for one target: rdata (ndiag, npix), model (npix, ...) -> (npix, ...)."""
    ndiag, n = rdata.shape
    h = ndiag // 2
    out = np.zeros(model.shape)
    extra = (slice(None),) + (None,) * (model.ndim - 1)
    for k in range(ndiag):
        o = h - k
        lo, hi = max(0, -o), min(n, n - o)
        out[lo:hi] += rdata[k, lo + o:hi + o][extra] * model[lo + o:hi + o]
    return out


def basis_pairs(nbasis):
    """(a, b) index pairs with a <= b, in the order of the packed M columns."""
    return [(a, b) for a in range(nbasis) for b in range(a, nbasis)]


def lagged_pair_products(basis, nlag, xp=np):
    """S[d, j, z, p] = T_a(j) T_b(j+d) + T_b(j) T_a(j+d) (d > 0), T_a(j) T_b(j) (d = 0), p = (a, b).

    Parameters
    ----------
    basis : array, shape (npix, nz, nbasis)
    nlag : int

    Returns
    -------
    array, shape (nlag * npix, nz * npair)
    """
    n, nz, nb = basis.shape
    pairs = basis_pairs(nb)
    out = xp.zeros((nlag, n, nz, len(pairs)))
    for d in range(nlag):
        for p, (a, b) in enumerate(pairs):
            prod = basis[:n - d, :, a] * basis[d:, :, b]
            if d > 0:
                prod = prod + basis[:n - d, :, b] * basis[d:, :, a]
            out[d, :n - d, :, p] = prod
    return out.reshape(nlag * n, nz * len(pairs))


@numba.njit(cache=True, nogil=True)
def _lagged_pair_products_kernel(basis, nlag, out):
    n, nz, nb = basis.shape
    for d in range(nlag):
        for j in range(n - d):
            for iz in range(nz):
                p = 0
                for a in range(nb):
                    ta = basis[j, iz, a]
                    tad = basis[j + d, iz, a]
                    for b in range(a, nb):
                        v = ta * basis[j + d, iz, b]
                        if d > 0:
                            v += basis[j, iz, b] * tad
                        out[d, j, iz, p] = v
                        p += 1


def lagged_pair_products_cpu(basis, nlag, dtype=np.float64):
    """numba version of :func:`lagged_pair_products` (same result, no temporaries)."""
    n, nz, nb = basis.shape
    out = np.zeros((nlag, n, nz, nb * (nb + 1) // 2), dtype=dtype)
    _lagged_pair_products_kernel(np.ascontiguousarray(basis), nlag, out)
    return out.reshape(nlag * n, -1)


def unpack_symmetric(packed, nbasis, xp=np):
    """(..., npair) packed upper triangle -> (..., nbasis, nbasis) symmetric."""
    out = xp.zeros(packed.shape[:-1] + (nbasis, nbasis))
    for p, (a, b) in enumerate(basis_pairs(nbasis)):
        out[..., a, b] = packed[..., p]
        out[..., b, a] = packed[..., p]
    return out


def solve_normal(M, y, xp=np):
    """Best coefficients c = M^-1 y of many small systems, robust to singular M.

    Each system is scaled to unit diagonal and given a 1e-10 ridge, so that basis
    vectors without any weighted pixel get coefficient 0 instead of failing.

    Parameters
    ----------
    M : array, shape (..., nbasis, nbasis)
    y : array, shape (..., nbasis)

    Returns
    -------
    array, shape (..., nbasis)
    """
    diag = xp.diagonal(M, axis1=-2, axis2=-1)
    scale = xp.where(diag > 0, 1.0 / xp.sqrt(xp.where(diag > 0, diag, 1.0)), 0.0)
    Mn = M * scale[..., :, None] * scale[..., None, :]
    nb = M.shape[-1]
    Mn = Mn + 1e-10 * xp.eye(nb)
    Mn = xp.where(xp.isfinite(Mn), Mn, 0.0) + xp.where(xp.isfinite(Mn), 0.0, 1.0) * xp.eye(nb)
    cn = xp.linalg.solve(Mn, (y * scale)[..., None])[..., 0]
    return cn * scale


def template_basis(template, wave, redshifts):
    """The template's basis on a band's pixels at each redshift, Lyman-series absorbed.

    Returns
    -------
    ndarray, shape (npix, nz, nbasis)
    """
    basis = rebin_basis(template.wave, template.flux, bin_edges(wave), redshifts,
                        cumul=template.cumulative)
    trans = lyman_transmission(redshifts, wave, template.igm_model)
    if trans is not None:
        basis *= trans.T[:, :, None]
    return basis


@dataclasses.dataclass
class BatchProducts:
    """Per-target products of a batch, per band: ``g`` (ntarget, npix), ``a`` (ntarget, nlag*npix).

    ``a`` has the dtype of the M products (float32 for a single-precision coarse scan).
    """

    waves: list
    g: list
    a: list
    nlag: list
    wff: object


def batch_products(bands, xp=np, dtype=np.float64):
    """g = R'Wf, the diagonals of R'WR and f'Wf of every target of a batch (see module doc).

    ``dtype`` float32 halves the cost of the M products (the coarse scan's bulk; g and
    f'Wf stay float64) but is not safe at high S/N (see :func:`desired.redshift.zfind.fit_redshifts`).
    """
    g, a, nlag = [], [], []
    wff = 0.0
    for band in bands:
        rdata, weight, flux = xp.asarray(band.rdata), xp.asarray(band.weight), xp.asarray(band.flux)
        g.append(resolution_transpose_apply(rdata, weight * flux, xp))
        normal = resolution_normal(rdata, weight, xp)
        nlag.append(normal.shape[1])
        a.append(normal.reshape(normal.shape[0], -1).astype(dtype))
        wff = wff + xp.sum(weight * flux * flux, axis=1)
    return BatchProducts([b.wave for b in bands], g, a, nlag, wff)


def scan_template(products, template, zchunk=32, xp=np, pair_products=None):
    """chi2(z) of every target of a batch against one template over its redshift grid.

    Parameters
    ----------
    products : BatchProducts
        From :func:`batch_products`.
    template : Template
    zchunk : int
        Trial redshifts per matrix product (memory ~ zchunk * 15 * 11 * npix * 8 bytes).
    xp : module
        numpy or cupy.
    pair_products : callable, optional
        (basis, nlag) -> S; default the numba kernel with numpy, :func:`lagged_pair_products` otherwise.

    Returns
    -------
    chi2 : ndarray, shape (ntarget, nz)
        Including redrock's penalty on negative [OII] flux for GALAXY templates.
    """
    dtype = products.a[0].dtype if products.a else np.float64
    if pair_products is None:
        if xp is np:
            pair_products = lambda t, n: lagged_pair_products_cpu(t, n, dtype)  # noqa: E731
        else:
            pair_products = lambda t, n: lagged_pair_products(t, n, xp).astype(dtype)  # noqa: E731
    redshifts = np.asarray(template.redshifts)
    nt = products.wff.shape[0]
    nb = template.nbasis
    npair = nb * (nb + 1) // 2
    oii = template.oii_basis()
    chi2 = np.empty((nt, redshifts.size))
    for start in range(0, redshifts.size, zchunk):
        zz = redshifts[start:start + zchunk]
        M = xp.zeros((nt, zz.size * npair))
        y = xp.zeros((nt, zz.size * nb))
        for wave, g, a, nlag in zip(products.waves, products.g, products.a, products.nlag):
            basis = template_basis(template, wave, zz)
            y += g @ xp.asarray(basis.reshape(basis.shape[0], -1))
            M += a @ pair_products(basis if xp is np else xp.asarray(basis), nlag)
        y = y.reshape(nt, zz.size, nb)
        coeff = solve_normal(unpack_symmetric(M.reshape(nt, zz.size, npair), nb, xp), y, xp)
        part = products.wff[:, None] - xp.sum(y * coeff, axis=-1)
        if oii is not None:
            flux_oii = coeff @ xp.asarray(oii)
            part = part - flux_oii * (flux_oii < 0)
        part = xp.where(xp.isfinite(part), part, HUGE_CHI2)
        chi2[:, start:start + zz.size] = part if xp is np else xp.asnumpy(part)
    return chi2


@numba.njit(cache=True, nogil=True, fastmath=True)
def _normal_equations_kernel(rdata, weight, wflux, basis, M, y, total, need_total):
    """Accumulate M += (RT)'W(RT), y += (RT)'Wf (and total += sum_i (RT)_i) for each redshift.

    ``basis`` is redshift-major, shape (nz, npix, nbasis); pixels of zero weight are
    skipped unless ``need_total``.
    """
    ndiag, n = rdata.shape
    nz, _, nb = basis.shape
    h = ndiag // 2
    rt = np.zeros(nb)
    for iz in range(nz):
        for i in range(n):
            w = weight[i]
            if w == 0.0 and not need_total:
                continue
            for a in range(nb):
                rt[a] = 0.0
            klo = max(0, i + h - n + 1)
            khi = min(ndiag, i + h + 1)
            for k in range(klo, khi):
                j = i + h - k
                r = rdata[k, j]
                for a in range(nb):
                    rt[a] += r * basis[iz, j, a]
            if need_total:
                for a in range(nb):
                    total[iz, a] += rt[a]
            if w == 0.0:
                continue
            wf = wflux[i]
            for a in range(nb):
                y[iz, a] += wf * rt[a]
                wa = w * rt[a]
                for b in range(a, nb):
                    M[iz, a, b] += wa * rt[b]
    for iz in range(nz):
        for a in range(nb):
            for b in range(a + 1, nb):
                M[iz, b, a] = M[iz, a, b]


def normal_equations(band, template, redshifts, need_total=False):
    """M = (RT)'W(RT), y = (RT)'Wf and the model's column sums of one target in one band.

    Parameters
    ----------
    band : BandSpectra
        One target.
    template : Template
    redshifts : ndarray, shape (nz,)

    Returns
    -------
    M : ndarray, shape (nz, nbasis, nbasis)
    y, total : ndarray, shape (nz, nbasis)
        ``total[z, a]`` is the sum over pixels of the convolved basis vector a.
    wff : float
    """
    basis = np.ascontiguousarray(template_basis(template, band.wave, redshifts).transpose(1, 0, 2))
    nz, _, nb = basis.shape
    M, y, total = np.zeros((nz, nb, nb)), np.zeros((nz, nb)), np.zeros((nz, nb))
    w, f = band.weight[0], band.flux[0]
    _normal_equations_kernel(np.ascontiguousarray(band.rdata[0]), np.ascontiguousarray(w),
                             np.ascontiguousarray(w * f), basis, M, y, total, need_total)
    return M, y, total, float(np.sum(w * f * f))


def chi2_direct(bands, template, redshifts, with_model=False):
    """chi2 of one target at given redshifts, applying R to the template at each (reference path).

    Parameters
    ----------
    bands : list of BandSpectra
        One target (ntarget = 1) per band.
    template : Template
    redshifts : ndarray, shape (nz,)
    with_model : bool
        Also return the sum of the best-fit model over all pixels.

    Returns
    -------
    chi2 : ndarray, shape (nz,)
        Including the [OII] penalty for GALAXY templates.
    coeff : ndarray, shape (nz, nbasis)
    model_sum : ndarray, shape (nz,), only when ``with_model``
        Sum over all pixels of the best-fit model (resolution applied).
    """
    redshifts = np.atleast_1d(np.asarray(redshifts, dtype=np.float64))
    nb = template.nbasis
    M, y, total = np.zeros((redshifts.size, nb, nb)), np.zeros((redshifts.size, nb)), np.zeros((redshifts.size, nb))
    wff = 0.0
    for band in bands:
        bm, by, bt, bw = normal_equations(band, template, redshifts, need_total=with_model)
        M += bm
        y += by
        total += bt
        wff += bw
    coeff = solve_normal(M, y)
    chi2 = wff - np.sum(y * coeff, axis=-1)
    oii = template.oii_basis()
    if oii is not None:
        flux_oii = coeff @ oii
        chi2 = chi2 - flux_oii * (flux_oii < 0)
    chi2 = np.where(np.isfinite(chi2), chi2, HUGE_CHI2)
    if with_model:
        return chi2, coeff, np.sum(total * coeff, axis=-1)
    return chi2, coeff
