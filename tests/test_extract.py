"""Spectro-perfectionism and boxcar extraction against simulated truth.

Images are rendered with a known Gauss-Hermite PSF from known spectra (a spot of
``F * 0.8`` electrons per wavelength bin of 0.8 A, the simulator's convention) on
a grid that runs ``EXTRA`` bins beyond both ends of the extraction grid, as a
real spectrum continues beyond them; with Poisson and read noise, the extraction
with the same PSF must recover ``R @ truth`` within the quoted errors, the end
bins included.
"""
from desired.errors import EXIT_DATA_ERROR  # bad input data exits 65, other failures 1
import numpy as np
import pytest

from desired.extract import extract_frame, wavelength_grid
from desired.image import Image
from desired.maskbits import ccdmask, specmask
from desired.psf import GaussHermitePSF
from conftest import run_mpi_and_serial

DW = 0.8
READNOISE = 3.0
EXTRA = 20          # bins of true spectrum rendered beyond each end of the extraction grid


def make_psf(nfiber=12, npix_y=360, ghdeg=2, tail=0.002, x0=12.0):
    """A realistic b-camera-like PSF: 7.3 px fiber pitch, 0.55 A/px, sigma 1.0-1.2 px."""
    wmin, wmax = 3500.0, 5900.0
    xcoef = np.zeros((nfiber, 3))
    xcoef[:, 0] = x0 + 7.3 * np.arange(nfiber)
    xcoef[:, 1] = 0.6                       # slight tilt of the traces
    xcoef[:, 2] = 0.3
    ycoef = np.zeros((nfiber, 3))
    a1 = (wmax - wmin) / (2 * 0.55)         # dy/dlambda = 1/0.55 px per A
    ycoef[:, 1] = a1
    ycoef[:, 0] = 20.0 + a1 * (1 - 2 * (3600.0 - wmin) / (wmax - wmin))   # y(3600 A) = 20
    ycoef[:, 0] += 0.2 * np.sin(np.arange(nfiber))                           # fiber-to-fiber offsets
    params = {"GHSIGX": np.tile([1.05, 0.05], (nfiber, 1)), "GHSIGY": np.tile([1.15, -0.05], (nfiber, 1))}
    for i in range(ghdeg + 1):
        for j in range(ghdeg + 1):
            params[f"GH-{i}-{j}"] = np.zeros((nfiber, 2))
    params["GH-0-0"][:, 0] = 1.0
    params["GH-1-1"][:, 0] = 0.02
    params["GH-2-0"][:, 0] = 0.04
    params["GH-0-2"][:, 0] = -0.03
    params["TAILAMP"] = np.tile([tail, 0.0], (nfiber, 1))
    params["TAILCORE"] = np.tile([2.0, 0.0], (nfiber, 1))
    params["TAILXSCA"] = np.tile([1.0, 0.0], (nfiber, 1))
    params["TAILYSCA"] = np.tile([1.0, 0.0], (nfiber, 1))
    params["TAILINDE"] = np.tile([1.5, 0.0], (nfiber, 1))
    npix_x = int(x0 + 7.3 * nfiber + 12)
    return GaussHermitePSF(xcoef, ycoef, wmin, wmax, params, ghdeg, ghdeg, hsizex=8, hsizey=5,
                           npix_x=npix_x, npix_y=npix_y, fibermin=0)


def true_spectra(nfiber, wave, rng, line_range=None):
    """Continuum plus narrow emission lines (centred within ``line_range``), electron/Angstrom."""
    lo, hi = (wave[0], wave[-1]) if line_range is None else line_range
    flux = np.empty((nfiber, wave.size))
    for i in range(nfiber):
        cont = rng.uniform(50, 400) * (1 + 0.3 * np.sin((wave - wave[0]) / rng.uniform(20, 60)))
        lines = np.zeros_like(wave)
        for _ in range(3):
            c = rng.uniform(lo, hi)
            lines += rng.uniform(200, 3000) * np.exp(-0.5 * ((wave - c) / 0.5) ** 2)
        flux[i] = cont + lines
    return flux


