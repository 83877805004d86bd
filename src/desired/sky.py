"""Sky models: the container (sky product) and the resolution-aware uniform sky fit.

:func:`compute_sky` is desispec's ``compute_uniform_sky``: one deconvolved sky
spectrum ``S`` fitted to every sky fiber at once through its own resolution
(``flux_f ≈ R_f S``), outlier fibers and pixels rejected, the model ``R_f S``
evaluated for every fiber with its statistical variance ``diag(R_f C R_f^T)``
(``C`` the covariance of ``S``), optional small wavelength / line-width
adjustments measured on sky lines, an extra variance on bright lines so that
the sky fibers' chi2 is 1, and per-fiber throughput corrections measured on sky
lines.  The normal matrix is banded, so the solve and the band of its inverse
cost ``O(nwave ndiag^2)`` (:mod:`desired.bandsolve`) instead of desispec's dense
``O(nwave^3)``.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import maximum_filter1d, median_filter

from . import bandsolve
from .frame import Frame
from .maskbits import fibermask, specmask

log = logging.getLogger(__name__)


class SkyModel:
    """Sky spectrum of every fiber of one camera, in the frame's units.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom.
    flux : array, shape (nspec, nwave)
        Sky model in electron/Angstrom (convolved with each fiber's resolution).
    ivar : array, shape (nspec, nwave)
        Inverse variance of the model, including systematics.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, ...).
    stat_ivar : array, shape (nspec, nwave), optional
        Statistical-only inverse variance (STATIVAR HDU).
    throughput_corrections : array, shape (nspec,), optional
        Per-fiber multiplicative throughput corrections (THRPUTCORR HDU).
    """

    def __init__(self, wave, flux, ivar, mask=None, header=None, stat_ivar=None, throughput_corrections=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.flux = np.asarray(flux, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.flux.ndim != 2 or self.flux.shape[1] != self.wave.size or self.ivar.shape != self.flux.shape:
            raise ValueError(f"flux/ivar must have shape (nspec, {self.wave.size}); got {self.flux.shape}, {self.ivar.shape}")
        self.nspec, self.nwave = self.flux.shape
        self.mask = np.zeros(self.flux.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.flux.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from {self.flux.shape}")
        self.header = dict(header) if header is not None else {}
        self.stat_ivar = None if stat_ivar is None else np.asarray(stat_ivar, dtype=np.float64)
        if self.stat_ivar is not None and self.stat_ivar.shape != self.flux.shape:
            raise ValueError(f"stat_ivar shape {self.stat_ivar.shape} differs from {self.flux.shape}")
        self.throughput_corrections = (None if throughput_corrections is None
                                       else np.asarray(throughput_corrections, dtype=np.float64))
        if self.throughput_corrections is not None and self.throughput_corrections.shape != (self.nspec,):
            raise ValueError(f"throughput_corrections must have shape ({self.nspec},)")


# ---------------------------------------------------------------------------- fiber selection
#: FIBERSTATUS bits that exclude a fiber from the sky fit and zero its ivar in subtract_sky
#: (desispec's 'sky' selection without the amplifier bits, which depend on the band)
SKY_BAD_FIBERSTATUS = fibermask.mask("BROKENFIBER", "MISSINGPOSITION", "BADPOSITION", "BADFIBER", "BADTRACE",
                                     "BADARC", "BADFLAT", "MANYBADCOL", "MANYREJECTED")


def sky_bad_fiberstatus(band):
    """FIBERSTATUS bits fatal for sky subtraction in camera band ``band`` ('b', 'r' or 'z')."""
    amp = {"b": "BADAMPB", "r": "BADAMPR", "z": "BADAMPZ"}.get((band or "")[:1].lower())
    return SKY_BAD_FIBERSTATUS | (fibermask.mask(amp) if amp else 0)


def _bad_fibers(frame):
    fm = frame.fibermap
    if fm is None or "FIBERSTATUS" not in fm.colnames:
        return np.zeros(frame.nspec, dtype=bool)
    return (np.asarray(fm["FIBERSTATUS"]).astype(np.int64) & sky_bad_fiberstatus(frame.camera)) != 0


def sky_fibers(frame):
    """Indices of the sky fibers of a frame (fibermap OBJTYPE == 'SKY'); empty without a fibermap."""
    fm = frame.fibermap
    if fm is None or "OBJTYPE" not in fm.colnames:
        return np.zeros(0, dtype=np.int64)
    objtype = np.char.strip(np.asarray(fm["OBJTYPE"]).astype(str))
    return np.flatnonzero(objtype == "SKY")


def _masked_ivar(frame):
    """Frame ivar with masked, non-finite and FIBERSTATUS-bad pixels set to 0."""
    ivar = np.where((frame.mask == 0) & np.isfinite(frame.flux) & (frame.ivar > 0), frame.ivar, 0.0)
    ivar[_bad_fibers(frame)] = 0.0
    return ivar


# ---------------------------------------------------------------------------- the fit
def _reject(flux, ivar, model, nsig, first, bad_fibers):
    """One rejection step on the sky fibers; returns the number of pixels and fibers rejected."""
    chi2 = ivar * (flux - model) ** 2
    live = np.flatnonzero((ivar > 0).any(axis=1))
    nfib = 0
    if live.size >= 3:
        resid = np.array([np.median((flux[f] - model[f])[ivar[f] > 0]) for f in live])
        mad = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        out = live[np.abs(resid - np.median(resid)) > 7 * max(mad, 1e-30)] if mad > 0 else np.zeros(0, int)
        for f in out:
            ivar[f] = 0.0
            bad_fibers.append(f)
        nfib = out.size
    over = chi2 > nsig ** 2
    if first:          # first pass: only the worst fiber at each wavelength
        worst = np.argmax(chi2, axis=0)
        keep = np.zeros_like(over)
        keep[worst, np.arange(chi2.shape[1])] = True
        over &= keep
    ivar[over] = 0.0
    return int(over.sum()), nfib


def _fit_sky_spectrum(rdata, flux, ivar, nsig, max_iterations, min_iterations=1):
    """Iterate the deconvolved fit and the rejection; returns (S, chol, empty, ivar, bad_fibers, nrej)."""
    bad_fibers, nrej = [], 0
    for it in range(max_iterations):
        ab, rhs = bandsolve.normal_equations(rdata, ivar, flux)
        chol, empty = bandsolve.cholesky_band(ab)
        sky = bandsolve.solve_band(chol, rhs)
        sky[empty] = 0.0
        model = bandsolve.convolve(rdata, sky)
        npix, nfib = _reject(flux, ivar, model, nsig, it == 0, bad_fibers)
        nrej += npix
        log.debug("sky iteration %d: %d pixels, %d fibers rejected", it, npix, nfib)
        if npix == 0 and nfib == 0 and it + 1 >= min_iterations:
            return sky, chol, empty, ivar, bad_fibers, nrej
    ab, rhs = bandsolve.normal_equations(rdata, ivar, flux)
    chol, empty = bandsolve.cholesky_band(ab)
    sky = bandsolve.solve_band(chol, rhs)
    sky[empty] = 0.0
    return sky, chol, empty, ivar, bad_fibers, nrej


# ---------------------------------------------------------------------------- sky lines
def _peaks(msky, margin=3):
    """Local maxima of the mean sky model above 10 % of its maximum (desispec's bright-line peaks)."""
    m = msky[1:-1]
    peaks = np.flatnonzero((m > msky[2:]) & (m > msky[:-2]) & (m > 0.1 * np.max(msky))) + 1
    return peaks[(peaks >= margin) & (peaks < msky.size - margin)]


def sky_lines(wave, msky, width_angstrom=40.0):
    """Wavelengths of the sky emission lines of a sky spectrum (no hard-coded line list).

    A line is a local maximum (within ±3 pixels) whose excess over the running median
    (``width_angstrom`` wide) is at least that continuum and at least 2 % of the
    largest excess.

    Parameters
    ----------
    wave : array, shape (nwave,)
    msky : array, shape (nwave,)
        Mean sky model (any flux unit).

    Returns
    -------
    ndarray
        Line wavelengths, Angstrom.
    """
    dw = float(np.median(np.diff(wave)))
    size = max(5, int(width_angstrom / dw) | 1)
    cont = median_filter(msky, size=size, mode="nearest")
    excess = msky - cont
    if not np.any(excess > 0):
        return np.zeros(0)
    is_max = msky >= maximum_filter1d(msky, 7, mode="nearest")
    sel = is_max & (excess > np.maximum(cont, 0.0)) & (excess > 0.02 * np.max(excess))
    sel[:3] = sel[-3:] = False
    return wave[sel]


# ---------------------------------------------------------------------------- variance terms
def _extra_variance(wave, flux, tivar, model, msky, peaks):
    """Variance added around bright sky peaks so that the sky fibers' chi2 is 1 (desispec's _model_variance).

    Parameters
    ----------
    flux, tivar, model : arrays, shape (nsky, nwave)
        Sky-fiber data, combined (data + model) ivar, and model.
    msky : array, shape (nwave,)
        Mean sky model.
    peaks : array of int

    Returns
    -------
    ndarray, shape (nwave,)
        Extra variance (zero away from the peaks).
    """
    dskydw = np.zeros(msky.size)
    dskydw[1:-1] = np.abs((msky[2:] - msky[:-2]) / (wave[2:] - wave[:-2]))
    res2 = (flux - model) ** 2
    with np.errstate(divide="ignore"):
        var = np.where(tivar > 0, 1.0 / np.where(tivar > 0, tivar, 1.0), 0.0)
    worst = var + (0.2 * msky) ** 2 + (0.5 * dskydw) ** 2        # a worst-case model error
    tivar = np.where(res2 > 9 * worst, 0.0, tivar)
    sigma_flat = 0.005
    sigma_wave = np.arange(0.005, 2.0, 0.005)
    extra = np.zeros(msky.size)
    for peak in peaks:
        b, e = peak - 2, peak + 3
        t, r2, v = tivar[:, b:e], res2[:, b:e], var[:, b:e]
        ngood = (t > 0).sum(axis=1)
        use = ngood > 0
        if not use.any():
            continue
        pvar = (v + (sigma_flat * msky[b:e]) ** 2)[..., None] + (sigma_wave[None, :] * dskydw[b:e, None]) ** 2
        chi2 = np.sum((t[..., None] > 0) * r2[..., None] / pvar, axis=1)[use] / ngood[use, None]
        median = np.median(chi2, axis=0) / 0.7888                 # median -> mean for 3 dof
        below = np.flatnonzero(median <= 1)
        sw = sigma_wave[below[0]] if below.size else 2.0
        b2, e2 = max(peak - 3, 0), peak + 4
        extra[b2:e2] = (sigma_flat * msky[b2:e2]) ** 2 + (sw * dskydw[b2:e2]) ** 2
    return extra


def _adjust_lines(wave, model, flux, ivar, fit_fibers, adjust_wavelength, adjust_lsf):
    """Per-fiber wavelength shift and line-width change measured on bright sky peaks (desispec's adjustment).

    Returns the adjusted model, shape (nspec, nwave).
    """
    from scipy.ndimage import gaussian_filter1d
    dw = float(np.mean(np.gradient(wave)))
    templates = []
    if adjust_wavelength:
        templates.append(np.gradient(model, axis=1) / np.gradient(wave)[None, :])
    if adjust_lsf:
        templates.append((gaussian_filter1d(model, 0.3 / dw, axis=1, mode="nearest") - model) / 0.3)
    msky = model[fit_fibers].mean(axis=0)
    peaks = _peaks(msky, margin=10)
    dpix = int(3 // dw) + 1
    nt = len(templates)
    delta = np.zeros((nt, fit_fibers.size, peaks.size))
    okpk = np.zeros((fit_fibers.size, peaks.size), dtype=bool)
    for j, peak in enumerate(peaks):
        sl = slice(peak - dpix, peak + dpix + 1)
        basis = np.stack([np.ones_like(model[fit_fibers, sl]), model[fit_fibers, sl]]
                         + [t[fit_fibers, sl] for t in templates], axis=1)      # (nfib, npar, npix)
        w = ivar[:, sl]
        aa = np.einsum("fik,fk,fjk->fij", basis, w, basis)
        bb = np.einsum("fik,fk->fi", basis, w * flux[:, sl])
        good = np.linalg.det(aa) > 0
        if not good.any():
            continue
        ai = np.zeros_like(aa)
        ai[good] = np.linalg.inv(aa[good])
        x = np.einsum("fij,fj->fi", ai, bb)
        err = np.sqrt(np.clip(np.diagonal(ai, axis1=1, axis2=2), 0, None))
        resid = flux[:, sl] - np.einsum("fi,fik->fk", x, basis)
        variance = np.where(w > 0, 1.0 / np.where(w > 0, w, 1.0), 0.0) + (0.05 * basis[:, 1]) ** 2
        chi2pdf = np.sum((w > 0) * resid ** 2 / np.where(variance > 0, variance, 1.0), axis=1) / (basis.shape[2] - basis.shape[1])
        ok = good & (chi2pdf < 2)
        for k in range(nt):
            delta[k, :, j] = x[:, 2 + k]
            limit = 0.1 if (adjust_wavelength and k == 0) else 0.3
            ok &= (err[:, 2 + k] > 0) & (err[:, 2 + k] < limit)
        okpk[:, j] = ok
    fibers_ok = np.flatnonzero(okpk.any(axis=1))
    if fibers_ok.size == 0:
        log.warning("sky adjustment: no sky peak measured; model unchanged")
        return model
    adjusted = model.copy()
    allfib = np.arange(model.shape[0])
    for k, template in enumerate(templates):
        per_fiber = np.array([np.interp(wave, wave[peaks[okpk[i]]], delta[k, i, okpk[i]]) for i in fibers_ok])
        src = fit_fibers[fibers_ok]
        field = np.array([np.interp(allfib, src, per_fiber[:, col]) for col in range(wave.size)]).T
        adjusted += field * template
    return adjusted


def throughput_corrections(wave, flux, ivar, model, lines, half_width=4.0):
    """Per-fiber multiplicative sky throughput corrections measured on sky lines (desispec's method).

    For each line, ``flux ≈ a + b · model`` is fitted over ±``half_width`` Å; the scales
    ``b`` of the lines are combined with weights ``1/(var + 0.005²)``, the worst line dropped
    while its chi2 (``0.02²`` floor) exceeds 9 times the median, and the mean kept when its
    error is below 0.1 (else 1).

    Parameters
    ----------
    wave : array, shape (nwave,)
    flux, ivar, model : arrays, shape (nspec, nwave)
        Flat-fielded data, its ivar (0 where masked) and the sky model.
    lines : array
        Sky-line wavelengths, Angstrom.

    Returns
    -------
    ndarray, shape (nspec,)
    """
    nspec = flux.shape[0]
    sums = []
    for line in lines:
        ii = np.flatnonzero(np.abs(wave - line) <= half_width)
        if ii.size < 2:
            continue
        w, f, m = ivar[:, ii], flux[:, ii], model[:, ii]
        sums.append([w.sum(1), (w * f).sum(1), (w * m).sum(1), (w * m * m).sum(1), (w * f * m).sum(1)])
    out = np.ones(nspec)
    if not sums:
        return out
    sw, swf, sws, sws2, swsf = np.array(sums).transpose(1, 2, 0)        # each (nspec, nlines)
    det = sw * sws2 - sws ** 2
    okl = (sw > 0) & (det > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(okl, (sw * swsf - sws * swf) / det, 0.0)
        var = np.where(okl, sw / det, 0.0)
    for f in range(nspec):
        c, v = coef[f][okl[f]], var[f][okl[f]]
        if c.size == 0:
            continue
        wt = (v > 0) / (v + (v == 0) + 0.005 ** 2)
        wo = (v > 0) / (v + (v == 0) + 0.02 ** 2)
        for _ in range(50):
            a = wt.sum()
            if a <= 0:
                break
            mean = np.sum(wt * c) / a
            chi2 = wo * (c - mean) ** 2
            worst = int(np.argmax(chi2))
            if chi2[worst] > 9 * np.median(chi2[chi2 > 0]):
                wt[worst] = wo[worst] = 0.0
            else:
                break
        a = wt.sum()
        if a > 0 and 1.0 / np.sqrt(a) <= 0.1:
            out[f] = np.sum(wt * c) / a
    return out


# ---------------------------------------------------------------------------- API
def _zero_unconstrained(rdata, empty, ivar_fit, nsky):
    """Wavelengths where the sky is not constrained: empty rows widened by the mean resolution twice,
    and fewer than min(10, max(1, nsky//2)) contributing fibers, widened by one pixel."""
    rmean = rdata.mean(axis=0)[None]
    wmask = bandsolve.convolve(rmean, bandsolve.convolve(rmean, empty.astype(float))[0])[0] != 0
    few = (ivar_fit > 0).sum(axis=0) < min(10, max(1, nsky // 2))
    few[1:-1] |= few[2:] | few[:-2]
    return wmask | few


def compute_sky(frame, *, nsig_clip=4.0, max_iterations=100, add_variance=True, adjust_wavelength=False,
                adjust_lsf=False, throughput_correction=True):
    """Uniform sky model of one flat-fielded camera (desispec's compute_uniform_sky, banded solves).

    Parameters
    ----------
    frame : desired.frame.Frame
        Flat-fielded frame (electron/Angstrom) with resolution data and a fibermap
        (sky fibers: OBJTYPE == 'SKY'; masked pixels and bad FIBERSTATUS ignored).
    nsig_clip : float
        Pixel outlier threshold, sigma (fibers: 7 robust sigma of their median residual).
    max_iterations : int
    add_variance : bool
        Add the bright-line systematics term so that the sky fibers' chi2 is 1.
    adjust_wavelength, adjust_lsf : bool
        Fit a small per-fiber wavelength shift / line-width change on bright sky peaks.
    throughput_correction : bool
        Measure per-fiber throughput corrections on sky lines (THRPUTCORR).

    Returns
    -------
    SkyModel
        ``flux`` = R_f S (nspec, nwave), ``ivar`` with systematics, ``stat_ivar``,
        mask BADSKY where the sky is unconstrained and on rejected sky fibers; header
        NSKYFIB, NSKYREJ.

    Raises
    ------
    ValueError
        No resolution data, or no usable sky fiber (the message names the camera).
    """
    name = frame.camera or str(frame.header.get("CAMERA", "?"))
    if frame.resolution_data is None:
        raise ValueError(f"sky {name}: the frame has no resolution data")
    skyf = sky_fibers(frame)
    if skyf.size == 0:
        raise ValueError(f"sky {name}: no sky fiber (fibermap OBJTYPE == 'SKY') in this camera")
    ivar_all = _masked_ivar(frame)
    skyf = skyf[(ivar_all[skyf] > 0).any(axis=1)]
    if skyf.size == 0:
        raise ValueError(f"sky {name}: no usable sky fiber (every sky fiber masked or with a bad FIBERSTATUS)")
    rdata = frame.resolution_data
    flux = np.nan_to_num(frame.flux)
    sky, chol, empty, ivar_fit, bad_fibers, nrej = _fit_sky_spectrum(rdata[skyf], flux[skyf], ivar_all[skyf].copy(),
                                                                      nsig_clip, max_iterations)
    model = bandsolve.convolve(rdata, sky)
    statvar = bandsolve.convolved_variance(rdata, bandsolve.inverse_band(chol))
    if adjust_wavelength or adjust_lsf:
        use = np.flatnonzero(ivar_fit.any(axis=1))
        model = _adjust_lines(frame.wave, model, flux[skyf[use]], ivar_fit[use], skyf[use],
                              adjust_wavelength, adjust_lsf)
    var = statvar.copy()
    if add_variance and skyf.size > 1:
        with np.errstate(divide="ignore"):
            tivar = np.where(ivar_fit > 0, 1.0 / (1.0 / np.where(ivar_fit > 0, ivar_fit, 1.0) + statvar[skyf]), 0.0)
        var += _extra_variance(frame.wave, flux[skyf], tivar, model[skyf], model.mean(axis=0),
                               _peaks(model.mean(axis=0)))[None, :]
    bad = _zero_unconstrained(rdata, empty, ivar_fit, skyf.size)
    with np.errstate(divide="ignore"):
        ivar = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
        stat_ivar = np.where(statvar > 0, 1.0 / np.where(statvar > 0, statvar, 1.0), 0.0)
    model[:, bad] = 0.0
    ivar[:, bad] = 0.0
    stat_ivar[:, bad] = 0.0
    mask = np.where(ivar == 0, specmask.BADSKY, 0).astype(np.int32)
    mask[skyf[np.unique(np.asarray(bad_fibers, dtype=int))]] |= specmask.BADSKY
    thru = None
    if throughput_correction:
        lines = sky_lines(frame.wave, model[skyf].mean(axis=0))
        thru = throughput_corrections(frame.wave, flux, ivar_all * (ivar > 0), model, lines)
    header = dict(frame.header)
    header.update(NSKYFIB=int(skyf.size), NSKYREJ=int(nrej))
    log.info("sky %s: %d sky fibers (%d rejected), %d pixels rejected", name, skyf.size, len(set(bad_fibers)), nrej)
    return SkyModel(frame.wave.copy(), model, ivar, mask=mask, header=header, stat_ivar=stat_ivar,
                    throughput_corrections=thru)


def _line_corrected_sky(wave, sky, camera):
    """Sky flux with the throughput corrections applied to the emission lines only (desispec's default)."""
    flux = sky.flux.copy()
    if sky.throughput_corrections is None or (camera or "")[:1] == "b":
        return flux
    lines = sky_lines(wave, sky.flux.mean(axis=0))
    in_cont = np.ones(wave.size, dtype=bool)
    for line in lines:
        in_cont &= np.abs(wave - line) > 2.0
    if not in_cont.any() or lines.size == 0:
        return flux
    for f in range(flux.shape[0]):
        cont = np.interp(wave, wave[in_cont], sky.flux[f, in_cont])
        excess = np.clip(sky.flux[f] - cont, 0.0, None)
        flux[f] += (sky.throughput_corrections[f] - 1.0) * excess
    return flux


def subtract_sky(frame, sky, *, throughput_correction="lines"):
    """Subtract a sky model (a new Frame; inputs unchanged).

    ``flux' = flux - sky``, ``ivar' = 1/(1/ivar + 1/ivar_sky)`` (0 where either is 0),
    ``mask' = mask | sky.mask``; pixels already masked and fibers with a FIBERSTATUS
    fatal for sky subtraction get ivar 0 (the latter also BADFIBER), as in desispec.

    Parameters
    ----------
    frame : desired.frame.Frame
        Flat-fielded frame.
    sky : SkyModel
        Same fibers and wavelength grid.
    throughput_correction : {'lines', 'all', 'none'}
        Apply the sky's per-fiber throughput corrections to the sky lines only (desispec's
        default; not in b cameras), to the whole sky spectrum, or not at all.

    Raises
    ------
    ValueError
        Different fibers or wavelength grids (the message names the camera).
    """
    name = frame.camera or "?"
    if frame.nspec != sky.nspec or not np.allclose(frame.wave, sky.wave):
        raise ValueError(f"subtract_sky {name}: frame ({frame.nspec} x {frame.nwave}) and sky "
                         f"({sky.nspec} x {sky.nwave}) differ in fibers or wavelength grid")
    if throughput_correction == "lines":
        model = _line_corrected_sky(frame.wave, sky, frame.camera)
    elif throughput_correction == "all" and sky.throughput_corrections is not None:
        model = sky.flux * sky.throughput_corrections[:, None]
    elif throughput_correction in ("all", "none"):
        model = sky.flux
    else:
        raise ValueError(f"throughput_correction must be 'lines', 'all' or 'none', got {throughput_correction!r}")
    mask = frame.mask.copy()
    badfib = _bad_fibers(frame)
    mask[badfib] |= specmask.BADFIBER
    ivar = np.where(frame.mask == 0, frame.ivar, 0.0)
    ivar[badfib] = 0.0
    good = (ivar > 0) & (sky.ivar > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ivar = np.where(good, 1.0 / (1.0 / np.where(good, ivar, 1) + 1.0 / np.where(good, sky.ivar, 1)), 0.0)
    return Frame(frame.wave.copy(), frame.flux - model, ivar, mask | sky.mask,
                 None if frame.resolution_data is None else frame.resolution_data.copy(),
                 frame.fibermap, None if frame.chi2pix is None else frame.chi2pix.copy(),
                 dict(frame.header), frame.fibers.copy(), frame.scores)
