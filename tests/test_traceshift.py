"""traceshift: recover injected trace shifts from synthetic flats and sky exposures."""
from desired.errors import EXIT_DATA_ERROR  # bad input data exits 65, other failures 1
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from psf_synth import true_psf  # noqa: E402

from desired.image import Image  # noqa: E402
from desired.traceshift import SKY_LINES, compute_trace_shifts  # noqa: E402

DX, DY = 0.3, 0.2
READNOISE = 3.0


def _render(psf, wave_edges, continuum, lines=(), line_flux=2.0e4, seed=0):
    """Continuum (electrons per Angstrom) between ``wave_edges`` plus emission lines, with noise."""
    rng = np.random.default_rng(seed)
    step = 0.25
    grid = np.arange(wave_edges[0] + step / 2, wave_edges[1], step)
    fib = np.repeat(np.arange(psf.nfiber), grid.size)
    wav = np.tile(grid, psf.nfiber)
    flux = np.full(wav.size, continuum * step)
    if len(lines):
        fib = np.concatenate([fib, np.repeat(np.arange(psf.nfiber), len(lines))])
        wav = np.concatenate([wav, np.tile(lines, psf.nfiber)])
        flux = np.concatenate([flux, np.full(psf.nfiber * len(lines), line_flux)])
    expected = psf.project(fib, wav, flux)
    counts = rng.poisson(expected) + rng.normal(0, READNOISE, expected.shape)
    return Image(counts, 1.0 / (np.clip(counts, 0, None) + READNOISE ** 2), readnoise=READNOISE,
                 header={"CAMERA": "r0"})


@pytest.fixture(scope="module")
def psfs():
    ref = true_psf(25, npix_y=2048)
    return ref, ref.shifted(DX, DY)


def _errors(ref, shifted, truth):
    lam = np.linspace(5700, 6500, 60)
    fib = np.arange(ref.nfiber)[:, None]
    ex = shifted.x(fib, lam) - truth.x(fib, lam)
    ey = shifted.y(fib, lam) - truth.y(fib, lam)
    return np.abs(ex).max(), np.abs(ey).max()


def test_sky_lines_recover_injected_shift(psfs):
    ref, truth = psfs
    lines = SKY_LINES[(SKY_LINES > 5600) & (SKY_LINES < 6500)]
    image = _render(truth, (5560.0, 6700.0), 200.0, lines=lines, seed=1)
    shifted, xmodel, ymodel = compute_trace_shifts(image, ref, lines_from="sky")
    ex, ey = _errors(ref, shifted, truth)
    assert ex <= 0.02 and ey <= 0.02
    assert abs(shifted.meta["TRSHIFTX"] - DX) < 0.02
    # the reference PSF itself is off by the injected shift (the test can fail)
    assert _errors(ref, ref, truth)[0] > 0.25


def test_flat_continuum_edges_recover_injected_shift(psfs):
    ref, truth = psfs
    edges = (5650.0, 6500.0)
    image = _render(truth, edges, 20000.0, seed=2)          # ~3000 e- peak pixels (real flats: ~20k)
    shifted, _, ymodel = compute_trace_shifts(image, ref, lines_from="continuum", edge_wave=edges)
    ex, ey = _errors(ref, shifted, truth)
    assert ex <= 0.02 and ey <= 0.02
    # without known edges only x is measured
    only_x, _, _ = compute_trace_shifts(image, ref, lines_from="continuum")
    ex, ey = _errors(ref, only_x, truth)
    assert ex <= 0.02 and abs(ey - DY) < 1e-9


