"""Per-fiber QA scores of frames and cframes (the SCORES HDU of DESI's frame files).

DESI's cframes carry one row of scores per fiber for each stage of the calibration
(``SUM/MEDIAN_{STAGE}_COUNT_{B}``, ``MEDIAN_{STAGE}_SNR_{B}`` with STAGE in RAW, FFLAT,
SKYSUB, CALIB), computed in a fixed wavelength window per camera arm; desispec's grouping
copies them into the spectra files and refuses a cframe without the HDU.  The windows and
the definitions follow desispec's ``specscore.compute_frame_scores`` for frames whose flux is
given per wavelength bin (its default, used by ``desi_proc`` for every stage).
"""
from __future__ import annotations

import numpy as np

#: wavelength windows (Angstrom) of the per-band scores (desispec.specscore.tophat_wave)
TOPHAT_WAVE = {"b": (4000.0, 5800.0), "r": (5800.0, 7600.0), "z": (7600.0, 9800.0)}


def frame_scores(wave, flux, ivar, band, stage):
    """The count scores of one frame stage in the tophat window of its camera arm.

    Parameters
    ----------
    wave : ndarray (nwave,)
        Wavelength grid, Angstrom.
    flux, ivar : ndarray (nspec, nwave)
        Flux (any unit per bin) and its inverse variance.
    band : {"b", "r", "z"}
        Camera arm (selects the window).
    stage : str
        Name of the calibration stage in the column names, e.g. ``"SKYSUB"`` or ``"CALIB"``.

    Returns
    -------
    dict of ndarray (nspec,), float64
        ``SUM_{stage}_COUNT_{B}`` (Σ flux over the window), ``MEDIAN_{stage}_COUNT_{B}``
        (median of flux / Δλ, per Angstrom), ``MEDIAN_{stage}_SNR_{B}`` (median of
        sqrt(ivar)·flux / sqrt(Δλ), per sqrt(Angstrom)); empty when the frame does not
        reach the window.
    """
    window = _band_window(wave, np.asarray(flux, dtype=np.float64), np.asarray(ivar, dtype=np.float64), band)
    if window is None:
        return {}
    dwave, f, iv = window
    B = band.upper()
    return {f"SUM_{stage}_COUNT_{B}": np.sum(f, axis=1),
            f"MEDIAN_{stage}_COUNT_{B}": np.median(f / dwave, axis=1),
            f"MEDIAN_{stage}_SNR_{B}": np.median(np.sqrt(iv) * f / np.sqrt(dwave), axis=1)}


def band_scores(wave, flux, ivar, band, suffix="COADD"):
    """desispec's flux-per-Angstrom scores of spectra in the tophat window of ``band``.

    Returns
    -------
    dict
        ``INTEG_{suffix}_FLUX_{B}`` (Σ flux Δλ), ``MEDIAN_{suffix}_FLUX_{B}``,
        ``MEDIAN_{suffix}_SNR_{B}`` (median of sqrt(ivar) flux / sqrt(Δλ)), float32 (nspec,).
    """
    window = _band_window(wave, np.asarray(flux), np.asarray(ivar), band)
    if window is None:
        return {}
    dwave, f, iv = window
    B = band.upper()
    return {f"INTEG_{suffix}_FLUX_{B}": np.sum(f * dwave, axis=1).astype(np.float32),
            f"MEDIAN_{suffix}_FLUX_{B}": np.median(f, axis=1).astype(np.float32),
            f"MEDIAN_{suffix}_SNR_{B}": np.median(np.sqrt(iv) * f / np.sqrt(dwave), axis=1).astype(np.float32)}


def _band_window(wave, flux, ivar, band):
    """(Δλ, flux, ivar clipped at 0) in the tophat window of ``band``, or None when ``wave`` misses it."""
    wave = np.asarray(wave, dtype=np.float64)
    lo, hi = TOPHAT_WAVE[band]
    win = (wave >= lo) & (wave < hi)
    if not win.any():
        return None
    return np.gradient(wave)[win], flux[:, win], np.clip(ivar[:, win], 0, None)
