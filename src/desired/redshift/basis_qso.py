"""Quasar spectra for the project's own QSO template: an empirical composite-based model.

Sources, and why they are independent of the simulator
------------------------------------------------------
Written fresh here from the literature, sharing no code or table with the
simulator's quasar generator (``desired.sim.quasars``):

* **continuum**: broken power law f_ν ∝ ν^α with α = -0.44 ± 0.3 between 1200 and
  5000 Å (Vanden Berk et al. 2001, hereafter VdB01), an EUV break below 1200 Å to
  α = -1.7 ± 0.4 (Telfer et al. 2002) and a redder slope above 5000 Å (host and
  hot-dust light; VdB01 measured α = -2.45 there);
* **Balmer continuum**: Grandi (1982) form B_λ(T_e = 15000 K)(1 - exp(-τ (λ/3646)^3))
  below the Balmer edge, strength 0-0.3 of the continuum at the edge;
* **broad and narrow lines**: relative fluxes of VdB01's composite (Table 2;
  Lyα = 100, rounded), each scattered by 0.15 dex per object, the whole set by
  0.25 dex (Baldwin effect), FWHM 2000-9000 km/s (narrow lines 300-900 km/s),
  broad profiles between Lorentzian and Gaussian (below),
  high-ionisation lines blue-shifted with respect to the systemic (low-ionisation)
  redshift: CIV by 0-2000 km/s, every other one in proportion to the ionisation
  energy of the ion that emits it, capped at CIV's (the blueshift grows with
  ionisation potential: Gaskell 1982, ApJ 263, 79; Tytler & Fan 1992, ApJS 79, 1;
  VdB01 §4.3), so the semi-forbidden CIII] (C⁺⁺, 24.4 eV) moves half as far as CIV
  (C³⁺, 47.9 eV) and SiIV (33.5 eV) 0.7 times;
* **host galaxy**: half of the training quasars get the light of a galaxy of the
  project's own population synthesis (:mod:`desired.redshift.basis_galaxy`, not the
  simulator's), L_λ,host/L_λ,QSO at 5100 Å log-uniform 0.03-3 (:func:`add_hosts`).
  Real quasar spectra carry their host's starlight (the red upturn and 4000 Å break of
  faint low-z quasars; Vanden Berk et al. 2006, AJ 131, 84), and DESI's own QSO
  templates, a PCA of real spectra, have it built in; without it, a host-dominated
  quasar at z < 1 fits no QSO vector and goes to GALAXY.  The hosts are stars and
  dust only: a star-forming host's nebular lines, free in the PCA, let the QSO
  basis fit emission-line galaxies better than the GALAXY basis (8 of 189 ELGs of
  a simulated petal night fitted confident QSO at their galaxy redshift), while
  the quasar's own narrow lines ([O II], [Ne V], [O III]) are in the line model;
* **Fe II**: the optical multiplets 27/28/37/38/42/48/49 as lines at the Hβ width
  (wavelengths from the NIST tables, equal strengths except multiplet 42 twice
  as strong) and the UV Fe II "small blue bump" as broad Gaussian blends centred
  on the UV1/UV2/UV3/UV60-64/UV78 groups, strength 0-2 × nominal.

* **broad-line profile shape**: a pseudo-Voigt, (1 − η) Gaussian + η Lorentzian of the
  same FWHM, the Lorentzian truncated at ±30 HWHM (97.9 % of its flux).  Broad lines
  are not Gaussian: their shape parameter FWHM/σ_line runs from Lorentzian-like
  (peaky core, extended wings) in the narrower broad lines to Gaussian or flatter in
  the broadest (Sulentic et al. 2000, ARA&A 38, 521: population A below FWHM(Hβ) ≈
  4000 km/s is Lorentzian, population B Gaussian; Collin et al. 2006, A&A 456, 75;
  Kollatschny & Zetzl 2011, Nature 470, 366).  So η falls linearly in log FWHM from 1
  at 2000 km/s to 0 at 9000 km/s, with a scatter of 0.2 per quasar, clipped to [0, 1].
  Measured (``benchmarks/bench_templates.py`` on the QSO coadds of
  ``bench_sim_redrock.py --classes QSO``, seeds 3-7, 304 quasars): 268 correct and
  confident against 262 with purely Gaussian profiles.

Resolution: the template grid is dlog10 λ = 1e-4 (69 km/s per pixel, R = 4340 per
pixel); quasar lines are ≥ 300 km/s FWHM, so nothing is lost at DESI's resolution.
No IGM absorption is put in: the fitter applies the mean Lyman-series transmission
(RRIGM keyword) at each trial redshift.
"""
from __future__ import annotations