def render(psf, wave, flux, rng, noise=True):
    """Render spectra through the PSF, add Poisson + read noise; return (pix, ivar, model)."""
    nfiber = flux.shape[0]
    fib = np.repeat(np.arange(nfiber), wave.size)
    ww = np.tile(wave, nfiber)
    model = psf.project(fib, ww, (flux * DW).ravel(), shape=(psf.npix_y, psf.npix_x))
    if noise:
        pix = rng.poisson(np.clip(model, 0, None)).astype(float) + rng.normal(0, READNOISE, model.shape)
    else:
        pix = model.copy()
    ivar = 1.0 / (np.clip(model, 0, None) + READNOISE ** 2)
    return pix, ivar, model


@pytest.fixture(scope="module")
def wide_scene():
    """(psf, wide grid, truth on it, pix, ivar, noiseless model); the extraction grid is
    3600-3760 A, the true spectra run ``EXTRA`` bins beyond both of its ends."""
    rng = np.random.default_rng(7)
    psf = make_psf()
    wide = wavelength_grid(wmin=3600.0 - EXTRA * DW, wmax=3760.0 + EXTRA * DW, dw=DW)
    truth = true_spectra(psf.nfiber, wide, rng)
    pix, ivar, model = render(psf, wide, truth, rng)
    return psf, wide, truth, pix, ivar, model


@pytest.fixture(scope="module")
def scene(wide_scene):
    psf, wide, truth, pix, ivar, model = wide_scene
    wave = wavelength_grid(wmin=3600.0, wmax=3760.0, dw=DW)
    return psf, wave, truth[:, EXTRA:-EXTRA], pix, ivar, model


def pulls(frame, truth):
    good = frame.ivar > 0
    chi = (frame.flux - frame.convolve(truth)) * np.sqrt(frame.ivar)
    return chi[good]


def test_wavelength_grid_defaults():
    w = wavelength_grid("b1")
    assert w.size == 2751 and w[0] == 3600.0 and abs(w[-1] - 5800.0) < 1e-9
    assert wavelength_grid("r0").size == 2326 and wavelength_grid("z9").size == 2881
    with pytest.raises(ValueError):
        wavelength_grid("x0")


def test_noiseless_extraction_recovers_convolved_truth(scene):
    psf, wave, truth, _, ivar, model = scene
    frame = extract_frame(Image(model, ivar, camera="b0"), psf, wave, bundlesize=6)
    # exact model: the deconvolved flux is the truth, so flux == R truth up to the
    # truncation of R to 11 diagonals (a few thousandths of sigma)
    chi = (frame.flux - frame.convolve(truth)) * np.sqrt(frame.ivar)
    assert np.abs(chi).max() < 0.1 and chi.std() < 0.01, (np.abs(chi).max(), chi.std())
    # total counts are conserved: rows of R sum to 1
    rows = np.array([frame.resolution(i).row_sums() for i in range(frame.nspec)])
    np.testing.assert_allclose(rows, 1.0, atol=1e-10)
    assert np.all(frame.ivar > 0) and np.all(frame.mask == 0)
    assert frame.resolution_data.shape == (psf.nfiber, 11, wave.size)


def test_end_bins_see_the_light_from_beyond_the_grid(scene):
    """The true spectra continue beyond the grid ends: the end bins stay unbiased."""
    psf, wave, truth, pix, ivar, model = scene
    ends = np.r_[0:10, wave.size - 10:wave.size]
    noiseless = extract_frame(Image(model, ivar, camera="b0"), psf, wave, bundlesize=6)
    chi = ((noiseless.flux - noiseless.convolve(truth)) * np.sqrt(noiseless.ivar))[:, ends]
    assert np.abs(chi).max() < 0.1, np.abs(chi).max()      # was up to 14 without the padding
    frame = extract_frame(Image(pix, ivar, camera="b0"), psf, wave, bundlesize=6)
    chi = ((frame.flux - frame.convolve(truth)) * np.sqrt(frame.ivar))[:, ends]
    assert np.all(frame.ivar[:, ends] > 0)
    # 240 pulls: sd of the mean 0.065, of the rms 0.046 (3-sigma bounds)
    assert abs(chi.mean()) < 0.2 and abs(chi.std() - 1) < 0.14, (chi.mean(), chi.std())


