"""Per-class distributions of redshift, magnitude, physical parameters and the target-selection cuts.

Each simulated target is drawn from its class's distribution and kept only if
its synthetic DECam g, r, z photometry (speclite ``decam2014`` curves, fibre
magnitudes as in the fibermap: FIBERFLUX = the galaxy's own fibre fraction × FLUX,
from its size and profile, :func:`desired.sim.targets.assign_size`; 0.78 for
point sources) passes DESI's optical target-selection cuts for that class
(rejection sampling, a few tries).  The cuts are those of desitarget's
``cuts.py`` (DR9 main survey, south) and the papers below.  WISE W1 is simulated
for LRGs only (their selection needs it); Gaia photometry is not simulated, and
the QSO selection's WISE cuts are replaced by the redshift range they produce.

* **BGS** (Bright, Hahn et al. 2023, AJ 165, 253): r < 19.5; −1 < g − r < 4,
  −1 < r − z < 4.  r from counts dN/dr ∝ 10^(0.45 r) over 16-19.5; redshift
  dN/dz ∝ z² exp[−(z/0.14)^1.5] (median ≈ 0.2, as the BGS Bright n(z)), 0.02-0.6.
  Half quiescent (short τ, onset 6-12.5 Gyr before today: :func:`bgs_quiescent_age`,
  younger than LRGs; 0.6-1.6 Z☉, σ* 100-250 km/s), half star-forming.
* **LRG** (Zhou et al. 2023, AJ 165, 58; south/DECaLS selection of desitarget
  ``cuts.py`` ``isLRG_colors``: :func:`passes_lrg_cuts`, with WISE W1 synthetic
  photometry).  Drawn from physical priors and selected by the cuts, so the
  selection shapes the sample (:func:`draw_lrg_redshift_mass`): redshift from
  the comoving volume (Planck 2018) over 0.3-1.2 times the number density of
  quiescent galaxies, stellar mass from the quiescent stellar-mass function of
  Muzzin et al. (2013) above 10^10.5 M☉; the flux follows from the SPS model's
  own mass-to-light ratio and the luminosity distance.  Old populations (formed
  0.3-2.5 Gyr after the Big Bang, τ 0.1-0.6 Gyr), 1-1.8 Z☉, σ* 150-300 km/s;
  15 % carry a small recent burst (0.05-1 % of the mass over the last 0.1-1 Gyr,
  so weak [OII]).
* **Quiescent galaxies** (LRGs and the quiescent half of BGS): stellar
  metallicities of massive early types are log Z/Z☉ ≈ 0.0-0.25 (1-1.8 Z☉; lower
  mass BGS 0.6-1.6 Z☉; Gallazzi et al. 2005, MNRAS 362, 41), and their dust
  attenuation is small, A_V drawn exponential with mean 0.1 (capped at 0.4;
  quiescent galaxies of the GALEX-SDSS-WISE catalogue have A_V ≲ 0.2, Salim et
  al. 2016, ApJS 227, 2).  Earlier A_V 0-0.3 and up to 2.5 Z☉ (the BC03 grid's
  least reliable, Padova-1994 super-solar tracks) gave continua redder than real
  red-sequence galaxies (g − r ≈ 1.25 at z ≈ 0.15).
* **ELG** (ELG_LOP, Raichoor et al. 2023, AJ 165, 126): g > 20, g_fiber < 24.1,
  r − z > 0.15, g − r < 0.5 (r − z) + 0.1, g − r < −1.2 (r − z) + 1.3; redshift
  N(1.1, 0.3) over 0.6-1.6; g counts ∝ 10^(0.35 g), drawn to g = 24.1 + 2.5 log10(0.78)
  (a point source's fibre fraction) so that the g_fiber cut, with each galaxy's own
  fibre fraction, sets the faint end; rising star formation
  (delayed τ 2-20 Gyr, onset 0.5-5 Gyr ago) plus a 0-4 % burst in the last
  20-300 Myr, 0.2-1 Z☉, A_V 0.1-0.9, log U −3.5…−2.3; the resulting [OII]
  fluxes (median ≈ 1.8e-16 erg/s/cm², rest EW ≈ 40 Å) are close to DESI's
  ELG_LOP (Raichoor et al. 2023).
* **QSO** (Chaussidon et al. 2023, ApJ 944, 107): 17.5 < r < 23 with counts
  ∝ 10^(0.3 r) (the colour/random-forest selection needs WISE: not simulated);
  redshift N(1.8, 0.8) over 0.5-3.5.
* **STD** (desitarget ``isSTD_colors``; MWS/STD_FAINT): 0 < g − r < 0.35,
  r − z < 0.2, 16.5 < r < 18.8; metal-poor F stars (see :mod:`desired.sim.stars`).
"""
from __future__ import annotations

