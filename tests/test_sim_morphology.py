"""Galaxy sizes and fibre fractions of the simulator (desired.sim.morphology)."""
from __future__ import annotations

import numpy as np
import pytest

from desired.sim import morphology as M
from desired.sim import targets as T

#: DESI's nominal fibre fractions at 1.1" seeing (desimodel / SurveySpeed: FIBER_FRACFLUX_GFA,
#: _ELG_GFA for an exponential disc of half-light radius 0.45", _BGS_GFA for a de Vaucouleurs
#: galaxy of 1.5"), computed by DESI with its own (Moffat) seeing model
DESI_NOMINAL = {"PSF": 0.582, "ELG": 0.424, "BGS": 0.195}


def test_half_light_radius_holds_half_the_light_without_seeing():
    """With negligible seeing an aperture of radius R_e holds half the light, for both profiles."""
    for n in (1.0, 4.0):
        assert M.fiber_fraction(0.8, n, seeing_fwhm=1e-3, diameter=1.6) == pytest.approx(0.5, abs=2e-3)


def test_point_source_limit_is_the_gaussian_encircled_energy():
    sigma = 1.1 / (2 * np.sqrt(2 * np.log(2)))
    expect = 1 - np.exp(-0.76 ** 2 / (2 * sigma ** 2))
    assert M.fiber_fraction(0.0) == pytest.approx(expect, rel=1e-6)
    assert M.fiber_fraction(1e-3, 4.0) == pytest.approx(expect, rel=1e-3)
    fr = [M.fiber_fraction(r, 1.0) for r in (0.1, 0.3, 0.6, 1.2, 2.4)]
    assert all(a > b for a, b in zip(fr, fr[1:]))


def test_fibre_fractions_relative_to_a_point_source_match_desi_nominal_values():
    """An independent check of the integral: DESI's ELG- and BGS-like fractions over its point-source one
    (0.729 and 0.335) against ours with Gaussian seeing; Moffat wings make DESI's point source lose more."""
    elg = M.fiber_flux_ratio(0.45, 1.0)
    bgs = M.fiber_flux_ratio(1.5, 4.0)
    assert elg == pytest.approx(DESI_NOMINAL["ELG"] / DESI_NOMINAL["PSF"], rel=0.06)
    assert bgs == pytest.approx(DESI_NOMINAL["BGS"] / DESI_NOMINAL["PSF"], rel=0.10)


def test_sizes_follow_the_size_mass_relation_and_bgs_galaxies_are_extended():
    """Drawn galaxies: early types larger at fixed mass growing as M^0.75; BGS (z ~ 0.2) put ~1/3 of a
    point source's light down the fibre (DESI's nominal BGS galaxy 0.335), ELGs ~3/4 (0.729)."""
    rng = np.random.default_rng(5)
    r_lo = np.median([M.draw_half_light_radius(rng, 10.5, 0.5, True)[0] for _ in range(400)])
    r_hi = np.median([M.draw_half_light_radius(rng, 11.5, 0.5, True)[0] for _ in range(400)])
    assert np.log10(r_hi / r_lo) == pytest.approx(0.75, abs=0.05)
    rows = T.make_targets(3, 1000, np.arange(0, 150))
    ratio = {k: np.median([p["fiber_ratio"] for p in rows if p["kind"] == k]) for k in ("BGS", "ELG")}
    assert 0.2 < ratio["BGS"] < 0.5
    assert 0.6 < ratio["ELG"] < 0.95
    for p in rows:
        if p["spectype"] == "GALAXY":
            assert p["sersic"] == (4.0 if p["quiescent"] else 1.0)
            assert 0.0 < p["fiber_frac_ls"] < 0.79 and 0.25 <= p["axis_ratio"] <= 1.0


def test_simulated_electrons_follow_each_galaxys_size():
    """A tiny night's science electrons: a galaxy's electrons over a point source's calibration equal its
    fibre fraction recomputed here from its drawn size, axis ratio and profile; point sources get 1."""
    from desired.sim import night
    cfg = night.NightConfig(preset="tiny", seed=3, narc=0, nflat=0, nscience=1)
    exp = [e for e in night.exposure_sequence(cfg) if e["obstype"] == "SCIENCE"][0]
    sp = night.camera_spectra(cfg, exp, "b0")
    tlist = night._targets(cfg.seed, cfg.tileid, tuple(int(f) for f in sp["fibers"]))
    ngal = 0
    for k, p in enumerate(tlist):
        if p["kind"] == "SKY":
            continue
        expect = 1.0
        if p["spectype"] == "GALAXY":
            r_circ = p["shape_r"] * np.sqrt(p["axis_ratio"])
            expect = M.fiber_fraction(r_circ, p["sersic"]) / M.fiber_fraction(0.0)
            ngal += 1
        got = sp["obj_electrons"][k] / (sp["obj_flux"][k] * sp["fluxcalib"] * sp["fiber_throughput"][k])
        assert np.allclose(got, expect, rtol=1e-5), p["kind"]
    assert ngal >= 5
    with pytest.raises(ValueError, match="assign_size"):
        T.fiber_ratio({"kind": "BGS"})
