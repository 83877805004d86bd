"""Redshift fitter: kernels against dense/reference computations, accuracy at known redshifts, bad input."""
import argparse
import os

import numpy as np
import pytest

from desired.io.redshifts import read_redshifts
from desired.io.spectra import write_spectra
from desired.io.templates import read_templates
from desired.redshift import fit, rebin, zfind, zscan
from desired.redshift.templates import Template
from desired.redshift.zwarning import zwarn
from desired.scripts import redshifts as redshifts_cli

from redshift_synth import LINE_COEFF, TEMPLATE_DIR, gaussian_rdata, line_template, make_spectra
from conftest import run_mpi_and_serial

C_KMS = 299792.458

#: ../shared/data/redrock-templates of the checkout (as conftest.SHARED_DATA)
TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), TEMPLATE_DIR)
needs_templates = pytest.mark.skipif(not os.path.isdir(TEMPLATES), reason=f"no redrock templates at {TEMPLATES}")


def dense_resolution(rdata):
    """Dense R from DESI diagonals: R[j - o_k, j] = rdata[k, j], o_k = ndiag//2 - k."""
    ndiag, n = rdata.shape
    R = np.zeros((n, n))
    for k in range(ndiag):
        o = ndiag // 2 - k
        for j in range(n):
            if 0 <= j - o < n:
                R[j - o, j] = rdata[k, j]
    return R


def test_zwarn_values_are_desis():
    assert (zwarn.SKY, zwarn.LITTLE_COVERAGE, zwarn.SMALL_DELTA_CHI2, zwarn.NEGATIVE_MODEL) == (1, 2, 4, 8)
    assert (zwarn.Z_FITLIMIT, zwarn.NODATA, zwarn.BAD_MINFIT, zwarn.POORDATA) == (32, 512, 1024, 2048)
    rr = pytest.importorskip("redrock.zwarning")
    for name in zwarn:
        assert getattr(zwarn, name) == getattr(rr.ZWarningMask, name)


def test_rebin_conserves_flux_and_matches_trapezoid_integral():
    rng = np.random.default_rng(1)
    wave = np.sort(rng.uniform(1000, 3000, 400))
    flux = rng.normal(size=(2, wave.size))
    edges = np.linspace(1500, 2400, 91)
    out = rebin.rebin_basis(wave, flux, edges, np.array([0.2]))[:, 0, :]
    # integral over all output pixels = trapezoid integral of the linear interpolant between the ends
    fine = np.linspace(edges[0], edges[-1], 200001) / 1.2
    interp = np.array([np.interp(fine, wave, f) for f in flux])
    expect = np.trapezoid(interp, fine * 1.2, axis=1)
    assert np.allclose((out * np.diff(edges)[:, None]).sum(axis=0), expect, rtol=1e-6)
    rr = pytest.importorskip("redrock.rebin")
    ref = rr.trapz_rebin(wave, flux, edges=edges, myz=np.array([0.2]))[0]
    assert np.allclose(out, ref, rtol=1e-10, atol=1e-12)


def test_resolution_products_match_dense_matrices():
    rng = np.random.default_rng(2)
    n = 60
    rdata = gaussian_rdata(1, n, np.array([1.3]))[0] * rng.uniform(0.9, 1.1, (11, n))
    R = dense_resolution(rdata)
    w, v = rng.uniform(0, 2, n), rng.normal(size=n)
    assert np.allclose(zscan.resolution_apply(rdata, v), R @ v)
    assert np.allclose(zscan.resolution_transpose_apply(rdata[None], v[None])[0], R.T @ v)
    A = R.T @ np.diag(w) @ R
    diag = zscan.resolution_normal(rdata[None], w[None])[0]
    for d in range(diag.shape[0]):
        assert np.allclose(diag[d, :n - d], np.diagonal(A, d))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shared_scan_equals_direct_chi2(dtype):
    """The batched matrix-product scan = applying R to the template at every redshift.

    Double precision: to 1e-6 relative.  Single precision (optional; the refinement
    is always double): on this well-conditioned 6-vector basis, an offset below 3e-4
    of chi2 that is nearly the same at every redshift, so the minima do not move.
    """
    t = line_template(zmax=0.6, dlogz=2e-3)
    spectra = make_spectra({"GALAXY": t}, [("GALAXY", 0.31, LINE_COEFF), ("GALAXY", 0.12, LINE_COEFF), ("GALAXY", 0.5, LINE_COEFF)],
                           seed=3)
    bands = zfind.prepare_bands(spectra)
    chi2 = zscan.scan_template(zscan.batch_products(bands, dtype=dtype), t)
    for i in range(3):
        direct, _ = zscan.chi2_direct([b.subset(slice(i, i + 1)) for b in bands], t, t.redshifts)
        err = chi2[i] - direct
        if dtype == np.float64:
            assert np.max(np.abs(err)) < 1e-6 * direct.max()
        else:
            assert np.max(np.abs(err)) < 3e-4 * direct.max() and np.std(err) < 0.1
        assert np.argmin(chi2[i]) == np.argmin(direct)