import functools

import numpy as np

FIBER_FRAC = {"point": 0.78, "extended": 0.55}
FIB_OFFSET = {k: -2.5 * np.log10(v) for k, v in FIBER_FRAC.items()}


def _fiber_offset(fiber_frac):
    """Fibre minus total magnitude (mag) for FIBERFLUX / FLUX = ``fiber_frac`` (None: a nominal galaxy)."""
    return FIB_OFFSET["extended"] if fiber_frac is None else -2.5 * np.log10(fiber_frac)


@functools.lru_cache(maxsize=1)
def _age_table():
    from astropy.cosmology import Planck18
    z = np.linspace(0.0, 4.0, 401)
    return z, Planck18.age(z).value


def universe_age(z):
    """Age of the Universe at redshift ``z`` (Gyr, Planck 2018)."""
    zz, age = _age_table()
    return float(np.interp(z, zz, age))


@functools.lru_cache(maxsize=1)
def _distance_table():
    from astropy.cosmology import Planck18
    z = np.linspace(0.0, 6.0, 601)
    return z, Planck18.luminosity_distance(z).to("cm").value


def luminosity_distance(z):
    """Luminosity distance to redshift ``z`` (cm, Planck 2018; tabulated to z = 6)."""
    zz, dl = _distance_table()
    return float(np.interp(z, zz, dl))


def power_law_mag(rng, lo, hi, slope):
    """Magnitude in [lo, hi] with dN/dm ∝ 10^(slope m)."""
    u = rng.uniform()
    return lo + np.log10(1.0 + u * (10 ** (slope * (hi - lo)) - 1.0)) / slope


def truncated_normal(rng, mu, sigma, lo, hi):
    """One draw of N(mu, sigma) truncated to [lo, hi]."""
    while True:
        x = rng.normal(mu, sigma)
        if lo <= x <= hi:
            return x


def _bgs_z(rng):
    while True:
        z = rng.uniform(0.02, 0.6)
        if rng.uniform() < (z / 0.2) ** 2 * np.exp(-(z / 0.14) ** 1.5) / 0.6:
            return z


def lookback_time(z):
    """Lookback time to redshift ``z`` (Gyr, Planck 2018)."""
    return universe_age(0.0) - universe_age(z)


def bgs_quiescent_age(u, z):
    """Time since the onset of star formation (Gyr) of a quiescent BGS galaxy at ``z``.

    Quiescent BGS galaxies (r < 19.5 at z ≲ 0.4: log M* ≈ 10-11.3) are younger
    than LRGs.  Their star formation starts a lookback time T (from today) drawn
    uniformly in [6, 12.5] Gyr, so that with the delayed-τ SFH (τ 0.1-0.6 Gyr,
    mass-weighted age ≈ T − 2τ) the population's mass-weighted age today has a
    median of 8.8 Gyr (10-90 %: 6.1-11.2 Gyr; 27 % below 7 Gyr), against a
    median of 11.6 Gyr (10.7-12.6) with the previous draw:

    * co-added SDSS early-type spectra and colours (σ ≈ 150-300 km/s) are
      consistent with a single burst ≈ 9 Gyr ago (Bernardi et al. 2003, AJ 125,
      1882, paper IV);
    * optical line-index ages of early types average ≈ 8 Gyr at z = 0, 40 %
      younger than 6 Gyr (as summarised by Bregman et al. 2006, ApJ 646, 899;
      index ages are SSP-equivalent, biased young by small recent bursts, which
      the 15 % of quiescent galaxies with a burst carry here);
    * stacked SDSS early-type spectra brighter than L*: mean luminosity-weighted
      ages ≈ 8 Gyr (Schiavon 2007, ApJS 171, 146);
    * light-weighted ages rise with stellar mass along the red sequence, with a
      tail to younger ages at the low-mass end and a small scatter at high mass
      (Gallazzi et al. 2006, MNRAS 370, 1106; Gallazzi et al. 2005, MNRAS 362,
      41: the transition from young to old populations happens over
      M* ≈ 3e9-3e10 M☉, below most BGS early types — this range quoted from
      memory of the abstract).

    The previous draw (onset 0.3-2.5 Gyr after the Big Bang, as for LRGs) made
    them 10-13 Gyr old today (mass-weighted), the age of the most massive
    ellipticals (formation z ≳ 3), not of BGS-mass ones.  A galaxy observed at
    ``z`` must already be quiescent there: T ≥ lookback(z) + 2 Gyr (a delayed-τ
    population needs ~2 Gyr to reach the red sequence), so higher-redshift BGS
    early types are older, as progenitor bias says.  ``u`` is one uniform
    deviate (one draw, as before, so other targets' draws are unchanged).
    """
    lb = lookback_time(z)
    t_lo, t_hi = max(6.0, lb + 2.0), min(12.5, universe_age(0.0) - 0.3)
    return t_lo + u * (t_hi - t_lo) - lb


