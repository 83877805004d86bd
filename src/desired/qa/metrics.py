"""QA metrics of one camera of one exposure, and of one healpix redshift file.

Every function takes the pipeline's containers (:class:`~desired.image.Image`,
:class:`~desired.psf.GaussHermitePSF`, :class:`~desired.frame.Frame`,
:class:`~desired.fiberflat.FiberFlat`, :class:`~desired.sky.SkyModel`,
:class:`~desired.fluxcalib.FluxCalib`, astropy tables) and returns a flat dict
``METRIC -> float`` (upper-case names, units in :data:`UNITS`), and for the
per-fiber metrics a dict of arrays.  Nothing here reads files.

Definitions follow desispec's offline and QuickLook QA where they exist
(shared/reference/seed-modules-sky-spectra-qa.md §2.7, §7.3, §8): per-amplifier
overscan level and read noise from the preproc header (OVERSCNx, OBSRDNx), sky
continuum in two line-free windows per arm, sky-line peaks at the QuickLook
PEAKS, flux-calibration zero point at ZP_WAVE (4800/6500/8250 A), S/N at a
fiducial magnitude of 22.

Effective time
--------------
:func:`effective_time` is the ETC-style survey speed of DESI's dark program:
for a faint (background-limited) point source the S/N² grows as
``t · τ² / B`` with τ the throughput (atmosphere, fiber loss, instrument) and B
the sky surface brightness, so ::

    EFFTIME = EXPTIME · (τ/τ_nom)² · (B_nom/B),   τ/τ_nom = 10^(-0.4 (ZP_nom - ZP))

with ZP the measured AB zero point (magnitude giving 1 e-/s/A) and B the sky
continuum in 1e-17 erg/s/cm²/A/arcsec² at the band's reference wavelength.  An
exposure taken in nominal conditions has EFFTIME = EXPTIME.
"""
from __future__ import annotations

import numpy as np

from ..maskbits import ccdmask, desi_target, fibermask

#: reference wavelengths of the S/N and zero-point metrics (desispec FLUXCALIB ZP_WAVE), Angstrom
REF_WAVE = {"b": 4800.0, "r": 6500.0, "z": 8250.0}
#: half width of the window around the reference wavelength, Angstrom
REF_HALFWIDTH = 50.0
#: line-free sky continuum windows per arm (desispec qalib.sky_continuum), Angstrom
SKY_CONT_WINDOWS = {"b": ((4000.0, 4500.0), (5250.0, 5550.0)), "r": ((5950.0, 6200.0), (6990.0, 7230.0)),
                    "z": ((8120.0, 8270.0), (9110.0, 9280.0))}
#: bright sky lines whose peaks are measured (desispec QuickLook science PEAKS), vacuum Angstrom
SKY_PEAKS = {"b": (3914.4, 5578.9), "r": (6301.9, 7342.8), "z": (8432.4, 9378.5)}
#: fiducial magnitude of the S/N-vs-magnitude fit (desispec S2N FIDMAG)
FIDMAG = 22.0
#: fiber solid angle (1.52 arcsec diameter), arcsec²
FIBER_AREA_ARCSEC2 = np.pi / 4 * 1.52 ** 2
#: target classes, in the order a fiber is assigned to the first that matches
CLASSES = ("SKY", "STD", "QSO", "LRG", "ELG", "BGS", "MWS", "OTHER")
#: catastrophic redshift error (desisim spec_qa catastrophic_dv), km/s
CATASTROPHIC_DV = 1000.0
C_KMS = 299792.458

#: units of the metrics, by family (see :func:`metric_family`)
UNITS = {"overscan": "ADU", "readnoise": "electron", "nbadamp": "", "maskfrac": "", "cosmicfrac": "",
         "trace_sigx": "pixel", "trace_sigy": "pixel", "psf_chi2pdf": "", "psf_nbadfib": "",
         "trshift_x": "pixel", "trshift_y": "pixel", "trshift_rms_x": "pixel", "trshift_rms_y": "pixel",
         "flat_rms": "", "flat_noutlier": "", "nskyfib": "", "skycont": "electron/Angstrom",
         "skypeak": "electron", "skyresid_chi2": "", "skyresid_frac": "", "sky_nbadfib": "",
         "snr": "per Angstrom bin", "fidsnr": "per Angstrom bin", "zp": "AB mag", "zp_rms": "mag",
         "nstdstar": "", "sky_sb": "1e-17 erg/(s cm2 Angstrom arcsec2)", "efftime": "s",
         "efftime_ratio": "", "nfiber": "", "nbadfiber": "", "fiberstatus": "", "nfailed": "", "nproblem": "",
         "ntarget": "", "zsuccess": "", "ztrue_success": "", "zcatastrophic": ""}