def test_grid_beyond_the_ccd_costs_nothing_there(wide_scene, monkeypatch):
    """A grid running far beyond a cropped CCD: only patches with light on it are solved."""
    from desired import extract, extract_gpu
    psf, wide, truth_wide, pix, ivar, _ = wide_scene
    wave = wavelength_grid(wmin=wide[0] - 480 * DW, wmax=wide[0] + 1500 * DW, dw=DW)
    truth = np.zeros((psf.nfiber, wave.size))
    truth[:, 480:480 + wide.size] = truth_wide
    calls = []
    solve = extract.solve_patch
    monkeypatch.setattr(extract, "solve_patch", lambda *a: calls.append(1) or solve(*a))
    img = Image(pix, ivar, camera="b0")
    frame = extract_frame(img, psf, wave, fibers=(0, 6), bundlesize=6, nsubbundles=2)
    # rows 0-359 hold 3589-3787 A: about 250 of the 1981 bins, 9 of the 67 patches per sub-bundle
    assert len(calls) <= 2 * 10, len(calls)
    y = psf.y(np.arange(6)[:, None], wave[None, :])
    off = (y + psf.hsizey < -0.5) | (y - psf.hsizey > psf.npix_y - 0.5)    # stamps entirely off the CCD
    assert off.sum() > 0.8 * off.size
    assert np.all(frame.flux[off] == 0) and np.all(frame.ivar[off] == 0)
    assert np.all(frame.mask[off] & specmask.NODATA)
    rows = np.array([frame.resolution(i).row_sums() for i in range(frame.nspec)])
    np.testing.assert_allclose(rows, 1.0, atol=1e-10)
    assert np.all(frame.ivar[~off & (np.abs(y - 180) < 170)] > 0)
    chi = pulls(frame, truth[:6])
    assert chi.size > 1000 and abs(chi.mean()) < 0.1 and abs(chi.std() - 1) < 0.07, (chi.mean(), chi.std())
    other = extract_gpu.extract_frame(img, psf, wave, fibers=(0, 6), bundlesize=6, nsubbundles=2, xp=np)
    np.testing.assert_array_equal(other.mask, frame.mask)
    good = frame.ivar > 0
    assert np.abs((other.flux - frame.flux)[good] * np.sqrt(frame.ivar[good])).max() < 1e-6
    np.testing.assert_allclose(other.resolution_data, frame.resolution_data, atol=1e-8)


def test_noisy_extraction_pulls_are_unit_normal(scene):
    psf, wave, truth, pix, ivar, _ = scene
    frame = extract_frame(Image(pix, ivar, camera="b0"), psf, wave, bundlesize=6)
    chi = pulls(frame, truth)
    assert abs(chi.mean()) < 0.02 * 2, chi.mean()      # ~2400 samples: mean sd 0.02
    assert abs(chi.std() - 1) < 0.05, chi.std()
    # chi2pix of a correct model is ~1 (slightly below: fitted dof)
    assert 0.7 < np.median(frame.chi2pix) < 1.1
    # the resolution matrix is a narrow, peaked kernel
    assert np.all(frame.resolution_data[:, 5] > 0.3)