def galaxy_params(rng, kind, z):
    """SPS parameters (:func:`desired.sim.galaxies.rest_model`) of a ``kind`` galaxy at redshift ``z``."""
    tuniv = universe_age(z)
    p = {"oii_ratio": rng.uniform(0.7, 1.5), "lyc_dust": rng.uniform(0.3, 0.7)}
    quiescent = kind == "LRG" or (kind == "BGS" and rng.uniform() < 0.5)
    p["quiescent"] = quiescent
    if quiescent:
        u_age = rng.uniform()
        age = tuniv - (0.3 + 2.2 * u_age) if kind == "LRG" else bgs_quiescent_age(u_age, z)
        p.update(age=age, tau=rng.uniform(0.1, 0.6),
                 zmet=rng.uniform(1.0, 1.8) if kind == "LRG" else rng.uniform(0.6, 1.6),
                 av=min(rng.exponential(0.1), 0.4), logu=rng.uniform(-3.8, -3.0),
                 sigma_star=rng.uniform(150, 300) if kind == "LRG" else rng.uniform(100, 250),
                 sigma_gas=rng.uniform(80, 200))
        frac = rng.uniform(0.0005, 0.01) if rng.uniform() < 0.15 else 0.0
        p.update(burst_frac=frac, burst_age=rng.uniform(0.1, 1.0))
    elif kind == "BGS":
        p.update(age=tuniv - rng.uniform(0.5, 3.0), tau=rng.uniform(1.0, 8.0), zmet=rng.uniform(0.3, 1.5),
                 av=rng.uniform(0.1, 1.0), logu=rng.uniform(-3.5, -2.5), sigma_star=rng.uniform(60, 180),
                 sigma_gas=rng.uniform(40, 120), burst_frac=rng.uniform(0.0, 0.03), burst_age=rng.uniform(0.02, 0.3))
    else:  # ELG
        p.update(age=rng.uniform(0.5, min(5.0, tuniv - 0.5)), tau=rng.uniform(2.0, 20.0), zmet=rng.uniform(0.2, 1.0),
                 av=rng.uniform(0.1, 0.9), logu=rng.uniform(-3.5, -2.3), sigma_star=rng.uniform(50, 120),
                 sigma_gas=rng.uniform(30, 100), burst_frac=rng.uniform(0.0, 0.04), burst_age=rng.uniform(0.02, 0.3))
    return p


def draw_redshift_mag(rng, kind):
    """(z, normalising band, magnitude) of a target of class ``kind``."""
    if kind == "BGS":
        return _bgs_z(rng), "R", power_law_mag(rng, 16.0, 19.5, 0.45)
    if kind == "LRG":
        raise ValueError("LRGs are drawn by redshift and stellar mass: draw_lrg_redshift_mass")
    if kind == "ELG":
        # to the faintest g that a point-like galaxy can have with g_fiber < 24.1; each
        # galaxy's own fibre fraction then decides in passes_cuts
        z = truncated_normal(rng, 1.1, 0.3, 0.6, 1.6)
        return z, "G", power_law_mag(rng, 21.0, 24.1 - FIB_OFFSET["point"], 0.35)
    if kind == "QSO":
        return truncated_normal(rng, 1.8, 0.8, 0.5, 3.5), "R", power_law_mag(rng, 17.5, 23.0, 0.3)
    if kind == "STD":
        return rng.uniform(-1e-3, 1e-3), "R", rng.uniform(16.5, 18.8)
    raise ValueError(f"unknown target kind {kind!r}")


