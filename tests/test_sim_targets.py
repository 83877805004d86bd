"""The simulator's target spectra carry the features of real DESI targets (issue 17).

Measured on spectra drawn by the simulator's own generators (no pipeline step
involved): 4000 Å breaks, absorption lines, emission-line physics, quasar line
shifts, and the per-class photometry inside DESI's selection cuts.
"""
from __future__ import annotations

import numpy as np
import pytest

from desired.sim import galaxies, population, quasars
from desired.sim import targets as T

C_KMS = 299792.458
REST = np.arange(3400.0, 9000.0, 0.5)


def _draws(kind, n, seed=5):
    rng = np.random.default_rng(seed)
    return [T.draw_target(rng, kind) for _ in range(n)]


def _rest_spectrum(p):
    """Rest-frame f_λ of galaxy ``p`` (lines included) on :data:`REST`."""
    cont, lines = T._shape(dict(p, z=0.0), REST, 0.5)
    return cont, lines


def dn4000(wave, flam):
    """Narrow 4000 Å break (Balogh et al. 1999): <f_ν> 4000-4100 / <f_ν> 3850-3950."""
    fnu = flam * wave ** 2
    red = (wave > 4000) & (wave < 4100)
    blue = (wave > 3850) & (wave < 3950)
    return fnu[red].mean() / fnu[blue].mean()


def depth(wave, flux, center, half=4.0, side=(12.0, 30.0)):
    """1 - line-core flux / mean of two side bands (positive for absorption)."""
    core = flux[np.abs(wave - center) < half].mean()
    sides = flux[(np.abs(wave - center) > side[0]) & (np.abs(wave - center) < side[1])].mean()
    return 1.0 - core / sides


@pytest.fixture(scope="module")
def lrgs():
    return _draws("LRG", 12)


@pytest.fixture(scope="module")
def elgs():
    return _draws("ELG", 12)


def test_lrg_4000_break_and_absorption_lines(lrgs):
    """LRGs: Dn4000 1.2-2.4, median > 1.7, >= 75 % above 1.5 (SDSS/DESI LRGs: mostly 1.6-2.2, a
    minority with recent star formation); Ca II H&K, G band, Mg b, Na D in absorption."""
    d4 = []
    for p in lrgs:
        cont, lines = _rest_spectrum(p)
        d4.append(dn4000(REST, cont))
        assert 1.2 < d4[-1] < 2.4
        for center in (3934.8, 3969.6, 5176.7, 5895.6):
            assert depth(REST, cont, center, half=5.0) > 0.03, center
        assert depth(REST, cont, 4305.0, half=15.0, side=(30.0, 60.0)) > 0.02
    assert np.median(d4) > 1.7
    assert np.mean(np.array(d4) > 1.5) >= 0.75


def test_elg_young_populations_and_nebular_physics(elgs):
    """ELGs: weak break, Balmer absorption under the lines, [OII] EW 5-300 Å, dust-reddened Hα/Hβ ≥ 2.8."""
    for p in elgs:
        cont, lines = _rest_spectrum(p)
        assert dn4000(REST, cont) < 1.45
        oii = np.sum(lines[(REST > 3715) & (REST < 3740)]) * 0.5
        ew = oii / np.median(cont[(REST > 3750) & (REST < 3800)])
        assert 5.0 < ew < 300.0
        ha = np.sum(lines[np.abs(REST - 6564.6) < 8]) * 0.5
        hb = np.sum(lines[np.abs(REST - 4862.7) < 8]) * 0.5
        assert ha / hb > 2.8
        assert depth(REST, cont, 4102.9, half=6.0, side=(25.0, 45.0)) > 0.01     # Hδ absorption (A stars)


def test_oii_doublet_resolved_with_drawn_ratio(elgs):
    p = elgs[0]
    m = galaxies.rest_model(dict(p, rest_range=(3000.0, 9000.0)))
    a, b = m["line_lum"][-2:]
    assert b / a == pytest.approx(p["oii_ratio"], rel=2e-3)      # dust differs by 3 Å
    assert np.allclose(m["line_wave"][-2:], [3727.09, 3729.88])


