"""Coaddition of the spectra of each target: across exposures (per band) and across cameras.

Per band and target (:func:`coadd_band`), following desispec.coaddition.coadd:

1. the target's spectra whose FIBERSTATUS has none of the bits that are fatal for the band
   (:func:`use_for_coadd`) are used;
2. with ``cosmics_nsig > 0`` and at least 3 such spectra, per-exposure outliers (cosmic
   rays) are found on the wavelength *gradient* of each spectrum (so that smooth
   calibration differences between exposures do not count): where the ivar-weighted
   chi² of the gradients across exposures exceeds the ``nsig`` tail of a chi²(n-1), the
   most deviant exposures are removed one by one until the rest is consistent, and the
   two pixels that form the gradient get ivar 0 in them (:func:`_mask_cosmics`); unlike
   desispec, when two outlier gradients of one spectrum lie at most :data:`MAX_HIT_WIDTH`
   pixels apart (the two edges of a hit wider than 2 pixels, whose flat core has no steep
   gradient) the pixels between them are rejected as well;
3. ``ivar = Σ_e ivar_e·(mask_e == 0)`` (rejected pixels excluded), ``flux = Σ_e w_e flux_e``
   with ``w_e = ivar_e·(mask_e == 0) / ivar``; where no exposure contributes the pixel
   falls back to the unmasked ivar for the weights (so it keeps a value), its ivar is the
   sum of the unmasked ivars and its mask is the OR of the inputs' masks; elsewhere the
   mask is 0 (a pixel is masked only when no exposure contributes);
4. the resolution matrix is averaged with the same weights, row by row:
   ``R[r, c] = Σ_e w_e[r] R_e[r, c]`` (the weights of the row ``r`` of each diagonal element).

Across cameras (:func:`coadd_cameras`, as desispec.coaddition.coadd_cameras): the band
grids are merged into one ``brz`` grid (each band must lie on it), pixels seen by one
camera are copied, pixels in the overlaps are inverse-variance averaged (the resolution
with the same row weights), overlap masks are OR-ed and cleared where ivar > 0.

Fibermap (:func:`coadd_fibermap`) and scores (:func:`coadd_scores`) follow
desispec.coaddition.coadd_fibermap and desispec.specscore; see :data:`TSNR2_CLASSES`
for the template S/N² definition.
"""
from __future__ import annotations

import functools
import logging

import numba
import numpy as np
import scipy.special
from astropy.table import Column, Table

from .maskbits import fibermask, specmask
from .scores import TOPHAT_WAVE, band_scores

log = logging.getLogger(__name__)

#: default outlier threshold (sigma) of the cosmic-ray rejection (desispec's default)
COSMICS_NSIG = 4.0
#: at least this many spectra of a target are needed to look for outliers
MIN_FOR_COSMICS = 3
#: outlier gradients of one spectrum at most this many pixels apart are the edges of one hit
#: (the pixels between them are rejected too; desispec rejects only the two pixels of each gradient)
MAX_HIT_WIDTH = 6
#: wavelength tolerance (Angstrom) of the camera-merging grid check
WAVE_TOLERANCE = 1e-4

_NONAMP_BAD = ("BROKENFIBER", "MISSINGPOSITION", "BADPOSITION", "BADFIBER", "BADTRACE", "BADARC",
               "BADFLAT", "MANYBADCOL", "MANYREJECTED")


def fiberstatus_bad_bits(band):
    """FIBERSTATUS bits that exclude a spectrum from the coadd of ``band`` (b, r, z or brz)."""
    bits = fibermask.mask(*_NONAMP_BAD)
    for b in "brz":
        if b in band.lower():
            bits |= fibermask.mask(f"BADAMP{b.upper()}")
    return bits


def use_for_coadd(fiberstatus, band):
    """True for the spectra whose FIBERSTATUS allows them in the coadd of ``band``, shape (nspec,)."""
    return (np.asarray(fiberstatus, dtype=np.int64) & fiberstatus_bad_bits(band)) == 0


def ordered_unique(values):
    """Unique values in the order of first appearance, and the index of each value's group.

    Returns
    -------
    unique : ndarray, shape (ngroup,)
    inverse : ndarray of int, shape (n,)
        ``unique[inverse] == values``.
    """
    values = np.asarray(values)
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[inverse.ravel()]


def _chi2_tables(nmax, nsig):
    """Chi² thresholds of desispec's cosmic rejection for n = 0..nmax spectra."""
    n = np.arange(nmax + 1)
    dof = np.maximum(n - 1, 1)
    # chdtri(k, q) is the inverse survival function of a chi²(k); ndtr the normal CDF
    tail = scipy.special.chdtri(dof, scipy.special.ndtr(-nsig)) if nsig > 0 else np.full(n.size, np.inf)
    median = scipy.special.chdtri(dof, 0.5)
    return np.asarray(tail, dtype=np.float64), np.asarray(median, dtype=np.float64)


