"""Preprocessing: one camera of a raw exposure -> calibrated image (the preproc product).

Steps, per amplifier ``x`` (amps are those with a ``BIASSECx`` keyword):

1. optional master-bias subtraction (a raw-size bias is subtracted from the raw
   ADU; a trimmed-size bias after the overscan);
2. overscan level and read noise from the ``BIASSECx`` columns (sigma-clipped
   mean and clipped rms, corrected for the clipping), optionally one level per row;
3. dead-amplifier detection (listed in the calibration, zero read noise or a
   constant data section) -> ccdmask ``BADAMP``, ivar 0;
4. saturation (raw ADU >= saturation level) -> ``SATURATED``;
5. trimming ``DATASECx`` into ``CCDSECx`` of the output image and gain (e-/ADU);
6. dark current (scalar ``dark_current`` x EXPTIME, or a dark image in e-/s x EXPTIME)
   and pixel flat (``PIXFLATZERO``/``PIXFLATLOW`` where it is <= 0 / < 0.1);
7. bad columns from the calibration -> ``BAD``;
8. cosmic-ray rejection (:func:`desired.cosmics.find_cosmics`) -> ``COSMIC``;
9. variance: Poisson + read noise^2, IVAR = 1/variance and 0 where masked.

The variance model
------------------
Using each pixel's own value as its Poisson variance (``max(pix, 0) + rn^2``)
correlates the noise with its variance estimate: low pixels get small variances,
and the normalised residuals are biased by about ``-0.5/sqrt(mu + rn^2)`` (-0.1 at
zero signal with 3 e- read noise).  The default model (``variance_model='smooth'``)
instead estimates the expected charge of a pixel from the mean of its unmasked
neighbours along the same column (rows ``y-3 .. y+3`` without ``y``; traces are
smooth along y), falling back to the pixel itself where it departs from that
mean by more than 5 sigma (bright arc and sky lines).  Near bright lines the
fallback (whose choice depends on the pixel's own noise) and the pixel-based
estimate leave a small negative bias; on a synthetic full-size arc frame the mean
of the normalised residuals is about -0.015 (``benchmarks/bench_preproc.py``).  ``variance_model='pixel'``
gives the desispec-style estimate.
"""
from __future__ import annotations

import logging
import math

import numba
import numpy as np
from scipy.special import erf

from .cosmics import BAND_PSF_GRADIENTS, find_cosmics
from .image import Image
from .io.raw import parse_section
from .maskbits import ccdmask

log = logging.getLogger(__name__)

#: amplifier names in DESI order
AMPLIFIERS = ("A", "B", "C", "D")
#: measured overscan rms (ADU) below which an amplifier is declared dead
MIN_READNOISE_ADU = 0.3
#: keywords the extraction needs from the preproc header (filled when available)
EXTRACTION_KEYWORDS = ("EXPID", "NIGHT", "CAMERA", "SPECGRPH", "TILEID", "EXPTIME", "MJD-OBS",
                       "TARGTRA", "TARGTDEC", "OBSTYPE", "FLAVOR", "DATE-OBS")


class DeadCameraError(ValueError):
    """Every amplifier of a camera is dead: no preproc image can be made for it.

    Parameters
    ----------
    camera : str
    problem : str
    """

    def __init__(self, camera, problem):
        self.camera = camera
        super().__init__(f"camera {camera}: {problem}")


def amplifier_names(header):
    """Return the amplifiers present in a raw camera header (those with ``BIASSECx``).

    Accepts DESI's ``A``..``D`` and the older ``1``..``4`` naming.
    """
    amps = [a for a in AMPLIFIERS if f"BIASSEC{a}" in header]
    if not amps:
        amps = [a for a in "1234" if f"BIASSEC{a}" in header]
    return amps


def _clipped_std_bias(nsigma):
    """Return the ratio of the clipped to the true rms of a Gaussian clipped at +-nsigma."""
    a = float(nsigma)
    return math.sqrt(1.0 - 2.0 * a * math.exp(-a * a / 2.0) / (math.sqrt(2.0 * math.pi) * erf(a / math.sqrt(2.0))))


