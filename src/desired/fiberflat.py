"""Fiber flats: the container (fiberflat, fiberflatnight, fiberflatexp products) and the
algorithms computing, combining and applying them (desispec.fiberflat's, with banded solves)."""
from __future__ import annotations

import logging

import numpy as np

from . import bandsolve
from .frame import Frame
from .maskbits import fibermask, specmask

log = logging.getLogger(__name__)


class FiberFlat:
    """Relative fiber-to-fiber throughput of one camera versus wavelength.

    Calibrated flux = frame flux / fiberflat.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom (the frame grid).
    fiberflat : array, shape (nspec, nwave)
        Dimensionless flat correction, about 1.
    ivar : array, shape (nspec, nwave)
        Inverse variance of ``fiberflat``.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    meanspec : array, shape (nwave,), optional
        Mean (deconvolved) lamp spectrum in electron/Angstrom; ones when omitted.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, CHI2PDF, ...).
    fibermap : astropy.table.Table, optional
    fibers : array of int, shape (nspec,), optional
        Fiber numbers; from ``fibermap['FIBER']`` or ``header['FIBERMIN']`` when omitted.
    """

    def __init__(self, wave, fiberflat, ivar, mask=None, meanspec=None, header=None, fibermap=None, fibers=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.fiberflat = np.asarray(fiberflat, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.fiberflat.ndim != 2 or self.fiberflat.shape[1] != self.wave.size or self.ivar.shape != self.fiberflat.shape:
            raise ValueError(f"fiberflat/ivar must have shape (nspec, {self.wave.size}); "
                             f"got {self.fiberflat.shape}, {self.ivar.shape}")
        self.nspec, self.nwave = self.fiberflat.shape
        self.mask = np.zeros(self.fiberflat.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.fiberflat.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from {self.fiberflat.shape}")
        self.meanspec = np.ones(self.nwave) if meanspec is None else np.asarray(meanspec, dtype=np.float64)
        if self.meanspec.shape != (self.nwave,):
            raise ValueError(f"meanspec must have shape ({self.nwave},); got {self.meanspec.shape}")
        self.header = dict(header) if header is not None else {}
        self.fibermap = fibermap
        if fibers is None:
            if fibermap is not None and "FIBER" in fibermap.colnames:
                fibers = np.asarray(fibermap["FIBER"])
            else:
                fibers = int(self.header.get("FIBERMIN", 0)) + np.arange(self.nspec)
        self.fibers = np.asarray(fibers, dtype=np.int64)


# ---------------------------------------------------------------------------- algorithms

#: FIBERSTATUS bits that exclude a fiber from the flat fit (desispec's 'flat' selection)
FLAT_BAD_FIBERSTATUS = fibermask.mask("BROKENFIBER", "BADFIBER", "BADTRACE", "BADARC", "MANYBADCOL",
                                      "MANYREJECTED")


def fiberstatus_bad(frame, bits):
    """Boolean per spectrum: FIBERSTATUS of the frame's fibermap has any of ``bits`` (False without one)."""
    fm = frame.fibermap
    if fm is None or "FIBERSTATUS" not in fm.colnames:
        return np.zeros(frame.nspec, dtype=bool)
    return (np.asarray(fm["FIBERSTATUS"]).astype(np.int64) & int(bits)) != 0


def _masked_median(values, good, default):
    """Median over axis 0 of ``values`` where ``good``; ``default`` where no row is good."""
    srt = np.sort(np.where(good, values, np.inf), axis=0)
    count = good.sum(axis=0)
    lo = np.clip((count - 1) // 2, 0, None)[None]
    hi = np.clip(count // 2, 0, values.shape[0] - 1)[None]
    with np.errstate(invalid="ignore"):
        med = 0.5 * (np.take_along_axis(srt, lo, axis=0)[0] + np.take_along_axis(srt, hi, axis=0)[0])
    return np.where(count > 0, med, default)


def _reject_range(flux, ivar, minval, maxval, max_bad, max_iterations):
    """Pass 0: mask pixels outside [minval, maxval] x the median spectrum; kill fibers with >= max_bad."""
    nbad = np.zeros(flux.shape[0], dtype=np.int64)
    low = np.zeros(flux.shape[0], dtype=bool)
    for _ in range(max_iterations):
        mean = _masked_median(flux, ivar > 0, 0.0)
        lo = (flux < minval * mean[None, :]) & (ivar > 0)
        bad = (lo | (flux > maxval * mean[None, :])) & (ivar > 0)
        if not bad.any():
            break
        ivar[bad] = 0.0
        nbad += bad.sum(axis=1)
        low |= lo.sum(axis=1) >= max_bad
        dead = nbad >= max_bad
        ivar[dead] = 0.0
    return ivar, low


def _clip(chi2, ivar, nsig, max_per_fiber):
    """Zero ivar of the (at most ``max_per_fiber`` worst) pixels of each fiber with chi2 > nsig^2."""
    over = chi2 > nsig ** 2
    if not over.any():
        return 0
    if max_per_fiber is not None:
        order = np.argsort(-np.where(over, chi2, -1.0), axis=1)[:, :max_per_fiber]
        keep = np.zeros_like(over)
        np.put_along_axis(keep, order, True, axis=1)
        over &= keep
    ivar[over] = 0.0
    return int(over.sum())


def _normalise(flat, good):
    """Divide by the median over good fibers at each wavelength."""
    med = _masked_median(flat, good, 1.0)
    med[med == 0] = 1.0
    return flat / med[None, :]


def _fit_mean_spectrum(frame, flux, ivar, smooth, nsig, accuracy, max_iterations, spacing):
    """Pass 2: alternate the deconvolved mean spectrum and each fiber's smooth flat until stable."""
    previous, previous_diff = np.zeros_like(smooth), 0.0
    chi2pdf, mean_spectrum, model = 0.0, np.zeros(frame.nwave), np.zeros_like(flux)
    for it in range(max_iterations):
        ab, rhs = bandsolve.normal_equations(frame.resolution_data, ivar * smooth ** 2,
                                             np.where(smooth > 0, flux / np.where(smooth > 0, smooth, 1), 0))
        chol, empty = bandsolve.cholesky_band(ab)
        mean_spectrum = bandsolve.solve_band(chol, rhs)
        mean_spectrum[empty] = 0.0
        model = bandsolve.convolve(frame.resolution_data, mean_spectrum)
        ok = (model != 0) & (ivar > 0)
        safe = np.where(ok, model, 1.0)
        smooth, fitted = bandsolve.smooth_splines(frame.wave, np.where(ok, flux / safe, 0), ivar * model ** 2 * ok,
                                                  spacing)
        ivar[~fitted] = 0.0
        smooth[~fitted] = 1.0
        chi2 = ivar * (flux - smooth * model) ** 2
        nrej = _clip(chi2, ivar, nsig, 5)
        smooth = _normalise(smooth, ivar > 0)
        ndf = int((ivar > 0).sum() - frame.nwave - frame.nspec * (np.ptp(frame.wave) / spacing))
        chi2pdf = float(chi2[ivar > 0].sum() / ndf) if ndf > 0 else 0.0
        max_diff = float(np.max(np.abs(smooth - previous) * (ivar > 0)))
        previous = smooth
        log.debug("fiberflat iteration %d: max change %.2e, %d pixels rejected, chi2pdf %.3f",
                  it, max_diff, nrej, chi2pdf)
        if nrej == 0 and (max_diff < accuracy or abs(max_diff - previous_diff) < 0.1 * accuracy):
            break
        previous_diff = max_diff
    return mean_spectrum, model, chi2pdf


def _final_flat(frame, flux, ivar0, model, fitted_ivar, nsig, spacing, minval, maxval):
    """Pass 3: native-resolution flat data/(R M), outliers against its smooth version, gaps filled."""
    ok = (model != 0) & (ivar0 > 0)
    flat = np.where(ok, flux / np.where(ok, model, 1.0), 1.0)
    fivar = np.where(ok, ivar0 * model ** 2, 0.0)
    fivar[fitted_ivar.sum(axis=1) == 0] = 0.0      # fibers dropped by the fit stay dropped
    mask = np.zeros(flat.shape, dtype=np.int32)
    smooth = np.ones_like(flat)
    for _ in range(20):
        smooth, fitted = bandsolve.smooth_splines(frame.wave, flat, fivar, spacing)
        fivar[~fitted] = 0.0
        chi2 = fivar * (flat - smooth) ** 2
        bad = chi2 > nsig ** 2
        if not bad.any():
            break
        mask[bad] |= specmask.BADFIBERFLAT
        fivar[bad] = 0.0
    bad = (fivar == 0) | (flat < minval) | (flat > maxval)
    fivar[bad] = 0.0
    live = fivar.sum(axis=1) > 0
    flat = np.where(bad & live[:, None], smooth, flat)        # interpolate over bad pixels of live fibers
    flat[~live] = 1.0
    return flat, fivar, mask


def compute_fiberflat(frame, *, nsig_clip=10.0, accuracy=5e-4, minval=0.1, maxval=10.0, max_iterations=15,
                      smoothing_res=5.0, max_bad=100, sys_error=0.0035):
    """Fiber flat of one camera from a continuum-lamp frame (desispec's algorithm, banded solves).

    A deconvolved mean lamp spectrum ``M`` is fitted through every fiber's resolution
    (``flux_f ≈ F_f · R_f M`` with ``F_f`` a smooth spline per fiber, alternated until
    stable, pixel outliers clipped); the flat is then ``flux_f / (R_f M)`` at native
    resolution, outliers against its smooth version masked and interpolated, and
    normalised to a median of 1 over fibers at each wavelength.

    Parameters
    ----------
    frame : desired.frame.Frame
        Flat-lamp frame (electron/Angstrom) with resolution data; pixels with a mask or
        fibers with a flat-fatal FIBERSTATUS bit are ignored.
    nsig_clip : float
        Outlier threshold in sigma.
    accuracy : float
        Convergence on the largest change of the smooth flat between iterations.
    minval, maxval : float
        Pixels below/above these times the median spectrum (and final flats outside
        this range) are rejected.
    max_iterations : int
    smoothing_res : float
        Spline knot spacing, Angstrom.
    max_bad : int
        A fiber with this many rejected pixels is dropped (masked BADFIBERFLAT).
    sys_error : float
        Systematic flat error added in quadrature to the ivar (desispec's 0.0035).

    Returns
    -------
    FiberFlat
        ``fiberflat``/``ivar``/``mask`` (nspec, nwave); ``meanspec`` the deconvolved lamp
        spectrum; header with CHI2PDF.  Dropped fibers: flat 1, ivar 0, BADFIBERFLAT
        (plus LOWFLAT when the fiber had no light).

    Raises
    ------
    ValueError
        If the frame has no resolution data or no usable pixel.
    """
    name = frame.camera or "?"
    if frame.resolution_data is None:
        raise ValueError(f"fiberflat {name}: the frame has no resolution data")
    flux = np.nan_to_num(frame.flux)
    ivar = np.where((frame.mask == 0) & np.isfinite(frame.flux) & (frame.ivar > 0), frame.ivar, 0.0)
    ivar[fiberstatus_bad(frame, FLAT_BAD_FIBERSTATUS)] = 0.0
    if not (ivar > 0).any():
        raise ValueError(f"fiberflat {name}: no usable pixel in the flat frame")
    ivar0 = ivar.copy()
    ivar, low = _reject_range(flux, ivar, minval, maxval, max_bad, max_iterations)
    # pass 1: smooth flat against the median spectrum, with clipping
    smooth = np.ones_like(flux)
    for _ in range(max_iterations):
        mean = _masked_median(flux, ivar > 0, 0.0)
        ok = (mean[None, :] != 0) & (ivar > 0)
        smooth, fitted = bandsolve.smooth_splines(frame.wave, np.where(ok, flux / np.where(mean != 0, mean, 1), 0),
                                                  ivar * mean[None, :] ** 2 * ok, smoothing_res)
        ivar[~fitted] = 0.0
        smooth[~fitted] = 1.0
        if _clip(ivar * (flux - mean * smooth) ** 2, ivar, nsig_clip, 5) == 0:
            break
    dead = (ivar > 0).sum(axis=1) == 0
    smooth = _normalise(smooth, ivar > 0)
    meanspec, model, chi2pdf = _fit_mean_spectrum(frame, flux, ivar, smooth, nsig_clip, accuracy,
                                                  max_iterations, smoothing_res)
    # pass 3 restarts from the input ivar (pixels clipped so far may be good at native resolution)
    # but keeps the fibers dropped above
    ivar0[dead | ((ivar > 0).sum(axis=1) == 0)] = 0.0
    flat, fivar, mask = _final_flat(frame, flux, ivar0, model, ivar, nsig_clip, smoothing_res, minval, maxval)
    good = fivar > 0
    med = _masked_median(flat, good, 1.0)
    med[med <= 0] = 1.0
    flat /= med[None, :]
    fivar = fivar * med[None, :] ** 2
    fivar = np.where(fivar > 0, 1.0 / (1.0 / np.where(fivar > 0, fivar, 1.0) + sys_error ** 2), 0.0)
    mask[fivar == 0] |= specmask.BADFIBERFLAT
    mask[low] |= specmask.LOWFLAT
    header = dict(frame.header)
    header["CHI2PDF"] = chi2pdf
    ndead = int((fivar.sum(axis=1) == 0).sum())
    log.info("fiberflat %s: %d fibers, %d dropped, chi2pdf %.3f", name, frame.nspec, ndead, chi2pdf)
    return FiberFlat(frame.wave.copy(), flat, fivar, mask=mask, meanspec=meanspec * med, header=header,
                     fibermap=frame.fibermap, fibers=frame.fibers.copy())


def apply_fiberflat(frame, fiberflat):
    """Divide a frame by a fiber flat (a new Frame; inputs unchanged).

    ``flux' = flux / C`` where ``C > 0`` and
    ``ivar' = [ivar>0][ivarC>0][C>0] / (1/(ivar C²) + flux²/(ivarC C⁴))`` (desispec's
    propagation); BADFIBERFLAT is set where ``C == 0``, ``ivarC == 0`` or the flat mask is set.

    Parameters
    ----------
    frame : desired.frame.Frame
    fiberflat : FiberFlat
        Same wavelength grid and number of spectra.

    Raises
    ------
    ValueError
        Different wavelength grids or numbers of spectra (the message names the camera).
    """
    name = frame.camera or "?"
    if frame.nspec != fiberflat.nspec or not np.allclose(frame.wave, fiberflat.wave):
        raise ValueError(f"apply_fiberflat {name}: frame ({frame.nspec} x {frame.nwave}) and fiberflat "
                         f"({fiberflat.nspec} x {fiberflat.nwave}) differ in fibers or wavelength grid")
    c, civar = fiberflat.fiberflat, fiberflat.ivar
    pos = c > 0
    good = (frame.ivar > 0) & (civar > 0) & pos
    with np.errstate(divide="ignore", invalid="ignore"):
        var = 1.0 / (frame.ivar * c ** 2) + frame.flux ** 2 / (civar * c ** 4)
        ivar = np.where(good, 1.0 / var, 0.0)
        flux = np.where(pos, frame.flux / np.where(pos, c, 1.0), frame.flux)
    mask = frame.mask.copy()
    mask[(c == 0) | (civar == 0) | (fiberflat.mask != 0)] |= specmask.BADFIBERFLAT
    return Frame(frame.wave.copy(), flux, ivar, mask,
                 None if frame.resolution_data is None else frame.resolution_data.copy(),
                 frame.fibermap, None if frame.chi2pix is None else frame.chi2pix.copy(),
                 dict(frame.header), frame.fibers.copy(), frame.scores)


def _reject_outlier_flats(vals, ivar, good, nsig):
    """Reject whole fibers of a flat whose median offset from the flats' median is an outlier, then pixels.

    Parameters
    ----------
    vals, ivar, good : arrays, shape (nflat, nspec, nwave)

    Returns
    -------
    good : ndarray of bool, same shape
    """
    med = _masked_median(vals, good, 1.0)
    diff = vals - med[None]
    var = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
    offset = _masked_median(np.moveaxis(diff, 2, 0), np.moveaxis(good, 2, 0), 0.0)      # (nflat, nspec)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = 1.2533 * np.sqrt(np.where(good, var, 0.0).sum(axis=2)) / np.maximum(good.sum(axis=2), 1)
    live = good.any(axis=2)
    spread = 1.4826 * np.median(np.abs(offset[live] - np.median(offset[live]))) if live.any() else 0.0
    out = live & (np.abs(offset) > nsig * np.sqrt(err ** 2 + spread ** 2))
    good = good & ~out[:, :, None]
    if out.any():
        log.warning("fiberflatnight: %d (flat, fiber) pairs rejected as outliers", int(out.sum()))
    med = _masked_median(vals, good, 1.0)
    mad = 1.4826 * _masked_median(np.abs(vals - med[None]), good, 0.0)
    sigma = np.sqrt(var + mad[None] ** 2)
    return good & (np.abs(vals - med[None]) <= nsig * sigma)


def average_fiberflats(fiberflats, *, nsig=4.0):
    """Robust combination of several fiber flats of one camera (fiberflatnight).

    With 3 flats or more, each flat's fibers are compared with the flats' median:
    a fiber whose median offset exceeds ``nsig`` times (its statistical error
    combined with the robust spread of all offsets) is rejected in that flat, then
    pixels further than ``nsig`` sigma (their own error combined with 1.4826 MAD of
    the flats at that pixel) from the median.  The survivors are averaged with
    inverse-variance weights.  With fewer than 3 flats nothing is rejected.  The result is
    renormalised to a median of 1 over fibers at each wavelength.

    Parameters
    ----------
    fiberflats : list of FiberFlat
        Same camera, wavelength grid and fibers.
    nsig : float

    Returns
    -------
    FiberFlat
        Header of the first flat plus NFLATS; mask: BADFIBERFLAT where no flat is usable.

    Raises
    ------
    ValueError
        Empty list or inconsistent flats.
    """
    if not fiberflats:
        raise ValueError("average_fiberflats: no fiber flat to combine")
    first = fiberflats[0]
    for ff in fiberflats[1:]:
        if ff.fiberflat.shape != first.fiberflat.shape or not np.allclose(ff.wave, first.wave):
            raise ValueError(f"average_fiberflats: flats differ in shape {ff.fiberflat.shape} vs "
                             f"{first.fiberflat.shape} or wavelength grid")
    vals = np.array([ff.fiberflat for ff in fiberflats])
    ivar = np.array([np.where(ff.mask == 0, ff.ivar, 0.0) for ff in fiberflats])
    good = ivar > 0
    if len(fiberflats) >= 3:
        good = _reject_outlier_flats(vals, ivar, good, nsig)
    w = np.where(good, ivar, 0.0)
    sw = w.sum(axis=0)
    flat = np.where(sw > 0, (w * vals).sum(axis=0) / np.where(sw > 0, sw, 1.0), 1.0)
    norm = _masked_median(flat, sw > 0, 1.0)
    norm[norm <= 0] = 1.0
    flat /= norm[None, :]
    sw = sw * norm[None, :] ** 2
    mask = np.where(sw > 0, 0, specmask.BADFIBERFLAT).astype(np.int32)
    for ff in fiberflats:
        mask[sw == 0] |= ff.mask[sw == 0]
    wm = np.array([g.sum(axis=0) for g in good]).astype(float)
    meanspec = (wm * np.array([ff.meanspec for ff in fiberflats])).sum(axis=0) / np.maximum(wm.sum(axis=0), 1)
    header = dict(first.header)
    header["NFLATS"] = len(fiberflats)
    log.info("fiberflatnight: combined %d flats, %d pixels rejected", len(fiberflats), int((~good & (ivar > 0)).sum()))
    return FiberFlat(first.wave.copy(), flat, sw, mask=mask, meanspec=meanspec, header=header,
                     fibermap=first.fibermap, fibers=first.fibers.copy())
