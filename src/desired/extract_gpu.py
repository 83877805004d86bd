"""Batched (GPU) backend of the spectro-perfectionism extraction.

Same function names and results as :mod:`desired.extract`; the difference is the
execution model.  All patches of a bundle that share a shape are processed as one
batch with array-module operations: the projection matrices ``A`` are built densely
(``[patch, pixel, spot]``) by scattering the stamps, ``M = A^T W A`` and
``A^T W pix`` are batched matrix products, and the solve and the per-fiber
decorrelation are batched ``inv``/``eigh`` calls.  With CuPy (``xp=cupy``, the
default when it imports) this runs on the GPU; with ``xp=numpy`` the identical code
runs on the CPU, which is how it is tested where no GPU is present.

The spot stamps are evaluated on the CPU by the numba kernel of
:mod:`desired.extract` and transferred once per bundle.

This module is imported only when the GPU backend is requested (``desired extract
--gpu``); importing it without CuPy works, but calls without ``xp`` then fail with
a clear error.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .extract import (BUNDLESIZE, MIN_ON_CCD, OUTLIER_NSIG, RIDGE, BundleSpots, assemble_frame, bundle_ranges,
                      checkerboard, empty_result, finish_result, grid_columns, plan_bundles, plan_patches, resolution_band,
                      outlier_safe_variance, single_threaded_blas, smooth_solution, store_patch,
                      variance_options, wavelength_grid)

try:                                   # optional dependency
    import cupy
except ImportError:                    # pragma: no cover - depends on the machine
    cupy = None

log = logging.getLogger(__name__)

__all__ = ["extract_frame", "extract_bundle", "extract_bundles", "decorrelate",
           "single_threaded_blas", "wavelength_grid", "bundle_ranges", "default_array_module"]

#: most bytes one batch of dense projection matrices may take
MAX_BATCH_BYTES = 2 * 1024 ** 3


def default_array_module():
    """Return :mod:`cupy`, or raise a clear error when it is not installed."""
    if cupy is None:
        raise RuntimeError("the GPU extraction backend needs cupy, which is not installed")
    return cupy


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def decorrelate(cov_blocks, xp=None):
    """Per-fiber decorrelation on a batch: see :func:`desired.extract.decorrelate`.

    Parameters
    ----------
    cov_blocks : array (xp), shape (nbatch, nw, nw)

    Returns
    -------
    R : (nbatch, nw, nw), ivar : (nbatch, nw) in the array module of the input.
    """
    xp = xp or default_array_module()
    icov = xp.linalg.inv(cov_blocks)
    icov = 0.5 * (icov + xp.swapaxes(icov, 1, 2))
    evals, evecs = xp.linalg.eigh(icov)
    evals = xp.clip(evals, 0.0, None)
    q = xp.matmul(evecs * xp.sqrt(evals)[:, None, :], xp.swapaxes(evecs, 1, 2))
    s = q.sum(axis=2)
    safe = xp.where(s > 0, s, 1.0)
    return q / safe[:, :, None], xp.where(s > 0, s ** 2, 0.0)


def extract_bundle(pix, ivar, psf, wave, fibers, nsubbundles=5, nwavestep=30, wavepad=6, ndiag=11,
                   readnoise=None, xp=None):
    """Extract a fiber range; same arguments and result as :func:`desired.extract.extract_bundle`.

    Parameters
    ----------
    xp : module, optional
        Array module (``cupy`` by default, ``numpy`` for a CPU run of the batched code).
    pix, ivar : ndarray (numpy or xp), shape (ny, nx)
    """
    xp = xp or default_array_module()
    f0, f1 = fibers
    nwave = wave.size
    dw = float(wave[1] - wave[0])
    half = ndiag // 2
    if wavepad < half:
        raise ValueError(f"wavepad={wavepad} must be at least ndiag//2={half}")
    NY, NX = pix.shape
    spots = BundleSpots(psf, wave, fibers, wavepad, (NY, NX))
    c0, pad = spots.c0, spots.pad
    sy, sx = spots.stamps.shape[2:]
    stamps_dev = xp.asarray(spots.stamps)
    pix_d, ivar_d = xp.asarray(pix), xp.asarray(ivar)
    rn_d = None if readnoise is None else xp.asarray(readnoise)
    result = empty_result(f1 - f0, nwave, ndiag)

    groups = {}
    for p, has_data in plan_patches(spots, fibers, psf.nfiber, nwave, nsubbundles, nwavestep, wavepad):
        if has_data:                   # patches without light on the image keep the no-data result
            s0, s1, m0, m1, w0, w1, e0, e1 = p
            key = (m1 - m0, s0 - m0, s1 - s0, e1 - e0, w1 - w0) + grid_columns(p, wavepad, nwave)
            groups.setdefault(key, []).append(p)

    jj, ii = np.meshgrid(np.arange(sy), np.arange(sx), indexing="ij")
    for (nf, core_off, ncore, nw, nkeep, lo, hi), plist in groups.items():
        n = nf * nw
        # patch rectangles: the core stamps' bounding boxes clipped to the image; the
        # group's region size is the largest of them
        boxes = []
        for (s0, s1, m0, m1, w0, w1, e0, e1) in plist:
            yl = spots.ylo[s0 - c0:s1 - c0, e0:e1]
            xl = spots.xlo[s0 - c0:s1 - c0, e0:e1]
            boxes.append((max(int(yl.min()), 0), max(int(xl.min()), 0),
                          min(int(yl.max()) + sy, NY), min(int(xl.max()) + sx, NX)))
        ny = max(b[2] - b[0] for b in boxes)
        nx = max(b[3] - b[1] for b in boxes)
        npix = ny * nx
        per_patch = 8 * npix * n * 3
        batch = max(1, int(MAX_BATCH_BYTES // per_patch))
        for start in range(0, len(plist), batch):
            chunk = plist[start:start + batch]
            P = len(chunk)
            y0 = np.array([boxes[start + k][0] for k in range(P)])
            x0 = np.array([boxes[start + k][1] for k in range(P)])
            # spot positions of every patch, [P, n]
            fidx = np.array([np.repeat(np.arange(m0, m1) - c0, nw) for (_, _, m0, m1, *_r) in chunk])
            widx = np.array([np.tile(np.arange(e0, e1), nf) for (*_r, e0, e1) in chunk])
            ry = spots.ylo[fidx, widx] - y0[:, None]          # stamp origin within the region
            rx = spots.xlo[fidx, widx] - x0[:, None]
            # inside map: core stamps minus stamps of unmodelled neighbours
            inside = np.zeros((P, ny + 2 * sy, nx + 2 * sx), bool)   # margins absorb off-region stamps
            core = np.zeros((nf, nw), bool)
            core[core_off:core_off + ncore] = True
            core = core.ravel()
            pk = np.arange(P)[:, None, None, None]
            yy = np.clip(ry[:, core], -sy, ny)[:, :, None, None] + jj + sy
            xx = np.clip(rx[:, core], -sx, nx)[:, :, None, None] + ii + sx
            inside[pk, yy, xx] = True
            for k, (s0, s1, m0, m1, w0, w1, e0, e1) in enumerate(chunk):
                ox, oy = spots.unmodelled(m0, m1, e0, e1, psf.nfiber)
                oy = oy - y0[k]
                ox = ox - x0[k]
                ok = (oy > -sy) & (oy < ny) & (ox > -sx) & (ox < nx)      # overlaps the region
                inside[k, oy[ok, None, None] + jj + sy, ox[ok, None, None] + ii + sx] = False
            inside = inside[:, sy:sy + ny, sx:sx + nx]
            # weights and data of the regions
            gy = y0[:, None, None] + np.arange(ny)[None, :, None]
            gx = x0[:, None, None] + np.arange(nx)[None, None, :]
            on = (gy >= 0) & (gy < NY) & (gx >= 0) & (gx < NX) & inside
            gy_c, gx_c = np.clip(gy, 0, NY - 1), np.clip(gx, 0, NX - 1)
            gy_c, gx_c = np.broadcast_arrays(gy_c, gx_c)
            on_d = xp.asarray(on.reshape(P, npix))
            w = xp.where(on_d, ivar_d[xp.asarray(gy_c.reshape(P, npix)), xp.asarray(gx_c.reshape(P, npix))], 0.0)
            d = xp.where(on_d, pix_d[xp.asarray(gy_c.reshape(P, npix)), xp.asarray(gx_c.reshape(P, npix))], 0.0)
            # dense A [P, npix, n]: scatter every stamp pixel that falls in the region
            A = xp.zeros((P, npix, n))
            py = ry[:, :, None, None] + jj
            px = rx[:, :, None, None] + ii
            valid = (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
            pidx, aidx, jv, iv = np.nonzero(valid)
            A[xp.asarray(pidx), xp.asarray(py[valid] * nx + px[valid]), xp.asarray(aidx)] = \
                stamps_dev[xp.asarray(fidx[pidx, aidx]), xp.asarray(widx[pidx, aidx]),
                           xp.asarray(jv), xp.asarray(iv)]
            At = xp.swapaxes(A, 1, 2)
            M = xp.matmul(At, A * w[:, :, None])
            rhs = xp.matmul(At, (w * d)[:, :, None])[:, :, 0]
            diag = xp.diagonal(M, axis1=1, axis2=2)
            scale = xp.where(diag.max(axis=1) > 0, diag.max(axis=1), 1.0)
            nodata = diag <= 1e3 * RIDGE * scale[:, None]
            ridge = (RIDGE * scale)[:, None, None] * xp.eye(n)[None]
            if rn_d is not None:
                # model-variance weights, each pixel modelled without itself (see extract.model_weights)
                rn = xp.where(on_d, rn_d[xp.asarray(gy_c.reshape(P, npix)), xp.asarray(gx_c.reshape(P, npix))], 0.0)
                black = xp.asarray(checkerboard((ny, nx)).reshape(1, npix))
                wb = xp.where(black, w, 0.0)
                m_black = xp.matmul(At, A * wb[:, :, None])
                rhs_black = xp.matmul(At, (wb * d)[:, :, None])[:, :, 0]
                halves = []
                for mh, rh in ((m_black, rhs_black), (M - m_black, rhs - rhs_black)):
                    fh = xp.linalg.solve(mh + ridge, rh[:, :, None])[:, :, 0]
                    halves.append(xp.matmul(A, smooth_solution(fh, nw, xp=xp)[:, :, None])[:, :, 0])
                model = xp.where(black, halves[1], halves[0])
                var = outlier_safe_variance(model, d, rn, OUTLIER_NSIG, xp=xp)
                usable = (w > 0) & (var > 0)
                w = xp.where(usable, 1.0 / xp.where(usable, var, 1.0), 0.0)
                M = xp.matmul(At, A * w[:, :, None])
                rhs = xp.matmul(At, (w * d)[:, :, None])[:, :, 0]
            cov = xp.linalg.inv(M + ridge)
            cov = 0.5 * (cov + xp.swapaxes(cov, 1, 2))
            fdec = xp.matmul(cov, rhs[:, :, None])[:, :, 0]
            # on-grid wavelengths only (padding beyond the grid ends is marginalised)
            ng = hi - lo
            blocks = xp.stack([cov[:, i * nw + lo:i * nw + hi, i * nw + lo:i * nw + hi]
                               for i in range(core_off, core_off + ncore)], axis=1)
            R, rivar = decorrelate(blocks.reshape(P * ncore, ng, ng), xp=xp)
            R = R.reshape(P, ncore, ng, ng)
            rivar = rivar.reshape(P, ncore, ng)
            fcore = fdec.reshape(P, nf, nw)[:, core_off:core_off + ncore, lo:hi]
            rflux = xp.matmul(R, fcore[..., None])[..., 0]
            resid = d - xp.matmul(A, fdec[:, :, None])[:, :, 0]
            num = xp.matmul(At, (w * resid ** 2)[:, :, None])[:, :, 0]
            good = xp.matmul(At, (w > 0).astype(A.dtype)[:, :, None])[:, :, 0]
            chi2 = xp.where(good > 0, num / xp.where(good > 0, good, 1.0), 0.0)
            badfrac = 1.0 - good
            # back to the host
            band = _to_numpy(resolution_band(R, wavepad - lo, nkeep, ndiag, xp=xp))
            keep = slice(wavepad, wavepad + nkeep)                  # kept columns of the patch
            keep_r = slice(wavepad - lo, wavepad - lo + nkeep)      # kept rows of R
            rflux, rivar = _to_numpy(rflux)[..., keep_r], _to_numpy(rivar)[..., keep_r]
            core_keep = (slice(None), slice(core_off, core_off + ncore), keep)
            chi2 = _to_numpy(chi2).reshape(P, nf, nw)[core_keep]
            badfrac = _to_numpy(badfrac).reshape(P, nf, nw)[core_keep]
            nodata = _to_numpy(nodata).reshape(P, nf, nw)[core_keep]
            for k, p in enumerate(chunk):
                s0, s1, _, _, w0, w1, _, _ = p
                nod = nodata[k] | (spots.on_ccd[s0 - c0:s1 - c0, w0 + pad:w1 + pad] < MIN_ON_CCD)
                store_patch(result, p, fibers, dw, rflux[k], rivar[k], nod, badfrac[k], chi2[k], band[k])
    return finish_result(result)


def extract_bundles(pix, ivar, psf, wave, bundles, xp=None, **options):
    """Extract several fiber ranges in turn; list of :func:`extract_bundle` results."""
    xp = xp or default_array_module()
    pix_d, ivar_d = xp.asarray(pix), xp.asarray(ivar)
    out = []
    for b in bundles:
        t0 = time.perf_counter()
        out.append(extract_bundle(pix_d, ivar_d, psf, wave, b, xp=xp, **options))
        log.debug("fibers %d-%d extracted in %.2f s", b[0], b[1] - 1, time.perf_counter() - t0)
    return out


def extract_frame(image, psf, wave=None, fibers=None, bundlesize=BUNDLESIZE, nproc=1,
                  fibermap=None, model_variance=True, xp=None, **options):
    """Batched-backend equivalent of :func:`desired.extract.extract_frame` (``nproc`` is ignored)."""
    xp = xp or default_array_module()
    wave, (lo, hi), bundles = plan_bundles(image, psf, wave, fibers, bundlesize)
    options = variance_options(image, model_variance, options)
    t0 = time.perf_counter()
    results = extract_bundles(image.pix, image.good_ivar(), psf, wave, bundles, xp=xp, **options)
    log.info("extracted %d fibers x %d wavelengths in %.1f s (%s)", hi - lo, wave.size,
             time.perf_counter() - t0, xp.__name__)
    header = dict(image.header)
    header["BUNIT"] = "electron/Angstrom"
    header["EXTVAR"] = "model" if "readnoise" in options else "data"
    return assemble_frame(results, bundles, wave, psf, header, fibermap)