def test_quasar_high_ionisation_lines_blueshifted():
    """CIV's centroid is blueshifted with respect to the systemic redshift, MgII much less."""
    rng = np.random.default_rng(2)
    shifts_civ, shifts_mg = [], []
    wave = np.arange(3600.0, 9800.0, 0.8)
    for _ in range(10):
        p = dict(quasars.draw_params(rng), z=1.8, kind="QSO")
        p["forest_seed"] = 1
        cont = quasars.spectrum(dict(p, ew_scale=0.0, feii=0.0), wave, 0.8, T._bin_gauss)
        lines = quasars.spectrum(p, wave, 0.8, T._bin_gauss) - cont
        for w0, out in ((1549.06, shifts_civ), (2799.49, shifts_mg)):
            sel = np.abs(wave / 2.8 - w0) < 40
            cen = np.sum(wave[sel] * lines[sel]) / np.sum(lines[sel]) / 2.8
            out.append(C_KMS * (cen - w0) / w0)
    assert np.median(shifts_civ) < -300.0
    assert abs(np.median(shifts_mg)) < 250.0
    assert np.median(shifts_civ) < np.median(shifts_mg) - 300.0


@pytest.mark.parametrize("kind", ["BGS", "LRG", "ELG", "QSO", "STD"])
def test_photometry_inside_selection_cuts(kind):
    """Drawn targets' DECam (and, for LRGs, WISE W1) photometry passes DESI's cuts of their class."""
    ps = _draws(kind, 15, seed=9)
    inside = [population.passes_cuts(kind, dict(T.ab_magnitude(T._PHOT_WAVE, T.target_spectrum(p, T._PHOT_WAVE, 2.0)),
                                                **({"W1": p["mag_w1"]} if "mag_w1" in p else {})),
                                       p.get("fiber_frac_ls"))
              for p in ps]
    assert np.mean(inside) >= 0.9


def test_standard_star_features():
    """F standards: Balmer lines deep, Ca II K present, colours of DESI's STD selection."""
    for p in _draws("STD", 8):
        wave = np.arange(3600.0, 9800.0, 0.4)
        f = T._shape(p, wave, 0.4)[0]
        rest = wave / (1 + p["z"])
        assert depth(rest, f, 4102.9, half=3.0, side=(40.0, 70.0)) > 0.15
        assert depth(rest, f, 3934.8, half=1.5, side=(6.0, 12.0)) > 0.03


def test_target_draws_deterministic():
    a = T.make_targets(3, 1000, np.arange(0, 12))
    b = T.make_targets(3, 1000, np.arange(5, 12))
    assert [p["z"] for p in a[5:]] == [p["z"] for p in b]
    assert a[6]["mags"] == b[1]["mags"]


def test_standard_star_balmer_wings_and_series_merging():
    """F standards: Stark wings (Hβ absorption still > 2 % at 10-20 Å from the core in F dwarfs above 6500 K),
    cores not black, and the high Balmer series merged below the Inglis-Teller limit (flux at 3660-3700 Å
    below the Paschen continuum at 4000-4050 Å)."""
    for p in _draws("STD", 6, seed=11):
        wave = np.arange(3600.0, 9800.0, 0.2)
        f = T._shape(dict(p, z=0.0), wave, 0.2)[0]
        cont = np.interp(wave, [4700.0, 5050.0], [f[np.abs(wave - 4700) < 2].mean(), f[np.abs(wave - 5050) < 2].mean()])
        wing = 1.0 - (f / cont)[(np.abs(wave - 4862.7) > 10) & (np.abs(wave - 4862.7) < 20)].mean()
        core = 1.0 - (f / cont)[np.abs(wave - 4862.7) < 0.3].mean()
        assert wing > (0.02 if p["teff"] > 6500 else 0.005)     # Balmer wings weaken towards G0 (EW ∝ T_eff^4)
        assert 0.3 < core < 0.8
        assert f[(wave > 3660) & (wave < 3700)].mean() < f[(wave > 4000) & (wave < 4050)].mean()


