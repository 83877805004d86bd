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
    wave = np.asarray(wave, dtype=np.float64)
    lo, hi = TOPHAT_WAVE[band]
    win = (wave >= lo) & (wave < hi)
    if not win.any():
        return {}
    dwave = np.gradient(wave)[win]
    f = np.asarray(flux, dtype=np.float64)[:, win]
    iv = np.clip(np.asarray(ivar, dtype=np.float64)[:, win], 0.0, None)
    B = band.upper()
    return {f"SUM_{stage}_COUNT_{B}": np.sum(f, axis=1),
            f"MEDIAN_{stage}_COUNT_{B}": np.median(f / dwave, axis=1),
            f"MEDIAN_{stage}_SNR_{B}": np.median(np.sqrt(iv) * f / np.sqrt(dwave), axis=1)}
