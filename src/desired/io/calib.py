"""Per-camera CCD calibration constants (the project's ``ccd-{camera}.yaml`` format).

This replaces DESI's ``$DESI_SPECTRO_CALIB`` yaml tree.  One file per camera::

    camera: b0
    amplifiers:                # one entry per amplifier present in the raw file
      A: {gain: 1.62, readnoise: 3.1, saturation: 65000}    # e-/ADU, e-, ADU
      B: {gain: 1.58, readnoise: 3.0, saturation: 65000}
      ...
    dark_current: 0.0006       # e-/pixel/s, scaled by EXPTIME (used when no dark image)
    bad_columns: [1023, 2500]  # 0-based columns of the trimmed image
    bias: null                 # optional master-bias FITS, relative to this file
    dark: null                 # optional master-dark FITS (e-/s per pixel)
    pixflat: null              # optional pixel-flat FITS
    dead_amplifiers: []        # amplifiers known to be dead (masked BADAMP)

:func:`read_ccd_calib` validates and returns a plain dict with these keys filled
(defaults: no bad columns, zero dark current, no master images).
"""
from __future__ import annotations

import os

import yaml

from .util import DataModelError, atomic_path

_AMP_KEYS = ("gain", "readnoise", "saturation")


def read_ccd_calib(path):
    """Read and validate a ``ccd-{camera}.yaml`` file.

    Parameters
    ----------
    path : str

    Returns
    -------
    dict
        Keys ``camera``, ``amplifiers`` (amp -> dict gain/readnoise/saturation),
        ``dark_current``, ``bad_columns`` (list of int), ``bias``/``dark``/``pixflat``
        (absolute paths or None) and ``dead_amplifiers``.

    Raises
    ------
    DataModelError
        If the file is missing, not yaml, or lacks required entries.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataModelError(path, "calibration file does not exist")
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        raise DataModelError(path, f"not valid yaml ({err})") from err
    if not isinstance(doc, dict) or "camera" not in doc or "amplifiers" not in doc:
        raise DataModelError(path, "needs 'camera' and 'amplifiers'")
    amps = {}
    for amp, values in doc["amplifiers"].items():
        missing = [k for k in _AMP_KEYS if k not in (values or {})]
        if missing:
            raise DataModelError(path, f"amplifier {amp} lacks {missing}")
        amps[str(amp)] = {k: float(values[k]) for k in _AMP_KEYS}
    base = os.path.dirname(os.path.abspath(path))
    out = {
        "camera": str(doc["camera"]).lower(),
        "amplifiers": amps,
        "dark_current": float(doc.get("dark_current", 0.0) or 0.0),
        "bad_columns": [int(c) for c in (doc.get("bad_columns") or [])],
        "dead_amplifiers": [str(a) for a in (doc.get("dead_amplifiers") or [])],
    }
    for key in ("bias", "dark", "pixflat"):
        value = doc.get(key)
        out[key] = os.path.join(base, value) if value else None
    return out


def write_ccd_calib(path, calib):
    """Write a ``ccd-{camera}.yaml`` file (atomically).

    Parameters
    ----------
    path : str
    calib : dict
        Same keys as returned by :func:`read_ccd_calib`; master-image paths are
        written as given (make them relative to the yaml file's directory).
    """
    doc = {
        "camera": str(calib["camera"]).lower(),
        "amplifiers": {str(a): {k: float(v[k]) for k in _AMP_KEYS} for a, v in calib["amplifiers"].items()},
        "dark_current": float(calib.get("dark_current", 0.0)),
        "bad_columns": [int(c) for c in calib.get("bad_columns", [])],
        "dead_amplifiers": [str(a) for a in calib.get("dead_amplifiers", [])],
        "bias": calib.get("bias"),
        "dark": calib.get("dark"),
        "pixflat": calib.get("pixflat"),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)


def read_sky_template(path):
    """Read a night-sky template: two ASCII columns, vacuum wavelength (Angstrom) and flux.

    The format of desispec's ``spec-sky.dat`` (``#`` comment lines, then rows of
    wavelength and flux in any linear flux unit).

    Parameters
    ----------
    path : str

    Returns
    -------
    wave, flux : ndarray, shape (nwave,)
        Increasing wavelengths (Angstrom) and the flux at them.

    Raises
    ------
    DataModelError
        If the file is missing, not two numeric columns, or its wavelengths do not increase.
    """
    import numpy as np

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataModelError(path, "sky template does not exist")
    try:
        data = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as err:
        raise DataModelError(path, f"not two numeric columns ({err})") from err
    if data.shape[1] < 2 or data.shape[0] < 10:
        raise DataModelError(path, f"needs >= 10 rows of (wavelength, flux), got shape {data.shape}")
    wave, flux = data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)
    if not np.all(np.diff(wave) > 0) or not np.all(np.isfinite(flux)):
        raise DataModelError(path, "wavelengths must increase and fluxes be finite")
    return wave, flux


def write_sky_template(path, wave, flux):
    """Write a night-sky template in the two-column format of :func:`read_sky_template`.

    Parameters
    ----------
    path : str
    wave, flux : array, shape (nwave,)
        Vacuum wavelength (Angstrom) and flux.
    """
    import numpy as np

    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.column_stack([wave, flux]), fmt=["%.3f", "%.6g"],
                   header="WAVELENGTH FLUX  (vacuum Angstrom; mean night sky)")
