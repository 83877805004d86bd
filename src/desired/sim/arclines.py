"""Arc-lamp line lists (vacuum Angstrom, relative intensities).

The lines are the strong, isolated laboratory lines of the DESI calibration lamps
(Hg(Ar), Cd, Ne, Kr, Xe; NIST Atomic Spectra Database air wavelengths, which are
public-domain physical data) converted to vacuum with the IAU/Morton (2000)
refractive index of standard air.  Relative intensities are rounded, lamp-like
values chosen for this project (not measured): the strongest lines of the short
all-lamp arc reach ~1 in these units.

This list is both the simulator's truth (lines are deposited as delta functions
at exactly these vacuum wavelengths) and the line list the PSF/arc fit uses.

Examples
--------
>>> wave, intensity = arc_lines("b")
>>> wave.min() > 3550 and wave.max() < 5950
True
"""
from __future__ import annotations

import numpy as np

#: wavelength range (Angstrom) of lines considered for each camera band: the
#: extraction grid plus a margin (lines just outside the grid still land on the CCD)
BAND_RANGES = {"b": (3560.0, 5860.0), "r": (5700.0, 7700.0), "z": (7450.0, 9900.0)}


def air_to_vacuum(wave_air):
    """Convert air wavelengths to vacuum (IAU standard, Morton 2000).

    Parameters
    ----------
    wave_air : array
        Air wavelengths, Angstrom.

    Returns
    -------
    ndarray
        Vacuum wavelengths, Angstrom (3 fixed-point iterations, < 1e-6 Angstrom error).
    """
    wave_air = np.asarray(wave_air, dtype=np.float64)
    vac = wave_air.copy()
    for _ in range(3):
        s2 = (1e4 / vac) ** 2
        n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
        vac = wave_air * n
    return vac


# lamp -> list of (air wavelength [A], relative intensity)
_AIR_LINES = {
    "Hg": [(3650.153, 0.55), (3654.836, 0.12), (3663.279, 0.10), (4046.563, 0.60),
           (4077.837, 0.06), (4358.328, 1.00), (5460.735, 1.00), (5769.598, 0.15),
           (5790.663, 0.15)],
    "Cd": [(3610.508, 0.30), (4678.149, 0.30), (4799.912, 0.40), (5085.822, 0.50),
           (6438.470, 0.60)],
    "Ar": [(4158.590, 0.02), (4200.674, 0.02), (4259.362, 0.015), (4300.101, 0.012),
           (6965.431, 0.30), (7067.218, 0.30), (7147.042, 0.05), (7272.936, 0.08),
           (7383.980, 0.20), (7503.869, 0.40), (7514.652, 0.30), (7635.106, 0.50),
           (7723.761, 0.25), (7948.176, 0.30), (8006.157, 0.20), (8014.786, 0.30),
           (8103.693, 0.40), (8115.311, 0.80), (8264.522, 0.50), (8408.210, 0.30),
           (8424.648, 0.35), (8521.442, 0.25), (8667.944, 0.08), (9122.967, 0.60),
           (9224.499, 0.30), (9354.220, 0.10), (9657.786, 0.40)],
    "Ne": [(5852.488, 0.50), (5881.895, 0.25), (5944.834, 0.30), (5975.534, 0.15),
           (6029.997, 0.12), (6074.338, 0.25), (6096.163, 0.30), (6143.063, 0.40),
           (6163.594, 0.20), (6217.281, 0.20), (6266.495, 0.30), (6304.789, 0.15),
           (6334.428, 0.35), (6382.991, 0.35), (6402.248, 0.80), (6506.528, 0.45),
           (6532.882, 0.20), (6598.953, 0.30), (6678.277, 0.40), (6717.043, 0.20),
           (6929.467, 0.50), (7032.413, 1.00), (7173.938, 0.15), (7245.167, 0.40),
           (7438.898, 0.20), (7488.871, 0.15), (7535.774, 0.15), (8082.458, 0.06),
           (8136.406, 0.10), (8300.326, 0.20), (8377.606, 0.30), (8418.427, 0.10),
           (8495.360, 0.20), (8591.259, 0.08), (8634.647, 0.15), (8654.383, 0.30),
           (8780.621, 0.15), (8853.867, 0.15), (9148.672, 0.10), (9201.759, 0.08),
           (9300.853, 0.06), (9326.507, 0.10), (9425.379, 0.10), (9534.163, 0.08),
           (9665.424, 0.12)],
    "Kr": [(4319.580, 0.03), (4376.122, 0.04), (5570.289, 0.15), (5870.914, 0.12),
           (7587.413, 0.25), (7601.544, 0.35), (7685.246, 0.15), (7694.538, 0.12),
           (7854.821, 0.12), (8059.503, 0.15), (8104.364, 0.20), (8112.899, 0.40),
           (8190.054, 0.20), (8263.240, 0.25), (8298.107, 0.30), (8508.870, 0.15),
           (8776.748, 0.30), (8928.692, 0.20), (9751.758, 0.10)],
    "Xe": [(4624.276, 0.05), (4671.226, 0.08), (4734.152, 0.04), (4807.019, 0.04),
           (4829.709, 0.03), (4843.294, 0.03), (7887.393, 0.10), (7967.342, 0.12),
           (8061.339, 0.08), (8231.634, 0.50), (8280.116, 0.40), (8346.822, 0.25),
           (8409.189, 0.20), (8819.410, 0.60), (8952.251, 0.25), (9045.446, 0.20),
           (9162.652, 0.30), (9799.696, 0.25)],
}