def test_standard_star_blue_shape_paschen_and_calcium_physics():
    """F standards (sim.stars): the Balmer discontinuity sits near 3700 Å as the BCD system measures
    it (the envelope of the merging series at 3690-3710 Å is down by more than half of the jump, not
    back at the Paschen continuum); Paschen lines grow with T_eff faster than Balmer lines (their lower
    level n = 3 is 1.89 eV above n = 2: Boltzmann); Ca II K has damping wings (flux ±3 Å from the core
    well below the continuum), not a sub-Å Gaussian."""
    from desired.sim import stars
    wave = np.arange(3550.0, 9000.0, 0.1)

    def ew(f, w0):
        side = np.mean([f[np.abs(wave - (w0 - 15)) < 3].mean(), f[np.abs(wave - (w0 + 15)) < 3].mean()])
        return np.sum(1.0 - f[np.abs(wave - w0) < 8] / side) * 0.1
    ratio = {}
    for teff in (6000.0, 7200.0):
        f = stars.spectrum(dict(teff=teff, logg=4.4, feh=-1.0, vsini=10.0, z=0.0), wave)
        paschen = f[(wave > 4000) & (wave < 4050)].mean()
        envelope = f[(wave > 3690) & (wave < 3710)].max() / paschen
        balmer = f[(wave > 3600) & (wave < 3640)].mean() / paschen
        assert (1.0 - envelope) > 0.5 * (1.0 - balmer)
        ratio[teff] = ew(f, 8752.9) / ew(f, 4102.9)                     # P12 / Hδ
        k_wing = np.mean([f[np.abs(wave - 3931.8) < 1].mean(), f[np.abs(wave - 3937.8) < 1].mean()])
        assert k_wing < 0.9 * f[(wave > 3905) & (wave < 3915)].mean()
    assert ratio[7200.0] > 1.5 * ratio[6000.0]


def test_standard_star_colours_follow_empirical_teff_relation():
    """F standards have the SDSS colours of real stars of their T_eff: g − r from Ivezić et al. (2008, eq. 3)
    within 0.03 mag and r − i on the Jurić et al. (2008) stellar locus within 0.03 mag (a blackbody at T_eff
    is 0.15 mag too red in g − r, so a fitted model would come out ~400 K too cool)."""
    import speclite.filters
    from scipy.optimize import brentq
    from desired.sim import stars
    sdss = speclite.filters.load_filters("sdss2010-g", "sdss2010-r", "sdss2010-i")
    wave = np.arange(3300.0, 9500.0, 1.0)
    for teff in (6100.0, 6600.0, 7200.0):
        f = stars.spectrum(dict(teff=teff, logg=4.2, feh=-1.2, vsini=10.0, z=0.0), wave)
        m = sdss.get_ab_magnitudes(f * 1e-17, wave)[0]
        gr, ri = m[0] - m[1], m[1] - m[2]
        gr_ivezic = brentq(lambda x: 3.882 - 0.316 * x + 0.0488 * x ** 2 + 0.0283 * x ** 3 - np.log10(teff), -0.3, 1.2)
        ri_locus = brentq(lambda x: 1.39 * (1 - np.exp(-4.9 * x ** 3 - 2.45 * x ** 2 - 1.68 * x - 0.050)) - gr,
                          -0.3, 1.0)
        assert abs(gr - gr_ivezic) < 0.03 and abs(ri - ri_locus) < 0.03


def test_quasar_civ_equivalent_width_follows_composite():
    """The blueshift/EW anti-correlation keeps the average CIV EW at the SDSS composite's (Vanden Berk 2001:
    23.8 Å; ours 26 Å incl. the narrow core, × 1.08 the mean of the log-normal scatter = 28 Å; a factor
    exp(-v/2500) without its normalisation would give ~23 Å), and the EWs spread by >= 0.1 dex."""
    rng = np.random.default_rng(4)
    wave = np.arange(3600.0, 9800.0, 0.8)
    ews = []
    for _ in range(40):
        p = dict(quasars.draw_params(rng), z=2.0, kind="QSO", forest_seed=1)
        full = quasars.spectrum(p, wave, 0.8, T._bin_gauss)
        cont = quasars.spectrum(dict(p, ew_scale=0.0, feii=0.0, oiii_ew=0.0), wave, 0.8, T._bin_gauss)
        sel = np.abs(wave / 3.0 - 1549.0) < 60
        ews.append(np.sum((full - cont)[sel] / cont[sel]) * 0.8 / 3.0)
    assert 26.0 < np.mean(ews) < 36.0
    assert np.std(np.log10(ews)) > 0.1


