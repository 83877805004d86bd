"""The flux-calibration container (fluxcalib product)."""
from __future__ import annotations

import numpy as np

from .resolution import apply_resolution


class FluxCalib:
    """Flux calibration vector of every fiber of one camera.

    Calibrated flux = frame flux (electron/Angstrom) / ``calib``.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom.
    calib : array, shape (nspec, nwave)
        Calibration in (electron/Angstrom) per (1e-17 erg/s/cm2/Angstrom).
    ivar : array, shape (nspec, nwave)
        Inverse variance of ``calib``; must be finite and >= 0.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, ...).
    fibercorr : astropy.table.Table, optional
        Per-fiber corrections (FLAT_TO_PSF_FLUX, PSF_TO_FIBER_FLUX), one row per fiber.
    stdstar_fibermap : astropy.table.Table, optional
        Fibermap rows of the standard stars used.
    extinction : array, shape (nwave,), optional
        Atmospheric extinction k(λ) in magnitudes per airmass included in ``calib`` at the
        header's AIRMASS (nominal calibrations of the calibration tree): the calibration at
        airmass X is ``calib × 10^(-0.4 k (X - AIRMASS))`` (:func:`nominal_calibration`).
    """

    def __init__(self, wave, calib, ivar, mask=None, header=None, fibercorr=None, stdstar_fibermap=None,
                 extinction=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.calib = np.asarray(calib, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.calib.ndim != 2 or self.calib.shape[1] != self.wave.size or self.ivar.shape != self.calib.shape:
            raise ValueError(f"calib/ivar must have shape (nspec, {self.wave.size}); got {self.calib.shape}, {self.ivar.shape}")
        if not np.all(np.isfinite(self.ivar)) or np.any(self.ivar < 0):
            raise ValueError("fluxcalib ivar must be finite and >= 0")
        self.nspec, self.nwave = self.calib.shape
        self.mask = np.zeros(self.calib.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.calib.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from {self.calib.shape}")
        self.header = dict(header) if header is not None else {}
        self.fibercorr = fibercorr
        self.stdstar_fibermap = stdstar_fibermap
        self.extinction = None if extinction is None else np.asarray(extinction, dtype=np.float64)
        if self.extinction is not None and self.extinction.shape != self.wave.shape:
            raise ValueError(f"extinction must have shape ({self.wave.size},); got {self.extinction.shape}")


# --------------------------------------------------------------------------- measurement
#: rest-frame vacuum wavelengths (Å) and half-widths of stellar absorption features left out of the fit
STELLAR_LINES = ([(911.7633 / (0.25 - 1.0 / n ** 2), 40.0 if n <= 6 else 15.0) for n in range(3, 21)]
                 + [(911.7633 / (1.0 / 9 - 1.0 / n ** 2), 10.0) for n in range(9, 21)]
                 + [(3934.78, 20.0), (3969.59, 20.0), (4227.92, 8.0), (4305.6, 12.0), (5176.7, 15.0),
                    (5891.58, 8.0), (5897.56, 8.0), (8500.36, 12.0), (8544.44, 12.0), (8664.52, 12.0)])

#: header value of CALMODE for each way the calibration was obtained
CALMODES = ("STDSTARS", "NOMINAL_SCALED", "NOMINAL")

#: Telluric absorption bands (Å) where the calibration spline gets fine knots: the O2 γ, B and A
#: bands and the H2O bands at 7150-7400, 8100-8400 and 8900-9900 Å.  Limits: where the transmission
#: of DESI's KPNO zenith extinction spectrum (``ZenExtinct-KPNO.fits``, measured, 0.1 Å sampling),
#: relative to its smooth continuum and averaged over 2 Å (DESI's resolution), drops more than 3 % at
#: one airmass (deepest: A band 40 %, 8900-9900 Å water 19 % transmitted), widened by ~5 Å.  Their
#: depth changes with airmass and water vapour from one exposure to the next, so the per-exposure
#: calibration has to carry them (desispec solves its calibration pixel by pixel for the same
#: reason); a 10 Å spline misses them by up to 10-15 % per pixel.
TELLURIC_BANDS = ((6270.0, 6395.0), (6860.0, 7085.0), (7140.0, 7400.0), (7588.0, 7710.0), (8080.0, 8415.0),
                  (8910.0, 9880.0))


def calibration_knots(wave, knot_spacing, telluric_spacing=None, bands=TELLURIC_BANDS):
    """Inner knots (Å) of the calibration spline over ``wave``.

    Knots every ``knot_spacing`` Å, and every ``telluric_spacing`` Å inside the telluric
    ``bands`` (none when ``telluric_spacing`` is None or 0); coarse knots within one fine
    spacing of a band are dropped.

    Returns
    -------
    ndarray, shape (nknot,)
        Increasing, from ``wave[0]`` to ``wave[-1]``.
    """
    lo, hi = float(wave[0]), float(wave[-1])
    knots = np.linspace(lo, hi, max(int(np.ceil((hi - lo) / knot_spacing)), 1) + 1)
    if not telluric_spacing:
        return knots
    for a, b in bands:
        a, b = max(a, lo), min(b, hi)
        if b - a < 2 * telluric_spacing:
            continue
        fine = np.linspace(a, b, int(np.ceil((b - a) / telluric_spacing)) + 1)
        keep = (knots < a - telluric_spacing) | (knots > b + telluric_spacing)
        knots = np.union1d(knots[keep], fine)
    return knots


def _knot_scale(knots):
    """Mean knot interval over each cubic B-spline's support, relative to the largest: shape (nknot + 2,)."""
    full = np.concatenate([[knots[0]] * 3, knots, [knots[-1]] * 3])
    widths = np.diff(full)
    h = np.array([np.mean([w for w in widths[j:j + 4] if w > 0]) for j in range(full.size - 4)])
    return h / h.max()


def in_telluric_bands(wave, bands=TELLURIC_BANDS):
    """True where ``wave`` (Å) is inside one of the telluric ``bands``."""
    wave = np.asarray(wave, dtype=np.float64)
    inside = np.zeros(wave.shape, dtype=bool)
    for a, b in bands:
        inside |= (wave > a) & (wave < b)
    return inside


def resolve_telluric_bands(wave, data, ivar, models, rdata, scale, smooth, smooth_ivar, knots, penalty, width=5):
    """The calibration with the telluric bands resolved where the standards detect them.

    The exposure's O2 and H2O absorption is part of its calibration, with structure at the
    resolution scale that a 10 Å spline cannot follow.  A second fit through the stars'
    resolution with fine ``knots`` in the bands (:func:`calibration_knots`) is blended into
    the smooth one, pixel by pixel inside :data:`TELLURIC_BANDS`, with the Wiener weight
    ``w = max(0, 1 − σ² / <d²>)``: ``d`` the fine minus the smooth calibration (its power
    ``<d²>`` a running mean over ``width`` pixels), ``σ²`` the fine fit's variance at the pixel.  A band the standards
    detect above their noise (a deep O2 band, a humid night, many bright stars) is followed; one
    they do not is left smooth rather than filled with their noise.

    Parameters
    ----------
    wave : array (nwave,)
    data, ivar, models : arrays (nstar, nwave)
        Star spectra (electrons/Å), ivar (0 for unused pixels and clipped stars), models times
        the shape prior (pixel-averaged, not convolved).
    rdata : array (nstar, ndiag, nwave)
    scale : array (nstar,)
        Per-star scales of the smooth fit.
    smooth, smooth_ivar : arrays (nwave,)
        The smooth calibration and its per-pixel ivar.
    knots : array
        Inner knots of the fine fit, Å.
    penalty : float
    width : int
        Pixels of the running means.

    Returns
    -------
    calib, calib_ivar, w : ndarrays (nwave,)
    """
    from scipy.ndimage import uniform_filter1d
    fine, weight = deconvolved_calibration(wave, data, ivar, models, rdata, scale, knots, penalty)
    interval = np.diff(knots)[np.clip(np.searchsorted(knots, wave) - 1, 0, knots.size - 2)]
    fine_ivar = weight * interval / float(np.median(np.diff(wave)))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(fine_ivar > 0, 1.0 / fine_ivar, 0.0)
        svar = np.where(smooth_ivar > 0, 1.0 / smooth_ivar, 0.0)
        d2 = uniform_filter1d((fine - smooth) ** 2, width, mode="nearest")
        w = np.where(d2 > 0, np.clip(1.0 - var / d2, 0.0, 1.0), 0.0)
    w = np.where(in_telluric_bands(wave) & (fine_ivar > 0), w, 0.0)
    total_var = w ** 2 * var + (1.0 - w) ** 2 * svar
    with np.errstate(divide="ignore"):
        ivar_out = np.where(total_var > 0, 1.0 / np.where(total_var > 0, total_var, 1.0), 0.0)
    return smooth + w * (fine - smooth), ivar_out, w


def _line_mask(wave, redshift):
    """True where a pixel is within a stellar absorption feature of a star at ``redshift``."""
    bad = np.zeros(wave.shape, dtype=bool)
    for w0, hw in STELLAR_LINES:
        bad |= np.abs(wave - w0 * (1 + redshift)) < hw
    return bad


#: how much stiffer the spline's curvature penalty is where the data leave its coefficients
#: unconstrained (masked stellar-line gaps, the low-throughput ends): see :func:`curvature_penalty`
GAP_STIFFNESS = 100.0


def curvature_penalty(normal, penalty, gap_stiffness=GAP_STIFFNESS, scale=None):
    """Second-difference penalty matrix of a P-spline, stiffer where the data constrain little.

    Row k (coefficients k, k+1, k+2) is weighted ``penalty × mean(diag N) × (1 + gap_stiffness ×
    g_k)`` with ``g_k = 1 − min(1, N_{k+1,k+1} / median(diag N))`` (0 where the central
    coefficient is as constrained as a typical one, 1 where no pixel constrains it).  With
    non-uniform knots (``scale`` s: each coefficient's knot interval relative to the coarse one,
    :func:`_knot_scale`) the data weight N is compared per unit of knot interval, so that a
    fine-knot coefficient is not taken for a gap, and the row weight is scaled by s²: relative
    to its data (∝ s) a fine coefficient's penalty is s times a coarse one's, so that in the
    telluric bands the fit can follow features at the resolution scale (desispec solves its
    calibration pixel by pixel with a weak prior only); :func:`resolve_telluric_bands` decides
    where the stars' noise allows it.  A uniform
    penalty lets the spline bridge a fully masked gap (the merging Balmer series, 3670-3800 Å)
    with the slopes of the few unmasked pixels at its edges: with the stars' true spectra as
    models the b calibration bulged by +9 % there.  The correction it fits to the nominal
    shape is smooth (atmosphere, fiber losses), so where the data say little the spline is
    kept close to a straight line; where they constrain it the penalty is unchanged.

    Parameters
    ----------
    normal : sparse matrix (nb, nb)
        Normal matrix BᵀWB of the fit.
    penalty : float
        Penalty relative to the mean data weight per coefficient.
    gap_stiffness : float
    scale : array (nb,), optional
        Knot interval of each coefficient relative to the coarse one (ones: uniform knots).

    Returns
    -------
    scipy.sparse matrix (nb, nb)
    """
    import scipy.sparse as sp
    diag = np.asarray(normal.diagonal(), dtype=np.float64)
    nb = diag.size
    scale = np.ones(nb) if scale is None else np.asarray(scale, dtype=np.float64)
    density = diag / scale                       # data weight per coarse knot interval
    diff = sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(nb - 2, nb))
    ref = np.median(density[density > 0]) if np.any(density > 0) else 1.0
    gap = 1.0 - np.minimum(1.0, density[1:-1] / ref)
    rows = penalty * max(float(density.mean()), 1e-300) * scale[1:-1] ** 2 * (1.0 + gap_stiffness * gap)
    return diff.T @ sp.diags(rows) @ diff


def smooth_calibration(wave, values, weights, knots, penalty):
    """Penalised cubic B-spline (P-spline) fit of a calibration sampled with ``weights``.

    Inner ``knots`` (Å, :func:`calibration_knots`); a second-difference penalty ``penalty × mean(diag(BᵀWB))``
    on the coefficients, stiffer where the data constrain little (:func:`curvature_penalty`),
    bridges masked gaps (stellar lines) smoothly.

    Returns
    -------
    ndarray (nwave,)
        The fit (zeros when no pixel has weight); masked gaps and the ends are bridged
        by the curvature penalty (linear continuation).
    """
    from scipy.sparse.linalg import spsolve
    basis = _spline_design(wave, knots)
    wb = basis.multiply(weights[:, None]).tocsr()
    normal = (basis.T @ wb).tocsc()
    coef = spsolve((normal + curvature_penalty(normal, penalty, scale=_knot_scale(knots))).tocsc(), wb.T @ values)
    return basis @ coef if np.any(weights > 0) else np.zeros(wave.size)


def _spline_design(wave, knots):
    """Cubic B-spline design matrix (sparse csr, nwave x (nknot + 2)) on inner ``knots`` (Å)."""
    from scipy.interpolate import BSpline
    full = np.concatenate([[knots[0]] * 3, knots, [knots[-1]] * 3])
    return BSpline.design_matrix(wave, full, 3).tocsr()


def deconvolved_calibration(wave, data, ivar, models, rdata, scale, knots, penalty):
    """Calibration C(λ) (P-spline) solving ``data_i ≈ s_i R_i (model_i · C)`` for all stars at once.

    The calibration is fitted *through* each star's resolution, so that sharp
    features of the throughput (dichroic edges, telluric bands) are not smoothed
    twice when the calibration is later convolved with each fiber's resolution.

    Parameters
    ----------
    wave : array (nwave,)
    data, ivar, models : arrays (nstar, nwave)
        Star spectra (electrons), their ivar (0 for unused pixels), models (pixel-averaged, not convolved).
    rdata : array (nstar, ndiag, nwave)
        Resolution diagonals of the stars.
    scale : array (nstar,)
    knots : array (nknot,)
        Inner knots, Å (:func:`calibration_knots`).
    penalty : float
        As :func:`smooth_calibration`.

    Returns
    -------
    calib, weight : ndarrays (nwave,)
        The calibration and the per-pixel ivar of a direct ratio estimate (for the calibration ivar).
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    from .resolution import Resolution
    basis = _spline_design(wave, knots)
    nb = basis.shape[1]
    normal = sp.csr_matrix((nb, nb))
    rhs = np.zeros(nb)
    for i in range(data.shape[0]):
        if not np.any(ivar[i] > 0):
            continue
        design = Resolution(rdata[i]).to_sparse() @ sp.diags(models[i] * scale[i]) @ basis
        weighted = sp.diags(ivar[i]) @ design
        normal = normal + design.T @ weighted
        rhs += weighted.T @ data[i]
    if not np.any(rhs):
        return np.zeros(wave.size), np.zeros(wave.size)
    coef = spsolve((normal + curvature_penalty(normal, penalty, scale=_knot_scale(knots))).tocsc(), rhs)
    weight = np.sum(ivar * (models * scale[:, None]) ** 2, axis=0)
    return basis @ coef, weight


def star_models_on_frame(frame, stdstars):
    """The stdstars models of the stars in ``frame``, resampled on its grid (not yet convolved).

    Returns
    -------
    rows : ndarray of int, shape (nstar,)
        Frame rows of the stars (stars not in the frame are dropped).
    models : ndarray, shape (nstar, nwave)
        Pixel-averaged models in 1e-17 erg/s/cm²/Å; ``apply_resolution(frame.resolution_data[rows],
        models)`` convolves them with each star's resolution.
    keep : ndarray of int
        Indices into ``stdstars`` of the stars kept.
    """
    from .stdstars import resample_spectra
    rows, keep = [], []
    for k, fiber in enumerate(stdstars.fibers):
        idx = np.flatnonzero(frame.fibers == fiber)
        if idx.size:
            rows.append(int(idx[0]))
            keep.append(k)
    rows, keep = np.array(rows, dtype=int), np.array(keep, dtype=int)
    if not rows.size:
        return rows, np.zeros((0, frame.nwave)), keep
    return rows, resample_spectra(stdstars.wave, stdstars.flux[keep], frame.wave), keep


def _model_error_ivar(data, ivar, pred, good, bins, nbin):
    """ivar including each star's model error: the star-to-star scatter of data/prediction in wavelength bins.

    In every bin the scatter of the stars' ratios to their prediction beyond their photon noise
    (robust: ``(1.4826 median|r|)^2 - median noise^2``) is the variance of the models'
    errors, which do not average down within a star: it is added to every pixel as
    ``npix_bin σ_e² pred²``, so that a bright star weighs at most ``1/σ_e²`` per bin and the
    calibration averages the model errors of many stars instead of following the brightest.

    Returns
    -------
    ivar_eff : ndarray, shape of ``ivar``
    sigma_e : ndarray (nbin,)
    """
    num = np.array([np.bincount(bins, weights=ivar[i] * pred[i] * data[i], minlength=nbin) for i in range(len(data))])
    den = np.array([np.bincount(bins, weights=ivar[i] * pred[i] ** 2, minlength=nbin) for i in range(len(data))])
    npix = np.bincount(bins, minlength=nbin).astype(float)
    sigma_e = np.zeros(nbin)
    for k in range(nbin):
        ok = good & (den[:, k] > 0)
        if ok.sum() < 3:
            continue
        r = num[ok, k] / den[ok, k] - 1.0
        total = (1.4826 * np.median(np.abs(r - np.median(r)))) ** 2
        sigma_e[k] = np.sqrt(max(total - np.median(1.0 / den[ok, k]), 0.0))
    extra = npix[bins] * sigma_e[bins] ** 2 * pred ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        ivar_eff = np.where(ivar > 0, ivar / (1.0 + ivar * extra), 0.0)
    return ivar_eff, sigma_e


def _fit_calibration(wave, data, ivar, models, knots, penalty, max_scale_dev, max_shape_rms, nsig, niter,
                     unconvolved=None, rdata=None, model_error=True):
    """Smooth calibration C(λ) and per-star scales ``s`` with ``data_i ≈ s_i R_i (model_i C)``, outliers clipped.

    With ``unconvolved`` models and the stars' ``rdata`` the calibration is fitted through
    the resolution (:func:`deconvolved_calibration`); otherwise ``R_i (model_i C)`` is
    approximated by ``C R_i·model_i`` (``models`` convolved).

    Returns
    -------
    calib, weight : ndarrays (nwave,)
        Calibration and the ivar of its raw per-pixel estimate.
    scale : ndarray (nstar,)
    good : ndarray of bool (nstar,)
    shape_rms : ndarray (nstar,)
        rms over 100 Å bins of each star's ratio to the calibration.
    """
    nstar = data.shape[0]
    good = np.any(ivar > 0, axis=1)
    scale = np.ones(nstar)
    nbin = max(int((wave[-1] - wave[0]) / 100.0), 1)
    bins = np.minimum(((wave - wave[0]) / (wave[-1] - wave[0] + 1e-9) * nbin).astype(int), nbin - 1)
    calib = weight = shape_rms = None
    fit_ivar = ivar
    for _ in range(niter):
        g = good[:, None]
        if rdata is not None:
            calib, weight = deconvolved_calibration(wave, data, np.where(g, fit_ivar, 0.0), unconvolved, rdata, scale,
                                                    knots, penalty)
            cm = apply_resolution(rdata, unconvolved * calib[None, :])
        else:
            num = np.sum(np.where(g, fit_ivar * models * scale[:, None] * data, 0.0), axis=0)
            den = np.sum(np.where(g, fit_ivar * (models * scale[:, None]) ** 2, 0.0), axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                raw = np.where(den > 0, num / den, 0.0)
            calib = smooth_calibration(wave, raw, den, knots, penalty)
            weight = den
            cm = calib[None, :] * models
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(np.sum(ivar * cm ** 2, axis=1) > 0,
                             np.sum(ivar * cm * data, axis=1) / np.sum(ivar * cm ** 2, axis=1), 0.0)
        med = np.median(scale[good]) if np.any(good) else 1.0
        scale, calib, weight = scale / med, calib * med, weight / med ** 2
        shape_rms = _shape_rms(data, ivar, scale[:, None] * cm, bins, nbin)
        ref = np.median(shape_rms[good]) if np.any(good) else 0.0
        new = good & (np.abs(scale - 1.0) < max_scale_dev) & (shape_rms < max(nsig * ref, max_shape_rms))
        reweight = model_error and fit_ivar is ivar and np.any(new)
        if reweight:
            fit_ivar = _model_error_ivar(data, ivar, scale[:, None] * cm, new, bins, nbin)[0]
        if (np.array_equal(new, good) and not reweight) or not np.any(new):
            break
        good = new
    if fit_ivar is not ivar:      # the calibration's own ivar stays the photon-noise one (as without reweighting)
        m = unconvolved if rdata is not None else models
        weight = np.sum(np.where(good[:, None], ivar * (m * scale[:, None]) ** 2, 0.0), axis=0)
    return calib, weight, scale, good, shape_rms


def _shape_rms(data, ivar, pred, bins, nbin):
    """rms over wavelength bins of the weighted ratio data / pred - 1 of every star."""
    w = ivar * pred ** 2
    out = np.zeros(data.shape[0])
    for i in range(data.shape[0]):
        num = np.bincount(bins, weights=ivar[i] * pred[i] * data[i], minlength=nbin)
        den = np.bincount(bins, weights=w[i], minlength=nbin)
        ok = den > 0
        out[i] = np.sqrt(np.mean((num[ok] / den[ok] - 1.0) ** 2)) if np.any(ok) else np.inf
    return out


def compute_flux_calibration(frame, stdstars, *, nominal=None, min_std=3, knot_spacing=10.0, penalty=0.2,
                             max_scale_dev=0.3, max_shape_rms=0.03, nsig=3.0, niter=6, deconvolve=True,
                             model_error=True, shape_prior=True, telluric_spacing=1.0):
    """Flux calibration of one camera and exposure from its fitted standard stars.

    ``frame`` must be flat-fielded and sky-subtracted (electron/Angstrom).  The model
    of each standard (stdstars file, 1e-17 erg/s/cm²/Å) is averaged over the camera
    pixels and convolved with the star's resolution; the calibration ``C(λ)``
    (a penalised cubic spline, :func:`smooth_calibration`) and a scale per star
    (its fiber-aperture loss relative to the others) are fitted jointly, stars whose
    scale or shape is an outlier are clipped, and the scales are normalised to a
    median of 1 (DESI's point-source convention).  Pixels within stellar absorption
    features are left out.  Each fiber's calibration is ``R_i · C``.

    With fewer than ``min_std`` good standards the nominal calibration of the
    calibration tree (``nominal``: e-/Å per 1e-17 erg/s/cm²/Å for 1 s) times EXPTIME is
    used (moved to the frame's AIRMASS when it carries its extinction curve), scaled to the
    good standards when there is at least one
    (``CALMODE = NOMINAL_SCALED``) or not at all (``NOMINAL``); the header then holds
    ``FLUXFALL = True``.  Never silent: without ``nominal`` that case is an error.

    Parameters
    ----------
    frame : desired.frame.Frame
    stdstars : desired.stdstars.StdStars or None
        None (or no star on this camera) means no standard.
    nominal : desired.fluxcalib.FluxCalib, optional
        Nominal calibration for 1 s (first row used), any wavelength grid covering the frame.
    min_std : int
    knot_spacing : float
        Knot spacing of the calibration spline, Angstrom.
    penalty : float
        Curvature penalty of the spline (relative to the mean data weight per coefficient).
    telluric_spacing : float or None
        Knot spacing (Å) inside the telluric bands (:data:`TELLURIC_BANDS`), where the
        calibration carries the exposure's telluric absorption; None or 0: ``knot_spacing``
        everywhere.  Header TELLKNOT.
    max_scale_dev : float
        Stars whose scale differs from the median by more are clipped.
    max_shape_rms : float
        Stars whose ratio to the calibration (100 Å bins) has an rms above
        max(nsig × median rms, max_shape_rms) are clipped.
    nsig : float
    niter : int
    deconvolve : bool
        Fit the calibration through each star's resolution (slower; exact at sharp
        throughput features) rather than as a ratio to the convolved models.
    model_error : bool
        After the first fit, add to each star's pixel variance the models' error measured
        as the star-to-star scatter of data/model beyond photon noise in 100 Å bins
        (:func:`_model_error_ivar`), so that bright stars do not dominate where the models
        are uncertain (the blue); the calibration ivar is not changed by it.
    shape_prior : bool
        With ``nominal``, fit the spline to the ratio of the calibration to the nominal
        calibration's shape (:func:`nominal_shape`) rather than to the calibration itself:
        the spline then only models a smooth correction (atmosphere, throughput changes),
        while the dichroic edges at the camera ends, where the throughput falls by a factor
        of ~100 within ~50 Å, come from the instrument model.  A spline of 10 Å knots with a
        curvature penalty cannot follow such an edge by itself (it rings, ±5 % errors in
        the last 100 Å of a camera).  Without ``nominal`` the prior is flat.  Header
        CALPRIOR says which (NOMINAL or NONE).  When the nominal calibration carries its
        extinction curve, the prior is moved to the frame's AIRMASS first
        (:func:`nominal_calibration`; header PRIORAIR), so that the telluric bands and the
        extinction continuum of the exposure are in the prior, also at the camera ends
        where the standards are too faint to resolve them.

    Returns
    -------
    FluxCalib

    Raises
    ------
    ValueError
        Too few standards and no nominal calibration, or a frame without resolution data.
    """
    camera = frame.camera or "?"
    if frame.resolution_data is None:
        raise ValueError(f"camera {camera}: frame has no resolution data")
    rows, unconvolved, keep = _standards_on_frame(frame, stdstars)
    rdata = frame.resolution_data[rows]
    models = apply_resolution(rdata, unconvolved)          # R_i · model_i, (nstar, nwave)
    calib = None
    ngood, info = 0, {}
    if rows.size:
        calib, cal_ivar, ngood, info = _calibrate_on_standards(
            frame, stdstars, rows, unconvolved, keep, models, nominal, knot_spacing=knot_spacing, penalty=penalty,
            max_scale_dev=max_scale_dev, max_shape_rms=max_shape_rms, nsig=nsig, niter=niter, deconvolve=deconvolve,
            model_error=model_error, shape_prior=shape_prior, telluric_spacing=telluric_spacing)
    if ngood >= min_std:
        mode = "STDSTARS"
        cal_ivar = np.where(calib > 0, cal_ivar, 0.0)
    else:
        calib, cal_ivar, mode = _fallback(frame, nominal, models, rows, info, camera, ngood, min_std)
    return _assemble(frame, calib, cal_ivar, mode, ngood, rows.size, info, stdstars)


def _standards_on_frame(frame, stdstars):
    """Return the standards of ``frame`` as :func:`star_models_on_frame` does, empty without any.

    Parameters
    ----------
    frame : desired.frame.Frame
    stdstars : desired.stdstars.StdStars or None

    Returns
    -------
    rows : ndarray of int, shape (nstar,)
    unconvolved : ndarray, shape (nstar, nwave)
        Models in 1e-17 erg/s/cm²/Å, not convolved.
    keep : ndarray of int, shape (nstar,)
        Indices into ``stdstars``.
    """
    if stdstars is not None and stdstars.nstd:
        return star_models_on_frame(frame, stdstars)
    return np.zeros(0, int), np.zeros((0, frame.nwave)), np.zeros(0, int)


def _standards_ivar(frame, rows, models, stdstars, keep):
    """Return the standards' frame ivar, 0 where masked, unmodelled or in a stellar absorption feature.

    Parameters
    ----------
    frame : desired.frame.Frame
    rows : ndarray of int, shape (nstar,)
        Frame rows of the standards.
    models : ndarray, shape (nstar, nwave)
        Convolved models (pixels where they are <= 0 are left out).
    stdstars : desired.stdstars.StdStars
        Its metadata ``REDSHIFT`` (0 when absent) places the features.
    keep : ndarray of int, shape (nstar,)
        Indices into ``stdstars``.

    Returns
    -------
    ndarray, shape (nstar, nwave)
        Inverse variance in (electron/Angstrom)^-2.
    """
    ivar = np.where((frame.mask[rows] == 0) & (models > 0), frame.ivar[rows], 0.0)
    red = np.asarray(stdstars.metadata["REDSHIFT"], dtype=np.float64)[keep] \
        if "REDSHIFT" in stdstars.metadata.colnames else np.zeros(keep.size)
    for i in range(rows.size):
        ivar[i, _line_mask(frame.wave, red[i])] = 0.0
    return ivar


def _calibrate_on_standards(frame, stdstars, rows, unconvolved, keep, models, nominal, *, knot_spacing, penalty,
                            max_scale_dev, max_shape_rms, nsig, niter, deconvolve, model_error, shape_prior,
                            telluric_spacing):
    """Fit the calibration ``C(λ)`` and the per-star scales to the standards of the frame.

    Parameters
    ----------
    frame : desired.frame.Frame
    stdstars : desired.stdstars.StdStars
    rows, unconvolved, keep
        As returned by :func:`_standards_on_frame` (at least one star).
    models : ndarray, shape (nstar, nwave)
        ``unconvolved`` convolved with each star's resolution.
    nominal : FluxCalib or None
        Gives the shape prior (with ``shape_prior``).
    knot_spacing, penalty, max_scale_dev, max_shape_rms, nsig, niter
        As in :func:`compute_flux_calibration`.
    deconvolve, model_error, shape_prior, telluric_spacing
        As in :func:`compute_flux_calibration`.

    Returns
    -------
    calib, cal_ivar : ndarray, shape (nwave,)
        Calibration in (electron/Angstrom) per (1e-17 erg/s/cm²/Å) and its ivar.
    ngood : int
        Standards kept.
    info : dict
        ``scale``, ``good``, ``shape_rms``, ``fibers`` (per star), ``prior``, ``prior_airmass``, ``telluric``,
        ``telluric_weight`` (for :func:`_assemble`).
    """
    import logging
    log = logging.getLogger(__name__)
    rdata = frame.resolution_data[rows]
    data = frame.flux[rows]
    ivar = _standards_ivar(frame, rows, models, stdstars, keep)
    # the spline fits the smooth correction to the instrument's nominal shape: calib = prior × correction
    moved = shape_prior and nominal is not None and nominal.extinction is not None
    airmass = frame_airmass(frame)
    prior = nominal_shape(frame.wave, nominal, airmass=airmass) if shape_prior else np.ones(frame.nwave)
    knots = calibration_knots(frame.wave, knot_spacing)
    corr, weight, scale, good, shape_rms = _fit_calibration(
        frame.wave, data, ivar, apply_resolution(rdata, unconvolved * prior), knots, penalty,
        max_scale_dev, max_shape_rms, nsig, niter, unconvolved=unconvolved * prior if deconvolve else None,
        rdata=rdata if deconvolve else None, model_error=model_error)
    corr_ivar = weight * knot_spacing / float(np.median(np.diff(frame.wave)))
    detected = 0.0
    if telluric_spacing and deconvolve and np.any(good):
        corr, corr_ivar, wiener = resolve_telluric_bands(
            frame.wave, data, np.where(good[:, None], ivar, 0.0), unconvolved * prior, rdata, scale, corr,
            corr_ivar, calibration_knots(frame.wave, knot_spacing, telluric_spacing), penalty)
        inside = in_telluric_bands(frame.wave)
        detected = float(np.mean(wiener[inside])) if inside.any() else 0.0
    ngood = int(good.sum())
    info = {"scale": scale, "good": good, "shape_rms": shape_rms, "fibers": frame.fibers[rows],
            "prior": "NOMINAL" if shape_prior and nominal is not None else "NONE",
            "prior_airmass": airmass if moved else None,
            "telluric": float(telluric_spacing or 0.0), "telluric_weight": detected}
    log.info("camera %s: %d of %d standards kept (scale rms %.3f, shape rms median %.4f); telluric bands "
             "resolved with mean weight %.2f", frame.camera or "?", ngood, rows.size,
             np.std(scale[good]) if ngood else np.nan, np.median(shape_rms[good]) if ngood else np.nan, detected)
    return corr * prior, corr_ivar / prior ** 2, ngood, info


def nominal_calibration(wave, nominal, airmass=None):
    """Nominal calibration (first row of ``nominal``) on ``wave`` at ``airmass``.

    The calibration tree's nominal calibration includes the atmosphere at its header's
    AIRMASS (1 when absent).  When it carries the extinction curve
    (:attr:`FluxCalib.extinction`, mag per airmass) and ``airmass`` is given, it is
    moved to that airmass: ``calib × 10^(-0.4 k(λ) (airmass - AIRMASS))`` — the
    Rayleigh, aerosol and ozone continuum and the O2/H2O bands all deepen with the
    path length, as desispec's average flux calibration models it with the KPNO
    extinction curve.  Saturated telluric lines grow more slowly than this linear
    scaling; :func:`resolve_telluric_bands` fits what the standards see beyond it.

    Parameters
    ----------
    wave : array (nwave,)
        Angstrom.
    nominal : FluxCalib
        Nominal calibration (e-/Å per 1e-17 erg/s/cm²/Å for 1 s), any grid; outside it
        the end values are held.
    airmass : float, optional
        Airmass of the exposure; None or a calibration without extinction: unscaled.

    Returns
    -------
    ndarray (nwave,)
    """
    calib = np.interp(wave, nominal.wave, nominal.calib[0])
    if airmass is not None and nominal.extinction is not None:
        dx = float(airmass) - float(nominal.header.get("AIRMASS", 1.0))
        calib = calib * 10 ** (-0.4 * np.interp(wave, nominal.wave, nominal.extinction) * dx)
    return calib


def nominal_shape(wave, nominal, floor=1e-4, airmass=None):
    """Shape of the nominal calibration on ``wave`` (median 1, floored at ``floor``), ones without one.

    Parameters
    ----------
    wave : array (nwave,)
    nominal : FluxCalib or None
        Nominal calibration (first row used), any grid; outside it the end values are held.
    floor : float
        Smallest value relative to the median (keeps the prior positive where the
        nominal throughput vanishes).
    airmass : float, optional
        Airmass of the exposure (:func:`nominal_calibration`).

    Returns
    -------
    ndarray (nwave,)
    """
    if nominal is None:
        return np.ones(np.size(wave))
    shape = nominal_calibration(wave, nominal, airmass)
    med = np.median(shape[shape > 0]) if np.any(shape > 0) else 0.0
    if not (np.isfinite(med) and med > 0):
        return np.ones(np.size(wave))
    return np.maximum(shape / med, floor)


def frame_airmass(frame):
    """AIRMASS of the frame's header as a float, or None when absent or not positive."""
    try:
        airmass = float(frame.header.get("AIRMASS"))
    except (TypeError, ValueError):
        return None
    return airmass if np.isfinite(airmass) and airmass > 0 else None


def _fallback(frame, nominal, models, rows, info, camera, ngood, min_std):
    """Nominal calibration × EXPTIME, scaled to the good standards when there are any."""
    import logging
    log = logging.getLogger(__name__)
    if nominal is None:
        raise ValueError(f"camera {camera}: {ngood} usable standard stars (< {min_std}) and no nominal "
                         "calibration to fall back on")
    exptime = float(frame.header.get("EXPTIME", 0.0))
    if not exptime > 0:
        raise ValueError(f"camera {camera}: EXPTIME missing from the frame header; cannot scale the nominal calibration")
    calib = nominal_calibration(frame.wave, nominal, frame_airmass(frame)) * exptime
    mode = "NOMINAL"
    if ngood:
        good = info["good"]
        data = frame.flux[rows[good]]
        pred = calib[None, :] * models[good]
        ivar = np.where(frame.mask[rows[good]] == 0, frame.ivar[rows[good]], 0.0)
        factor = float(np.median(np.sum(ivar * pred * data, axis=1) / np.sum(ivar * pred ** 2, axis=1)))
        if np.isfinite(factor) and factor > 0:
            calib = calib * factor
            mode = "NOMINAL_SCALED"
    log.warning("camera %s: only %d usable standard stars (< %d): flux calibration falls back on the nominal "
                "throughput (%s)", camera, ngood, min_std, mode)
    return calib, np.zeros_like(calib), mode


def _assemble(frame, calib, cal_ivar, mode, ngood, nstar, info, stdstars):
    """FluxCalib of every fiber (R_i · C) with the header keywords describing how it was made."""
    from astropy.table import Table

    from .maskbits import specmask
    cal = frame.convolve(np.broadcast_to(calib, (frame.nspec, frame.nwave)))
    bad = ~(cal > 0)
    ivar = np.where(bad, 0.0, np.broadcast_to(cal_ivar, cal.shape))
    mask = np.where(bad, specmask.mask("NODATA"), 0).astype(np.int32)
    header = {k: frame.header[k] for k in ("CAMERA", "NIGHT", "EXPID", "TILEID", "EXPTIME") if k in frame.header}
    header.update({"CALMODE": mode, "FLUXFALL": mode != "STDSTARS", "NSTDSTAR": nstar, "NSTDUSED": ngood})
    if mode == "STDSTARS":
        header["CALPRIOR"] = info["prior"]     # shape the calibration spline was fitted relative to
        if info.get("prior_airmass") is not None:
            header["PRIORAIR"] = info["prior_airmass"]  # airmass the nominal prior was moved to (its extinction)
        header["TELLKNOT"] = info["telluric"]  # knot spacing (A) in the telluric bands, 0 = none
        header["TELLWGT"] = round(info["telluric_weight"], 4)  # mean weight of the resolved fit in the bands
    fibercorr = Table({"FLAT_TO_PSF_FLUX": np.ones(frame.nspec), "PSF_TO_FIBER_FLUX": np.ones(frame.nspec)})
    stdfm = None
    if stdstars is not None and stdstars.fibermap is not None and nstar:
        stdfm = stdstars.fibermap[np.isin(np.asarray(stdstars.fibermap["FIBER"]), info["fibers"])]
        order = {int(f): k for k, f in enumerate(info["fibers"])}
        idx = [order[int(f)] for f in stdfm["FIBER"]]
        stdfm["STD_SCALE"] = info["scale"][idx]
        stdfm["STD_USED"] = info["good"][idx]
        stdfm["STD_SHAPE_RMS"] = info["shape_rms"][idx]
    return FluxCalib(frame.wave.copy(), np.where(bad, 0.0, cal), ivar, mask=mask, header=header,
                     fibercorr=fibercorr, stdstar_fibermap=stdfm)


# --------------------------------------------------------------------------- application
def apply_flux_calibration(frame, fluxcalib):
    """Return the calibrated frame (a new Frame): flux / calib in 1e-17 erg/s/cm²/Å.

    ``frame`` must be flat-fielded and sky-subtracted.  Variance propagation as
    desispec's ``apply_flux_calibration``::

        ivar' = C^4 ivar ivar_C / (C^2 ivar_C + F^2 ivar)     (ivar' = C^2 ivar when ivar_C = 0 ... see below)

    except that a calibration without uncertainty (nominal fallback, ``ivar_C = 0``)
    gives ``ivar' = C^2 ivar`` instead of 0.  Pixels without calibration get ivar 0 and
    specmask NODATA.  With a fallback calibration (header FLUXFALL) every fiber's
    FIBERSTATUS gets BADPETALFLUXCAL.

    Parameters
    ----------
    frame : desired.frame.Frame
    fluxcalib : FluxCalib
        Same wavelength grid (within 1e-3 Å) and fibers as ``frame``.

    Raises
    ------
    ValueError
        Different wavelength grid or number of spectra.
    """
    from .frame import Frame
    from .io.frame import CFRAME_UNITS
    from .maskbits import fibermask, specmask
    camera = frame.camera or "?"
    if fluxcalib.calib.shape != frame.flux.shape or np.max(np.abs(fluxcalib.wave - frame.wave)) > 1e-3:
        raise ValueError(f"camera {camera}: flux calibration {fluxcalib.calib.shape} does not match the frame "
                         f"{frame.flux.shape} (or its wavelength grid differs)")
    c, civ = fluxcalib.calib, fluxcalib.ivar
    ok = (c > 0) & (frame.ivar > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        with_err = c ** 4 * frame.ivar * civ / (c ** 2 * civ + frame.flux ** 2 * frame.ivar)
        ivar = np.where(ok, np.where(civ > 0, with_err, c ** 2 * frame.ivar), 0.0)
        flux = np.where(c > 0, frame.flux / np.where(c > 0, c, 1.0), 0.0)
    ivar = np.where(np.isfinite(ivar), ivar, 0.0)
    mask = frame.mask | np.where(c > 0, 0, specmask.mask("NODATA")).astype(np.int32) | fluxcalib.mask
    header = dict(frame.header)
    header["BUNIT"] = CFRAME_UNITS
    for key in ("CALMODE", "FLUXFALL", "NSTDUSED"):
        if key in fluxcalib.header:
            header[key] = fluxcalib.header[key]
    fibermap = frame.fibermap
    if fibermap is not None and fluxcalib.header.get("FLUXFALL") and "FIBERSTATUS" in fibermap.colnames:
        fibermap = fibermap.copy()
        fibermap["FIBERSTATUS"] |= fibermask.mask("BADPETALFLUXCAL")
    return Frame(frame.wave.copy(), flux, ivar, mask,
                 None if frame.resolution_data is None else frame.resolution_data.copy(),
                 fibermap, None if frame.chi2pix is None else frame.chi2pix.copy(), header, frame.fibers.copy(),
                 frame.scores)