@numba.njit(cache=True)
def _iterative_masker(vec, ivar, thresholds, fixed, min_keep):
    """Remove the most deviant entries until the chi² about the mean is below threshold."""
    n = vec.size
    good = np.ones(n, dtype=np.bool_)
    ngood = n
    while True:
        sw = 0.0
        swv = 0.0
        for k in range(n):
            if good[k]:
                sw += ivar[k]
                swv += ivar[k] * vec[k]
        mean = swv / sw if sw > 0 else 0.0
        chi2 = 0.0
        worst = -1
        worst_metric = -1.0
        for k in range(n):
            if good[k]:
                m = (vec[k] - mean) ** 2 * ivar[k]
                chi2 += m
                if m > worst_metric:
                    worst_metric = m
                    worst = k
        threshold = fixed if fixed > 0 else thresholds[ngood]
        if chi2 > threshold and worst >= 0:
            good[worst] = False
            ngood -= 1
        else:
            break
        if ngood < min_keep:
            break
    return ~good


@numba.njit(cache=True)
def _mask_cosmics(wave, flux, ivar, nsig, tail, median, out):
    """Flag outliers of ``n`` spectra of one target (desispec's gradient chi² test).

    ``flux``/``ivar`` (n, nwave) with ivar 0 on masked pixels; ``out`` (n, nwave) bool is set True
    on rejected pixels.  Returns the number of wavelengths with an outlier.
    """
    n, nw = flux.shape
    pos = np.empty(n, dtype=np.int64)
    grad = np.empty((n, nw - 1))
    gradivar = np.empty((n, nw - 1))
    m = 0
    for j in range(n):
        good = ivar[j] > 0
        if not good.any():
            continue
        f = flux[j].astype(np.float64)
        iv = ivar[j].astype(np.float64)
        if not good.all():
            f = np.interp(wave, wave[good], f[good])
            iv = np.interp(wave, wave[good], iv[good])
        var = 1.0 / (iv + (iv == 0))
        for k in range(nw - 1):
            grad[m, k] = f[k + 1] - f[k]
            gv = var[k + 1] + var[k]
            gradivar[m, k] = 1.0 / gv if gv > 0 else 0.0
        pos[m] = j
        m += 1
    if m < MIN_FOR_COSMICS:
        return 0
    grad = grad[:m]
    gradivar = gradivar[:m]
    sgi = gradivar.sum(axis=0)
    chi2 = np.zeros(nw - 1)
    delta = np.empty((m, nw - 1))
    for k in range(nw - 1):
        mean = 0.0
        if sgi[k] > 0:
            for e in range(m):
                mean += gradivar[e, k] * grad[e, k]
            mean /= sgi[k]
        for e in range(m):
            delta[e, k] = grad[e, k] - mean
            chi2[k] += gradivar[e, k] * delta[e, k] ** 2
    med = np.median(chi2)
    fixed = -1.0
    threshold = tail[m]
    if med > 2 * median[m]:
        # the target varies more than its noise allows: threshold from the chi² distribution itself
        threshold = med + (np.percentile(chi2, 84.0) - med) * nsig
        fixed = threshold
    nbad = 0
    last = np.full(m, -1000000, dtype=np.int64)
    for k in range(nw - 1):
        if chi2[k] > threshold and sgi[k] > 0:
            nbad += 1
            bad = _iterative_masker(delta[:, k], gradivar[:, k], tail, fixed, MIN_FOR_COSMICS)
            for e in range(m):
                if bad[e]:
                    # a hit wider than 2 pixels shows as two steep gradients (its edges):
                    # reject the pixels between them too
                    start = last[e] + 1 if k - last[e] <= MAX_HIT_WIDTH else k
                    for kk in range(start, k + 2):
                        out[pos[e], kk] = True
                    last[e] = k
    return nbad


