"""Standard-star fit: model physics, selection, recovery of a known star, the mini night, the file format."""
import numpy as np
import pytest
from astropy.table import Table

from desired import stdmodels
from desired.frame import Frame
from desired.io.stdstars import read_stdstar_models
from desired.maskbits import desi_target, fibermask, mws_target
from desired.photometry import decam_nanomaggies
from desired.resolution import Resolution
from desired.scripts import stdstars as stdstars_script
from desired.stdstars import fit_stdstars, match_colors, select_standards

from flux_fixtures import GRID, make_night


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return make_night(tmp_path_factory.mktemp("stdstars"))


@pytest.fixture(scope="module")
def grid():
    return stdmodels.model_grid(**GRID)


def _color(wave, flux, b1, b2):
    f = decam_nanomaggies(wave, flux)
    return -2.5 * np.log10(f[b1] / f[b2])


def test_models_follow_stellar_physics():
    wave = np.arange(3300.0, 11000.0, 0.5)
    cool, hot = stdmodels.model_spectrum(wave, 5750, 4.0, -1.0), stdmodels.model_spectrum(wave, 7000, 4.0, -1.0)
    assert np.all(np.isfinite(cool)) and np.all(cool > 0)
    # hotter is bluer, by roughly the F-star sequence (g-r 0.45 -> 0.15 for 5750 -> 7000 K)
    assert 0.1 < _color(wave, cool, "G", "R") - _color(wave, hot, "G", "R") < 0.4
    # Balmer jump: flux drops blueward of 3646 A (below the Paschen continuum at 3990-4050 A)
    below, above = hot[(wave > 3560) & (wave < 3620)].mean(), hot[(wave > 3990) & (wave < 4050)].max()
    assert below < 0.85 * above
    # Ca II K grows with metallicity (mean flux within ±8 A relative to 4010-4050 A)
    def k_flux(feh):
        f = stdmodels.model_spectrum(wave, 6250, 4.0, feh)
        return f[np.abs(wave - 3934.78) < 8].mean() / f[(wave > 4010) & (wave < 4050)].mean()
    assert k_flux(0.0) < k_flux(-2.0) - 0.05


def test_balmer_series_merges_into_dissolved_level_continuum():
    """Hummer-Mihalas occupation probabilities: the plasma dissolves the high levels, so the Balmer
    series fades before its limit (more so at higher gravity, where n_e is larger) and the dissolved
    levels' pseudo-continuum replaces a sharp edge at 3646 A (a model without it dropped by 40-50 %
    across the series limit; real A/F spectra show no edge there, the BCD jump sits near 3700 A)."""
    occ = stdmodels._occupation_probability
    assert occ(2.0, 1e14, 7000.0) > 0.999 and occ(40.0, 1e14, 7000.0) < 1e-3
    assert occ(16.0, 1e15, 7000.0) < occ(16.0, 1e14, 7000.0) < occ(16.0, 1e13, 7000.0)
    wave = np.arange(3550.0, 4100.0, 0.1)
    lam = lambda n: 911.7633 / (0.25 - 1.0 / n ** 2)  # noqa: E731

    def contrast(f, n):  # line centre vs the mean of the two inter-line midpoints
        mids = [0.5 * (lam(n) + lam(n - 1)), 0.5 * (lam(n) + lam(n + 1))]
        return 1.0 - np.interp(lam(n), wave, f) / np.mean(np.interp(mids, wave, f))
    dwarf, giant = (stdmodels.model_spectrum(wave, 7000, g, -1.0) for g in (4.5, 3.5))
    for f in (dwarf, giant):
        edge = f[(wave > 3636) & (wave < 3646)].mean() / f[(wave > 3647) & (wave < 3657)].mean()
        assert edge > 0.8
        assert contrast(f, 10) > 0.5 and contrast(f, 30) < 0.01
    assert contrast(dwarf, 18) < 0.6 * contrast(giant, 18)