def test_masked_pixels_are_ignored_without_bias(scene):
    psf, wave, truth, pix, ivar, _ = scene
    rng = np.random.default_rng(11)
    pix = pix.copy()
    mask = np.zeros(pix.shape, np.int32)
    # cosmic rays: 40 short tracks of huge values, flagged
    for _ in range(40):
        y, x = rng.integers(20, pix.shape[0] - 20), rng.integers(5, pix.shape[1] - 5)
        pix[y:y + 2, x:x + 3] += 5000.0
        mask[y:y + 2, x:x + 3] |= ccdmask.COSMIC
    # a bad column through the core of fiber 4's trace, filled with garbage
    col = int(np.rint(np.ravel(psf.x(4, 3680.0))[0]))
    pix[:, col] = 1e5
    mask[:, col] |= ccdmask.BAD
    # a band of rows dead across all fibers: no data at all there
    pix[200:230] = -1e4
    mask[200:230] |= ccdmask.BAD
    frame = extract_frame(Image(pix, ivar, mask=mask, camera="b0"), psf, wave, bundlesize=6)
    assert np.all(np.isfinite(frame.flux)) and np.all(np.isfinite(frame.ivar))
    nodata = (frame.mask & specmask.NODATA) != 0
    assert nodata.any(), "the dead rows must leave wavelengths without data"
    assert np.all(frame.ivar[nodata] == 0)
    # spots whose 11-row stamps lie entirely in rows 200-229 (traces differ by < 0.3 row)
    dead_wave = (psf.wavelength(4, 205.3), psf.wavelength(4, 223.7))
    inside = (wave > dead_wave[0]) & (wave < dead_wave[1])
    assert nodata[:, inside].all()
    # the bad column reduces (not zeroes) the information of fiber 4 and flags it
    assert np.all((frame.mask[4, ~inside] & specmask.SOMEBADPIX) != 0)
    chi = pulls(frame, truth)
    assert abs(chi.mean()) < 0.04, chi.mean()
    assert abs(chi.std() - 1) < 0.05, chi.std()
    chi4 = ((frame.flux[4] - frame.convolve(truth)[4]) * np.sqrt(frame.ivar[4]))[frame.ivar[4] > 0]
    # ~200 independent pulls: 3-sigma bounds on mean and rms
    assert abs(chi4.mean()) < 0.25 and abs(chi4.std() - 1) < 0.15


def test_results_do_not_depend_on_process_count(scene):
    psf, wave, _, pix, ivar, _ = scene
    img = Image(pix, ivar, camera="b0")
    one = extract_frame(img, psf, wave, bundlesize=4, fibers=(2, 10))
    two = extract_frame(img, psf, wave, bundlesize=4, fibers=(2, 10), nproc=2)
    np.testing.assert_array_equal(one.flux, two.flux)
    np.testing.assert_array_equal(one.resolution_data, two.resolution_data)
    np.testing.assert_array_equal(one.fibers, np.arange(2, 10))


def test_boxcar_recovers_smooth_continuum():
    from desired.boxcar import boxcar_extract
    rng = np.random.default_rng(5)
    psf = make_psf(nfiber=4, tail=0.0)
    wave = wavelength_grid(wmin=3600.0, wmax=3760.0, dw=DW)
    truth = np.outer(rng.uniform(100, 300, 4), 1 + 0.2 * np.sin((wave - 3600) / 30))
    _, ivar, model = render(psf, wave, truth, rng, noise=False)
    frame = boxcar_extract(Image(model, ivar, camera="b0"), psf, wave, width=3)
    inner = slice(10, -10)
    ratio = frame.flux[:, inner] / truth[:, inner]
    assert abs(np.median(ratio) - 1) < 0.01, np.median(ratio)      # box holds ~99.5% of the spot
    assert np.all(np.abs(ratio - 1) < 0.05)
    assert np.all(frame.ivar[:, inner] > 0)


def test_cli_writes_a_frame_from_files(scene, tmp_path):
    from desired.cli import main
    from desired.io.frame import read_frame
    from desired.io.image import write_image
    from desired.io.psf import write_psf
    psf, wave, truth, pix, ivar, _ = scene
    write_image(tmp_path / "preproc-b0.fits", Image(pix, ivar, readnoise=READNOISE, camera="b0",
                                                    header={"EXPID": 12, "NIGHT": 20261124}))
    write_psf(tmp_path / "psf-b0.fits", psf, header={"CAMERA": "b0"})
    out = tmp_path / "frame-b0.fits"
    rc = main(["extract", "--image", str(tmp_path / "preproc-b0.fits"), "--psf", str(tmp_path / "psf-b0.fits"),
               "--outfile", str(out), "--wavelength", "3600,3760,0.8", "--bundlesize", "6"])
    assert rc == 0
    frame = read_frame(out)
    assert frame.nspec == psf.nfiber and np.allclose(frame.wave, wave)
    chi = pulls(frame, truth)                       # float32 on disk: still unit normal
    assert abs(chi.mean()) < 0.04 and abs(chi.std() - 1) < 0.05
    # boxcar mode and a bad input
    rc = main(["extract", "--image", str(tmp_path / "preproc-b0.fits"), "--psf", str(tmp_path / "psf-b0.fits"),
               "--outfile", str(tmp_path / "box.fits"), "--wavelength", "3600,3760,0.8", "--boxcar"])
    assert rc == 0 and read_frame(tmp_path / "box.fits").resolution_data is None
    rc = main(["extract", "--image", str(tmp_path / "missing.fits"), "--psf", str(tmp_path / "psf-b0.fits"),
               "--outfile", str(tmp_path / "bad.fits")])
    assert rc == EXIT_DATA_ERROR and not (tmp_path / "bad.fits").exists()