import numpy as np

C_KMS = 299792.458
#: range of the host's share L_λ,host / L_λ,QSO at rest 5100 Å in the training quasars that have a host:
#: what Shen et al. (2011, ApJS 194, 45, eq. 1) give from a luminous quasar (λL_5100 ~ 10^45, a few
#: per cent) to a faint one (10^43, ~3) — DESI's quasars span that range below z ~ 1
HOST_RATIO_RANGE = (0.03, 3.0)

#: (vacuum Å, VdB01 relative flux with Lyα = 100, kind) — kind: 'b' broad, 'h' broad high-ionisation,
#: 'n' narrow
QSO_LINES = (
    (1025.72, 4.0, "b"), (1033.82, 6.0, "h"), (1215.67, 100.0, "b"), (1240.81, 2.5, "h"),
    (1262.59, 0.3, "b"), (1304.35, 1.7, "b"), (1335.31, 0.6, "b"), (1397.61, 8.9, "h"),
    (1549.06, 25.3, "h"), (1640.42, 1.0, "h"), (1663.48, 0.5, "b"), (1857.40, 0.4, "b"),
    (1892.03, 0.3, "b"), (1908.73, 15.9, "h"), (2326.44, 0.6, "b"), (2798.75, 14.7, "b"),
    (3346.82, 0.1, "n"), (3426.84, 0.4, "n"), (3728.48, 0.4, "n"), (3869.85, 1.0, "n"),
    (3890.17, 0.5, "b"), (3971.20, 0.6, "b"), (4102.89, 1.3, "b"), (4341.68, 3.0, "b"),
    (4364.44, 0.3, "n"), (4687.02, 0.5, "b"), (4862.68, 8.6, "b"), (4960.30, 1.1, "n"),
    (5008.24, 3.5, "n"), (5877.29, 1.5, "b"), (6302.05, 0.2, "n"), (6549.86, 0.3, "n"),
    (6564.61, 30.8, "b"), (6585.27, 1.0, "n"), (6718.29, 0.2, "n"), (6732.67, 0.2, "n"),
    (7067.2, 0.4, "b"), (8448.6, 0.5, "b"), (8500.4, 0.2, "b"), (8544.4, 0.3, "b"),
    (8664.5, 0.3, "b"), (9017.4, 0.3, "b"), (9232.9, 0.5, "b"), (9548.6, 0.7, "b"),
)
#: ionisation energy (eV) of the ion that emits each blue-shifted ('h') line; the shift is
#: v × min(E / E(C IV), 1) (NIST ionisation energies: C⁺→C⁺⁺ 24.38, Si⁺⁺→Si³⁺ 33.49,
#: C⁺⁺→C³⁺ 47.89, He⁺→He⁺⁺ 54.42 (He II recombination), N³⁺→N⁴⁺ 77.47, O⁴⁺→O⁵⁺ 113.9)
SHIFT_ENERGY = {1033.82: 113.9, 1240.81: 77.47, 1397.61: 33.49, 1549.06: 47.89, 1640.42: 54.42, 1908.73: 24.38}
CIV_ENERGY = 47.89
#: optical Fe II multiplet lines (air Å, converted to vacuum below), and the stronger multiplet 42
FEII_OPTICAL = (4173.5, 4233.2, 4296.6, 4303.2, 4351.8, 4385.4, 4416.8, 4489.2, 4491.4, 4508.3, 4515.3,
                4520.2, 4522.6, 4549.5, 4555.9, 4576.3, 4583.8, 4620.5, 4629.3, 5197.6, 5234.6, 5276.0,
                5284.1, 5316.6, 5362.9, 5425.3, 5534.8)