def test_cli_traceshift_writes_shifted_psf(tmp_path, psfs):
    from desired.cli import main
    from desired.io.image import write_image
    from desired.io.psf import read_psf, write_psf
    ref, truth = psfs
    lines = SKY_LINES[(SKY_LINES > 5600) & (SKY_LINES < 6500)]
    image = _render(truth, (5560.0, 6700.0), 200.0, lines=lines, seed=3)
    write_image(tmp_path / "preproc.fits", image)
    write_psf(tmp_path / "psf.fits", ref)
    out = tmp_path / "shifted.fits"
    assert main(["traceshift", "--image", str(tmp_path / "preproc.fits"), "--psf", str(tmp_path / "psf.fits"),
                 "--outfile", str(out)]) == 0
    ex, ey = _errors(ref, read_psf(out), truth)
    assert ex <= 0.02 and ey <= 0.02
    assert main(["traceshift", "--image", str(tmp_path / "missing.fits"), "--psf", str(tmp_path / "psf.fits"),
                 "--outfile", str(tmp_path / "none.fits")]) == EXIT_DATA_ERROR
    assert not (tmp_path / "none.fits").exists()


def _sky_template(seed=5):
    """A made-up night sky at 0.1 Å: continuum, unresolved lines and close doublets (not the simulator's)."""
    rng = np.random.default_rng(seed)
    wave = np.arange(5500.0, 6800.0, 0.1)
    centres = rng.uniform(5600.0, 6600.0, 30)
    centres = np.concatenate([centres, centres[:12] + rng.uniform(0.9, 2.0, 12)])    # blended doublets
    amps = rng.lognormal(0.0, 0.7, centres.size) * 1.0e4
    flux = 500.0 + 100.0 * np.sin(wave / 40.0)
    for c, a in zip(centres, amps):
        flux = flux + a * np.exp(-0.5 * ((wave - c) / 0.08) ** 2)
    return wave, flux


def _render_template(psf, wave, flux, grid=None, seed=0):
    """Project a template through ``psf`` as spots (on ``grid`` = (origin, step) or at its own samples)."""
    from desired.traceshift import template_spots
    rng = np.random.default_rng(seed)
    origin, step = grid if grid else (None, None)
    swave, sflux = template_spots(wave, flux, step, origin)
    keep = (swave > psf.wavemin + 5) & (swave < psf.wavemax - 5) & (sflux != 0)
    swave, sflux = swave[keep], sflux[keep]
    fib = np.repeat(np.arange(psf.nfiber), swave.size)
    expected = psf.project(fib, np.tile(swave, psf.nfiber), np.tile(sflux, psf.nfiber))
    counts = rng.poisson(np.clip(expected, 0, None)) + rng.normal(0, READNOISE, expected.shape)
    return Image(counts, 1.0 / (np.clip(counts, 0, None) + READNOISE ** 2), readnoise=READNOISE,
                 header={"CAMERA": "r0"})


@pytest.mark.parametrize("grid", [(5560.0, 0.8), None], ids=["extraction-grid", "continuous"])
def test_sky_template_recovers_injected_shift_with_blended_lines(psfs, grid):
    """Fitting the whole template (blends and continuum included) recovers the injected shift."""
    ref, truth = psfs
    wave, flux = _sky_template()
    image = _render_template(truth, wave, flux, grid=grid, seed=4)
    shifted, xmodel, ymodel = compute_trace_shifts(image, ref, sky_template=(wave, flux), template_grid=grid)
    ex, ey = _errors(ref, shifted, truth)
    assert ex <= 0.02 and ey <= 0.02
    assert shifted.meta["TRLINES"] == "template"
    assert ymodel.nmeas >= ref.nfiber


def test_shift_model_keeps_a_constant_when_a_slope_is_not_supported():
    """Two wavelengths, one measured 10x worse: the model stays constant instead of following the noise."""
    from desired.traceshift import fit_shift_model
    ref = true_psf(25, npix_y=2048)
    rng = np.random.default_rng(3)
    fib = np.tile(np.arange(25), 2)
    wave = np.repeat([5800.0, 6400.0], 25)
    err = np.repeat([0.08, 0.008], 25)
    shift = 0.2 + rng.normal(0, err)
    model = fit_shift_model(ref, fib, wave, shift, err, wave_degree=1)
    grid = np.linspace(ref.wavemin, ref.wavemax, 20)
    assert np.abs(model(np.arange(25)[:, None], grid) - 0.2).max() < 0.01
    full = fit_shift_model(ref, fib, wave, shift, err, wave_degree=1, choose_degrees=False)
    assert full.coef.shape == (2, 2)