def _batched_vs_cpu(scene, xp, model_variance=True):
    from desired import extract_gpu
    psf, wave, truth, pix, ivar, _ = scene
    mask = np.zeros(pix.shape, np.int32)
    mask[:, int(np.rint(np.ravel(psf.x(4, 3680.0))[0]))] |= ccdmask.BAD
    img = Image(pix, ivar, mask=mask, readnoise=READNOISE, camera="b0")
    cpu = extract_frame(img, psf, wave, bundlesize=6, model_variance=model_variance)
    other = extract_gpu.extract_frame(img, psf, wave, bundlesize=6, xp=xp, model_variance=model_variance)
    assert cpu.header["EXTVAR"] == other.header["EXTVAR"] == ("model" if model_variance else "data")
    scale = 1 / np.sqrt(cpu.ivar)
    assert np.abs((other.flux - cpu.flux) / scale).max() < 1e-6
    np.testing.assert_allclose(other.ivar, cpu.ivar, rtol=1e-6)
    np.testing.assert_allclose(other.resolution_data, cpu.resolution_data, atol=1e-8)
    np.testing.assert_allclose(other.chi2pix, cpu.chi2pix, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(other.mask, cpu.mask)


@pytest.mark.parametrize("model_variance", [True, False], ids=["model-variance", "data-variance"])
def test_batched_backend_matches_cpu_path_with_numpy(scene, model_variance):
    _batched_vs_cpu(scene, np, model_variance)


def test_gpu_backend_matches_cpu_path(scene):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:                      # cupy installed but no device
        pytest.skip("no CUDA device")
    _batched_vs_cpu(scene, cupy)


def test_end_to_end_simulated_tiny_exposure(tmp_path):
    """simulate (tiny preset) -> preproc -> extract with the true, shifted PSF vs the truth."""
    pytest.importorskip("desired.sim.night")
    import glob

    import fitsio

    from desired import paths
    from desired.cli import main
    from desired.io.frame import read_frame
    from desired.io.psf import read_psf, write_psf
    raw, calib, truth_dir = tmp_path / "raw", tmp_path / "calib", tmp_path / "truth"
    rc = main(["simulate", "--preset", "tiny", "--night", "20261124", "--raw-dir", str(raw),
               "--calib-dir", str(calib), "--truth-dir", str(truth_dir), "--narc", "0", "--nflat", "0",
               "--nscience", "1", "--parametric", "--seed", "3"])
    assert rc == 0
    truth_files = sorted(glob.glob(str(truth_dir / "*" / "*" / "truth-b0-*.fits")))
    assert len(truth_files) == 1
    with fitsio.FITS(truth_files[0]) as fh:
        electrons = fh["ELECTRONS"].read().astype(float)
        hdr = fh["ELECTRONS"].read_header()
        wave = fh["WAVELENGTH"].read()
    expid = int(hdr["EXPID"])
    rawfile = paths.findfile("raw", root=str(raw), night=20261124, expid=expid)
    pre = tmp_path / "preproc-b0.fits"
    rc = main(["preproc", "--infile", rawfile, "--camera", "b0", "--outfile", str(pre),
               "--calib", str(paths.findfile("calib_ccd", root=str(calib), camera="b0"))])
    assert rc == 0
    psf = read_psf(paths.findfile("truth_psf", root=str(truth_dir), camera="b0"))
    write_psf(tmp_path / "psf.fits", psf.shifted(hdr["TRSHIFTX"], hdr["TRSHIFTY"]), header={"CAMERA": "b0"})
    out = tmp_path / "frame-b0.fits"
    rc = main(["extract", "--image", str(pre), "--psf", str(tmp_path / "psf.fits"), "--outfile", str(out),
               "--wavelength", f"{wave[0]},{wave[-1]},{wave[1] - wave[0]}"])
    assert rc == 0
    frame = read_frame(out)
    assert frame.flux.shape == electrons.shape
    good = frame.ivar > 0
    assert good.mean() > 0.95
    chi = ((frame.flux - frame.convolve(electrons)) * np.sqrt(frame.ivar))[good]
    assert abs(chi.mean()) < 0.02 * 2 and abs(chi.std() - 1) < 0.05, (chi.mean(), chi.std())


def test_mpi_ranks_give_the_serial_frame(scene, tmp_path):
    """``mpiexec -n 2 desired extract --mpi`` writes the same frame as the serial run."""
    from desired.io.frame import read_frame
    from desired.io.image import write_image
    from desired.io.psf import write_psf
    psf, wave, _, pix, ivar, _ = scene
    write_image(tmp_path / "pre.fits", Image(pix, ivar, readnoise=READNOISE, camera="b0"))
    write_psf(tmp_path / "psf.fits", psf, header={"CAMERA": "b0"})
    common = ["-m", "desired", "extract", "--image", str(tmp_path / "pre.fits"), "--psf", str(tmp_path / "psf.fits"),
              "--wavelength", "3600,3760,0.8", "--bundlesize", "4"]
    mpi, serial = run_mpi_and_serial(common, tmp_path, timeout=120)
    a, b = read_frame(mpi), read_frame(serial)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.ivar, b.ivar)
    np.testing.assert_array_equal(a.resolution_data, b.resolution_data)
    np.testing.assert_array_equal(a.fibers, b.fibers)