def passes_cuts(kind, mags, fiber_frac=None):
    """Whether AB magnitudes ``mags`` ({'G','R','Z'}, total; LRGs also 'W1') pass the selection of ``kind``.

    ``fiber_frac`` is the source's FIBERFLUX / FLUX (Legacy Surveys definition: 1.5" fibre,
    1" seeing) for the fibre-magnitude cuts (ELG g_fiber, LRG z_fiber); default
    :data:`FIBER_FRAC` ['extended'].
    """
    g, r, z = mags["G"], mags["R"], mags["Z"]
    fib_offset = _fiber_offset(fiber_frac)
    gr, rz = g - r, r - z
    if kind == "BGS":
        return r < 19.5 and -1 < gr < 4 and -1 < rz < 4
    if kind == "LRG":
        return passes_lrg_cuts(mags, fiber_frac)
    if kind == "ELG":
        return (g > 20 and g + fib_offset < 24.1 and rz > 0.15 and gr < 0.5 * rz + 0.1
                and gr < -1.2 * rz + 1.3)
    if kind == "QSO":
        return 17.5 < r < 23.0
    if kind == "STD":
        return 0.0 < gr < 0.35 and rz < 0.2
    return True


# ----------------------------------------------------------------------------------------- LRGs
#: redshift and log10 stellar-mass (M☉) ranges LRGs are drawn from (the selection cuts decide who is kept)
LRG_Z_RANGE = (0.3, 1.2)
LRG_LOGM_RANGE = (10.5, 12.3)
#: Schechter fits to the stellar-mass function of *quiescent* galaxies, COSMOS/UltraVISTA (Muzzin et al.
#: 2013, ApJ 777, 18, Table 1, α free; BC03 masses, Kroupa IMF ~ Chabrier's within 0.05 dex, h = 0.7):
#: bins 0.2-0.5, 0.5-1.0, 1.0-1.5 placed at their centres, interpolated linearly in z (held beyond).
#: Φ* in Mpc⁻³ dex⁻¹.  NOTE: these numbers are quoted from memory of the paper's table (not re-read in
#: this session; the tools gave the abstract only); the draw depends on M* and α and on Φ*'s evolution.
QUIESCENT_SMF = {"z": (0.35, 0.75, 1.25), "logmstar": (10.92, 10.84, 10.73),
                 "phi": (19.68e-4, 14.55e-4, 8.81e-4), "alpha": (-0.38, -0.36, -0.17)}


def quiescent_smf(logm, z):
    """Number density of quiescent galaxies per dex of stellar mass at ``z`` (Mpc⁻³ dex⁻¹).

    Schechter form Φ(log M) = ln10 Φ* x^(α+1) e^(−x), x = M / M*, parameters of
    :data:`QUIESCENT_SMF` (Muzzin et al. 2013) interpolated in redshift.

    Parameters
    ----------
    logm : array
        log10 stellar mass, M☉.
    z : float
    """
    t = QUIESCENT_SMF
    mstar, alpha = np.interp(z, t["z"], t["logmstar"]), np.interp(z, t["z"], t["alpha"])
    phi = 10 ** np.interp(z, t["z"], np.log10(t["phi"]))
    x = 10 ** (np.asarray(logm, dtype=np.float64) - mstar)
    return np.log(10.0) * phi * x ** (alpha + 1) * np.exp(-x)


@functools.lru_cache(maxsize=1)
def _lrg_prior_table():
    """(z grid, cumulative n(z), log M grid, cumulative mass distributions per z) of the LRG prior."""
    from astropy.cosmology import Planck18
    zg = np.linspace(*LRG_Z_RANGE, 181)
    mg = np.linspace(*LRG_LOGM_RANGE, 361)
    dvdz = Planck18.differential_comoving_volume(zg).value           # Mpc³ / sr / unit z
    dens = np.array([quiescent_smf(mg, z) for z in zg])               # [nz, nm]
    cm = np.concatenate([np.zeros((zg.size, 1)), np.cumsum(0.5 * (dens[:, 1:] + dens[:, :-1]), axis=1)], axis=1)
    nz = dvdz * cm[:, -1]
    cz = np.concatenate([[0.0], np.cumsum(0.5 * (nz[1:] + nz[:-1]))])
    return zg, cz / cz[-1], mg, cm / cm[:, -1:]