@numba.njit(cache=True)
def _coadd_band_kernel(wave, flux, ivar, mask, rdata, order, starts, nsig, tail, median,
                       oflux, oivar, omask, ordata, nrejected):
    """Coadd targets t = 0..ntarget-1 whose rows are ``order[starts[t]:starts[t+1]]``."""
    ntarget = starts.size - 1
    nw = wave.size
    ndiag = rdata.shape[1]
    half = ndiag // 2
    for t in range(ntarget):
        rows = order[starts[t]:starts[t + 1]]
        n = rows.size
        if n == 0:
            continue
        f = np.empty((n, nw))
        iv_orig = np.empty((n, nw))
        ivm = np.empty((n, nw))
        for e in range(n):
            r = rows[e]
            for k in range(nw):
                f[e, k] = flux[r, k]
                iv_orig[e, k] = ivar[r, k]
                ivm[e, k] = ivar[r, k] if mask[r, k] == 0 else 0.0
        if nsig > 0 and n >= MIN_FOR_COSMICS:
            rejected = np.zeros((n, nw), dtype=np.bool_)
            _mask_cosmics(wave, f, ivm, nsig, tail, median, rejected)
            for e in range(n):
                for k in range(nw):
                    if rejected[e, k] and ivm[e, k] > 0:
                        ivm[e, k] = 0.0
                        nrejected[rows[e]] += 1
        w = np.empty((n, nw))
        for k in range(nw):
            tot = 0.0
            for e in range(n):
                tot += ivm[e, k]
            if tot > 0:
                for e in range(n):
                    w[e, k] = ivm[e, k]
                omask[t, k] = 0
            else:
                bits = 0
                for e in range(n):
                    w[e, k] = iv_orig[e, k]
                    tot += iv_orig[e, k]
                    bits |= mask[rows[e], k]
                omask[t, k] = bits
            oivar[t, k] = tot
            norm = 1.0 / tot if tot > 0 else 0.0
            acc = 0.0
            for e in range(n):
                w[e, k] *= norm
                acc += w[e, k] * f[e, k]
            oflux[t, k] = acc
        for d in range(ndiag):
            for c in range(nw):
                r = c + d - half          # the row of diagonal element (d, c)
                if r < 0 or r >= nw:
                    continue
                acc = 0.0
                for e in range(n):
                    acc += w[e, r] * rdata[rows[e], d, c]
                ordata[t, d, c] = acc


def coadd_band(wave, flux, ivar, mask, resolution_data, targetids, good=None, cosmics_nsig=COSMICS_NSIG):
    """Inverse-variance coadd of every target's spectra in one band.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid (Angstrom).
    flux, ivar : array, shape (nspec, nwave)
        Spectra (used as float32, the precision of the files; sums are accumulated in float64).
    mask : int array, shape (nspec, nwave)
        specmask bits (non-zero pixels do not contribute unless nothing else does).
    resolution_data : array, shape (nspec, ndiag, nwave)
    targetids : int array, shape (nspec,)
    good : bool array, shape (nspec,), optional
        Spectra allowed in the coadd (see :func:`use_for_coadd`); all when omitted.
    cosmics_nsig : float
        Outlier threshold in sigma; 0 disables the rejection.

    Returns
    -------
    dict
        ``targetid`` (ntarget,) in order of first appearance, ``flux``/``ivar`` (ntarget, nwave)
        float32 (sums in float64), ``mask`` int32, ``resolution_data`` (ntarget, ndiag, nwave) float32, and
        ``nrejected`` (nspec,) the number of pixels of each input spectrum rejected as outliers.
        A target without any good spectrum gets flux = ivar = 0 and mask NODATA.
    """
    wave = np.ascontiguousarray(wave, dtype=np.float64)
    flux, ivar = np.asarray(flux), np.asarray(ivar)
    nspec, nwave = flux.shape
    targets, inverse = ordered_unique(targetids)
    use = np.ones(nspec, dtype=bool) if good is None else np.asarray(good, dtype=bool)
    keep = np.flatnonzero(use)
    order = keep[np.argsort(inverse[keep], kind="stable")]
    counts = np.bincount(inverse[keep], minlength=targets.size)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    tail, median = _chi2_tables(max(int(counts.max(initial=0)), MIN_FOR_COSMICS), cosmics_nsig)
    ndiag = resolution_data.shape[1]
    out = {"targetid": targets,
           "flux": np.zeros((targets.size, nwave), dtype=np.float32),
           "ivar": np.zeros((targets.size, nwave), dtype=np.float32),
           "mask": np.full((targets.size, nwave), specmask.NODATA, dtype=np.int32),
           "resolution_data": np.zeros((targets.size, ndiag, nwave), dtype=np.float32),
           "nrejected": np.zeros(nspec, dtype=np.int64)}
    # one compiled signature: float32 inputs (the files' precision; sums are float64)
    flux = np.ascontiguousarray(flux, dtype=np.float32)
    ivar = np.ascontiguousarray(ivar, dtype=np.float32)
    _coadd_band_kernel(wave, flux, ivar, np.ascontiguousarray(mask, dtype=np.int32),
                       np.ascontiguousarray(resolution_data, dtype=np.float32),
                       order.astype(np.int64), starts, float(cosmics_nsig), tail, median,
                       out["flux"], out["ivar"], out["mask"], out["resolution_data"], out["nrejected"])
    return out