def _clipped_stats(values, nsigma=4.0, niter=5):
    """Return (mean, rms, keep) of ``values`` after iterative sigma clipping.

    The rms is divided by :func:`_clipped_std_bias` so that it estimates the
    Gaussian sigma; ``keep`` is the boolean selection of the final iteration.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.ravel()
    centre = np.median(flat)
    mad = np.median(np.abs(flat - centre))
    sigma = 1.4826 * mad if mad > 0 else np.std(flat)
    keep = np.ones(flat.shape, dtype=bool)
    for _ in range(niter):
        if sigma <= 0:
            keep = flat == centre
            break
        new_keep = np.abs(flat - centre) <= nsigma * sigma
        if not new_keep.any():
            break
        keep = new_keep
        centre = flat[keep].mean()
        sigma = flat[keep].std() / _clipped_std_bias(nsigma)
    return float(centre), float(sigma), keep.reshape(values.shape)


def overscan_level(overscan, per_row=False, nsigma=4.0, niter=5):
    """Return the overscan (bias) level of one amplifier in ADU.

    Parameters
    ----------
    overscan : array, shape (nrow, ncol)
        The ``BIASSECx`` pixels in ADU (master bias already subtracted if any).
    per_row : bool
        Return one level per row (the clipped mean of that row) instead of one number.
    nsigma, niter : float, int
        Sigma clipping of outliers (hot pixels, cosmic hits in the serial register).

    Returns
    -------
    float or ndarray, shape (nrow,)
        Sigma-clipped mean level(s), ADU.
    """
    overscan = np.asarray(overscan, dtype=np.float64)
    level, _, keep = _clipped_stats(overscan, nsigma, niter)
    if not per_row:
        return level
    counts = keep.sum(axis=1)
    sums = np.where(keep, overscan, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), level)


def overscan_row_model(overscan, degree=3, nsigma=4.0, niter=5):
    """Return a smooth bias level along the rows of one amplifier, in ADU.

    The per-row clipped means of the overscan are too noisy to subtract row by
    row (read noise / sqrt(ncol)), but a slow bias gradient along the rows biases
    a single level by up to a few ADU at the amplifier's ends and inflates the
    read-noise estimate.  A Legendre series of low degree fitted to the per-row
    levels (with outlier rejection) follows the gradient without adding noise.

    Parameters
    ----------
    overscan : array, shape (nrow, ncol)
        The ``BIASSECx`` pixels in ADU.
    degree : int
        Legendre degree along the rows.
    nsigma, niter : float, int
        Sigma clipping of pixels and of per-row levels.

    Returns
    -------
    ndarray, shape (nrow,)
    """
    rows = overscan_level(overscan, per_row=True, nsigma=nsigma, niter=niter)
    u = np.linspace(-1.0, 1.0, rows.size)
    keep = np.ones(rows.size, bool)
    for _ in range(niter):
        coef = np.polynomial.legendre.legfit(u[keep], rows[keep], degree)
        model = np.polynomial.legendre.legval(u, coef)
        resid = rows - model
        scale = 1.4826 * np.median(np.abs(resid[keep])) + 1e-12
        new_keep = np.abs(resid) < nsigma * scale
        if new_keep.sum() <= degree + 1 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return model


def estimate_readnoise(overscan, per_row=False, nsigma=4.0, niter=5):
    """Return the read noise of one amplifier from its overscan, in ADU.

    Parameters
    ----------
    overscan : array, shape (nrow, ncol)
        The ``BIASSECx`` pixels in ADU.
    per_row : bool
        Measure the rms about the per-row levels (when the bias varies with row).
    nsigma, niter : float, int
        Sigma clipping.

    Returns
    -------
    float
        Robust rms in ADU (sigma-clipped, corrected for the clipping; includes the
        ADU quantisation noise, as the data pixels do).  Multiply by the gain for
        electrons.
    """
    overscan = np.asarray(overscan, dtype=np.float64)
    if per_row:
        ncol = overscan.shape[1]
        residual = overscan - overscan_level(overscan, per_row=True, nsigma=nsigma, niter=niter)[:, None]
        _, rms, _ = _clipped_stats(residual, nsigma, niter)
        return rms * math.sqrt(ncol / max(ncol - 1, 1))
    _, rms, _ = _clipped_stats(overscan, nsigma, niter)
    return rms


@numba.njit(cache=True, nogil=True)
def _smooth_variance(charge, readnoise, good, halfwidth, nsig, quadratic, out):
    """Variance from the column-neighbour model of the expected charge (module docstring)."""
    ny, nx = charge.shape
    # least-squares a + c*d^2 through d = +-1..+-halfwidth, evaluated at d = 0
    s2 = 0.0
    s4 = 0.0
    for d in range(1, halfwidth + 1):
        s2 += 2.0 * d * d
        s4 += 2.0 * d ** 4
    det = 2.0 * halfwidth * s4 - s2 * s2
    for i in range(ny):
        lo = max(i - halfwidth, 0)
        hi = min(i + halfwidth + 1, ny)
        for j in range(nx):
            total = 0.0
            total2 = 0.0
            count = 0
            for k in range(lo, hi):
                if k != i and good[k, j]:
                    total += charge[k, j]
                    total2 += charge[k, j] * (k - i) * (k - i)
                    count += 1
            c0 = charge[i, j]
            rv = readnoise[i, j] * readnoise[i, j]
            if count == 0:
                expected = max(c0, 0.0)
            else:
                if quadratic and count == 2 * halfwidth:
                    expected = (s4 * total - s2 * total2) / det
                else:
                    expected = total / count
                if abs(c0 - expected) > nsig * math.sqrt(max(expected, 0.0) + rv):
                    expected = max(c0, 0.0)
            out[i, j] = max(expected + rv, 0.5 * rv)


def model_variance(charge, readnoise, good=None, halfwidth=3, nsig=5.0, model="smooth", quadratic=False):
    """Return the variance (electron^2) of each pixel: Poisson + read noise^2.

    Parameters
    ----------
    charge : array, shape (ny, nx)
        Collected charge in electrons (before dark subtraction and pixel flat).
    readnoise : array, shape (ny, nx)
        Read noise in electrons.
    good : array of bool, shape (ny, nx), optional
        Pixels usable as neighbours (unmasked); all when omitted.
    halfwidth : int
        Rows on each side used by the smooth model.
    nsig : float
        Departure (in sigma) beyond which a pixel's own value is used.
    quadratic : bool
        Predict the pixel from a least-squares ``a + c*d^2`` fit to its column
        neighbours instead of their mean (noisier; not better on arc frames).
    model : {'smooth', 'pixel'}
        ``'pixel'``: ``max(charge, 0) + rn^2``; ``'smooth'``: the neighbour model of
        the module docstring, ``expected + rn^2`` floored at ``rn^2 / 2``.

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    charge = np.ascontiguousarray(charge, dtype=np.float64)
    readnoise = np.asarray(readnoise, dtype=np.float64)
    if model == "pixel":
        return np.maximum(charge, 0.0) + readnoise ** 2
    if model != "smooth":
        raise ValueError(f"unknown variance model {model!r}")
    readnoise = (np.full(charge.shape, float(readnoise)) if readnoise.ndim == 0
                 else np.ascontiguousarray(np.broadcast_to(readnoise, charge.shape)))
    good = np.ones(charge.shape, dtype=bool) if good is None else np.ascontiguousarray(good, dtype=bool)
    var = np.empty_like(charge)
    _smooth_variance(charge, readnoise, good, int(halfwidth), float(nsig), bool(quadratic), var)
    return var


