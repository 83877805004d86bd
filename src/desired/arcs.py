"""Arc-lamp line lists and line detection helpers for the PSF fit.

The lamp line list normally comes from the simulator's table
(``desired.sim.arclines.arc_lines``).  Until that module exists a provisional
list is used: centroids (vacuum Angstrom) and relative strengths of the
strongest peaks of a typical DESI arc spectrum (Hg, Cd, Ne, Ar, Kr, Xe lamps).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: provisional (vacuum wavelength [A], relative intensity) per camera band
_PROVISIONAL = {
    "b": [(3611.69, 0.0096), (3613.90, 0.00355), (3651.68, 0.0496), (3654.10, 0.00191),
          (3656.29, 0.0103), (3664.69, 0.00805), (4047.99, 0.118), (4079.29, 0.00832),
          (4320.80, 0.00121), (4349.09, 0.00136), (4359.71, 0.237), (4679.69, 0.0258),
          (4801.21, 0.0734), (5087.47, 0.0988), (5462.59, 0.42), (5571.81, 0.00414),
          (5765.62, 0.00122), (5770.82, 0.0551), (5791.91, 0.0605), (5853.80, 0.051),
          (5872.30, 0.00671), (5883.22, 0.046), (5946.21, 0.0766)],
    "r": [(5770.82, 0.0551), (5791.91, 0.0605), (5853.80, 0.051), (5883.22, 0.046),
          (5946.21, 0.0766), (6031.59, 0.0266), (6075.99, 0.0746), (6097.79, 0.12),
          (6144.69, 0.226), (6165.19, 0.0691), (6218.89, 0.0642), (6268.10, 0.137),
          (6306.40, 0.0479), (6336.09, 0.18), (6384.69, 0.259), (6403.90, 0.483),
          (6440.10, 0.0377), (6508.20, 0.272), (6534.59, 0.11), (6600.69, 0.124),
          (6680.00, 0.219), (6718.79, 0.148), (6931.29, 0.224), (6967.02, 0.0773),
          (7025.89, 0.0233), (7034.20, 1.0), (7068.90, 0.0322), (7175.80, 0.0475),
          (7247.09, 0.447), (7274.62, 0.0215), (7385.71, 0.0712), (7440.89, 0.125),
          (7505.71, 0.054), (7516.58, 0.0426), (7589.29, 0.122), (7603.57, 0.557),
          (7637.08, 0.255), (7687.40, 0.0348), (7696.60, 0.0549), (7726.10, 0.144)],
    "z": [(7440.89, 0.125), (7505.71, 0.054), (7516.58, 0.0426), (7589.29, 0.122),
          (7603.57, 0.557), (7637.08, 0.255), (7687.40, 0.0348), (7696.60, 0.0549),
          (7726.10, 0.144), (7857.20, 0.0679), (7950.29, 0.0997), (8008.30, 0.0697),
          (8016.91, 0.0968), (8062.00, 0.0527), (8106.30, 0.294), (8115.40, 0.728),
          (8117.39, 0.472), (8192.60, 0.204), (8234.10, 0.0938), (8266.29, 0.282),
          (8283.29, 0.0834), (8300.70, 0.361), (8379.52, 0.0786), (8410.49, 0.179),
          (8426.90, 0.245), (8497.32, 0.0482), (8510.82, 0.0628), (8523.78, 0.0841),
          (8778.72, 0.378), (8782.52, 0.0355), (8821.90, 0.266), (8930.72, 0.302),
          (8954.23, 0.0388), (9047.43, 0.0599), (9125.38, 0.632), (9164.72, 0.0791),
          (9226.97, 0.0952), (9660.46, 0.135), (9754.12, 0.0306), (9802.12, 0.0911)],
}


def provisional_lines(band):
    """Return the provisional lamp line list of one band.

    Parameters
    ----------
    band : str
        ``b``, ``r`` or ``z`` (a camera name such as ``r3`` is accepted).

    Returns
    -------
    wave : ndarray, shape (nline,)
        Vacuum wavelengths, Angstrom, increasing.
    intensity : ndarray, shape (nline,)
        Relative intensities (max 1 over the three bands).
    """
    key = str(band).lower()[:1]
    if key not in _PROVISIONAL:
        raise ValueError(f"unknown band {band!r}; expected b, r or z")
    table = np.array(_PROVISIONAL[key], dtype=np.float64)
    return table[:, 0].copy(), table[:, 1].copy()


def lamp_lines(band):
    """Return the arc-lamp line list of one band: the simulator's table when available.

    Parameters
    ----------
    band : str
        ``b``, ``r`` or ``z`` (or a camera name).

    Returns
    -------
    wave, intensity : ndarray, shape (nline,)
        Vacuum wavelengths (Angstrom, increasing) and relative intensities.
    """
    key = str(band).lower()[:1]
    try:
        from .sim.arclines import arc_lines
    except ImportError:
        log.debug("desired.sim.arclines not available; using the provisional line list")
        return provisional_lines(key)
    wave, intensity = arc_lines(key)
    wave = np.asarray(wave, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    order = np.argsort(wave)
    return wave[order], intensity[order]


def isolated_lines(ypos, intensity, min_separation, min_ratio=0.02):
    """Flag lines with no significant neighbour closer than ``min_separation`` rows.

    Parameters
    ----------
    ypos : array, shape (nline,)
        Predicted CCD rows of the lines of one fiber.
    intensity : array, shape (nline,)
        Relative line intensities.
    min_separation : float
        Distance in rows below which another line blends with this one.
    min_ratio : float
        A neighbour fainter than ``min_ratio`` times this line is ignored.

    Returns
    -------
    ndarray of bool, shape (nline,)
    """
    ypos = np.asarray(ypos, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    dist = np.abs(ypos[:, None] - ypos[None, :])
    significant = intensity[None, :] > min_ratio * intensity[:, None]
    close = (dist < min_separation) & significant
    np.fill_diagonal(close, False)
    return ~close.any(axis=1)