def test_quiescent_galaxies_little_dust_solar_metallicity():
    """LRGs and quiescent BGS: A_V mostly < 0.2 and 0.6-1.8 Z☉ (Gallazzi et al. 2005; Salim et al. 2016)."""
    ps = _draws("LRG", 30, seed=13)
    av = np.array([p["av"] for p in ps])
    assert np.median(av) < 0.12 and np.mean(av < 0.2) > 0.75 and av.max() <= 0.4
    assert all(1.0 <= p["zmet"] <= 1.8 for p in ps)



def test_galaxy_absorption_lines_at_vacuum_wavelengths():
    """Stellar absorption lines sit at their vacuum rest wavelengths, as DESI's spectra and
    templates are in vacuum. The SSP grid is tabulated in air; read as vacuum, every stellar
    line would be 1.1-1.8 Å (~84 km/s) too blue relative to the nebular lines and to DESI's
    templates. Line minima (parabola through the lowest 3 pixels) of a 1 and a 10 Gyr solar SSP
    within 0.3 Å of vacuum and more than 0.8 Å from air."""
    g = galaxies.load_grids()
    wave = g["wave"]
    isol = int(np.argmin(np.abs(galaxies.METALLICITIES - 1.0)))
    lines = {"CaK": (3934.78, 3933.66), "Hb": (4862.68, 4861.33), "NaD2": (5891.58, 5889.95),
             "Ha": (6564.61, 6562.80)}
    for age in (1e9, 1e10):
        ssp = g["ssp"][isol, int(np.argmin(np.abs(g["ages"] - age)))]
        for name, (vac, air) in lines.items():
            sel = np.flatnonzero(np.abs(wave - 0.5 * (vac + air)) < 3.0)
            i = sel[np.argmin(ssp[sel])]
            a, b, _ = np.polyfit(wave[i - 1:i + 2], ssp[i - 1:i + 2], 2)
            centre = -b / (2 * a)
            assert abs(centre - vac) < 0.3, (name, age, centre)
            assert abs(centre - air) > 0.8, (name, age, centre)


def _mass_weighted_age_today(p, z):
    """Mass-weighted age (Gyr) of galaxy ``p`` observed at ``z``, evolved passively to z = 0."""
    edges = np.linspace(0.0, p["age"] * 1e9, 2001)
    mass = galaxies.sfh_mass(edges, p)
    return float(np.sum(mass * 0.5 * (edges[1:] + edges[:-1])) / mass.sum() / 1e9) + population.lookback_time(z)


def test_quiescent_bgs_younger_than_lrgs_as_local_early_types():
    """Quiescent BGS (BGS-mass early types) have mass-weighted ages today of ~9 Gyr with a tail to
    younger ages (Bernardi et al. 2003: single burst ~9 Gyr ago; Bregman et al. 2006: optical ages
    average 8 Gyr; Gallazzi et al. 2006: young tail at low mass), younger than LRGs (formed within
    2.5 Gyr of the Big Bang); every quiescent galaxy is at least 2 Gyr old where it is observed."""
    rng = np.random.default_rng(21)
    bgs, lrg = [], []
    while len(bgs) < 300:
        z = population._bgs_z(rng)
        p = population.galaxy_params(rng, "BGS", z)
        if p["tau"] < 1.0:                      # the quiescent branch (star-forming BGS: τ 1-8 Gyr)
            assert p["age"] >= 2.0 - 1e-9 and p["age"] <= population.universe_age(z)
            bgs.append(_mass_weighted_age_today(p, z))
    for _ in range(100):
        z = population.truncated_normal(rng, 0.75, 0.2, 0.35, 1.1)
        lrg.append(_mass_weighted_age_today(population.galaxy_params(rng, "LRG", z), z))
    bgs, lrg = np.array(bgs), np.array(lrg)
    assert 8.0 < np.median(bgs) < 10.0
    assert 0.08 < np.mean(bgs < 7.0) < 0.35
    assert bgs.max() < 12.6 and bgs.min() > 4.5
    assert np.median(lrg) > 11.0 and np.median(lrg) - np.median(bgs) > 2.0