def test_real_desi_psf_file(real_specex_psf):
    """A real specex PSF (GH degree 6): extraction pulls are unit normal."""
    psf = real_specex_psf
    rng = np.random.default_rng(1)
    wave = wavelength_grid(wmin=6500.0, wmax=6660.0, dw=DW)
    truth = rng.uniform(100, 1000, (14, wave.size))
    model = psf.project(np.repeat(np.arange(14), wave.size), np.tile(wave, 14), (truth * DW).ravel())
    pix = rng.poisson(np.clip(model, 0, None)) + rng.normal(0, READNOISE, model.shape)
    ivar = 1 / (np.clip(model, 0, None) + READNOISE ** 2)
    frame = extract_frame(Image(pix, ivar, camera="r0"), psf, wave, fibers=(0, 12))
    chi = pulls(frame, truth[:12])                 # 2412 values: sd of mean 0.02, of rms 0.015
    assert abs(chi.mean()) < 0.06 and abs(chi.std() - 1) < 0.05, (chi.mean(), chi.std())


def test_model_variance_removes_the_low_bias_of_data_weights():
    """Weights from the pixels' own counts bias the flux low; model-variance weights do not.

    Four noise realisations of the test scene (9648 pulls, sd of the mean 0.01) with
    the ivar a pixel-count preproc would give, 1 / (max(pix, 0) + rn^2).
    """
    psf = make_psf()
    wave = wavelength_grid(wmin=3600.0, wmax=3760.0, dw=DW)
    wide = wavelength_grid(wmin=3600.0 - EXTRA * DW, wmax=3760.0 + EXTRA * DW, dw=DW)
    chi = {True: [], False: []}
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        truth = true_spectra(psf.nfiber, wide, rng)
        pix, _, _ = render(psf, wide, truth, rng)
        img = Image(pix, 1.0 / (np.clip(pix, 0, None) + READNOISE ** 2), readnoise=READNOISE, camera="b0")
        for model_variance in chi:
            frame = extract_frame(img, psf, wave, bundlesize=6, model_variance=model_variance)
            chi[model_variance].append(pulls(frame, truth[:, EXTRA:-EXTRA]))
    model, data = np.concatenate(chi[True]), np.concatenate(chi[False])
    assert abs(model.mean()) <= 0.02 and abs(model.std() - 1) <= 0.05, (model.mean(), model.std())
    assert data.mean() < -0.1, data.mean()          # the bias the model variance removes