def degenerate_template(npoly=14):
    """Legendre polynomials in log wavelength plus four lines, orthonormal over 1500-11000 A.

    Orthonormal over the template's full range like a PCA basis, but nearly degenerate
    over the ~2.7x narrower window a spectrum covers at any one redshift.
    """
    wave = np.arange(1500.0, 11000.0, 0.5)
    x = 2 * (np.log(wave) - np.log(wave).mean()) / np.ptp(np.log(wave))
    flux = [np.polynomial.legendre.Legendre.basis(d)(x) for d in range(npoly)]
    flux += [np.exp(-0.5 * ((wave - line) / 2.0) ** 2) for line in (3727.1, 4862.7, 5008.2, 6564.6)]
    q, _ = np.linalg.qr(np.array(flux).T)
    raw = np.r_[1.0, 0.3, -0.2, 0.1, np.zeros(npoly - 4), 4, 4, 4, 4]
    t = Template("GALAXY", "", wave, q.T.copy(), 10 ** np.arange(0, np.log10(1.6), 1e-3) - 1,
                 version="test", filename="synthetic")
    return t, q.T @ (np.array(flux).T @ raw)


def test_default_coarse_scan_is_double_because_single_fails_at_high_snr(monkeypatch):
    """A many-vector basis at S/N 100: float32 products err by far more than chi2 itself.

    (Found on a real SDSS elliptical, where the float32 scan of the project's own 10-vector
    GALAXY basis had chi2 = -1.4e6 at z = 1.64 and the fit returned that with ZWARN 0.)
    The default scan of fit_redshifts and the CLI is therefore double precision, and it
    matches the direct chi2.
    """
    t, coeff = degenerate_template()
    spectra = make_spectra({"GALAXY": t}, [("GALAXY", 0.3, coeff)], seed=1, snr=100.0)
    bands = zfind.prepare_bands(spectra)
    single = zscan.scan_template(zscan.batch_products(bands, dtype=np.float32), t)[0]
    double = zscan.scan_template(zscan.batch_products(bands, dtype=np.float64), t)[0]
    sub = slice(0, None, 40)
    direct, _ = zscan.chi2_direct(bands, t, t.redshifts[sub])
    assert np.max(np.abs(double[sub] - direct)) < 1.0          # chi2 units, of ~3e6
    assert np.max(np.abs(single - double)) > 10 * double.min()
    used = []
    real_products = zfind.batch_products
    monkeypatch.setattr(zfind, "batch_products", lambda b, xp, dtype: used.append(dtype) or real_products(b, xp, dtype))
    best = zfind.fit_redshifts(bands, [t])[0]
    assert used == [np.float64]
    assert abs(best["z"] - 0.3) < 1e-4 and best["zwarn"] == 0
    parser = argparse.ArgumentParser()
    redshifts_cli.add_arguments(parser)
    assert not parser.parse_args(["--infile", "a", "--outfile", "b"]).single_scan