def _line_ew(p, wave, rest_line, z):
    full = quasars.spectrum(p, wave, 0.8, T._bin_gauss)
    cont = quasars.spectrum(dict(p, ew_scale=0.0, feii=0.0, oiii_ew=0.0), wave, 0.8, T._bin_gauss)
    sel = np.abs(wave / (1 + z) - rest_line) < 60
    return np.sum((full - cont)[sel] / cont[sel]) * 0.8 / (1 + z)


def test_quasar_baldwin_effect_fainter_quasars_stronger_high_ionisation_lines():
    """Baldwin effect: the same quasar 4.5 mag fainter at the same z has its CIV EW larger by
    10^(0.15 * 0.4 * 4.5) = 1.86 (β = -0.15, Dietrich et al. 2002), its Hβ EW unchanged (β = 0), and an
    r = 19 quasar at z = 1.35 (SDSS-composite luminosity) keeps the composite's EWs."""
    rng = np.random.default_rng(7)
    wave = np.arange(3600.0, 9800.0, 0.8)
    p = dict(quasars.draw_params(rng), kind="QSO", forest_seed=1, ew_scale=1.0, v_civ=0.0, mag_band="R",
             host_ratio=0.0)     # EWs against the quasar's own continuum (the host is tested below)
    bright, faint = (_line_ew(dict(p, z=2.0, mag=m), wave, 1549.06, 2.0) for m in (18.0, 22.5))
    assert abs(faint / bright / 10 ** (0.15 * 0.4 * 4.5) - 1) < 0.05
    hb_bright, hb_faint = (_line_ew(dict(p, z=0.5, mag=m), wave, 4862.68, 0.5) for m in (18.0, 22.5))
    assert abs(hb_faint / hb_bright - 1) < 0.02
    pivot = _line_ew(dict(p, z=1.35, mag=19.0), wave, 1549.06, 1.35)
    nolum = _line_ew({k: v for k, v in dict(p, z=1.35).items() if k not in ("mag", "mag_band")}, wave, 1549.06, 1.35)
    assert abs(pivot / nolum - 1) < 0.05


def test_quasar_host_galaxy_fades_with_luminosity():
    """The host's share of the 5100 Å light follows Shen et al. (2011, eq. 1): none for a luminous
    quasar, whose continuum stays the single power law f_ν ∝ ν^α to rest 6000 Å (no composite red
    break), and host-dominated for a faint low-z one, whose continuum then shows the host's 4000 Å
    break; brighter quasars never have a relatively stronger host."""
    rng = np.random.default_rng(11)
    wave = np.arange(3600.0, 9800.0, 0.8)
    p = dict(quasars.draw_params(rng), kind="QSO", z=0.6, forest_seed=1, mag_band="R", alpha=-0.5,
             ew_scale=0.0, feii=0.0, oiii_ew=0.0, bac=0.0)
    ratios = [quasars.host_ratio(dict(p, mag=m)) for m in np.arange(17.5, 23.01, 0.25)]
    assert np.all(np.diff(ratios) >= 0)
    assert ratios[0] == 0.0 and 1.0 < ratios[-1] < 3.5
    rest = wave / 1.6
    blue, red = (np.abs(rest - w) < 50 for w in (3900.0, 4150.0))       # around the 4000 Å break
    d4000 = {}
    for mag in (17.5, 22.5):
        f = quasars.spectrum(dict(p, mag=mag), wave, 0.8, T._bin_gauss)
        fnu = f * wave ** 2
        d4000[mag] = np.mean(fnu[red]) / np.mean(fnu[blue])
        if mag == 17.5:
            narrow = np.min(np.abs(rest[:, None] - np.array([3728.5, 3869.9, 4862.7])), axis=1) < 30  # fixed-EW lines
            band = (rest > 3000.0) & (rest < 6000.0) & ~narrow
            slope = np.polyfit(np.log(rest[band]), np.log(fnu[band]), 1)[0]
            assert slope == pytest.approx(0.5, abs=0.02)                 # f_ν ∝ ν^-0.5 ∝ λ^0.5
    assert d4000[22.5] > d4000[17.5] + 0.1