FEII_42 = (4923.9, 5018.4, 5169.0)
#: UV Fe II blends (vacuum Å centre, Gaussian sigma Å, relative strength)
FEII_UV = ((2345.0, 25.0, 0.6), (2385.0, 25.0, 0.6), (2470.0, 40.0, 0.5), (2620.0, 30.0, 1.0),
           (2750.0, 30.0, 0.5), (2960.0, 40.0, 0.6), (3180.0, 40.0, 0.4))


def _gauss(wave, center, sigma):
    sel = np.abs(wave - center) < 6 * sigma
    out = np.zeros_like(wave)
    out[sel] = np.exp(-0.5 * ((wave[sel] - center) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    return out


def _lorentz(wave, center, fwhm):
    """Unit-area Lorentzian of FWHM ``fwhm`` (Å), zero beyond ±30 HWHM (so it carries 97.9 % of the flux)."""
    hwhm = fwhm / 2.0
    sel = np.abs(wave - center) < 30 * hwhm
    out = np.zeros_like(wave)
    out[sel] = hwhm / np.pi / ((wave[sel] - center) ** 2 + hwhm ** 2)
    return out


def broad_profile(wave, center, fwhm_kms, eta):
    """Pseudo-Voigt line profile, (1 - eta) Gaussian + eta Lorentzian of the same FWHM (km/s), unit area.

    Parameters
    ----------
    wave : ndarray (nwave,)
        Rest wavelength, Å.
    center : float
        Line centre, Å.
    fwhm_kms : float
    eta : float
        Lorentzian fraction, 0 (Gaussian) to 1.

    Returns
    -------
    ndarray (nwave,), Å^-1
    """
    fwhm = center * fwhm_kms / C_KMS
    gauss = _gauss(wave, center, fwhm / 2.3548)
    if eta == 0:
        return gauss
    return (1 - eta) * gauss + eta * _lorentz(wave, center, fwhm)


def lorentzian_fraction(fwhm_kms, rng):
    """η of a quasar's broad lines: 1 at FWHM 2000 km/s falling to 0 at 9000 km/s (linear in log), ± 0.2."""
    return float(np.clip(np.log10(9000.0 / fwhm_kms) / np.log10(4.5) + rng.normal(0, 0.2), 0.0, 1.0))


def continuum(wave, alpha, alpha_euv, alpha_red):
    """Broken power law f_λ (f_ν ∝ ν^α: f_λ ∝ λ^-(α+2)), unity at 1450 Å, continuous at the breaks."""
    flux = (wave / 1450.0) ** -(alpha + 2)
    lo, hi = wave < 1200.0, wave > 5000.0
    flux[lo] = (1200.0 / 1450.0) ** -(alpha + 2) * (wave[lo] / 1200.0) ** -(alpha_euv + 2)
    flux[hi] = (5000.0 / 1450.0) ** -(alpha + 2) * (wave[hi] / 5000.0) ** -(alpha_red + 2)
    return flux


def balmer_continuum(wave, strength, cont):
    """Grandi (1982) Balmer continuum, ``strength`` × the continuum at the 3646 Å edge."""
    edge = 3646.0
    x = 1.438777e8 / (wave * 15000.0)
    bb = wave ** -5 / np.expm1(np.clip(x, 1e-8, 600))
    shape = np.where(wave < edge, bb * (1 - np.exp(-(wave / edge) ** 3)), 0.0)
    ref = np.interp(edge - 1, wave, shape)
    return strength * np.interp(edge, wave, cont) * shape / ref if ref > 0 else np.zeros_like(wave)


def qso_spectrum(wave, rng):
    """One quasar spectrum (rest frame, f_λ arbitrary units) with randomly drawn properties."""
    alpha = rng.normal(-0.44, 0.3)
    cont = continuum(wave, alpha, rng.normal(-1.7, 0.4), alpha - rng.uniform(0.0, 2.0))
    spec = cont + balmer_continuum(wave, rng.uniform(0, 0.3), cont)
    # Lyα flux: EW ~ 90 Å (Lyα+NV in VdB01) times the global scatter
    lya = 90.0 * np.interp(1215.67, wave, cont) * 10 ** rng.normal(0, 0.25)
    fwhm = 10 ** rng.uniform(np.log10(2000), np.log10(9000))
    fwhm_narrow = 10 ** rng.uniform(np.log10(300), np.log10(900))
    shift = rng.uniform(0, 2000)
    eta = lorentzian_fraction(fwhm, rng)
    for center, rel, kind in QSO_LINES:
        flux = lya * rel / 100.0 * 10 ** rng.normal(0, 0.15)
        width = fwhm_narrow if kind == "n" else fwhm * (1.0 if kind == "h" else 0.9)
        mu = center * (1 - shift * min(SHIFT_ENERGY[center] / CIV_ENERGY, 1.0) / C_KMS) if kind == "h" else center
        spec += flux * broad_profile(wave, mu, width, 0.0 if kind == "n" else eta)
    feii = rng.uniform(0, 2.0)
    hbeta = lya * 0.086
    sig_hb = fwhm * 0.9 / C_KMS / 2.3548
    for air, weight in [(w, 1.0) for w in FEII_OPTICAL] + [(w, 2.0) for w in FEII_42]:
        vac = air * 1.000277
        spec += feii * 0.04 * hbeta * weight * _gauss(wave, vac, vac * sig_hb)
    mg2 = lya * 0.147
    for center, sigma, weight in FEII_UV:
        spec += feii * 0.5 * mg2 * weight * _gauss(wave, center, np.hypot(sigma, center * sig_hb))
    return spec


def add_hosts(wave, spectra, hosts, seed):
    """Quasar spectra with host-galaxy light added to a random half of them.

    Parameters
    ----------
    wave : ndarray (nwave,)
        Rest wavelength, Å (must cover 5100 Å).
    spectra : ndarray (nspec, nwave)
        Quasar spectra (f_λ, arbitrary units).
    hosts : ndarray (nhost, nwave)
        Galaxy spectra on ``wave`` (f_λ, arbitrary units); each quasar with a host takes one at random.
    seed : int

    Returns
    -------
    ndarray (nspec, nwave)
        New array; a host is scaled to a ratio L_λ,host/L_λ,QSO at 5100 Å drawn log-uniform in
        [:data:`HOST_RATIO_RANGE`].
    """
    rng = np.random.default_rng(seed)
    out = np.array(spectra, dtype=np.float64)
    i5100 = int(np.searchsorted(wave, 5100.0))
    win = slice(max(i5100 - 20, 0), i5100 + 20)
    for i in range(out.shape[0]):
        if rng.uniform() < 0.5:
            continue
        host = hosts[rng.integers(hosts.shape[0])]
        ratio = 10 ** rng.uniform(*np.log10(HOST_RATIO_RANGE))
        out[i] = out[i] + ratio * np.median(out[i, win]) / np.median(host[win]) * host
    return out


def qso_spectra(wave, nspec, seed=2, hosts=None):
    """``nspec`` varied quasar spectra on ``wave`` (rest frame), shape (nspec, nwave).

    With ``hosts`` (galaxy spectra on ``wave``), half of them get host-galaxy light
    (:func:`add_hosts`, its own random stream: the quasars themselves are the same).
    """
    rng = np.random.default_rng(seed)
    spectra = np.array([qso_spectrum(wave, rng) for _ in range(nspec)])
    return spectra if hosts is None else add_hosts(wave, spectra, hosts, seed + 7919)