def merged_grid(waves):
    """The camera-merged wavelength grid and each band's slice of it.

    Parameters
    ----------
    waves : dict band -> array
        Band grids (Angstrom).

    Returns
    -------
    bands : list of str
        Bands sorted by mean wavelength.
    wave : ndarray
        Merged grid: each band's points beyond the previous band's last point appended.
    slices : dict band -> slice
        Where each band's grid sits in ``wave``.

    Raises
    ------
    ValueError
        If a band's grid does not coincide with the merged grid (to 1e-4 Angstrom).
    """
    bands = sorted(waves, key=lambda b: float(np.mean(waves[b])))
    wave = np.asarray(waves[bands[0]], dtype=np.float64)
    for b in bands[1:]:
        wb = np.asarray(waves[b], dtype=np.float64)
        wave = np.concatenate([wave, wb[wb > wave[-1] + WAVE_TOLERANCE]])
    slices = {}
    for b in bands:
        wb = np.asarray(waves[b], dtype=np.float64)
        start = int(np.argmin(np.abs(wave - wb[0])))
        if start + wb.size > wave.size or np.any(np.abs(wave[start:start + wb.size] - wb) > WAVE_TOLERANCE):
            raise ValueError(f"band {b!r} wavelength grid is not aligned with the merged grid; "
                             "resample the bands onto a common grid first")
        slices[b] = slice(start, start + wb.size)
    return bands, wave, slices


def coadd_cameras(waves, flux, ivar, mask, resolution_data):
    """Combine per-band coadds of the same targets onto one merged (``brz``) grid.

    Parameters
    ----------
    waves : dict band -> array, shape (nwave_b,)
    flux, ivar : dict band -> array, shape (ntarget, nwave_b)
    mask : dict band -> int array, shape (ntarget, nwave_b)
    resolution_data : dict band -> array, shape (ntarget, ndiag_b, nwave_b)

    Returns
    -------
    dict
        ``band`` (e.g. ``'brz'``), ``wave`` (nwave,), ``flux``/``ivar`` (ntarget, nwave),
        ``mask`` int32, ``resolution_data`` (ntarget, max ndiag, nwave).
    """
    bands, wave, slices = merged_grid(waves)
    ntarget = np.asarray(flux[bands[0]]).shape[0]
    nwave = wave.size
    cover = np.zeros(nwave, dtype=int)
    for b in bands:
        cover[slices[b]] += 1
    overlap = cover > 1
    ov_cols = np.flatnonzero(overlap)
    ndiag = max(np.asarray(resolution_data[b]).shape[1] for b in bands)
    out_f = np.zeros((ntarget, nwave))
    out_iv = np.zeros((ntarget, nwave))
    out_m = np.zeros((ntarget, nwave), dtype=np.int32)
    out_r = np.zeros((ntarget, ndiag, nwave), dtype=np.float32)
    r_acc = np.zeros((ntarget, ndiag, ov_cols.size))
    r_norm = np.zeros((ntarget, ndiag, ov_cols.size))
    for b in bands:
        sl = slices[b]
        single = cover[sl] == 1
        f, iv = np.asarray(flux[b], dtype=np.float64), np.asarray(ivar[b], dtype=np.float64)
        out_f[:, sl] += np.where(single, f, iv * f)
        out_iv[:, sl] += iv
        out_m[:, sl] |= np.asarray(mask[b], dtype=np.int32)
        rb = np.asarray(resolution_data[b])
        nd = rb.shape[1]
        off = (ndiag - nd) // 2
        nb = sl.stop - sl.start
        bcols = np.flatnonzero(~single)                 # this band's overlap columns (band coordinates)
        ocols = np.searchsorted(ov_cols, bcols + sl.start)
        cols_single = np.flatnonzero(single) + sl.start
        out_r[:, off:off + nd, cols_single] = rb[:, :, single]
        for d in range(nd):
            # weight of diagonal element (d, c): ivar of its row c + d - nd//2
            row = bcols + d - nd // 2
            ok = (row >= 0) & (row < nb)
            wrow = np.zeros((ntarget, bcols.size))
            wrow[:, ok] = iv[:, row[ok]]
            r_acc[:, off + d, ocols] += wrow * rb[:, d, bcols]
            r_norm[:, off + d, ocols] += wrow
    out_f[:, overlap] /= out_iv[:, overlap] + (out_iv[:, overlap] == 0)
    out_r[:, :, ov_cols] = r_acc / (r_norm + (r_norm == 0))
    out_m[out_iv > 0] = 0
    return {"band": "".join(bands), "wave": wave, "flux": out_f, "ivar": out_iv, "mask": out_m,
            "resolution_data": out_r}


# ---------------------------------------------------------------- fibermap
#: per-exposure columns kept in EXP_FIBERMAP (desispec.coaddition.fibermap_perexp_cols)
EXP_FIBERMAP_COLUMNS = ("TARGETID", "PRIORITY", "SUBPRIORITY", "NIGHT", "EXPID", "MJD", "TILEID", "EXPTIME",
                        "PETAL_LOC", "DEVICE_LOC", "LOCATION", "FIBER", "FIBERSTATUS", "FIBERASSIGN_X",
                        "FIBERASSIGN_Y", "LAMBDA_REF", "PLATE_RA", "PLATE_DEC", "NUM_ITER", "FIBER_X", "FIBER_Y",
                        "DELTA_X", "DELTA_Y", "FIBER_RA", "FIBER_DEC", "PSF_TO_FIBER_SPECFLUX")