def band_of(camera):
    """Band letter (``b``, ``r``, ``z``) of a camera name such as ``b0``."""
    return str(camera)[0].lower()


def metric_family(name):
    """Return the threshold family of a metric name (``READNOISE_A`` -> ``readnoise``).

    Suffixes after the family name (amplifier, class, line wavelength, FIBERSTATUS
    bit) select one member of the family; every member shares the family's
    thresholds and unit.
    """
    lower = name.lower()
    for family in sorted(UNITS, key=len, reverse=True):
        if lower == family or lower.startswith(family + "_"):
            return family
    return lower


def classify(name, value, thresholds):
    """Return ``normal``, ``warning``, ``alarm`` or ``none`` (no thresholds) for one metric.

    Parameters
    ----------
    name : str
        Metric name; its family (:func:`metric_family`) selects the thresholds.
    value : float
    thresholds : dict or None
        family -> ``{"warning": [lo, hi], "alarm": [lo, hi]}``; a bound may be None
        (open).  A value outside the alarm range is an alarm, outside the warning
        range a warning.  A NaN value with thresholds is an alarm (the metric could
        not be measured).
    """
    limits = (thresholds or {}).get(metric_family(name))
    if not limits:
        return "none"
    if value is None or not np.isfinite(value):
        return "alarm"
    for level in ("alarm", "warning"):
        lo, hi = (list(limits.get(level) or [None, None]) + [None, None])[:2]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return level
    return "normal"


def worst(levels):
    """The worst of a list of levels (alarm > warning > normal > none)."""
    order = ("none", "normal", "warning", "alarm")
    return max(levels, key=order.index, default="none")


# ---------------------------------------------------------------- fibers
def target_classes(fibermap):
    """Class of every fiber from OBJTYPE and DESI_TARGET (one of :data:`CLASSES`), shape (nfiber,)."""
    n = len(fibermap)
    out = np.full(n, "OTHER", dtype="U5")
    cols = fibermap.colnames
    bits = np.asarray(fibermap["DESI_TARGET"], dtype=np.int64) if "DESI_TARGET" in cols else np.zeros(n, np.int64)
    objtype = np.char.strip(np.asarray(fibermap["OBJTYPE"]).astype(str)) if "OBJTYPE" in cols else np.full(n, "")
    tests = [("SKY", (objtype == "SKY") | ((bits & desi_target.SKY) != 0)),
             ("STD", (bits & desi_target.mask("STD_FAINT", "STD_WD", "STD_BRIGHT")) != 0),
             ("QSO", (bits & desi_target.QSO) != 0), ("LRG", (bits & desi_target.LRG) != 0),
             ("ELG", (bits & desi_target.ELG) != 0), ("BGS", (bits & desi_target.BGS_ANY) != 0),
             ("MWS", (bits & desi_target.MWS_ANY) != 0)]
    assigned = np.zeros(n, bool)
    for name, sel in tests:
        take = sel & ~assigned
        out[take] = name
        assigned |= take
    return out