def test_lines_only_absorb_and_solar_balmer_strengths(monkeypatch):
    """Adding line opacity never brightens the spectrum (the formal solution is exact for a
    piecewise-linear source function: a trapezoid rule in tau gave emission wings around the Balmer
    lines), and the Sun's Balmer lines have the strength of the solar atlas (Moore, Minnaert & Houtgast
    1966: EW Hγ 2.86 Å, Hδ 3.13 Å; Hβ 3.68 Å), the real star the Stark width scale is set on."""
    wave = np.arange(3700.0, 6000.0, 0.25)
    sun = stdmodels.model_spectrum(wave, 5777, 4.44, 0.0)
    f7000 = stdmodels.model_spectrum(wave, 7000, 4.0, -1.0)
    monkeypatch.setattr(stdmodels, "_H_LINES", [])
    sun_c = stdmodels.model_spectrum(wave, 5777, 4.44, 0.0)
    assert np.all(f7000 <= stdmodels.model_spectrum(wave, 7000, 4.0, -1.0) * (1 + 1e-6))
    assert np.all(sun <= sun_c * (1 + 1e-6))
    ratio = sun / sun_c

    def ew(w0):
        near = np.abs(wave - w0) < 80
        return np.sum(1 - ratio[near]) * 0.25
    assert 0.75 * 2.86 < ew(4341.68) < 1.3 * 2.86
    assert 0.75 * 3.13 < ew(4102.89) < 1.3 * 3.13
    assert 0.6 * 3.68 < ew(4862.68) < 1.3 * 3.68


def test_select_standards_uses_target_bits_objtype_and_fiberstatus():
    fm = Table({"FIBER": np.arange(6), "OBJTYPE": ["TGT", "TGT", "TGT", "SKY", "TGT", "TGT"],
                "DESI_TARGET": [desi_target.mask("STD_FAINT"), desi_target.mask("STD_BRIGHT"), 0,
                                desi_target.mask("STD_FAINT"), desi_target.mask("STD_FAINT"), desi_target.mask("ELG")],
                "MWS_TARGET": [0, 0, mws_target.mask("GAIA_STD_FAINT"), 0, 0, 0],
                "FIBERSTATUS": [0, 0, 0, 0, fibermask.mask("BROKENFIBER"), 0],
                "FLUX_R": [10.0, 10.0, 10.0, 10.0, 10.0, 10.0]})
    assert list(select_standards(fm)) == [0, 1, 2]


def _fake_frame(wave, flux, ivar, fiber, sigma_pix, band):
    res = Resolution.from_sigma(np.full(wave.size, sigma_pix)).data
    fm = Table({"FIBER": [fiber], "TARGETID": [1], "OBJTYPE": ["TGT"], "DESI_TARGET": [desi_target.mask("STD_FAINT")],
                "FIBERSTATUS": [0], "EBV": [0.05], "FLUX_G": [0.0], "FLUX_R": [0.0], "FLUX_Z": [0.0],
                "FLUX_IVAR_G": [1e4], "FLUX_IVAR_R": [1e4], "FLUX_IVAR_Z": [1e4]})
    return Frame(wave, flux[None], ivar[None], resolution_data=res[None], fibermap=fm,
                 header={"CAMERA": f"{band}0", "EXPID": 7, "NIGHT": 20261124})