#: targeting bit columns OR-ed over exposures
TARGET_BIT_COLUMNS = ("CMX_TARGET", "SV1_DESI_TARGET", "SV1_BGS_TARGET", "SV1_MWS_TARGET", "SV1_SCND_TARGET",
                      "SV2_DESI_TARGET", "SV2_BGS_TARGET", "SV2_MWS_TARGET", "SV2_SCND_TARGET",
                      "SV3_DESI_TARGET", "SV3_BGS_TARGET", "SV3_MWS_TARGET", "SV3_SCND_TARGET",
                      "DESI_TARGET", "BGS_TARGET", "MWS_TARGET", "SCND_TARGET")
_PER_EXPOSURE_DROP = ("NIGHT", "EXPID", "MJD", "EXPTIME", "NUM_ITER", "PSF_TO_FIBER_SPECFLUX")
_MULTI_TILE_DROP = ("TILEID", "FIBER", "FIBER_X", "FIBER_Y", "PRIORITY", "PETAL_RA", "PETAL_DEC", "LAMBDA_REF",
                    "FIBERASSIGN_X", "FIBERASSIGN_Y", "PETAL_LOC", "DEVICE_LOC", "LOCATION")


def _group_mean(inv, sel, values, ntarget):
    """Mean of ``values[sel]`` per target (0 where a target has no selected row)."""
    n = np.bincount(inv[sel], minlength=ntarget)
    s = np.bincount(inv[sel], weights=np.asarray(values, dtype=np.float64)[sel], minlength=ntarget)
    return s / np.maximum(n, 1)


def _group_count_unique(inv, sel, values, ntarget):
    """Number of distinct ``values[sel]`` per target."""
    pairs = np.unique(np.stack([inv[sel], np.asarray(values, dtype=np.int64)[sel]]), axis=1)
    return np.bincount(pairs[0], minlength=ntarget)


def _mean_std_radec(inv, sel, ra, dec, ntarget):
    """Per-target mean RA/Dec (deg) and their standard deviations (arcsec, RA times cos Dec), RA wrap handled."""
    ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    rmax = np.full(ntarget, -np.inf)
    rmin = np.full(ntarget, np.inf)
    np.maximum.at(rmax, inv[sel], ra[sel])
    np.minimum.at(rmin, inv[sel], ra[sel])
    offset = np.where(rmax - rmin > 180, 180.0, 0.0)
    ras = (ra + offset[inv]) % 360 if np.any(offset) else ra
    mra = _group_mean(inv, sel, ras, ntarget)
    mdec = _group_mean(inv, sel, dec, ntarget)
    sra = np.sqrt(_group_mean(inv, sel, (ras - mra[inv]) ** 2, ntarget))
    sdec = np.sqrt(_group_mean(inv, sel, (dec - mdec[inv]) ** 2, ntarget))
    return ((mra - offset + 360) % 360, sra * np.cos(np.radians(mdec)) * 3600, mdec, sdec * 3600)