def test_array_module_path_equals_cpu_kernels():
    """The CuPy code path (array-module functions), run with numpy, equals the numba CPU path."""
    rng = np.random.default_rng(4)
    basis = rng.normal(size=(50, 7, 4))
    assert np.allclose(zscan.lagged_pair_products(basis, 11, np), zscan.lagged_pair_products_cpu(basis, 11))
    t = line_template(zmax=0.4, dlogz=2e-3)
    bands = zfind.prepare_bands(make_spectra({"GALAXY": t}, [("GALAXY", 0.2, LINE_COEFF)] * 2, seed=5))
    products = zscan.batch_products(bands, dtype=np.float64)
    cpu = zscan.scan_template(products, t)
    generic = zscan.scan_template(products, t, pair_products=lambda b, n: zscan.lagged_pair_products(b, n, np))
    assert np.allclose(cpu, generic, rtol=1e-10)


def test_parabola_and_minima():
    x = np.array([0.1, 0.2, 0.3])
    x0, xerr, y0, flags = fit.fit_parabola(x, 5 + ((x - 0.21) / 0.05) ** 2)
    assert flags == 0 and abs(x0 - 0.21) < 1e-12 and abs(xerr - 0.05) < 1e-12 and abs(y0 - 5) < 1e-9
    assert fit.fit_parabola(x, -((x - 0.2) ** 2))[3] & zwarn.BAD_MINFIT
    assert list(fit.find_minima([3, 1, 2, 0.5, 4])) == [3, 1]


def test_known_redshifts_recovered_within_errors():
    t = line_template(zmax=1.0, dlogz=1e-3)
    ztrue = [0.05, 0.33, 0.61, 0.9]
    spectra = make_spectra({"GALAXY": t}, [("GALAXY", z, LINE_COEFF) for z in ztrue], seed=6, snr=2.0)
    best = zfind.fit_redshifts(zfind.prepare_bands(spectra), [t])
    table = zfind.redshift_table(best, spectra.fibermap["TARGETID"], spectra.fibermap)
    pull = (table["Z"] - ztrue) / table["ZERR"]
    assert np.all(table["ZWARN"] == 0) and np.all(np.abs(pull) < 4)
    assert np.all(table["DELTACHI2"] > 25) and np.all(table["NPIXELS"] > 7000)


def test_results_do_not_depend_on_nproc():
    t = line_template(zmax=1.0, dlogz=1e-3)
    spectra = make_spectra({"GALAXY": t}, [("GALAXY", z, LINE_COEFF) for z in (0.1, 0.4, 0.7, 0.2, 0.5)], seed=7)
    bands = zfind.prepare_bands(spectra)
    one = zfind.fit_redshifts(bands, [t], nproc=1, batch_size=2)
    two = zfind.fit_redshifts(bands, [t], nproc=2, batch_size=2)
    assert [r["z"] for r in one] == [r["z"] for r in two]
    assert [r["chi2"] for r in one] == [r["chi2"] for r in two]


def test_bad_input_is_flagged_not_fatal():
    """All-masked target -> NODATA; NaNs ignored; an empty band leaves the others; sky fiber flagged."""
    t = line_template(zmax=1.0, dlogz=1e-3)
    spectra = make_spectra({"GALAXY": t}, [("GALAXY", 0.3, LINE_COEFF)] * 4, seed=8, snr=4.0)
    spectra.ivar["b"][0] = spectra.ivar["r"][0] = spectra.ivar["z"][0] = 0
    spectra.flux["r"][1, ::7] = np.nan
    spectra.ivar["z"][1, ::5] = np.inf
    spectra.mask["r"][1, :200] = 1
    spectra.ivar["b"][2] = 0  # empty band
    spectra.fibermap["OBJTYPE"][3] = "SKY"
    best = zfind.fit_redshifts(zfind.prepare_bands(spectra), [t])
    table = zfind.redshift_table(best, spectra.fibermap["TARGETID"], spectra.fibermap)
    assert table["ZWARN"][0] & zwarn.NODATA and table["NPIXELS"][0] == 0
    assert table["ZWARN"][1] == 0 and abs(table["Z"][1] - 0.3) < 5 * table["ZERR"][1]
    assert table["ZWARN"][2] == 0 and table["NPIXELS"][2] < 5500 and abs(table["Z"][2] - 0.3) < 5 * table["ZERR"][2]
    assert table["ZWARN"][3] & zwarn.SKY


