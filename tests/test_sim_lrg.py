"""LRGs of the simulator: WISE photometry, DESI's LRG selection, and a selection-shaped population (issue 13).

Everything here runs on the simulator's own generators (no pipeline step).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from desired.sim import galaxies, population
from desired.sim import targets as T

C_AA = 2.99792458e18        # Å/s
ZFIB = population.FIB_OFFSET["extended"]


def _flat_fnu(wave, mag):
    """f_λ in 1e-17 erg/s/cm²/Å of a source with flat f_ν of AB magnitude ``mag``."""
    return 3631e-23 * 10 ** (-0.4 * mag) * C_AA / wave ** 2 / 1e-17


def test_wise_photometry_of_a_flat_fnu_source():
    """A flat-f_ν spectrum has the same AB magnitude in W1, W2 and in DECam g, r, z."""
    wave = np.geomspace(25000.0, 56000.0, 4000)
    m = T.wise_ab_magnitudes(wave, _flat_fnu(wave, 18.3))
    assert m["W1"] == pytest.approx(18.3, abs=2e-3) and m["W2"] == pytest.approx(18.3, abs=2e-3)
    opt = T.ab_magnitude(T._PHOT_WAVE, _flat_fnu(T._PHOT_WAVE, 18.3))
    assert all(abs(v - 18.3) < 2e-3 for v in opt.values())
    # 2.5 mag brighter = 10x the flux
    assert T.wise_ab_magnitudes(wave, 10 * _flat_fnu(wave, 18.3))["W1"] == pytest.approx(15.8, abs=2e-3)


def test_sps_units_give_the_mass_to_light_ratio_of_an_old_population():
    """The grids' units (L☉/Å per M☉ formed): a 10 Gyr solar single burst has M*/L_r ≈ 3 (Chabrier IMF,
    living stars; e.g. Bell & de Jong 2001 / BC03 give 2.5-4 for old solar populations), a 3 Gyr one ≈ 1;
    the infrared continuum joins the optical model at 1 µm."""
    import speclite.filters
    r = speclite.filters.load_filter("sdss2010-r")
    ml = {}
    for age in (3.0, 10.0):
        p = dict(age=age, tau=0.1, burst_frac=0.0, burst_age=0.1, zmet=1.0, av=0.0, logu=-3.5, lyc_dust=0.5,
                 sigma_star=200.0, oii_ratio=1.0, rest_range=(3000.0, 10800.0))
        m = galaxies.rest_model(p)
        wave = np.exp(m["lnwave"])
        flam = m["cont"].astype(np.float64) * galaxies.L_SUN / (4 * np.pi * 3.0857e19 ** 2)   # at 10 pc
        lum_r = 10 ** (-0.4 * (r.get_ab_magnitude(flam, wave) - 4.65))     # M☉,r (AB) = 4.65 (Willmer 2018)
        ml[age] = galaxies.surviving_mass_fraction(p) / lum_r
        iw, ic = galaxies.rest_ir_continuum(p)
        assert np.interp(10000.0, iw, ic) == pytest.approx(np.interp(10000.0, wave, m["cont"]), rel=0.02)
    assert 2.0 < ml[10.0] < 4.0 and 0.6 < ml[3.0] < 1.6


# hand-picked (g, r, z, W1) on both sides of each cut of desitarget isLRG_colors (south); every other cut passes
CUT_PAIRS = {
    # z - W1 > 0.8 (r - z) - 0.6: r - z = 1.5 -> boundary z - W1 = 0.6
    "non-stellar": ((21.5, 20.0, 18.5, 18.0), (21.7, 20.2, 18.7, 18.0)),
    # z_fiber < 21.6
    "faint limit": ((23.5, 22.6, 21.65 - ZFIB, 19.0), (23.5, 22.6, 21.55 - ZFIB, 19.0)),
    # g - W1 > 2.9 or r - W1 > 1.8 (W1 = 16.8: sliding cuts need r - W1 > 0.47)
    "low-z": ((19.65, 18.55, 17.9, 16.8), (19.65, 18.65, 17.9, 16.8)),
    # r - W1 > 1.8 (W1 - 17.14): W1 = 18.5 -> 2.448 (the other sliding cut 2.17)
    "sliding": ((21.9, 20.9, 19.9, 18.5), (22.0, 21.0, 19.9, 18.5)),
    # r - W1 > W1 - 16.33: W1 = 17.0 -> 0.67 (g - W1 > 2.9 for the low-z cut)
    "low-z sliding": ((20.1, 17.6, 17.3, 17.0), (20.1, 17.75, 17.3, 17.0)),
    # r - W1 > 3.3 (high-z extension): W1 = 19.5, sliding cuts would need 4.25
    "high-z extension": ((24.0, 22.75, 20.9, 19.5), (24.0, 22.85, 20.9, 19.5)),
    # z_fibertot > 17.5 (desitarget notinLRG_mask)
    "bright limit": ((19.5, 18.0, 17.45 - ZFIB, 16.5), (19.5, 18.0, 17.55 - ZFIB, 16.5)),
}


@pytest.mark.parametrize("cut", list(CUT_PAIRS))
def test_lrg_cuts_reject_what_desitarget_rejects(cut):
    fail, ok = ({"G": g, "R": r, "Z": z, "W1": w1} for g, r, z, w1 in CUT_PAIRS[cut])
    assert not population.passes_cuts("LRG", fail)
    assert population.passes_cuts("LRG", ok)


def test_lrg_cuts_need_w1():
    assert not population.passes_cuts("LRG", {"G": 22.0, "R": 21.0, "Z": 19.9})


@pytest.fixture(scope="module")
def drawn_lrgs():
    rng = np.random.default_rng(17)
    out = []
    for _ in range(60):
        p = T.draw_target(rng, "LRG")
        mags = T.ab_magnitude(T._PHOT_WAVE, T.target_spectrum(p, T._PHOT_WAVE, 2.0))
        out.append(dict(p, mags=dict(mags, W1=p["mag_w1"])))
    return out


def test_drawn_lrgs_pass_the_cuts_and_are_faint_at_high_z(drawn_lrgs):
    """Every drawn LRG passes the selection with its own fibre fraction (W1 recomputed from its spectrum),
    and the selection shapes the sample: z_fiber rises with redshift (Spearman ρ > 0.5; ~0 for the former
    independent draws of z and magnitude) and the z < 0.55 LRGs are > 1 mag brighter in z_fiber than those
    at z > 0.75; low-mass quiescent galaxies survive only nearby."""
    for p in drawn_lrgs:
        assert population.passes_cuts("LRG", p["mags"], p["fiber_frac_ls"])
        assert T.wise_magnitudes(p)["W1"] == pytest.approx(p["mag_w1"], abs=1e-9)
        assert p["mags"]["Z"] == pytest.approx(p["mag"], abs=1e-6)
    z = np.array([p["z"] for p in drawn_lrgs])
    zfib = np.array([p["mags"]["Z"] + population._fiber_offset(p["fiber_frac_ls"]) for p in drawn_lrgs])
    logm = np.array([p["log_mstar"] for p in drawn_lrgs])
    assert spearmanr(z, zfib)[0] > 0.5
    assert np.median(zfib[z < 0.55]) < np.median(zfib[z > 0.75]) - 1.0
    assert logm.min() > 10.5 and np.median(logm) > 11.0
    assert 0.3 <= z.min() and z.max() <= 1.2


def test_lrg_prior_follows_volume_and_mass_function():
    """Before selection: the fractions at 0.3-0.6 and 0.9-1.2 are those of comoving volume (astropy Planck18
    shells) × quiescent number density above 10^10.5 M☉ (within 0.03), and the masses follow the quiescent
    mass function (median within 0.15 dex of its median above 10^10.5 at z = 0.75)."""
    from astropy.cosmology import Planck18
    rng = np.random.default_rng(3)
    zm = np.array([population.draw_lrg_redshift_mass(rng) for _ in range(4000)])
    edges = np.linspace(0.3, 1.2, 91)
    shell = np.diff(Planck18.comoving_volume(edges).value)
    mids = 0.5 * (edges[1:] + edges[:-1])
    mm = np.linspace(10.5, 12.3, 400)
    dens = np.array([np.sum(population.quiescent_smf(mm, z)) for z in mids])
    frac = shell * dens / np.sum(shell * dens)
    assert abs(np.mean(zm[:, 0] < 0.6) - frac[mids < 0.6].sum()) < 0.03
    assert abs(np.mean(zm[:, 0] > 0.9) - frac[mids > 0.9].sum()) < 0.03
    mg = np.linspace(10.5, 12.3, 2000)
    cdf = np.cumsum(population.quiescent_smf(mg, 0.75))
    med = np.interp(0.5, cdf / cdf[-1], mg)
    sel = np.abs(zm[:, 0] - 0.75) < 0.1
    assert abs(np.median(zm[sel, 1]) - med) < 0.15