def coadd_fibermap(fibermap, onetile=False, band_has_data=None):
    """One fibermap row per target and the per-exposure EXP_FIBERMAP (desispec's coadd_fibermap).

    Parameters
    ----------
    fibermap : astropy.table.Table
        One row per input spectrum (TARGETID and FIBERSTATUS or COADD_FIBERSTATUS required).
    onetile : bool
        All spectra come from one tile: keep the tile columns (TILEID, FIBER, LOCATION...) and
        add MEAN_FIBER_X/Y.
    band_has_data : dict band -> bool array (nspec,), optional
        Whether each input spectrum has data in the band (False for a missing camera); an
        exposure without data in a band is not IN_COADD_{B}.

    Returns
    -------
    coadded : astropy.table.Table
        First row of each target (order of first appearance) plus COADD_NUMEXP, COADD_EXPTIME,
        COADD_NUMNIGHT, COADD_NUMTILE, COADD_FIBERSTATUS (AND over the used exposures, OR when
        none is used), MEAN_/RMS_DELTA_X/Y, MEAN_FIBER_RA/DEC, STD_FIBER_RA/DEC (arcsec),
        MEAN_PSF_TO_FIBER_SPECFLUX, MIN/MAX/MEAN_MJD; target bits OR-ed.
    exp_fibermap : astropy.table.Table
        The per-exposure columns of every input row plus IN_COADD_B/R/Z.
    """
    exp = Table(fibermap, copy=True)
    if onetile and "TILEID" in exp.colnames and np.unique(exp["TILEID"]).size != 1:
        raise ValueError(f"onetile coadd of {np.unique(exp['TILEID']).size} tiles")
    targets, inv = ordered_unique(exp["TARGETID"])
    ntarget = targets.size
    first = np.full(ntarget, len(exp), dtype=np.int64)
    np.minimum.at(first, inv, np.arange(len(exp)))
    tf = exp[first]
    fkey = "FIBERSTATUS" if "FIBERSTATUS" in exp.colnames else "COADD_FIBERSTATUS"
    if fkey not in exp.colnames:
        raise KeyError("fibermap has neither FIBERSTATUS nor COADD_FIBERSTATUS")
    status = np.asarray(exp[fkey], dtype=np.int64)
    in_coadd = {}
    for b in "brz":
        use = use_for_coadd(status, b)
        if band_has_data is not None and b in band_has_data:
            use = use & np.asarray(band_has_data[b], dtype=bool)
        in_coadd[b] = use
        exp[f"IN_COADD_{b.upper()}"] = use
    good = in_coadd["b"] | in_coadd["r"] | in_coadd["z"]
    numexp = np.bincount(inv[good], minlength=ntarget)
    compute = np.where(numexp[inv] > 0, good, True)
    and_bits = np.full(ntarget, -1, dtype=np.int64)
    np.bitwise_and.at(and_bits, inv[good], status[good])
    or_bits = np.zeros(ntarget, dtype=np.int64)
    np.bitwise_or.at(or_bits, inv, status)
    cols = {"COADD_NUMEXP": numexp.astype(np.int16)}
    cols["COADD_EXPTIME"] = (np.bincount(inv[good], weights=np.asarray(exp["EXPTIME"], float)[good], minlength=ntarget)
                             if "EXPTIME" in exp.colnames else np.full(ntarget, -1.0)).astype(np.float32)
    cols["COADD_NUMNIGHT"] = (_group_count_unique(inv, good, exp["NIGHT"], ntarget) if "NIGHT" in exp.colnames
                              else np.full(ntarget, -1)).astype(np.int16)
    cols["COADD_NUMTILE"] = (_group_count_unique(inv, good, exp["TILEID"], ntarget) if "TILEID" in exp.colnames
                             else np.full(ntarget, -1)).astype(np.int16)
    for name, value in cols.items():
        tf[name] = value
    if "FIBERSTATUS" in tf.colnames:
        tf.rename_column("FIBERSTATUS", "COADD_FIBERSTATUS")
    tf["COADD_FIBERSTATUS"] = np.where(numexp > 0, and_bits, or_bits).astype(np.int32)
    mean_cols = ["DELTA_X", "DELTA_Y", "PSF_TO_FIBER_SPECFLUX"] + (["FIBER_X", "FIBER_Y"] if onetile else [])
    for k in mean_cols:
        if k in exp.colnames:
            vals = np.asarray(exp[k], dtype=np.float64)
            tf[f"MEAN_{k}"] = _group_mean(inv, compute, vals, ntarget).astype(np.float32)
            if k in ("DELTA_X", "DELTA_Y"):
                tf[f"RMS_{k}"] = np.sqrt(_group_mean(inv, compute, vals ** 2, ntarget)).astype(np.float32)
            tf.remove_column(k)
    if "FIBER_RA" in exp.colnames and "FIBER_DEC" in exp.colnames:
        coords = (np.asarray(exp["FIBER_RA"]) != 0) | (np.asarray(exp["FIBER_DEC"]) != 0)
        ncoords = np.bincount(inv[coords], minlength=ntarget)
        use_coords = np.where(ncoords[inv] > 0, coords, True)
        both = compute & use_coords
        nboth = np.bincount(inv[both], minlength=ntarget)
        sel = np.where(nboth[inv] > 0, both, use_coords)
        mra, sra, mdec, sdec = _mean_std_radec(inv, sel, exp["FIBER_RA"], exp["FIBER_DEC"], ntarget)
        tf.remove_columns(["FIBER_RA", "FIBER_DEC"])
        tf["MEAN_FIBER_RA"], tf["STD_FIBER_RA"] = mra, sra.astype(np.float32)
        tf["MEAN_FIBER_DEC"], tf["STD_FIBER_DEC"] = mdec, sdec.astype(np.float32)
    if "MJD" in exp.colnames:
        mjd = np.asarray(exp["MJD"], dtype=np.float64)
        lo, hi = np.full(ntarget, np.inf), np.full(ntarget, -np.inf)
        np.minimum.at(lo, inv[compute], mjd[compute])
        np.maximum.at(hi, inv[compute], mjd[compute])
        tf["MIN_MJD"], tf["MAX_MJD"], tf["MEAN_MJD"] = lo, hi, _group_mean(inv, compute, mjd, ntarget)
    for k in TARGET_BIT_COLUMNS:
        if k in exp.colnames:
            bits = np.zeros(ntarget, dtype=np.int64)
            np.bitwise_or.at(bits, inv, np.asarray(exp[k], dtype=np.int64))
            tf[k] = bits.astype(exp[k].dtype)
    drop = list(_PER_EXPOSURE_DROP) + ([] if onetile else list(_MULTI_TILE_DROP))
    tf.remove_columns([k for k in drop if k in tf.colnames])
    keep = [c for c in EXP_FIBERMAP_COLUMNS if c in exp.colnames] + ["IN_COADD_B", "IN_COADD_R", "IN_COADD_Z"]
    exp = exp[keep]
    tf.meta = dict(fibermap.meta) if hasattr(fibermap, "meta") else {}
    exp.meta = {}
    return tf, exp