def _calib_image(value, calib_path):
    """Return a calibration image (array or FITS path) as float64, or None."""
    if value is False:
        return None
    if value is None or value is True:
        value = calib_path
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        from .io.util import open_fits, read_array
        with open_fits(value) as hdus:
            data = read_array(hdus, 0, value, ndim=2)
        return np.asarray(data, dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def _amp_setting(calib, header, amp, key, header_key, default):
    """Return a per-amp setting: calibration yaml, then raw header, then default (logged)."""
    if calib and amp in calib.get("amplifiers", {}):
        return float(calib["amplifiers"][amp][key])
    if f"{header_key}{amp}" in header:
        return float(header[f"{header_key}{amp}"])
    log.error("no %s for amplifier %s in the calibration or the header; using %s", key, amp, default)
    return float(default)


def preproc_camera(raw_image, header, calib=None, *, bias=None, dark=None, pixflat=None,
                   cosmics=True, overscan_per_row=False, variance_model="smooth",
                   psf_sigma=None, cosmics_nsig=5.0, cosmics_cfudge=3.0, cosmics_c2fudge=0.5):
    """Turn one raw camera image into a preproc :class:`~desired.image.Image`.

    Parameters
    ----------
    raw_image : array of uint16, shape (ny_raw, nx_raw)
        Raw ADU including pre/overscan (:func:`desired.io.raw.read_raw_camera`).
    header : dict
        Merged exposure + camera keywords: ``BIASSECx``, ``DATASECx``, ``CCDSECx``,
        ``CAMERA``, ``EXPTIME`` (dark scaling) and whatever else is copied along.
    calib : dict, optional
        :func:`desired.io.calib.read_ccd_calib` output (gain, readnoise, saturation per
        amp, ``dark_current`` e-/pixel/s, ``bad_columns``, ``dead_amplifiers``, master
        image paths).  Without it the header's ``GAINx``/``SATURLEVx`` are used.
    bias, dark, pixflat : None, False, str or array, optional
        ``None``: use the calibration's file when it names one; ``False``: skip;
        a path or an array: use it.  bias is in ADU (raw-size or trimmed-size), dark
        in electrons per second (trimmed size; replaces ``dark_current``), pixflat
        dimensionless (trimmed size).
    cosmics : bool
        Run cosmic-ray rejection.
    overscan_per_row : bool
        Subtract a per-row overscan level instead of one level per amp.
    variance_model : {'smooth', 'pixel'}
        See :func:`model_variance`.
    psf_sigma : (float, float), optional
        PSF widths (x, y) in pixels for the cosmic test; DESI's measured per-band
        PSF gradients otherwise.
    cosmics_nsig, cosmics_cfudge, cosmics_c2fudge : float
        :func:`desired.cosmics.find_cosmics` parameters.

    Returns
    -------
    Image
        ``pix`` electrons, ``ivar`` 1/e^2 (0 where masked), ``mask`` ccdmask bits,
        ``readnoise`` e- per pixel, header with GAINx, OBSRDNx (e-), OVERSCNx (ADU),
        SATULEVx, BADAMPS, CAMERA, SPECGRPH and calibration provenance.

    Raises
    ------
    ValueError
        If section keywords are missing or inconsistent, or calibration images have
        the wrong shape.
    DeadCameraError
        If every amplifier is dead.
    """
    raw = np.asarray(raw_image)
    if raw.ndim != 2:
        raise ValueError(f"raw image must be 2-D, got shape {raw.shape}")
    hdr = dict(header)
    camera, amps = _camera_and_amplifiers(hdr, calib)
    calib = calib or {}
    sections, shape = _amplifier_sections(raw.shape, hdr, amps, camera)
    raw_bias, trimmed_bias, dark_img, flat_img = _calibration_images(
        bias, dark, pixflat, calib, raw.shape, shape, camera)

    charge, readnoise, mask, out_hdr = _calibrate_amplifiers(
        raw, hdr, calib, sections, shape, camera, raw_bias, trimmed_bias, overscan_per_row)
    dark_e, out_hdr["DARKSRC"] = _dark_electrons(dark_img, calib, hdr)
    pix, readnoise, flat, flat_mask = _apply_pixflat(charge - dark_e, readnoise, flat_img)
    mask |= flat_mask
    mask |= _bad_column_mask(calib.get("bad_columns", []), shape, camera)
    if cosmics:
        crs = _cosmic_pixels(pix, mask, readnoise, camera, psf_sigma,
                             nsig=cosmics_nsig, cfudge=cosmics_cfudge, c2fudge=cosmics_c2fudge)
        mask[crs] |= ccdmask.COSMIC
        out_hdr["NCOSMIC"] = int(crs.sum())

    ivar = _inverse_variance(charge, readnoise, flat, mask == 0, variance_model)
    out_hdr["VARMODEL"] = variance_model
    _warn_missing_keywords(out_hdr, camera)
    return Image(pix, ivar, mask=mask, readnoise=readnoise, header=out_hdr, camera=camera)


def _camera_and_amplifiers(hdr, calib):
    """Return the lower-case camera name and the amplifier names of a raw camera header.

    Parameters
    ----------
    hdr : dict
        Raw camera header.
    calib : dict or None
        Calibration; its ``camera`` is used when the header has no ``CAMERA``.

    Returns
    -------
    camera : str
    amps : list of str

    Raises
    ------
    ValueError
        If neither gives a camera or the header has no ``BIASSECx`` keyword.
    """
    camera = str(hdr.get("CAMERA") or (calib or {}).get("camera") or "").lower()
    if not camera:
        raise ValueError("raw header has no CAMERA")
    amps = amplifier_names(hdr)
    if not amps:
        raise ValueError(f"camera {camera}: header has no BIASSECx keywords")
    return camera, amps


def _amplifier_sections(raw_shape, hdr, amps, camera):
    """Parse and check the ``BIASSEC``/``DATASEC``/``CCDSEC`` sections of each amplifier.

    Parameters
    ----------
    raw_shape : (int, int)
        Shape of the raw image (rows, columns).
    hdr : dict
        Raw camera header.
    amps : list of str
        Amplifier names.
    camera : str
        Camera name, for the error messages.

    Returns
    -------
    sections : dict
        ``sections[amp][key]`` is a (row slice, column slice) for key in
        ``BIASSEC``, ``DATASEC``, ``CCDSEC``.
    shape : (int, int)
        Shape of the trimmed image (the extent of the ``CCDSEC`` sections).

    Raises
    ------
    ValueError
        If a keyword is missing, a data section and its CCD section differ in size, or
        a section exceeds the raw image.
    """
    sections = {}
    for amp in amps:
        try:
            sections[amp] = {k: parse_section(hdr[f"{k}{amp}"]) for k in ("BIASSEC", "DATASEC", "CCDSEC")}
        except KeyError as err:
            raise ValueError(f"camera {camera}: header lacks {err.args[0]}") from None
        ds, cs = sections[amp]["DATASEC"], sections[amp]["CCDSEC"]
        if (ds[0].stop - ds[0].start, ds[1].stop - ds[1].start) != (cs[0].stop - cs[0].start, cs[1].stop - cs[1].start):
            raise ValueError(f"camera {camera} amp {amp}: DATASEC and CCDSEC sizes differ")
        for key in ("BIASSEC", "DATASEC"):
            rows, cols = sections[amp][key]
            if rows.stop > raw_shape[0] or cols.stop > raw_shape[1]:
                raise ValueError(f"camera {camera} amp {amp}: {key}{amp} exceeds the raw image {raw_shape}")
    ny = max(s["CCDSEC"][0].stop for s in sections.values())
    nx = max(s["CCDSEC"][1].stop for s in sections.values())
    return sections, (ny, nx)


def _calibration_images(bias, dark, pixflat, calib, raw_shape, shape, camera):
    """Load the master bias, dark and pixel flat and check their shapes.

    Parameters
    ----------
    bias, dark, pixflat : None, False, str or array
        As in :func:`preproc_camera`.
    calib : dict
        Calibration (its ``bias``, ``dark`` and ``pixflat`` paths are the defaults).
    raw_shape, shape : (int, int)
        Shapes of the raw and of the trimmed image.
    camera : str
        Camera name, for the error messages.

    Returns
    -------
    raw_bias, trimmed_bias : ndarray or None
        The bias in ADU, as whichever of the two it matches (the other is None).
    dark_img : ndarray, shape ``shape``, or None
        Dark current in electrons per second.
    flat_img : ndarray, shape ``shape``, or None
        Pixel flat, dimensionless.

    Raises
    ------
    ValueError
        If an image has the wrong shape.
    """
    bias_img = _calib_image(bias, calib.get("bias"))
    dark_img = _calib_image(dark, calib.get("dark"))
    flat_img = _calib_image(pixflat, calib.get("pixflat"))
    for name, img in (("dark", dark_img), ("pixflat", flat_img)):
        if img is not None and img.shape != shape:
            raise ValueError(f"camera {camera}: {name} image shape {img.shape} differs from the trimmed image {shape}")
    raw_bias = trimmed_bias = None
    if bias_img is not None:
        if bias_img.shape == raw_shape:
            raw_bias = bias_img
        elif bias_img.shape == shape:
            trimmed_bias = bias_img
        else:
            raise ValueError(f"camera {camera}: bias shape {bias_img.shape} matches neither the raw {raw_shape} "
                             f"nor the trimmed {shape} image")
    return raw_bias, trimmed_bias, dark_img, flat_img


def _overscan_model(ocs, same_rows, per_row, camera, amp):
    """Return the overscan level and read noise of one amplifier, in ADU.

    Parameters
    ----------
    ocs : ndarray, shape (nrow, ncol)
        The ``BIASSECx`` pixels in ADU (master bias already subtracted if any).
    same_rows : bool
        Whether ``BIASSECx`` and ``DATASECx`` span the same rows.
    per_row : bool
        Subtract one level per row (``overscan_per_row`` of :func:`preproc_camera`).
    camera, amp : str
        Names, for the error message.

    Returns
    -------
    level : float
        Single sigma-clipped level (the ``OVERSCNx`` keyword).
    level_sub : float or ndarray, shape (nrow, 1)
        Level subtracted from the data: per-row levels, a smooth model along the rows
        (when the rows match and there are more than 100), or ``level``.
    rdn_adu : float
        Read noise about ``level_sub``.

    Raises
    ------
    ValueError
        If ``per_row`` is asked for and the rows differ.
    """
    level = overscan_level(ocs)
    if per_row:
        if not same_rows:
            raise ValueError(f"camera {camera} amp {amp}: per-row overscan needs BIASSEC and DATASEC "
                             "to span the same rows")
        level_sub = overscan_level(ocs, per_row=True)[:, None]
        rdn_adu = estimate_readnoise(ocs, per_row=True)
    elif same_rows and ocs.shape[0] > 100:
        # smooth bias gradient along the rows (see overscan_row_model)
        level_sub = overscan_row_model(ocs)[:, None]
        rdn_adu = estimate_readnoise(ocs - level_sub)
    else:
        level_sub = level
        rdn_adu = estimate_readnoise(ocs)
    return level, level_sub, rdn_adu


def _dead_amplifier_reason(amp, dead_listed, rdn_adu, data):
    """Return why an amplifier is dead, or None when it is alive.

    Parameters
    ----------
    amp : str
    dead_listed : set of str
        Amplifiers listed as dead in the calibration.
    rdn_adu : float
        Measured overscan rms in ADU.
    data : ndarray
        The ``DATASECx`` pixels in ADU.

    Returns
    -------
    str or None
    """
    if amp in dead_listed:
        return "listed as dead in the calibration"
    if rdn_adu < MIN_READNOISE_ADU:
        return f"overscan rms {rdn_adu:.3f} ADU (zero read noise)"
    if np.ptp(data) == 0:
        return f"constant data section ({data.flat[0]:.0f} ADU)"
    return None


def _calibrate_amplifier(raw, sec, amp, hdr, calib, camera, raw_bias, trimmed_bias, overscan_per_row):
    """Subtract the overscan of one amplifier, apply its gain and flag it.

    Parameters
    ----------
    raw : ndarray, shape (ny_raw, nx_raw)
        Raw ADU.
    sec : dict
        The amplifier's sections (:func:`_amplifier_sections`).
    amp : str
    hdr, calib : dict
        Raw header and calibration (gain, saturation, nominal read noise, dead amps).
    camera : str
    raw_bias, trimmed_bias : ndarray or None
        Master bias in ADU (:func:`_calibration_images`).
    overscan_per_row : bool
        See :func:`preproc_camera`.

    Returns
    -------
    signal : ndarray, shape of ``CCDSECx``
        Collected charge in electrons.
    rdn_e : float
        Read noise in electrons.
    mask : ndarray of int32, shape of ``CCDSECx``
        ``SATURATED`` and ``BADAMP`` bits.
    keywords : dict
        ``GAINx``, ``OBSRDNx``, ``OVERSCNx`` and ``SATULEVx``.
    dead : bool
        Whether the amplifier is dead.
    """
    ocs = raw[sec["BIASSEC"]].astype(np.float64)
    data = raw[sec["DATASEC"]].astype(np.float64)
    if raw_bias is not None:
        ocs -= raw_bias[sec["BIASSEC"]]
        data -= raw_bias[sec["DATASEC"]]
    gain = _amp_setting(calib, hdr, amp, "gain", "GAIN", 1.0)
    saturation = _amp_setting(calib, hdr, amp, "saturation", "SATURLEV", 65535.0)
    # the overscan rows that match the data rows give the per-row level
    orows, drows = sec["BIASSEC"][0], sec["DATASEC"][0]
    same_rows = (orows.start, orows.stop) == (drows.start, drows.stop)
    level, level_sub, rdn_adu = _overscan_model(ocs, same_rows, overscan_per_row, camera, amp)
    rdn_e = rdn_adu * gain
    ccd = sec["CCDSEC"]

    saturated = raw[sec["DATASEC"]] >= saturation
    mask = np.where(saturated, ccdmask.SATURATED, 0).astype(np.int32)
    reason = _dead_amplifier_reason(amp, set(calib.get("dead_amplifiers", [])), rdn_adu, data)
    if reason:
        log.warning("camera %s amplifier %s is dead (%s): masked BADAMP", camera, amp, reason)
        mask |= ccdmask.BADAMP

    signal = (data - level_sub) * gain
    if trimmed_bias is not None:
        signal -= trimmed_bias[ccd] * gain
    nominal = calib.get("amplifiers", {}).get(amp, {}).get("readnoise")
    if nominal and not reason and abs(rdn_e - nominal) > 0.5 * nominal:
        log.warning("camera %s amplifier %s: measured read noise %.2f e- differs from the nominal %.2f e-",
                    camera, amp, rdn_e, nominal)
    keywords = {f"GAIN{amp}": gain, f"OBSRDN{amp}": round(rdn_e, 4), f"OVERSCN{amp}": round(level, 4),
                f"SATULEV{amp}": saturation}
    log.info("camera %s amp %s: overscan %.3f ADU, read noise %.3f e-, gain %.4f e-/ADU%s",
             camera, amp, level, rdn_e, gain, f", {int(saturated.sum())} saturated" if saturated.any() else "")
    return signal, rdn_e, mask, keywords, bool(reason)


def _calibrate_amplifiers(raw, hdr, calib, sections, shape, camera, raw_bias, trimmed_bias, overscan_per_row):
    """Assemble the trimmed charge, read-noise and mask images of all amplifiers.

    Parameters
    ----------
    raw : ndarray, shape (ny_raw, nx_raw)
        Raw ADU.
    hdr, calib : dict
        Raw header and calibration.
    sections : dict
        Per-amp sections (:func:`_amplifier_sections`).
    shape : (int, int)
        Trimmed image shape (ny, nx).
    camera : str
    raw_bias, trimmed_bias : ndarray or None
        Master bias in ADU.
    overscan_per_row : bool
        See :func:`preproc_camera`.

    Returns
    -------
    charge : ndarray, shape (ny, nx)
        Collected electrons (before dark and pixel flat).
    readnoise : ndarray, shape (ny, nx)
        Read noise in electrons.
    mask : ndarray of int32, shape (ny, nx)
        ccdmask bits (``SATURATED``, ``BADAMP``).
    out_hdr : dict
        The raw header plus ``CAMERA``, ``SPECGRPH``, per-amp keywords and ``BADAMPS``.

    Raises
    ------
    DeadCameraError
        If every amplifier is dead.
    """
    charge = np.zeros(shape)
    readnoise = np.zeros(shape)
    mask = np.zeros(shape, dtype=np.int32)
    out_hdr = dict(hdr)
    out_hdr["CAMERA"] = camera
    if "SPECGRPH" not in out_hdr and camera[1:].isdigit():
        out_hdr["SPECGRPH"] = int(camera[1:])
    bad_amps = []
    for amp, sec in sections.items():
        signal, rdn_e, amp_mask, keywords, dead = _calibrate_amplifier(
            raw, sec, amp, hdr, calib, camera, raw_bias, trimmed_bias, overscan_per_row)
        ccd = sec["CCDSEC"]
        charge[ccd] = signal
        readnoise[ccd] = rdn_e
        mask[ccd] |= amp_mask
        out_hdr.update(keywords)
        if dead:
            bad_amps.append(amp)
    if len(bad_amps) == len(sections):
        raise DeadCameraError(camera, f"all amplifiers ({', '.join(sections)}) are dead")
    if bad_amps:
        out_hdr["BADAMPS"] = ",".join(f"{camera}{a}" for a in bad_amps)
    return charge, readnoise, mask, out_hdr


def _dark_electrons(dark_img, calib, hdr):
    """Return the dark charge (electrons) of the exposure and its source.

    Parameters
    ----------
    dark_img : ndarray, shape (ny, nx), or None
        Dark current in electrons per second.
    calib : dict
        Calibration; its scalar ``dark_current`` (e-/pixel/s) is used without an image.
    hdr : dict
        Raw header (``EXPTIME`` in s).

    Returns
    -------
    dark_e : float or ndarray, shape (ny, nx)
    source : {'image', 'scalar'}
        The ``DARKSRC`` keyword.
    """
    exptime = float(hdr.get("EXPTIME", 0.0) or 0.0)
    if dark_img is not None:
        return dark_img * exptime, "image"
    return float(calib.get("dark_current", 0.0)) * exptime, "scalar"


def _apply_pixflat(pix, readnoise, flat_img):
    """Divide the image and read noise by the pixel flat; flag its bad pixels.

    Parameters
    ----------
    pix, readnoise : ndarray, shape (ny, nx)
        Image and read noise in electrons (``pix`` is divided in place).
    flat_img : ndarray, shape (ny, nx), or None
        Pixel flat; nothing is done without one.

    Returns
    -------
    pix, readnoise : ndarray, shape (ny, nx)
        Flat-fielded image and read noise, electrons.
    flat : ndarray, shape (ny, nx), or None
        The flat used (1 where ``flat_img <= 0``).
    mask : ndarray of int32 or int
        ``PIXFLATZERO`` (flat <= 0) and ``PIXFLATLOW`` (0 < flat < 0.1) bits.
    """
    if flat_img is None:
        return pix, readnoise, None, 0
    mask = np.where(flat_img <= 0, ccdmask.PIXFLATZERO, 0).astype(np.int32)
    mask |= np.where((flat_img > 0) & (flat_img < 0.1), ccdmask.PIXFLATLOW, 0).astype(np.int32)
    flat = np.where(flat_img > 0, flat_img, 1.0)
    pix /= flat
    return pix, readnoise / flat, flat, mask


def _bad_column_mask(bad_columns, shape, camera):
    """Return the ``BAD`` bits of the calibration's bad columns.

    Parameters
    ----------
    bad_columns : list of int
        Column indices in the trimmed image (those outside it are logged and ignored).
    shape : (int, int)
        Trimmed image shape (ny, nx).
    camera : str

    Returns
    -------
    ndarray of int32, shape (ny, nx)
    """
    mask = np.zeros(shape, dtype=np.int32)
    nx = shape[1]
    for col in bad_columns:
        if 0 <= col < nx:
            mask[:, col] |= ccdmask.BAD
        else:
            log.warning("camera %s: bad column %d outside the image (%d columns)", camera, col, nx)
    return mask


def _cosmic_pixels(pix, mask, readnoise, camera, psf_sigma, *, nsig, cfudge, c2fudge):
    """Return the cosmic-ray pixels of a preprocessed image.

    Parameters
    ----------
    pix, readnoise : ndarray, shape (ny, nx)
        Image and read noise in electrons.
    mask : ndarray of int, shape (ny, nx)
        ccdmask bits; only unmasked pixels are used.
    camera : str
        Its band picks DESI's PSF gradients when ``psf_sigma`` is None.
    psf_sigma : (float, float) or None
        PSF widths (x, y) in pixels.
    nsig, cfudge, c2fudge : float
        :func:`desired.cosmics.find_cosmics` parameters.

    Returns
    -------
    ndarray of bool, shape (ny, nx)
    """
    if psf_sigma is not None:
        grad_kw = {"psf_sigma_x": psf_sigma[0], "psf_sigma_y": psf_sigma[1]}
    else:
        grad_kw = {"psf_gradients": BAND_PSF_GRADIENTS[camera[0]]}
    return find_cosmics(pix, mask == 0, readnoise, nsig=nsig, cfudge=cfudge, c2fudge=c2fudge, **grad_kw)


def _inverse_variance(charge, readnoise, flat, good, variance_model):
    """Return the inverse variance (1/e^2) of the flat-fielded image, 0 where masked.

    Parameters
    ----------
    charge : ndarray, shape (ny, nx)
        Collected electrons (before dark and pixel flat).
    readnoise : ndarray, shape (ny, nx)
        Flat-fielded read noise in electrons.
    flat : ndarray, shape (ny, nx), or None
        Pixel flat applied to the image.
    good : ndarray of bool, shape (ny, nx)
        Unmasked pixels.
    variance_model : {'smooth', 'pixel'}
        See :func:`model_variance`.

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    rn_charge = readnoise if flat is None else readnoise * flat
    var = model_variance(charge, rn_charge, good=good, model=variance_model)
    if flat is not None:
        var /= flat * flat
    ivar = np.zeros(charge.shape)
    np.divide(1.0, var, out=ivar, where=good & (var > 0))
    return ivar


def _warn_missing_keywords(out_hdr, camera):
    """Log the :data:`EXTRACTION_KEYWORDS` that the preproc header lacks."""
    missing = [k for k in EXTRACTION_KEYWORDS if k not in out_hdr]
    if missing:
        log.warning("camera %s: raw header lacks %s (needed downstream by the extraction)", camera, missing)