def draw_lrg_redshift_mass(rng):
    """Redshift and log10 stellar mass (M☉, living stars) of a quiescent galaxy, before selection.

    Redshift from dV_c/dz (Planck 2018) × the number of quiescent galaxies above
    10^10.5 M☉ per unit volume, stellar mass from the quiescent stellar-mass
    function at that redshift (:func:`quiescent_smf`, Muzzin et al. 2013), by
    inverse-CDF sampling on tabulated grids (two uniform deviates).  DESI's
    LRG selection then keeps the ones that pass the cuts: being magnitude and
    colour limited, it keeps low-mass galaxies only nearby.

    Checked against the literature (``benchmarks/lrg_selection.py``, 1500
    candidates, with each galaxy's own fibre fraction in the z_fiber cut): ~7 %
    pass the cuts; the selected comoving density is 3.3-4.7 × 10⁻⁴ h³ Mpc⁻³ over
    0.3 < z < 0.8 (Zhou et al. 2023: 5 × 10⁻⁴ in 0.4 < z < 0.8), log M* ≈
    11.1-11.5; above z ≈ 0.8 it falls faster than DESI's (22 % of the
    0.4 < z < 1.1 sample at 0.8-1.1 against 40 % in DESI DR1; 25 % with the
    earlier fixed fibre fraction 0.55), not tuned away: candidate causes are the
    z ~ 1 quiescent mass function, the living-stars-only mass convention
    (remnants excluded, ~0.1 dex), the sizes of z ~ 1 quiescent galaxies and the
    absence of photometric scatter.
    """
    zg, cz, mg, cm = _lrg_prior_table()
    z = float(np.interp(rng.uniform(), cz, zg))
    k = int(np.clip(np.searchsorted(zg, z), 1, zg.size - 1))
    t = (z - zg[k - 1]) / (zg[k] - zg[k - 1])
    u = rng.uniform()
    logm = (1 - t) * np.interp(u, cm[k - 1], mg) + t * np.interp(u, cm[k], mg)
    return z, float(logm)


#: desitarget ``cuts.py`` ``isLRG_colors`` (south = DECaLS, DR9 main survey) / Zhou et al. (2023, AJ 165,
#: 58, Sect. 2); magnitudes there are corrected for Galactic extinction, as the intrinsic ones here.
LRG_ZFIBER_MAX = 21.6
LRG_ZFIBERTOT_MIN = 17.5        # desitarget notinLRG_mask: stars missing from Gaia (zfibertot < 17.5 removed)


def passes_lrg_cuts(mags, fiber_frac=None):
    """Whether total AB magnitudes {'G','R','Z','W1'} pass DESI's main LRG selection (south, DECaLS).

    From desitarget ``cuts.py`` (``isLRG_colors``, south; Zhou et al. 2023):

    * z − W1 > 0.8 (r − z) − 0.6                         (non-stellar cut)
    * z_fiber < 21.6                                      (faint limit)
    * g − W1 > 2.9 or r − W1 > 1.8                        (low-z cuts)
    * (r − W1 > 1.8 (W1 − 17.14) and r − W1 > W1 − 16.33) or r − W1 > 3.3
      (double sliding cut: fainter W1 needs redder r − W1, making the sample
      roughly stellar-mass limited; high-z extension)
    * z_fibertot > 17.5 (``notinLRG_mask``; no Gaia here).

    z_fiber = z − 2.5 log10(``fiber_frac``) (FIBERFLUX / FLUX of the source, as in the
    fibermap; default :data:`FIBER_FRAC` ['extended']).  A missing or non-finite W1 fails.
    """
    g, r, z, w1 = mags["G"], mags["R"], mags["Z"], mags.get("W1", np.nan)
    if not np.isfinite(w1):
        return False
    zfib = z + _fiber_offset(fiber_frac)
    rw = r - w1
    return bool(z - w1 > 0.8 * (r - z) - 0.6 and LRG_ZFIBERTOT_MIN < zfib < LRG_ZFIBER_MAX
                and (g - w1 > 2.9 or rw > 1.8)
                and ((rw > 1.8 * (w1 - 17.14) and rw > w1 - 16.33) or rw > 3.3))