# ---------------------------------------------------------------- scores

#: Template S/N² classes: (rest wavelength Å, line flux 1e-17 erg/s/cm², rest sigma Å) of the
#: class' reference features and the redshift range they are averaged over.  Absorption
#: features are given a negative flux (their depth matters, not their sign).
TSNR2_CLASSES = {
    "ELG": {"z": (0.6, 1.6), "lines": [(3727.09, 6.0, 1.0), (3729.88, 8.0, 1.0)]},
    "LRG": {"z": (0.4, 1.1), "lines": [(3934.78, -8.0, 4.0), (3969.59, -8.0, 4.0), (4305.6, -5.0, 5.0),
                                        (5176.7, -6.0, 5.0), (5895.6, -4.0, 4.0)]},
    "QSO": {"z": (0.5, 3.5), "lines": [(1215.67, 50.0, 20.0), (1549.06, 20.0, 20.0), (1908.73, 10.0, 20.0),
                                        (2799.12, 10.0, 20.0), (4862.68, 5.0, 20.0)]},
    "BGS": {"z": (0.0, 0.4), "lines": [(4862.68, 7.0, 2.0), (5008.24, 10.0, 2.0), (6564.61, 20.0, 2.0)]},
}
#: number of redshifts of each class' average
TSNR2_NZ = 101


def tsnr2_kernel(wave, cls):
    """``<ΔF_{cls,z}(λ)²>_z`` on grid ``wave``, shape (nwave,) in (1e-17 erg/s/cm²/Å)².

    ΔF_{cls,z} is the sum of the class' Gaussian features (:data:`TSNR2_CLASSES`) redshifted
    to z (observed width ``sigma (1+z)``, flux per Angstrom); the average runs over
    :data:`TSNR2_NZ` redshifts spread uniformly over the class' range.
    """
    wave = np.asarray(wave, dtype=np.float64)
    return _tsnr2_kernel_cached(cls, wave.tobytes()).copy()


@functools.lru_cache(maxsize=64)
def _tsnr2_kernel_cached(cls, wave_bytes):
    wave = np.frombuffer(wave_bytes, dtype=np.float64)
    spec = TSNR2_CLASSES[cls]
    z = np.linspace(spec["z"][0], spec["z"][1], TSNR2_NZ)[:, None]
    model = np.zeros((z.size, wave.size))
    for w0, flux, sigma in spec["lines"]:
        s = sigma * (1 + z)
        center = w0 * (1 + z)
        near = np.abs(wave[None, :] - center) < 8 * s           # the Gaussian is 0 to double precision beyond
        arg = np.where(near, (wave[None, :] - center) / s, 0.0)
        model += np.where(near, flux / (np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * arg ** 2), 0.0)
    return np.mean(model ** 2, axis=0)


def coadd_scores(targetids, waves, fluxes, ivars):
    """SCORES of a coadd: band scores and the template S/N² of every class.

    ``TSNR2_{CLASS}_{B} = Σ_{λ in band} ivar(λ) <ΔF_{CLASS,z}(λ)²>_z`` (:func:`tsnr2_kernel`), the
    expected (S/N)² of the class' reference features averaged over its redshift range; for a
    camera-merged band the sum runs over the tophat window of each of b, r, z.
    ``TSNR2_{CLASS}`` is the sum over b, r, z.

    Parameters
    ----------
    targetids : array, shape (ntarget,)
    waves, fluxes, ivars : dict band -> arrays (``b``/``r``/``z`` or one merged ``brz``)

    Returns
    -------
    astropy.table.Table
    """
    scores = Table()
    scores["TARGETID"] = np.asarray(targetids, dtype=np.int64)
    tsnr = {c: np.zeros(len(scores)) for c in TSNR2_CLASSES}
    for band in waves:
        wave = np.asarray(waves[band], dtype=np.float64)
        parts = [band] if band in TOPHAT_WAVE else [b for b in "brz" if b in band]
        for b in parts:
            for k, v in band_scores(wave, fluxes[band], ivars[band], b).items():
                scores[k] = v
        for cls in TSNR2_CLASSES:
            kernel = tsnr2_kernel(wave, cls)
            iv = np.clip(np.asarray(ivars[band], dtype=np.float64), 0, None)
            for b in parts:
                if len(parts) > 1:
                    lo, hi = TOPHAT_WAVE[b]
                    sel = (wave >= lo) & (wave < hi)
                else:
                    sel = slice(None)
                value = iv[:, sel] @ kernel[sel]
                scores[f"TSNR2_{cls}_{b.upper()}"] = value.astype(np.float32)
                tsnr[cls] += value
    for cls in TSNR2_CLASSES:
        scores[f"TSNR2_{cls}"] = tsnr[cls].astype(np.float32)
    return scores