def fiber_magnitudes(fibermap, band):
    """AB magnitude of every fiber in the photometric band matching ``band`` (g/r/z), NaN without flux."""
    col = {"b": "FLUX_G", "r": "FLUX_R", "z": "FLUX_Z"}[band]
    if col not in fibermap.colnames:
        return np.full(len(fibermap), np.nan)
    flux = np.asarray(fibermap[col], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


def fiberstatus_metrics(fibermap):
    """NFIBER, NBADFIBER (FIBERSTATUS != 0) and FIBERSTATUS_<BIT> counts of the bits set."""
    status = np.asarray(fibermap["FIBERSTATUS"], dtype=np.int64) if "FIBERSTATUS" in fibermap.colnames \
        else np.zeros(len(fibermap), np.int64)
    out = {"NFIBER": float(status.size), "NBADFIBER": float(np.count_nonzero(status))}
    for bit in fibermask:
        count = int(np.count_nonzero(status & getattr(fibermask, bit)))
        if count:
            out[f"FIBERSTATUS_{bit}"] = float(count)
    return out


# ---------------------------------------------------------------- preproc
def preproc_metrics(image):
    """Overscan level and read noise per amplifier, dead amplifiers, masked and cosmic-ray fractions.

    Parameters
    ----------
    image : desired.image.Image
        A preproc image; its header carries OVERSCNx (ADU) and OBSRDNx (electrons)
        for every amplifier x and BADAMPS for the dead ones.

    Returns
    -------
    dict
        OVERSCAN_x, READNOISE_x, NBADAMP, MASKFRAC (any ccdmask bit), COSMICFRAC.
    """
    hdr = image.header
    out = {}
    for key, value in sorted(hdr.items()):
        if key.startswith("OVERSCN") and len(key) == 8:
            out[f"OVERSCAN_{key[7]}"] = float(value)
        elif key.startswith("OBSRDN") and len(key) == 7:
            out[f"READNOISE_{key[6]}"] = float(value)
    badamps = [a for a in str(hdr.get("BADAMPS", "") or "").split(",") if a.strip()]
    out["NBADAMP"] = float(len(badamps))
    for amp in badamps:
        out.pop(f"READNOISE_{amp.strip()[-1]}", None)
    mask = np.asarray(image.mask)
    out["MASKFRAC"] = float(np.count_nonzero(mask) / mask.size) if mask.size else np.nan
    out["COSMICFRAC"] = float(np.count_nonzero(mask & ccdmask.COSMIC) / mask.size) if mask.size else np.nan
    return out


# ---------------------------------------------------------------- traces
def psf_wave_grid(psf, nwave=50):
    """An even wavelength grid inside the PSF's trace range (Angstrom), shape (nwave,)."""
    pad = 0.02 * (psf.wavemax - psf.wavemin)
    return np.linspace(psf.wavemin + pad, psf.wavemax - pad, nwave)


def trace_shift_map(psf, reference, wave=None):
    """Shifts (dx, dy) of every trace of ``psf`` relative to ``reference``, each shape (nfiber, nwave), pixels."""
    wave = psf_wave_grid(psf) if wave is None else np.asarray(wave)
    fibers = np.arange(min(psf.nfiber, reference.nfiber))[:, None]
    dx = psf.x(fibers, wave[None, :]) - reference.x(fibers, wave[None, :])
    dy = psf.y(fibers, wave[None, :]) - reference.y(fibers, wave[None, :])
    return dx, dy


def trace_metrics(psf, reference=None, wave=None):
    """Trace widths and PSF fit chi2 of a PSF, and its shifts relative to a reference PSF.

    Parameters
    ----------
    psf : desired.psf.GaussHermitePSF
        The exposure's (shifted) PSF.
    reference : desired.psf.GaussHermitePSF, optional
        The PSF it was shifted from (psfnight); omit for an arc PSF.
    wave : array, optional
        Wavelengths (Angstrom) where the traces are compared, e.g. the frame's grid
        (the traces are only constrained where the CCD records them); default
        :func:`psf_wave_grid`.

    Returns
    -------
    dict
        TRACE_SIGX, TRACE_SIGY (median GHSIGX/GHSIGY, pixels), PSF_CHI2PDF and
        PSF_NBADFIB when the PSF records them, TRSHIFT_X/Y (mean shift, pixels) and
        TRSHIFT_RMS_X/Y (its rms over fibers and wavelengths) with a reference.
    """
    wave = psf_wave_grid(psf) if wave is None else np.asarray(wave, dtype=np.float64)
    fibers = np.arange(psf.nfiber)[:, None]
    out = {}
    for name, key in (("GHSIGX", "TRACE_SIGX"), ("GHSIGY", "TRACE_SIGY")):
        if name in psf.params:
            out[key] = float(np.median(psf.param(name, fibers, wave[None, :])))
    for meta, key in (("CHI2PDF", "PSF_CHI2PDF"), ("NBADFIB", "PSF_NBADFIB")):
        if meta in psf.meta:
            out[key] = float(psf.meta[meta])
    if reference is not None:
        dx, dy = trace_shift_map(psf, reference, wave)
        out.update(TRSHIFT_X=float(dx.mean()), TRSHIFT_Y=float(dy.mean()),
                   TRSHIFT_RMS_X=float(dx.std()), TRSHIFT_RMS_Y=float(dy.std()))
    return out


# ---------------------------------------------------------------- fiberflat
def fiberflat_metrics(fiberflat, max_offset=0.15):
    """Fiber-to-fiber scatter of a fiber flat and its outlier fibers.

    Parameters
    ----------
    fiberflat : desired.fiberflat.FiberFlat
    max_offset : float
        A fiber whose median flat differs from 1 by more than this is an outlier
        (desispec FIBERFLAT MAX_OFF).

    Returns
    -------
    metrics : dict
        FLAT_RMS (rms over fibers of the per-fiber median flat minus 1) and FLAT_NOUTLIER.
    per_fiber : dict
        FIBER, FLAT_MEAN (median flat of each fiber, over its unmasked pixels).
    """
    flat = np.where((fiberflat.ivar > 0) & (fiberflat.mask == 0), fiberflat.fiberflat, np.nan)
    with np.errstate(all="ignore"):
        level = np.nanmedian(flat, axis=1) if flat.size else np.zeros(0)
    good = np.isfinite(level)
    metrics = {"FLAT_RMS": float(np.sqrt(np.mean((level[good] - 1.0) ** 2))) if good.any() else np.nan,
               "FLAT_NOUTLIER": float(np.count_nonzero(~good | (np.abs(level - 1.0) > max_offset)))}
    return metrics, {"FIBER": np.asarray(fiberflat.fibers), "FLAT_MEAN": level}


# ---------------------------------------------------------------- sky
def _window(wave, lo, hi):
    return (wave >= lo) & (wave <= hi)


def sky_fibers(frame):
    """Indices of the sky fibers of a frame (OBJTYPE SKY or the SKY target bit); empty without a fibermap."""
    if frame.fibermap is None:
        return np.zeros(0, dtype=int)
    return np.flatnonzero(target_classes(frame.fibermap) == "SKY")


def flat_fielded(frame, fiberflat):
    """Return a new Frame divided by the fiber flat (ivar scaled, pixels without flat get ivar 0)."""
    from ..frame import Frame
    ff = fiberflat.fiberflat
    good = ff > 0
    safe = np.where(good, ff, 1.0)
    return Frame(frame.wave, np.where(good, frame.flux / safe, 0.0), np.where(good, frame.ivar * safe ** 2, 0.0),
                 frame.mask, frame.resolution_data, frame.fibermap, frame.chi2pix, frame.header, frame.fibers,
                 frame.scores)


def sky_metrics(frame, sky=None, fiberflat=None, pchi=0.05):
    """Sky continuum, sky-line peaks and sky-subtraction residuals on the sky fibers of a frame.

    Parameters
    ----------
    frame : desired.frame.Frame
        Extracted frame in electron/Angstrom with a fibermap.
    sky : desired.sky.SkyModel, optional
        Sky model of the frame; the residual metrics need it.  desispec fits it to
        the fiber-flatted frame, so pass the fiber flat too when there is one.
    fiberflat : desired.fiberflat.FiberFlat, optional
        Divides the frame before every measurement.
    pchi : float
        A sky fiber whose residual chi2 survival probability is below this counts in
        SKY_NBADFIB (desispec PCHI_RESID).

    Returns
    -------
    dict
        NSKYFIB; with sky fibers SKYCONT (median over sky fibers of the mean flux in
        the band's continuum windows, electron/Angstrom), SKYPEAK_<wave> (line flux
        above the local continuum in +-2 A, electrons); with a sky model
        SKYRESID_CHI2 (residual chi2 per pixel), SKYRESID_FRAC (median |residual|
        over the median sky) and SKY_NBADFIB.
    """
    from scipy.stats import chi2 as chi2_dist

    band = band_of(frame.camera or "b")
    idx = sky_fibers(frame)
    out = {"NSKYFIB": float(idx.size)}
    if idx.size == 0:
        return out
    if fiberflat is not None:
        frame = flat_fielded(frame, fiberflat)
    flux, ivar = frame.flux[idx], frame.ivar[idx] * (frame.mask[idx] == 0)
    wave = frame.wave
    cont = [_window(wave, lo, hi) for lo, hi in SKY_CONT_WINDOWS[band]]
    cont = np.logical_or.reduce(cont) if cont else np.zeros(wave.size, bool)
    if cont.any():
        out["SKYCONT"] = float(np.median(np.mean(flux[:, cont], axis=1)))
    dwave = np.gradient(wave)
    for line in SKY_PEAKS[band]:
        core, side = _window(wave, line - 2.0, line + 2.0), _window(wave, line - 20.0, line + 20.0)
        if core.sum() < 3 or wave[0] > line - 20 or wave[-1] < line + 20:
            continue
        base = np.median(flux[:, side & ~_window(wave, line - 5.0, line + 5.0)], axis=1)
        peak = ((flux[:, core] - base[:, None]) * dwave[core]).sum(axis=1)
        out[f"SKYPEAK_{line:.0f}"] = float(np.median(peak))
    if sky is not None:
        model, sivar = sky.flux[idx], sky.ivar[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(ivar > 0, 1.0 / ivar, np.inf) + np.where(sivar > 0, 1.0 / sivar, 0.0)
        use = np.isfinite(var) & (ivar > 0)
        resid = flux - model
        chi2 = np.where(use, resid ** 2 / np.where(use, var, 1.0), 0.0)
        ndof = use.sum(axis=1)
        out["SKYRESID_CHI2"] = float(chi2.sum() / max(ndof.sum(), 1))
        med_sky = np.median(np.abs(model[use])) if use.any() else np.nan
        out["SKYRESID_FRAC"] = float(np.median(np.abs(resid[use])) / med_sky) if use.any() and med_sky > 0 else np.nan
        prob = chi2_dist.sf(chi2.sum(axis=1), np.maximum(ndof, 1))
        out["SKY_NBADFIB"] = float(np.count_nonzero((prob < pchi) & (ndof > 0)))
    return out


# ---------------------------------------------------------------- S/N
def snr_per_fiber(frame, band=None, halfwidth=REF_HALFWIDTH):
    """Mean S/N per wavelength bin of every fiber within +-halfwidth of the band's reference wavelength.

    Parameters
    ----------
    frame : desired.frame.Frame
        Sky-subtracted spectra (a cframe or sframe).
    band : str, optional
        ``b``, ``r`` or ``z``; from the camera when omitted.

    Returns
    -------
    array, shape (nspec,)
        Mean of ``flux * sqrt(ivar)`` over the window's unmasked bins with ivar > 0
        (NaN when there is none).  The mean, unlike desispec's median, is an unbiased
        estimate of the noiseless spectrum's value whatever the spread of the S/N
        inside the window (sky lines, emission lines).
    """
    band = band or band_of(frame.camera)
    ref = REF_WAVE[band]
    sel = _window(frame.wave, ref - halfwidth, ref + halfwidth)
    if not sel.any():
        sel = np.ones(frame.nwave, bool)
    ivar = frame.ivar[:, sel]
    use = (frame.mask[:, sel] == 0) & (ivar > 0)
    snr = np.where(use, frame.flux[:, sel] * np.sqrt(np.where(use, ivar, 0.0)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return snr.sum(axis=1) / use.sum(axis=1)


def fit_snr_vs_mag(mag, snr, fidmag=FIDMAG):
    """Fit ``log10(S/N) = a + b (mag - fidmag)`` and return the S/N at ``fidmag`` (NaN with < 3 usable fibers)."""
    good = np.isfinite(mag) & np.isfinite(snr) & (snr > 0)
    if good.sum() < 3 or np.ptp(mag[good]) < 0.1:
        return np.nan
    slope, intercept = np.polyfit(mag[good] - fidmag, np.log10(snr[good]), 1)
    return float(10 ** intercept)


def snr_metrics(cframe):
    """S/N per fiber at the reference wavelength versus magnitude, per target class.

    Parameters
    ----------
    cframe : desired.frame.Frame
        Sky-subtracted, calibrated spectra of one camera with a fibermap.

    Returns
    -------
    metrics : dict
        SNR_<CLASS> (median over the class's fibers of their S/N) and FIDSNR_<CLASS> (S/N of the
        fit at magnitude 22) for every class present but SKY.
    per_fiber : dict
        FIBER, CLASS, MAG (g, r or z for the b, r, z cameras) and SNR.
    """
    band = band_of(cframe.camera)
    snr = snr_per_fiber(cframe, band)
    if cframe.fibermap is not None:
        classes, mags = target_classes(cframe.fibermap), fiber_magnitudes(cframe.fibermap, band)
    else:
        classes, mags = np.full(cframe.nspec, "OTHER"), np.full(cframe.nspec, np.nan)
    out = {}
    for name in CLASSES:
        sel = classes == name
        if name == "SKY" or not sel.any():
            continue
        out[f"SNR_{name}"] = float(np.nanmedian(snr[sel])) if np.isfinite(snr[sel]).any() else np.nan
        fid = fit_snr_vs_mag(mags[sel], snr[sel])
        if np.isfinite(fid):
            out[f"FIDSNR_{name}"] = fid
    return out, {"FIBER": np.asarray(cframe.fibers), "CLASS": classes, "MAG": mags, "SNR": snr}


# ---------------------------------------------------------------- flux calibration and survey speed
def zero_point(calib, wave, exptime):
    """AB zero point (magnitude giving 1 electron/s/Angstrom) of a calibration vector (desispec ZP_from_calib).

    Parameters
    ----------
    calib : array, shape (..., nwave)
        electron/Angstrom per 1e-17 erg/s/cm²/Angstrom, for the whole exposure.
    wave : array, shape (nwave,)
        Angstrom.
    exptime : float
        Seconds.
    """
    calib = np.asarray(calib, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        flam = 1e-17 / (calib / exptime)
        fnu = flam * np.asarray(wave) ** 2 / 2.99792458e18
        return np.where(fnu > 0, -2.5 * np.log10(np.where(fnu > 0, fnu, 1.0)) - 48.6, np.nan)


def fluxcalib_metrics(fluxcalib, exptime, band, frame=None, halfwidth=10.0):
    """Zero point, its scatter over fibers, the number of standards and the sky surface brightness.

    Parameters
    ----------
    fluxcalib : desired.fluxcalib.FluxCalib
    exptime : float
        Seconds.
    band : str
    frame : desired.frame.Frame, optional
        The frame (electron/Angstrom): its sky fibers, divided by the calibration
        and the fiber area, give SKY_SB.  The calibration is in DESI's point-source
        convention; the FIBERCORR column PSF_TO_FIBER_FLUX (fiber flux of a uniform
        source over its point-source-calibrated flux), when present, converts the
        sky to a surface brightness.  Without it SKY_SB is too high by the
        inverse of a point source's fiber fraction.

    Returns
    -------
    dict
        ZP (median over fibers, AB mag at the reference wavelength), ZP_RMS,
        NSTDSTAR (rows of STDSTAR_FIBERMAP, or the NSTARS/NSTDSTAR keyword), SKY_SB.
    """
    sel = _window(fluxcalib.wave, REF_WAVE[band] - halfwidth, REF_WAVE[band] + halfwidth)
    if not sel.any() or exptime <= 0:
        return {}
    cal = np.median(fluxcalib.calib[:, sel], axis=1)
    good = cal > 0
    zp = zero_point(cal[good], np.full(good.sum(), REF_WAVE[band]), exptime)
    out = {"ZP": float(np.median(zp)) if zp.size else np.nan,
           "ZP_RMS": float(np.std(zp)) if zp.size else np.nan}
    if fluxcalib.stdstar_fibermap is not None:
        out["NSTDSTAR"] = float(len(fluxcalib.stdstar_fibermap))
    else:
        for key in ("NSTDSTAR", "NSTARS"):
            if key in fluxcalib.header:
                out["NSTDSTAR"] = float(fluxcalib.header[key])
                break
    if frame is not None:
        idx = sky_fibers(frame)
        fsel = _window(frame.wave, REF_WAVE[band] - 5 * halfwidth, REF_WAVE[band] + 5 * halfwidth)
        if idx.size and fsel.any() and fluxcalib.nspec == frame.nspec:
            calf = np.interp(frame.wave[fsel], fluxcalib.wave, np.median(fluxcalib.calib[idx], axis=0))
            sky_e = np.median(frame.flux[idx][:, fsel], axis=0)
            corr = fluxcalib.fibercorr
            psf_to_fiber = 1.0
            if corr is not None and "PSF_TO_FIBER_FLUX" in corr.colnames and len(corr) == frame.nspec:
                psf_to_fiber = float(np.median(np.asarray(corr["PSF_TO_FIBER_FLUX"], dtype=np.float64)[idx]))
            with np.errstate(divide="ignore", invalid="ignore"):
                out["SKY_SB"] = float(np.median(sky_e / calf) * psf_to_fiber / FIBER_AREA_ARCSEC2)
    return out


def effective_time(exptime, zp, sky_sb, zp_nominal, sky_nominal):
    """ETC-style effective exposure time ``EXPTIME (tau/tau_nom)^2 (B_nom/B)`` (see the module docstring).

    Parameters
    ----------
    exptime : float
        Seconds.
    zp, zp_nominal : float
        Measured and nominal AB zero points.
    sky_sb, sky_nominal : float
        Measured and nominal sky continuum, 1e-17 erg/s/cm²/Angstrom/arcsec².

    Returns
    -------
    float
        Seconds; NaN when an input is missing or not positive.
    """
    values = np.array([exptime, zp, sky_sb, zp_nominal, sky_nominal], dtype=np.float64)
    if not np.all(np.isfinite(values)) or sky_sb <= 0 or sky_nominal <= 0:
        return np.nan
    tau = 10 ** (-0.4 * (zp_nominal - zp))
    return float(exptime * tau ** 2 * sky_nominal / sky_sb)


# ---------------------------------------------------------------- redshifts
def redshift_success(redshifts, min_deltachi2=25.0):
    """Boolean success of every redshift: ZWARN == 0 and DELTACHI2 above ``min_deltachi2``."""
    ok = np.asarray(redshifts["ZWARN"]) == 0
    if "DELTACHI2" in redshifts.colnames:
        ok &= np.asarray(redshifts["DELTACHI2"], dtype=np.float64) > min_deltachi2
    return ok


def redshift_metrics(redshifts, fibermap=None, truth=None, min_deltachi2=25.0):
    """Redshift success per class, and against the simulator's truth when given.

    Parameters
    ----------
    redshifts : astropy.table.Table
        REDSHIFTS of a redrock-format file (TARGETID, Z, ZWARN, DELTACHI2, SPECTYPE).
    fibermap : astropy.table.Table, optional
        Row-matched fibermap: the class of each target (:func:`target_classes`);
        the fitted SPECTYPE is the class without it.
    truth : astropy.table.Table, optional
        TARGETID, TRUEZ, TRUESPECTYPE (the simulator's TRUTH table).

    Returns
    -------
    metrics : dict
        NTARGET_<CLASS>, ZSUCCESS_<CLASS> (fraction); with truth ZTRUE_SUCCESS_<CLASS>
        (fraction of targets with a successful fit within 1000 km/s of the true
        redshift and the right SPECTYPE) and ZCATASTROPHIC_<CLASS> (successful fits
        beyond 1000 km/s).
    per_target : dict
        TARGETID, CLASS, Z, SUCCESS, and with truth TRUEZ (NaN when unknown), DZ.
    """
    spectype = np.char.strip(np.asarray(redshifts["SPECTYPE"]).astype(str))
    classes = target_classes(fibermap) if fibermap is not None else spectype
    ok = redshift_success(redshifts, min_deltachi2)
    z = np.asarray(redshifts["Z"], dtype=np.float64)
    tid = np.asarray(redshifts["TARGETID"])
    per = {"TARGETID": tid, "CLASS": classes, "Z": z, "SUCCESS": ok, "SPECTYPE": spectype}
    metrics = {}
    truez = None
    if truth is not None:
        lookup = {int(t): i for i, t in enumerate(np.asarray(truth["TARGETID"]))}
        rows = np.array([lookup.get(int(t), -1) for t in tid])
        known = rows >= 0
        truez = np.where(known, np.asarray(truth["TRUEZ"], dtype=np.float64)[rows], np.nan)
        truetype = np.where(known, np.char.strip(np.asarray(truth["TRUESPECTYPE"]).astype(str))[rows], "")
        dv = C_KMS * (z - truez) / (1 + truez)
        per.update(TRUEZ=truez, DZ=z - truez)
    for name in np.unique(classes):
        sel = classes == name
        if name == "SKY":
            continue
        metrics[f"NTARGET_{name}"] = float(sel.sum())
        metrics[f"ZSUCCESS_{name}"] = float(ok[sel].mean())
        if truez is not None:
            good = sel & np.isfinite(truez)
            if good.any():
                right = ok & (np.abs(dv) < CATASTROPHIC_DV) & (spectype == truetype)
                metrics[f"ZTRUE_SUCCESS_{name}"] = float(right[good].mean())
                metrics[f"ZCATASTROPHIC_{name}"] = float((ok & (np.abs(dv) >= CATASTROPHIC_DV))[good].mean())
    return metrics, per
