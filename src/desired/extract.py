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
``wavepad`` on each side (clipped at the ends of the output grid: like the
simulator, the model has no flux outside the grid).  Only pixels covered by the
stamps of the sub-bundle's own fibers, and not touched by the stamps of
unmodelled neighbouring spots, enter the fit; only the sub-bundle's fibers and
the central wavelengths are kept.  Bundles are independent, so the result does
not depend on how bundles are distributed over processes.  The resolution band
kept (``ndiag`` diagonals) is renormalised so that its rows sum to 1; the mass of
``R`` beyond it is a few 1e-3 and is dropped.

Speed: stamps are evaluated once per bundle (the compiled kernel behind
:meth:`desired.psf.GaussHermitePSF.spots`),
the normal matrix is accumulated from overlapping stamp pairs in a numba kernel
(no dense ``A``), the neighbour fibers are eliminated through the Schur
complement and the solves use LAPACK Cholesky (``dpotrf``/``dpotri``) and batched
``eigh``, with OpenBLAS held to one thread (parallelism is over bundles).
"""
from __future__ import annotations

import logging
import time

import numba
import numpy as np
from scipy.linalg import lapack

from .frame import Frame
from .maskbits import specmask


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


# --------------------------------------------------------------------------- BLAS threads
_SET_THREADS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
                "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_GET_THREADS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads",
                "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_")


def _openblas_handles():
    """(get, set) function pairs of every OpenBLAS loaded in this process (numpy's, scipy's)."""
    import ctypes
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    handles = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in zip(_GET_THREADS, _SET_THREADS):
            if hasattr(lib, get) and hasattr(lib, set_):
                handles.append((getattr(lib, get), getattr(lib, set_)))
                break
    return handles


class single_threaded_blas:
    """Context manager running OpenBLAS on one thread, restoring the previous setting.

    The extraction's matrices are small (a few hundred rows) and the parallelism is
    over bundles; OpenBLAS threads on such matrices only add overhead, and on a
    loaded machine their spin-waiting slows the solves by an order of magnitude.
    Libraries other than OpenBLAS are left alone.
    """

    def __enter__(self):
        self._saved = []
        for get, set_ in _openblas_handles():
            self._saved.append((set_, get()))
            set_(1)
        return self

    def __exit__(self, *exc):
        for set_, n in self._saved:
            set_(n)
        return False


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True)
def _normal_equations(stamps, xlo, ylo, is_core, xlo_out, ylo_out, pix, ivar, y0, x0, ny, nx):
    """Accumulate ``M = A^T W A`` and ``A^T W pix`` of one patch.

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
    M : (n, n), rhs : (n,), w : (ny, nx) weights used, d : (ny, nx) pixel values
    """
    n, sy, sx = stamps.shape
    NY, NX = pix.shape
    inside = np.zeros((ny, nx), np.bool_)
    for a in range(n):
        if is_core[a]:
            for j in range(sy):
                yy = ylo[a] + j - y0
                if yy < 0 or yy >= ny:
                    continue
                for i in range(sx):
                    xx = xlo[a] + i - x0
                    if 0 <= xx < nx:
                        inside[yy, xx] = True
    for a in range(xlo_out.size):
        for j in range(sy):
            yy = ylo_out[a] + j - y0
            if yy < 0 or yy >= ny:
                continue
            for i in range(sx):
                xx = xlo_out[a] + i - x0
                if 0 <= xx < nx:
                    inside[yy, xx] = False
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
    M = np.zeros((n, n))
    rhs = np.zeros(n)
    for a in range(n):
        ya0 = max(ylo[a], y0)
        ya1 = min(ylo[a] + sy, y0 + ny)
        xa0 = max(xlo[a], x0)
        xa1 = min(xlo[a] + sx, x0 + nx)
        s = 0.0
        for Y in range(ya0, ya1):
            for X in range(xa0, xa1):
                s += stamps[a, Y - ylo[a], X - xlo[a]] * w[Y - y0, X - x0] * d[Y - y0, X - x0]
        rhs[a] = s
        for c in range(a, n):
            yc0 = max(ya0, ylo[c])
            yc1 = min(ya1, ylo[c] + sy)
            if yc0 >= yc1:
                continue
            xc0 = max(xa0, xlo[c])
            xc1 = min(xa1, xlo[c] + sx)
            if xc0 >= xc1:
                continue
            s = 0.0
            for Y in range(yc0, yc1):
                for X in range(xc0, xc1):
                    ww = w[Y - y0, X - x0]
                    if ww != 0.0:
                        s += stamps[a, Y - ylo[a], X - xlo[a]] * stamps[c, Y - ylo[c], X - xlo[c]] * ww
            M[a, c] = s
            M[c, a] = s
    return M, rhs, w, d


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
    for a in range(n):
        for j in range(sy):
            yy = ylo[a] + j - y0
            if yy < 0 or yy >= ny:
                continue
            for i in range(sx):
                xx = xlo[a] + i - x0
                if 0 <= xx < nx:
                    model[yy, xx] += coef[a] * stamps[a, j, i]
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


# --------------------------------------------------------------------------- linear algebra
def _cholesky_inverse(matrix):
    """Inverse of a symmetric positive-definite matrix via LAPACK dpotrf/dpotri."""
    chol, info = lapack.dpotrf(matrix, lower=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"normal matrix not positive definite (dpotrf info={info})")
    inv, info = lapack.dpotri(chol, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotri failed (info={info})")
    inv = np.tril(inv)
    return inv + np.tril(inv, -1).T


def solve_patch(M, rhs, core_idx):
    """Solve ``M f = rhs`` and return the covariance block of the core spots.

    The neighbour spots are eliminated through the Schur complement
    ``S = M_cc - M_co M_oo^-1 M_oc`` whose inverse is the core block of ``M^-1``,
    which costs about half of inverting ``M`` whole.

    Parameters
    ----------
    M : array, shape (n, n)
        Symmetric positive-definite normal matrix.
    rhs : array, shape (n,)
    core_idx : array of int
        Contiguous indices of the spots whose covariance is needed.

    Returns
    -------
    f : ndarray, shape (n,)
        ``M^-1 rhs``.
    cov_core : ndarray, shape (ncore, ncore)
        ``(M^-1)[core_idx][:, core_idx]``.
    """
    n = M.shape[0]
    other = np.setdiff1d(np.arange(n), core_idx)
    f = np.empty(n)
    if other.size == 0:
        cov = _cholesky_inverse(M)
        f[:] = cov @ rhs
        return f, cov
    mcc = M[np.ix_(core_idx, core_idx)]
    mco = M[np.ix_(core_idx, other)]
    moo = M[np.ix_(other, other)]
    loo, info = lapack.dpotrf(moo, lower=True, clean=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"neighbour block not positive definite (dpotrf info={info})")
    x, info = lapack.dtrtrs(loo, np.ascontiguousarray(mco.T), lower=True)     # L_oo^-1 M_oc
    y, info2 = lapack.dtrtrs(loo, rhs[other], lower=True)                     # L_oo^-1 rhs_o
    if info != 0 or info2 != 0:
        raise np.linalg.LinAlgError("triangular solve failed")
    schur = mcc - x.T @ x
    cov_core = _cholesky_inverse(0.5 * (schur + schur.T))
    fc = cov_core @ (rhs[core_idx] - x.T @ y)
    fo, info = lapack.dpotrs(loo, rhs[other] - mco.T @ fc, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError("dpotrs failed")
    f[core_idx] = fc
    f[other] = fo
    return f, cov_core


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
    icov = np.linalg.inv(cov_blocks)
    icov = 0.5 * (icov + np.swapaxes(icov, 1, 2))
    evals, evecs = np.linalg.eigh(icov)
    evals = np.clip(evals, 0.0, None)
    q = np.einsum("fik,fk,fjk->fij", evecs, np.sqrt(evals), evecs)
    s = q.sum(axis=2)
    safe = np.where(s > 0, s, 1.0)
    R = q / safe[:, :, None]
    return R, np.where(s > 0, s ** 2, 0.0)


# --------------------------------------------------------------------------- driver
def _split(lo, hi, nparts):
    edges = np.linspace(lo, hi, max(1, min(nparts, hi - lo)) + 1).round().astype(int)
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def extract_bundle(pix, ivar, psf, wave, fibers, nsubbundles=5, nwavestep=30, wavepad=6,
                   ndiag=11):
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
        Extra wavelengths modelled on each side of a patch.
    ndiag : int
        Diagonals of the resolution matrix kept.

    Returns
    -------
    dict with ``flux`` (electron/Angstrom), ``ivar``, ``mask`` (nfib, nwave),
    ``resolution_data`` (nfib, ndiag, nwave) and ``chi2pix`` (nfib, nwave).
    """
    f0, f1 = fibers
    nfib = f1 - f0
    nwave = wave.size
    dw = float(wave[1] - wave[0])
    half = ndiag // 2
    if wavepad < half:
        raise ValueError(f"wavepad={wavepad} must be at least ndiag//2={half}")
    # spot cache: fibers f0-2 .. f1+1 over the output grid
    c0, c1 = max(f0 - 2, 0), min(f1 + 2, psf.nfiber)
    wext = wave
    nwext = wext.size
    cf = np.repeat(np.arange(c0, c1), nwext)
    cw = np.tile(wext, c1 - c0)
    xlo_all = np.empty(cf.size, np.int64)
    ylo_all = np.empty(cf.size, np.int64)
    stamps_all = None
    chunk = 20000
    for s in range(0, cf.size, chunk):
        xl, yl, st = psf.spots(cf[s:s + chunk], cw[s:s + chunk])
        if stamps_all is None:
            stamps_all = np.empty((cf.size,) + st.shape[1:])
        xlo_all[s:s + chunk], ylo_all[s:s + chunk], stamps_all[s:s + chunk] = xl, yl, st
    shape3 = (c1 - c0, nwext)
    xlo_all = xlo_all.reshape(shape3)
    ylo_all = ylo_all.reshape(shape3)
    stamps_all = stamps_all.reshape(shape3 + stamps_all.shape[1:])

    flux = np.zeros((nfib, nwave))
    fivar = np.zeros((nfib, nwave))
    mask = np.zeros((nfib, nwave), np.int32)
    rdata = np.zeros((nfib, ndiag, nwave))
    chi2pix = np.zeros((nfib, nwave))
    ny_img, nx_img = pix.shape
    for s0, s1 in _split(f0, f1, nsubbundles):
        m0, m1 = max(s0 - 1, 0), min(s1 + 1, psf.nfiber)       # modelled fibers
        nf = m1 - m0
        core_rows = np.arange(s0 - m0, s1 - m0)                # core fibers within the patch
        for w0 in range(0, nwave, nwavestep):
            w1 = min(w0 + nwavestep, nwave)
            e0, e1 = max(w0 - wavepad, 0), min(w1 + wavepad, nwave)   # modelled wavelengths
            nw = e1 - e0
            sl = (slice(m0 - c0, m1 - c0), slice(e0, e1))
            st = stamps_all[sl].reshape((nf * nw,) + stamps_all.shape[2:])
            xl = xlo_all[sl].reshape(-1)
            yl = ylo_all[sl].reshape(-1)
            is_core = np.zeros((nf, nw), bool)
            is_core[core_rows] = True
            is_core = is_core.reshape(-1)
            sy, sx = st.shape[1:]
            y0, y1 = int(yl[is_core].min()), int(yl[is_core].max()) + sy
            x0, x1 = int(xl[is_core].min()), int(xl[is_core].max()) + sx
            # unmodelled spots next to the patch: the neighbouring wavelengths of the
            # modelled fibers and the next fiber on each side
            ow = [e for e in (e0 - 1, e1) if 0 <= e < nwave]
            xo = [xlo_all[m0 - c0:m1 - c0, ow].ravel(), ylo_all[m0 - c0:m1 - c0, ow].ravel()]
            ofib = [f for f in (m0 - 1, m1) if 0 <= f < psf.nfiber]
            wr = slice(max(e0 - 1, 0), min(e1 + 1, nwave))
            xout = np.concatenate([xo[0]] + [xlo_all[f - c0, wr] for f in ofib])
            yout = np.concatenate([xo[1]] + [ylo_all[f - c0, wr] for f in ofib])
            M, rhs, wloc, dloc = _normal_equations(st, xl, yl, is_core, xout, yout, pix, ivar,
                                                   y0, x0, y1 - y0, x1 - x0)
            diag = np.diag(M).copy()
            scale = diag.max() if diag.size and diag.max() > 0 else 1.0
            nodata = diag <= 1e3 * RIDGE * scale
            M[np.diag_indices_from(M)] += RIDGE * scale
            core_idx = np.arange(core_rows[0] * nw, (core_rows[-1] + 1) * nw)
            fdec, cov_core = solve_patch(M, rhs, core_idx)
            keep = slice(w0 - e0, w1 - e0)                      # kept rows in patch wave index
            blocks = np.stack([cov_core[i * nw:(i + 1) * nw, i * nw:(i + 1) * nw]
                               for i in range(len(core_rows))])
            R, rivar = decorrelate(blocks)
            fcore = fdec.reshape(nf, nw)[core_rows]
            rflux = np.einsum("fij,fj->fi", R, fcore)
            wanted = np.zeros((nf, nw), bool)
            wanted[core_rows, keep] = True
            chi2, badfrac = _spot_statistics(st, xl, yl, fdec, wloc, dloc, y0, x0, wanted.reshape(-1))
            out_f = slice(s0 - f0, s1 - f0)
            out_w = slice(w0, w1)
            nod = nodata.reshape(nf, nw)[core_rows, keep]
            flux[out_f, out_w] = rflux[:, keep] / dw
            fivar[out_f, out_w] = np.where(nod, 0.0, rivar[:, keep] * dw ** 2)
            chi2pix[out_f, out_w] = chi2.reshape(nf, nw)[core_rows, keep]
            bf = badfrac.reshape(nf, nw)[core_rows, keep]
            m = np.zeros(bf.shape, np.int32)
            m[bf > SOMEBAD_FRACTION] |= specmask.SOMEBADPIX
            m[bf > ALLBAD_FRACTION] |= specmask.ALLBADPIX
            m[nod] |= specmask.NODATA
            mask[out_f, out_w] = m
            # resolution band of the kept rows, in DESI storage
            rows = np.arange(w0 - e0, w1 - e0)
            band = np.zeros((s1 - s0, rows.size, ndiag))
            for j, off in enumerate(range(-half, half + 1)):
                col = rows + off
                ok = (col >= 0) & (col < nw)
                band[:, ok, j] = R[:, rows[ok], col[ok]]
            # renormalise the kept band (R's tiny mass beyond ndiag//2 is dropped)
            tot = band.sum(axis=2, keepdims=True)
            band = np.where(tot != 0, band / np.where(tot != 0, tot, 1.0), 0.0)
            band[nod] = 0.0
            band[nod, half] = 1.0
            for j, off in enumerate(range(-half, half + 1)):
                k = half - off
                c = w0 + np.arange(rows.size) + off
                ok = (c >= 0) & (c < nwave)
                rdata[out_f, k, c[ok]] = band[:, ok, j]
    fivar[~np.isfinite(fivar)] = 0.0
    flux[~np.isfinite(flux)] = 0.0
    mask[fivar == 0] |= specmask.NODATA
    return dict(flux=flux, ivar=fivar, mask=mask, resolution_data=rdata, chi2pix=chi2pix)


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
                  fibermap=None, **options):
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
    **options
        ``nsubbundles``, ``nwavestep``, ``wavepad``, ``ndiag`` of :func:`extract_bundle`.

    Returns
    -------
    desired.frame.Frame
        Flux in electron/Angstrom.
    """
    wave, (lo, hi), bundles = plan_bundles(image, psf, wave, fibers, bundlesize)
    ivar = image.good_ivar()
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
    return assemble_frame(results, bundles, wave, psf, header, fibermap)