# ---------------------------------------------------------------- whole spectra
def coadd_arrays(bands, waves, get_band, fibermap, cosmics_nsig=COSMICS_NSIG, onetile=False, cameras=False):
    """Coadd every target, one band at a time (only one band's inputs need to be in memory).

    Parameters
    ----------
    bands : list of str
    waves : dict band -> array (nwave_b,)
    get_band : callable band -> (flux, ivar, mask, resolution_data)
        Returns the input arrays of one band, shapes (nspec, nwave_b) and (nspec, ndiag, nwave_b).
    fibermap : astropy.table.Table
        One row per input spectrum.
    cosmics_nsig : float
    onetile : bool
    cameras : bool
        Also combine the bands onto one merged grid (:func:`coadd_cameras`).

    Returns
    -------
    dict
        ``bands`` (list), ``wave``/``flux``/``ivar``/``mask``/``resolution_data`` (dicts per output
        band), ``fibermap``, ``exp_fibermap``, ``scores`` (tables), ``nrejected`` (dict band ->
        (nspec,) rejected pixels per input spectrum), ``missing`` (dict band -> (ntarget,) True
        where the target has no data at all in the band: a missing camera).
    """
    tids = np.asarray(fibermap["TARGETID"])
    fkey = "FIBERSTATUS" if "FIBERSTATUS" in fibermap.colnames else "COADD_FIBERSTATUS"
    status = np.asarray(fibermap[fkey])
    out = {k: {} for k in ("wave", "flux", "ivar", "mask", "resolution_data", "nrejected")}
    has_data, missing = {}, {}
    for b in bands:
        flux, ivar, mask, rdata = get_band(b)
        has_data[b] = np.any(np.asarray(ivar) > 0, axis=1)
        res = coadd_band(waves[b], flux, ivar, mask, rdata, tids, use_for_coadd(status, b), cosmics_nsig)
        del flux, ivar, mask, rdata
        out["wave"][b] = np.asarray(waves[b], dtype=np.float64)
        for k in ("flux", "ivar", "mask", "resolution_data", "nrejected"):
            out[k][b] = res[k]
        missing[b] = ~np.any(res["ivar"] > 0, axis=1)
        if missing[b].any():
            log.warning("%d target(s) have no data in band %s: coadded from the other bands (mask NODATA, "
                        "IN_COADD_%s False)", int(missing[b].sum()), b, b.upper())
    targets = res["targetid"] if bands else np.array([], dtype=np.int64)
    fm, exp = coadd_fibermap(fibermap, onetile=onetile, band_has_data=has_data)
    out["bands"] = list(bands)
    if cameras and len(bands) > 1:
        merged = coadd_cameras(out["wave"], out["flux"], out["ivar"], out["mask"], out["resolution_data"])
        m = merged["band"]
        for k in ("wave", "flux", "ivar", "mask", "resolution_data"):
            out[k] = {m: merged[k]}
        out["bands"] = [m]
    out["scores"] = coadd_scores(targets, out["wave"], out["flux"], out["ivar"])
    out.update(fibermap=fm, exp_fibermap=exp, missing=missing, targetid=targets)
    return out


def coadd_spectra(spectra, cosmics_nsig=COSMICS_NSIG, onetile=False, cameras=False):
    """Coadd a :class:`desired.spectra.Spectra` (a new object; the input is unchanged).

    Parameters
    ----------
    spectra : desired.spectra.Spectra
        Uncoadded spectra with a fibermap (TARGETID, FIBERSTATUS) and resolution data.
    cosmics_nsig : float
        Outlier (cosmic-ray) rejection threshold in sigma; 0 disables it.
    onetile : bool
        The spectra come from one tile (keeps tile columns in the fibermap).
    cameras : bool
        Combine the bands onto one merged grid (band ``brz``).

    Returns
    -------
    desired.spectra.Spectra
        One row per target (order of first appearance), with ``exp_fibermap`` and ``scores``.
    """
    from .spectra import Spectra
    if spectra.fibermap is None or spectra.resolution_data is None:
        raise ValueError("coadd needs spectra with a fibermap and resolution data")
    res = coadd_arrays(spectra.bands, spectra.wave,
                       lambda b: (spectra.flux[b], spectra.ivar[b], spectra.mask[b], spectra.resolution_data[b]),
                       spectra.fibermap, cosmics_nsig, onetile, cameras)
    return Spectra(res["bands"], res["wave"], res["flux"], res["ivar"], res["mask"], res["resolution_data"],
                   fibermap=res["fibermap"], exp_fibermap=res["exp_fibermap"], scores=res["scores"],
                   header=dict(spectra.header))