#: lamp -> (vacuum wavelength [A] array, relative intensity array), sorted by wavelength
LAMP_LINES = {}
for _lamp, _lines in _AIR_LINES.items():
    _arr = np.array(sorted(_lines))
    LAMP_LINES[_lamp] = (air_to_vacuum(_arr[:, 0]), _arr[:, 1].copy())
del _lamp, _lines, _arr

#: lamps lit in DESI's "short arcs all" (5 s) and "long arcs cd+xe" (30 s) sequences
ALL_LAMPS = ("Hg", "Ar", "Cd", "Ne", "Kr", "Xe")
CDXE_LAMPS = ("Cd", "Xe")


def arc_lines(camera_band, lamps=ALL_LAMPS, min_separation=0.0):
    """Return the arc lines falling on one camera band.

    Parameters
    ----------
    camera_band : str
        ``'b'``, ``'r'`` or ``'z'`` (a camera name such as ``'b0'`` also works).
    lamps : iterable of str
        Lamps lit (keys of :data:`LAMP_LINES`); all lamps by default.
    min_separation : float
        If > 0, drop lines that have a neighbour closer than this (Angstrom),
        which a PSF fit may want to avoid blends.

    Returns
    -------
    wave : ndarray, shape (n,)
        Vacuum wavelengths, Angstrom, sorted.
    intensity : ndarray, shape (n,)
        Relative intensities (arbitrary units, ~1 for the strongest lines).
    """
    band = str(camera_band).lower()[0]
    if band not in BAND_RANGES:
        raise ValueError(f"unknown camera band {camera_band!r}; expected b, r or z")
    wmin, wmax = BAND_RANGES[band]
    waves, ints = [], []
    for lamp in lamps:
        if lamp not in LAMP_LINES:
            raise ValueError(f"unknown lamp {lamp!r}; known: {sorted(LAMP_LINES)}")
        w, i = LAMP_LINES[lamp]
        keep = (w >= wmin) & (w <= wmax)
        waves.append(w[keep])
        ints.append(i[keep])
    wave = np.concatenate(waves) if waves else np.zeros(0)
    intensity = np.concatenate(ints) if ints else np.zeros(0)
    order = np.argsort(wave, kind="stable")
    wave, intensity = wave[order], intensity[order]
    if min_separation > 0 and wave.size > 1:
        gap = np.diff(wave)
        isolated = np.ones(wave.size, dtype=bool)
        isolated[1:] &= gap >= min_separation
        isolated[:-1] &= gap >= min_separation
        wave, intensity = wave[isolated], intensity[isolated]
    return wave, intensity