def test_fit_recovers_velocity_and_temperature_of_a_known_star(grid):
    """A model star between grid points, Doppler shifted, reddened, through a Gaussian LSF, noisy."""
    from desired.dust import mw_transmission
    from desired.stdstars import resample_spectra
    rng = np.random.default_rng(1)
    fine = np.arange(3300.0, 11000.0, 0.25)
    star = stdmodels.model_spectrum(fine, 6380.0, 4.0, -0.8) * mw_transmission(fine, 0.05)
    vel = 123.0
    obs = np.interp(fine, fine * (1 + vel / 299792.458), star)
    frames, phot = {}, decam_nanomaggies(fine, obs * 30.0)
    for band, (lo, hi) in {"b": (3600, 5900), "r": (5700, 7700), "z": (7500, 9800)}.items():
        wave = np.arange(lo, hi, 0.8)
        thru = 2000.0 * np.exp(-0.5 * ((wave - (lo + hi) / 2) / 1500.0) ** 2)   # unknown smooth throughput
        res = Resolution.from_sigma(np.full(wave.size, 1.2))
        flux = res.apply(resample_spectra(fine, obs, wave)) * thru
        ivar = 1.0 / (flux / 60.0) ** 2                                         # S/N 60 per pixel
        frames[band] = _fake_frame(wave, flux + rng.normal(size=wave.size) / np.sqrt(ivar), ivar, 11, 1.2, band)
    for band in "GRZ":
        frames["b"].fibermap[f"FLUX_{band}"] = phot[band]
    stars = fit_stdstars(frames, grid)
    assert stars.nstd == 1 and list(stars.fibers) == [11]
    meta = stars.metadata[0]
    assert abs(meta["REDSHIFT"] * 299792.458 - vel) < 10.0
    assert abs(meta["TEFF"] - 6380.0) <= 250.0
    # the written model reproduces the r-band flux and the colours of the photometry
    model = decam_nanomaggies(stars.wave, stars.flux[0])
    assert abs(model["R"] / phot["R"] - 1) < 1e-3
    assert abs(-2.5 * np.log10(model["G"] / model["R"]) - (-2.5 * np.log10(phot["G"] / phot["R"]))) < 0.005


def test_match_colors_hits_target_colours():
    wave = np.arange(3300.0, 11000.0, 1.0)
    flux = stdmodels.model_spectrum(wave, 6000.0, 4.0, -1.0)
    target = {"G": 1.0, "R": 1.3, "Z": 1.4}
    out = match_colors(wave, flux, target)
    f = decam_nanomaggies(wave, out)
    assert abs(f["G"] / f["R"] - 1.0 / 1.3) < 1e-3 and abs(f["R"] / f["Z"] - 1.3 / 1.4) < 1e-3


def test_stdstars_on_mini_night_file_readable_by_desispec(night, tmp_path):
    out = tmp_path / "stdstars-0-00000001.fits"
    stars = stdstars_script.run([night["corr_path"][b] for b in "brz"], str(out),
                                teff=(GRID["teff"][0], GRID["teff"][-1], 250.0), logg=GRID["logg"], feh=GRID["feh"])
    fm = night["corr"]["b"].fibermap
    assert stars.nstd == len(select_standards(fm)) >= 4
    mine = read_stdstar_models(str(out))
    assert np.array_equal(mine.fibers, stars.fibers)
    for col in ("TEFF", "LOGG", "FEH", "CHI2DOF", "REDSHIFT", "DATA_G-R", "MODEL_G-R"):
        assert np.all(np.isfinite(mine.metadata[col])), col
    # the models carry the standards' r-band flux (1e-17 erg/s/cm2/A units)
    rows = [int(np.flatnonzero(fm["FIBER"] == f)[0]) for f in mine.fibers]
    r = decam_nanomaggies(mine.wave, mine.flux)["R"]
    assert np.allclose(r, np.asarray(fm["FLUX_R"])[rows], rtol=2e-3)
    # radial velocities against the truth (|v| <= 300 km/s drawn by the simulator)
    desispec_io = pytest.importorskip("desispec.io")
    flux, wave, fibers, metadata = desispec_io.read_stdstar_models(str(out))
    assert flux.shape == (stars.nstd, wave.size) and np.array_equal(fibers, stars.fibers)
    assert "TEFF" in metadata.dtype.names and np.allclose(metadata["TEFF"], stars.metadata["TEFF"])