def test_template_directory_without_usable_template(tmp_path):
    (tmp_path / "rrtemplate-broken.fits").write_bytes(b"not a fits file")
    with pytest.raises(ValueError, match="no usable redrock template"):
        read_templates(str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        read_templates(str(tmp_path / "missing"))


@needs_templates
def test_cli_on_redrock_templates_known_redshifts(tmp_path):
    """The CLI with DESI's templates: known redshifts and classes recovered; DESI readers open the files."""
    from desired.cli import main as desired_main
    templates = {t.fulltype: t for t in read_templates(TEMPLATES)}
    truth = [("GALAXY", 0.45, None), ("GALAXY", 1.1, None), ("QSO:::LOZ", 1.3, None), ("STAR:::K", 0.0002, None)]
    spectra = make_spectra(templates, truth, seed=9, snr=3.0)
    infile, outfile, model = (str(tmp_path / n) for n in ("coadd.fits", "redrock.fits", "rrmodel.fits"))
    write_spectra(infile, spectra)
    assert desired_main(["redshifts", "--infile", infile, "--outfile", outfile, "--templates", TEMPLATES,
                         "--model", model]) == 0
    cat = read_redshifts(outfile)
    z = cat.redshifts
    assert list(np.char.strip(z["SPECTYPE"].astype(str))) == ["GALAXY", "GALAXY", "QSO", "STAR"]
    assert np.all(np.abs(z["Z"] - [t[1] for t in truth]) < 5 * z["ZERR"] + 1e-4)
    assert np.all(z["ZWARN"] == 0)
    # DESI's readers
    fitsio = pytest.importorskip("fitsio")
    hdr = fitsio.read_header(outfile, 0)
    rrt = pytest.importorskip("redrock.templates")
    files = rrt.header2templatefiles(hdr, template_dir=TEMPLATES)
    assert all(os.path.exists(f) for f in files) and len(files) == len(templates)
    from astropy.table import Table
    assert np.all(Table.read(outfile, "FIBERMAP")["TARGETID"] == z["TARGETID"])
    with fitsio.FITS(model) as fx:
        assert fx["B_MODEL"].read().shape == spectra.flux["b"].shape


def _cli_inputs(tmp_path, truth, seed):
    """A template directory (one synthetic template file) and a coadd file of targets drawn from it."""
    from redshift_synth import write_template_file
    t = line_template(zmax=1.0, dlogz=1e-3)
    tdir = tmp_path / "templates"
    tdir.mkdir()
    write_template_file(str(tdir / "rrtemplate-galaxy-test.fits"), t)
    spectra = make_spectra({"GALAXY": t}, [("GALAXY", z, LINE_COEFF) for z in truth], seed=seed)
    infile = str(tmp_path / "coadd.fits")
    write_spectra(infile, spectra)
    return str(tdir), infile, spectra


def test_zcatalog_stacks_redshift_files(tmp_path):
    from desired.cli import main as desired_main
    from desired.io.redshifts import read_zcatalog
    tdir, infile, spectra = _cli_inputs(tmp_path, [0.2, 0.6, 0.35], seed=10)
    outs = []
    for k in range(2):
        out = str(tmp_path / f"redrock-{k}.fits")
        assert desired_main(["redshifts", "--infile", infile, "--outfile", out, "--templates", tdir]) == 0
        outs.append(out)
    zfile = str(tmp_path / "zpix-main-dark.fits")
    assert desired_main(["zcatalog", "--infiles"] + outs + ["--outfile", zfile]) == 0
    zcat = read_zcatalog(zfile)
    table = zcat.zcatalog
    assert len(table) == 6 and np.all(table["ZCAT_NSPEC"] == 2) and table["ZCAT_PRIMARY"].sum() == 3
    assert {"Z", "ZWARN", "SPECTYPE", "TARGET_RA", "HEALPIX", "SURVEY"} <= set(table.colnames)
    assert zcat.header["SURVEY"] == "main" and np.all(table["HEALPIX"] == 18071)
    assert np.allclose(np.sort(table["Z"][table["ZCAT_PRIMARY"]]), [0.2, 0.35, 0.6], atol=2e-3)


def test_mpi_ranks_give_the_serial_redshifts(tmp_path):
    """``mpiexec -n 2 desired redshifts --mpi`` writes the same table as the serial run."""
    tdir, infile, _ = _cli_inputs(tmp_path, [0.1, 0.3, 0.5, 0.7], seed=11)
    common = ["-m", "desired", "redshifts", "--infile", infile, "--templates", tdir, "--batch-size", "2"]
    mpi, serial = run_mpi_and_serial(common, tmp_path, timeout=600)
    a, b = read_redshifts(str(mpi)).redshifts, read_redshifts(str(serial)).redshifts
    for name in ("TARGETID", "Z", "ZERR", "ZWARN", "CHI2", "DELTACHI2", "SPECTYPE"):
        np.testing.assert_array_equal(a[name], b[name])


def test_narrow_line_minimum_is_not_lost_to_a_line_alias():
    """A star-forming galaxy with narrow lines (sigma 45 km/s, narrower than the GALAXY coarse step of
    207 km/s) at true redshifts placed across one coarse step: redrock's rule (a coarse minimum within
    1000 km/s of a better coarse one is not refined) lands on the Hα/[N II] aliases (-940 / +675 km/s)
    for some of them; refining the 4 best coarse minima (zfind.NARROW_MINIMA_REFINE) finds the truth."""
    from desired.redshift import zfind
    from desired.redshift.templates import default_redshifts
    wave = np.arange(3000.0, 9000.0, 0.25)
    lines = {6564.61: 1.0, 6585.27: 0.45, 6549.86: 0.15, 4862.68: 0.35, 5008.24: 0.3, 3727.1: 0.5}
    flux = [np.ones_like(wave)] + [np.exp(-0.5 * ((wave - w) / (w * 45.0 / C_KMS)) ** 2) for w in lines]
    t = Template("GALAXY", "", wave, np.array(flux), default_redshifts("GALAXY"), version="t", filename="synthetic")
    k = np.searchsorted(t.redshifts, 0.1)
    coeff = np.r_[1.0, 30.0 * np.array(list(lines.values()))]
    dv = {"redrock": [], "default": []}
    for j, frac in enumerate(np.linspace(0.3, 0.7, 5)):
        ztrue = t.redshifts[k] + frac * (t.redshifts[k + 1] - t.redshifts[k])
        bands = zfind.prepare_bands(make_spectra({"GALAXY": t}, [("GALAXY", ztrue, coeff)], seed=j, snr=5.0,
                                                 sigma=0.6))
        for label in dv:
            rule = {} if label == "redrock" else zfind.NARROW_MINIMA_REFINE
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(zfind, "NARROW_MINIMA_REFINE", rule)
                best = zfind.fit_batch(bands, [t])[0]
            dv[label].append(C_KMS * (best["z"] - ztrue) / (1 + ztrue))
    assert sum(abs(v) > 500 for v in dv["redrock"]) >= 2, dv       # the test sees the aliases
    assert max(abs(v) for v in dv["default"]) < 20.0, dv


def _broad_line_quasar_fit(line_peaks, snr=3.0, ztrue=1.2, sigma_kms=700.0, amplitudes=None):
    """Best candidate of a noiseless quasar (continuum + broad Gaussian lines peaked at ``line_peaks``,
    rest Å, relative heights ``amplitudes``, default all 1) fitted with a QSO template of continuum +
    one broad line per vector at CIII] 1909 and Mg II 2799."""
    from desired.redshift.templates import default_redshifts
    wave = np.arange(900.0, 9000.0, 0.5)

    def line(center):
        return np.exp(-0.5 * ((wave - center) / (center * sigma_kms / C_KMS)) ** 2)
    fit_t = Template("QSO", "", wave, np.array([np.ones_like(wave), line(1908.7), line(2799.1)]),
                     default_redshifts("QSO"), version="t", filename="fit")
    amplitudes = np.ones(len(line_peaks)) if amplitudes is None else amplitudes
    data_t = Template("QSO", "", wave,
                      np.array([np.ones_like(wave) + 0.5 * sum(a * line(c) for a, c in zip(amplitudes, line_peaks))]),
                      default_redshifts("QSO"), version="t", filename="data")
    spectra = make_spectra({"QSO": data_t}, [("QSO", ztrue, None)], snr=1e6)
    for band in spectra.flux:                       # noise 1e-6 of the signal: deterministic chi2 curves
        spectra.flux[band] = spectra.flux[band] * snr / 1e6
    best = zfind.fit_batch(zfind.prepare_bands(spectra), [fit_t])[0]
    return best, C_KMS * (best["z"] - ztrue) / (1 + ztrue)


def test_quasar_minima_closer_than_3000_kms_are_one_solution():
    """A double-peaked broad line (two equal peaks 2400 km/s apart, each the template's width) leaves two
    chi2 minima at +-1000 km/s, both correct quasar redshifts.  redrock's 1000 km/s rule counts them as
    distinct and flags the right answer SMALL_DELTA_CHI2; the quasar class's 3000 km/s rule
    (templates.MAX_VELOCITY_DIFF) returns it confident.  A single line that two identifications
    (CIII] or Mg II) fit equally stays ambiguous under both rules."""
    from desired.redshift import templates as tmod
    shift = np.array([1 - 1200.0 / C_KMS, 1 + 1200.0 / C_KMS])
    double = [c * s for c in (1908.7, 2799.1) for s in shift]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(tmod.MAX_VELOCITY_DIFF, "QSO", 1000.0)
        best_rr, dv_rr = _broad_line_quasar_fit(double)
    best, dv = _broad_line_quasar_fit(double)
    assert 800 < abs(dv_rr) < 1400 and best_rr["zwarn"] & zwarn.SMALL_DELTA_CHI2, (dv_rr, best_rr)
    assert 800 < abs(dv) < 1400 and best["zwarn"] == 0 and best["deltachi2"] > 50, (dv, best)
    single, _ = _broad_line_quasar_fit([2799.1])
    assert single["zwarn"] & zwarn.SMALL_DELTA_CHI2, single


def test_best_refined_quasar_minimum_of_a_3000_kms_window_wins():
    """Two chi2 minima 2200 km/s apart (line peaks of heights 1 and 0.92, sigma 250 km/s): the higher
    peak's minimum lies half a coarse step (172 km/s) from the grid, the lower one's on a grid point,
    so the lower peak has the better coarse chi2 but the worse refined one.  Refining only the best
    coarse minimum of the quasar's 3000 km/s window (nrefine 0) returns the lower peak; refining the
    best few (zfind.NARROW_MINIMA_REFINE["QSO"]) returns the best chi2 of the window."""
    from desired.redshift.templates import default_redshifts
    zgrid = default_redshifts("QSO")
    k = int(np.searchsorted(zgrid, 1.2))
    za = np.sqrt((1 + zgrid[k]) * (1 + zgrid[k + 1])) - 1          # between two coarse points
    zb = zgrid[k + 7]                                               # on a coarse point, +2243 km/s
    peaks = [c * s for c in (1908.7, 2799.1) for s in (1.0, (1 + zb) / (1 + za))]
    fits = {}
    for nrefine in (0, zfind.NARROW_MINIMA_REFINE["QSO"]):
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(zfind.NARROW_MINIMA_REFINE, "QSO", nrefine)
            fits[nrefine] = _broad_line_quasar_fit(peaks, ztrue=za, sigma_kms=250.0,
                                                   amplitudes=[1.0, 0.92, 1.0, 0.92])
    (best0, dv0), (best, dv) = fits[0], fits[zfind.NARROW_MINIMA_REFINE["QSO"]]
    assert 2000 < dv0 < 2500, (dv0, best0)                     # the lower peak: right coarse, wrong refined
    assert abs(dv) < 50 and best["chi2"] < best0["chi2"], (dv, best, best0)
