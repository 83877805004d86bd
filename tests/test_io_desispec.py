"""Interoperability with the DESI tools: desispec.io reads our files, we read desispec's,
and redrock (rrdesi) runs on a coadd we wrote.

Skipped only when desispec (or redrock, for the rrdesi test) is not importable, or,
for rrdesi, when the redrock templates in ../shared/data are absent.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from desired.fiberflat import FiberFlat
from desired.fluxcalib import FluxCalib
from desired.image import Image
from desired.io.fiberflat import read_fiberflat, write_fiberflat
from desired.io.fluxcalib import read_flux_calibration, write_flux_calibration
from desired.io.frame import read_frame, write_frame
from desired.io.image import read_image, write_image
from desired.io.psf import write_psf
from desired.io.redshifts import read_redshifts
from desired.io.sky import read_sky, write_sky
from desired.io.spectra import read_spectra, write_spectra
from desired.io.stdstars import read_stdstar_models, write_stdstar_models
from desired.sky import SkyModel
from desired.stdstars import StdStars

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_io_roundtrip import (EXPOSURE, NSPEC, NWAVE, f32, make_fibermap, make_frame,  # noqa: E402
                               make_spectra)

dio = pytest.importorskip("desispec.io", reason="desispec is not installed: interoperability tests need it")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEMPLATES = SHARED_DATA / "redrock-templates"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def assert_same_columns(theirs, ours, columns=("TARGETID", "FIBER", "OBJTYPE")):
    for col in columns:
        if col in ours.colnames:
            a = np.asarray(theirs[col])
            b = np.asarray(ours[col])
            if b.dtype.kind in "US":
                a, b = np.char.strip(a.astype(str)), b.astype(str)
            np.testing.assert_array_equal(a, b, err_msg=col)


# --------------------------------------------------------------------------- desispec reads ours

def test_desispec_reads_our_frame_and_cframe(tmp_path):
    for cframe in (False, True):
        frame = make_frame(cframe=cframe)
        path = tmp_path / f"{'c' if cframe else ''}frame-b1-00001234.fits"
        write_frame(path, frame)
        theirs = dio.read_frame(str(path))
        np.testing.assert_array_equal(theirs.wave, frame.wave)
        np.testing.assert_array_equal(theirs.flux, f32(frame.flux))
        np.testing.assert_array_equal(theirs.ivar, f32(frame.ivar))
        np.testing.assert_array_equal(theirs.mask, frame.mask)
        np.testing.assert_array_equal(theirs.resolution_data, f32(frame.resolution_data))
        np.testing.assert_array_equal(theirs.chi2pix, f32(frame.chi2pix))
        np.testing.assert_array_equal(theirs.fibers, frame.fibers)
        assert theirs.meta["CAMERA"] == "b1" and theirs.meta["NIGHT"] == EXPOSURE["NIGHT"]
        assert theirs.spectrograph == 1
        assert_same_columns(theirs.fibermap, frame.fibermap)


def test_desispec_reads_our_preproc(tmp_path):
    rng = np.random.default_rng(11)
    shape = (30, 20)
    mask = np.where(rng.uniform(size=shape) < 0.1, 4, 0)
    image = Image(rng.normal(0, 3, shape), rng.uniform(0.1, 1, shape), mask=mask, readnoise=3.5,
                  header=EXPOSURE, camera="z4")
    path = tmp_path / "preproc-z4-00001234.fits"
    write_image(path, image, fibermap=make_fibermap(5, 2000))
    theirs = dio.read_image(str(path))
    np.testing.assert_array_equal(theirs.pix, f32(image.pix))
    np.testing.assert_array_equal(theirs.ivar, f32(image.ivar))
    np.testing.assert_array_equal(theirs.mask, mask)
    np.testing.assert_array_equal(theirs.readnoise, np.full(shape, 3.5))
    assert theirs.camera == "z4" and theirs.meta["EXPID"] == EXPOSURE["EXPID"]


def test_desispec_reads_our_fiberflat_sky_fluxcalib(tmp_path):
    rng = np.random.default_rng(12)
    wave = 5760 + 0.8 * np.arange(NWAVE)
    shape = (NSPEC, NWAVE)
    ff = FiberFlat(wave, rng.normal(1, 0.05, shape), rng.uniform(1e3, 1e4, shape), mask=(rng.uniform(size=shape) < .1) * 8,
                   meanspec=rng.uniform(100, 200, NWAVE), header={**EXPOSURE, "CAMERA": "r1"})
    write_fiberflat(tmp_path / "fiberflat.fits", ff)
    theirs = dio.read_fiberflat(str(tmp_path / "fiberflat.fits"))
    np.testing.assert_array_equal(theirs.wave, f32(wave))
    np.testing.assert_array_equal(theirs.fiberflat, f32(ff.fiberflat))
    np.testing.assert_array_equal(theirs.ivar, f32(ff.ivar))
    np.testing.assert_array_equal(theirs.mask, ff.mask)
    np.testing.assert_array_equal(theirs.meanspec, f32(ff.meanspec))

    sky = SkyModel(wave, rng.uniform(0, 50, shape), rng.uniform(0.1, 1, shape), mask=(rng.uniform(size=shape) < .1) * 64,
                   header={**EXPOSURE, "CAMERA": "r1"}, stat_ivar=rng.uniform(0.1, 1, shape),
                   throughput_corrections=rng.normal(1, 0.01, NSPEC))
    write_sky(tmp_path / "sky.fits", sky)
    theirs = dio.read_sky(str(tmp_path / "sky.fits"))
    np.testing.assert_array_equal(theirs.wave, f32(wave))
    np.testing.assert_array_equal(theirs.flux, f32(sky.flux))
    np.testing.assert_array_equal(theirs.ivar, f32(sky.ivar))
    np.testing.assert_array_equal(theirs.mask, sky.mask)
    np.testing.assert_array_equal(theirs.stat_ivar, f32(sky.stat_ivar))
    np.testing.assert_array_equal(theirs.throughput_corrections, f32(sky.throughput_corrections))

    fibercorr = Table({"FLAT_TO_PSF_FLUX": rng.uniform(0.9, 1.1, NSPEC), "PSF_TO_FIBER_FLUX": rng.uniform(.7, .8, NSPEC)})
    fc = FluxCalib(wave, rng.uniform(10, 20, shape), rng.uniform(0, 5, shape), header={**EXPOSURE, "CAMERA": "r1"},
                   fibercorr=fibercorr)
    write_flux_calibration(tmp_path / "fluxcalib.fits", fc)
    theirs = dio.read_flux_calibration(str(tmp_path / "fluxcalib.fits"))
    np.testing.assert_array_equal(theirs.wave, f32(wave))
    np.testing.assert_array_equal(theirs.calib, f32(fc.calib))
    np.testing.assert_array_equal(theirs.ivar, f32(fc.ivar))
    np.testing.assert_array_equal(theirs.mask, fc.mask)
    np.testing.assert_array_equal(theirs.fibercorr["PSF_TO_FIBER_FLUX"], fibercorr["PSF_TO_FIBER_FLUX"])


def test_desispec_reads_our_stdstars(tmp_path):
    rng = np.random.default_rng(13)
    wave = np.linspace(3500, 10000, 200)
    meta = Table({"TARGETID": np.array([5, 9], "i8"), "FIBER": np.array([501, 503], "i4"), "LOGG": [4.5, 4.0],
                  "TEFF": [6000.0, 5800.0], "FEH": [-1.0, -0.5], "CHI2DOF": [1.1, 0.9], "REDSHIFT": [1e-4, -2e-4]})
    std = StdStars(wave, rng.uniform(1, 2, (2, 200)), [501, 503], meta, fibermap=make_fibermap(2),
                   input_frames=Table({"NIGHT": [20250101], "EXPID": [1234], "CAMERA": ["b1"]}))
    write_stdstar_models(tmp_path / "stdstars.fits", std)
    flux, twave, fibers, metadata = dio.read_stdstar_models(str(tmp_path / "stdstars.fits"))
    np.testing.assert_array_equal(flux, f32(std.flux))
    np.testing.assert_array_equal(twave, f32(wave))
    np.testing.assert_array_equal(fibers, [501, 503])
    np.testing.assert_array_equal(metadata["TEFF"], meta["TEFF"])


@pytest.mark.parametrize("coadd", [False, True])
def test_desispec_reads_our_spectra(tmp_path, coadd):
    spec = make_spectra(coadd=coadd)
    path = tmp_path / ("coadd.fits" if coadd else "spectra.fits")
    write_spectra(path, spec)
    theirs = dio.read_spectra(str(path))
    assert list(theirs.bands) == ["b", "r", "z"]
    for b in "brz":
        np.testing.assert_array_equal(theirs.wave[b], spec.wave[b])
        np.testing.assert_array_equal(theirs.flux[b], f32(spec.flux[b]))
        np.testing.assert_array_equal(theirs.ivar[b], f32(spec.ivar[b]))
        np.testing.assert_array_equal(theirs.mask[b], spec.mask[b])
        np.testing.assert_array_equal(theirs.resolution_data[b], f32(spec.resolution_data[b]))
    assert_same_columns(theirs.fibermap, spec.fibermap)
    np.testing.assert_array_equal(theirs.scores["TSNR2_LRG"], spec.scores["TSNR2_LRG"])
    assert (theirs.exp_fibermap is not None) == coadd
    if coadd:
        np.testing.assert_array_equal(theirs.exp_fibermap["EXPID"], spec.exp_fibermap["EXPID"])
    assert theirs.meta["HPXPIXEL"] == 27256


def write_small_psf(path):
    """A 3-fiber GAUSS-HERMITE PSF with analytic traces, written by desired.io.psf."""
    from desired.psf import GaussHermitePSF
    nfiber = 3
    xcoef = np.zeros((nfiber, 3))
    xcoef[:, 0] = 20 + 8.0 * np.arange(nfiber)
    xcoef[:, 1] = 0.4
    ycoef = np.zeros((nfiber, 3))
    ycoef[:, 0] = 200
    ycoef[:, 1] = 190
    params = {"GHSIGX": np.tile([1.0, 0.1], (nfiber, 1)), "GHSIGY": np.tile([1.2, 0.0], (nfiber, 1)),
              "GH-0-0": np.tile([1.0, 0.0], (nfiber, 1))}
    for name, value in (("TAILAMP", 0.0), ("TAILCORE", 2.0), ("TAILXSCA", 1.0), ("TAILYSCA", 1.0), ("TAILINDE", 2.0)):
        params[name] = np.tile([value, 0.0], (nfiber, 1))
    psf = GaussHermitePSF(xcoef, ycoef, 3600.0, 5800.0, params, 0, 0, npix_x=60, npix_y=400, fibermin=0)
    write_psf(path, psf, header={"CAMERA": "b0"})
    return psf


def test_psf_file_has_what_read_xytraceset_needs(tmp_path):
    """Without specter: check, with fitsio as desispec uses it, the HDUs and keywords read_xytraceset reads."""
    import fitsio
    from numpy.polynomial.legendre import legval
    path = tmp_path / "psf-b0-00001234.fits"
    psf = write_small_psf(path)
    wave = np.linspace(3700, 5700, 7)
    with fitsio.FITS(str(path)) as f:
        assert f[0].read_header()["NPIX_Y"] == 400
        for ext, trace in (("XTRACE", psf.x), ("YTRACE", psf.y)):
            coef, hdr = f[ext].read(), f[ext].read_header()
            u = 2 * (wave - hdr["WAVEMIN"]) / (hdr["WAVEMAX"] - hdr["WAVEMIN"]) - 1
            for fiber in range(3):
                np.testing.assert_allclose(legval(u, coef[fiber]), trace(fiber, wave), atol=1e-9)
        assert f["PSF"].read_header()["PSFVER"] == "3"


def test_desispec_read_xytraceset_on_our_psf(tmp_path):
    pytest.importorskip("specter", reason="specter is not installed: desispec.io.read_xytraceset needs it")
    path = tmp_path / "psf-b0-00001234.fits"
    psf = write_small_psf(path)
    traces = dio.read_xytraceset(str(path))
    wave = np.linspace(3700, 5700, 7)
    for fiber in range(3):
        np.testing.assert_allclose(traces.x_vs_wave(fiber, wave), psf.x(fiber, wave), atol=1e-9)
        np.testing.assert_allclose(traces.y_vs_wave(fiber, wave), psf.y(fiber, wave), atol=1e-9)
    assert traces.npix_y == 400
    import specter.psf
    theirs = specter.psf.load_psf(str(path))
    np.testing.assert_allclose(theirs.x(1, 4500.0), psf.x(1, 4500.0), atol=1e-9)
    np.testing.assert_allclose(theirs.y(1, 4500.0), psf.y(1, 4500.0), atol=1e-9)


# --------------------------------------------------------------------------- we read desispec's

def test_we_read_desispec_frame_and_preproc(tmp_path):
    import desispec.frame
    import desispec.image
    frame = make_frame(camera="r1")
    theirs = desispec.frame.Frame(frame.wave, frame.flux, frame.ivar, mask=frame.mask,
                                  resolution_data=frame.resolution_data, fibermap=frame.fibermap,
                                  meta=dict(frame.header), chi2pix=frame.chi2pix)
    path = tmp_path / "frame-r1-00001234.fits.gz"
    dio.write_frame(str(path), theirs)
    got = read_frame(path)
    np.testing.assert_array_equal(got.wave, frame.wave)
    np.testing.assert_array_equal(got.flux, f32(frame.flux))
    np.testing.assert_array_equal(got.ivar, f32(frame.ivar))
    np.testing.assert_array_equal(got.mask, frame.mask)
    np.testing.assert_allclose(got.resolution_data, f32(frame.resolution_data))
    np.testing.assert_array_equal(got.fibers, 500 + np.arange(NSPEC))
    assert got.camera == "r1" and got.header["EXPID"] == EXPOSURE["EXPID"]
    assert list(got.fibermap["OBJTYPE"]) == list(frame.fibermap["OBJTYPE"])

    rng = np.random.default_rng(14)
    shape = (30, 20)
    img = desispec.image.Image(rng.normal(size=shape), rng.uniform(0.5, 1, shape), mask=np.where(rng.uniform(size=shape) < .1, 8, 0),
                               readnoise=np.full(shape, 2.5), camera="b2", meta=dict(EXPOSURE))
    path = tmp_path / "preproc-b2-00001234.fits.gz"
    dio.write_image(str(path), img)
    got = read_image(path)
    np.testing.assert_array_equal(got.pix, f32(img.pix))
    np.testing.assert_array_equal(got.ivar, f32(img.ivar))
    np.testing.assert_array_equal(got.mask, img.mask)
    np.testing.assert_array_equal(got.readnoise, np.full(shape, 2.5))
    assert got.camera == "b2"


def test_we_read_desispec_calibration_products(tmp_path):
    import desispec.fiberflat
    import desispec.fluxcalibration
    import desispec.sky
    rng = np.random.default_rng(15)
    wave = 7520 + 0.8 * np.arange(NWAVE)
    shape = (NSPEC, NWAVE)
    values = [rng.uniform(0.5, 1.5, shape) for _ in range(3)]
    mask = (rng.uniform(size=shape) < .1).astype(np.int32) * 4
    meanspec = rng.uniform(1, 2, NWAVE)

    ff = desispec.fiberflat.FiberFlat(wave, values[0], values[1], mask=mask, meanspec=meanspec,
                                      header={"CAMERA": "z1", "EXPID": 7})
    dio.write_fiberflat(str(tmp_path / "fiberflat.fits.gz"), ff)
    got = read_fiberflat(tmp_path / "fiberflat.fits.gz")
    np.testing.assert_array_equal(got.fiberflat, f32(values[0]))
    np.testing.assert_array_equal(got.ivar, f32(values[1]))
    np.testing.assert_array_equal(got.mask, mask)
    np.testing.assert_array_equal(got.meanspec, f32(meanspec))
    np.testing.assert_array_equal(got.wave, f32(wave))

    sky = desispec.sky.SkyModel(wave, values[0], values[1], mask, header={"CAMERA": "z1", "EXPID": 7},
                                stat_ivar=values[2])
    dio.write_sky(str(tmp_path / "sky.fits.gz"), sky)
    got = read_sky(tmp_path / "sky.fits.gz")
    np.testing.assert_array_equal(got.flux, f32(values[0]))
    np.testing.assert_array_equal(got.ivar, f32(values[1]))
    np.testing.assert_array_equal(got.stat_ivar, f32(values[2]))
    np.testing.assert_array_equal(got.mask, mask)
    assert got.header["CAMERA"] == "z1"

    fc = desispec.fluxcalibration.FluxCalib(wave, values[0], values[1], mask)
    dio.write_flux_calibration(str(tmp_path / "fluxcalib.fits.gz"), fc, header={"CAMERA": "z1"})
    got = read_flux_calibration(tmp_path / "fluxcalib.fits.gz")
    np.testing.assert_array_equal(got.calib, f32(values[0]))
    np.testing.assert_array_equal(got.ivar, f32(values[1]))
    np.testing.assert_array_equal(got.mask, mask)

    meta = Table({"TARGETID": np.array([5], "i8"), "FIBER": np.array([501], "i4"), "TEFF": [6000.0],
                  "LOGG": [4.0], "FEH": [-1.0], "CHI2DOF": [1.0], "REDSHIFT": [0.0]})
    swave = np.linspace(3500, 10000, 50)
    dio.write_stdstar_models(str(tmp_path / "stdstars.fits.gz"), values[0][:1, :50], swave, np.array([501]), meta,
                             make_fibermap(1, 501), Table({"NIGHT": [1], "EXPID": [7], "CAMERA": ["z1"]}))
    got = read_stdstar_models(tmp_path / "stdstars.fits.gz")
    np.testing.assert_array_equal(got.flux, f32(values[0][:1, :50]))
    np.testing.assert_array_equal(got.wave, f32(swave))
    np.testing.assert_array_equal(got.fibers, [501])
    np.testing.assert_array_equal(got.metadata["TEFF"], [6000.0])


@pytest.mark.parametrize("coadd", [False, True])
def test_we_read_desispec_spectra(tmp_path, coadd):
    import desispec.spectra
    spec = make_spectra(coadd=coadd, seed=5)
    theirs = desispec.spectra.Spectra(spec.bands, spec.wave, spec.flux, spec.ivar, mask=spec.mask,
                                      resolution_data=spec.resolution_data, fibermap=spec.fibermap,
                                      exp_fibermap=spec.exp_fibermap, meta=dict(spec.header), scores=spec.scores)
    path = tmp_path / ("coadd.fits" if coadd else "spectra.fits.gz")
    dio.write_spectra(str(path), theirs)
    got = read_spectra(path)
    assert got.bands == ["b", "r", "z"] and got.is_coadd == coadd
    for b in "brz":
        np.testing.assert_array_equal(got.wave[b], spec.wave[b])
        np.testing.assert_array_equal(got.flux[b], f32(spec.flux[b]))
        np.testing.assert_array_equal(got.ivar[b], f32(spec.ivar[b]))
        np.testing.assert_array_equal(got.mask[b], spec.mask[b])
        np.testing.assert_array_equal(got.resolution_data[b], f32(spec.resolution_data[b]))
    np.testing.assert_array_equal(got.target_ids(), spec.target_ids())
    np.testing.assert_allclose(got.scores["TSNR2_LRG"], spec.scores["TSNR2_LRG"])


def test_desi_group_spectra_runs_on_our_cframes(tmp_path):
    """Our b/r/z cframes go through desispec's grouping + coadd; we read both outputs back."""
    tool = shutil.which("desi_group_spectra") or str(Path(sys.executable).parent / "desi_group_spectra")
    if not Path(tool).exists():
        pytest.skip("the desi_group_spectra executable is not installed")
    frames = {}
    for cam in ("b0", "r0", "z0"):
        # 25 A steps so that each band covers desispec's score top-hat ranges
        frame = make_frame(camera=cam, cframe=True, dwave=25.0)
        frame.fibermap.meta.update({"SURVEY": "main", "FAPRGRM": "dark"})
        frame = type(frame)(frame.wave, frame.flux, frame.ivar, None, frame.resolution_data, frame.fibermap,
                            frame.chi2pix, frame.header, frame.fibers, frame.scores)
        frames[cam[0]] = frame
        write_frame(tmp_path / f"cframe-{cam}-00001234.fits", frame)
    import healpy
    pix = healpy.ang2pix(64, frames["b"].fibermap["TARGET_RA"][0], frames["b"].fibermap["TARGET_DEC"][0],
                         lonlat=True, nest=True)
    assert np.all(healpy.ang2pix(64, frames["b"].fibermap["TARGET_RA"], frames["b"].fibermap["TARGET_DEC"],
                                 lonlat=True, nest=True) == pix)
    spectra_path, coadd_path = tmp_path / "spectra.fits", tmp_path / "coadd.fits"
    proc = subprocess.run([tool, "--inframes", *[str(tmp_path / f"cframe-{c}-00001234.fits") for c in ("b0", "r0", "z0")],
                           "-o", str(spectra_path), "-c", str(coadd_path), "--healpix", str(pix),
                           "--header", "SURVEY=main", "PROGRAM=dark"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spectra, coadd = read_spectra(spectra_path), read_spectra(coadd_path)
    assert spectra.bands == coadd.bands == ["b", "r", "z"]
    assert not spectra.is_coadd and coadd.is_coadd
    for b, frame in frames.items():
        np.testing.assert_array_equal(spectra.flux[b], f32(frame.flux))
        np.testing.assert_array_equal(spectra.resolution_data[b], f32(frame.resolution_data))
        # a one-exposure coadd is the exposure itself
        np.testing.assert_allclose(coadd.flux[b], f32(frame.flux), rtol=1e-6)
        np.testing.assert_allclose(coadd.ivar[b], f32(frame.ivar), rtol=1e-6)
    np.testing.assert_array_equal(coadd.target_ids(), frames["b"].fibermap["TARGETID"])
    expected_tsnr2 = sum(np.asarray(frames[b].scores[f"TSNR2_LRG_{b.upper()}"]) for b in "brz")
    np.testing.assert_allclose(coadd.scores["TSNR2_LRG"], expected_tsnr2, rtol=1e-5)
    assert "COADD_FIBERSTATUS" in coadd.fibermap.colnames


# --------------------------------------------------------------------------- redrock

def star_like_coadd(seed=21):
    """A coadd whose fluxes follow a smooth stellar-like continuum plus noise."""
    spec = make_spectra(coadd=True, seed=seed)
    rng = np.random.default_rng(seed)
    flux, ivar = {}, {}
    for b in spec.bands:
        wave = spec.wave[b]
        model = 5.0 * (wave / 5000.0) ** -2
        ivar[b] = np.full(spec.flux[b].shape, 25.0)
        flux[b] = model[None, :] + rng.normal(0, 0.2, spec.flux[b].shape)
    return type(spec)(spec.bands, spec.wave, flux, ivar, mask={b: np.zeros_like(spec.mask[b]) for b in spec.bands},
                      resolution_data=spec.resolution_data, fibermap=spec.fibermap,
                      exp_fibermap=spec.exp_fibermap, scores=spec.scores, header=spec.header)


def test_rrdesi_runs_on_our_coadd(tmp_path):
    pytest.importorskip("redrock", reason="redrock is not installed")
    rrdesi = shutil.which("rrdesi") or str(Path(sys.executable).parent / "rrdesi")
    if not Path(rrdesi).exists():
        pytest.skip("the rrdesi executable is not installed")
    template = TEMPLATES / "rrtemplate-STAR-K-v0.1.fits"
    if not template.exists():
        pytest.skip(f"redrock templates not found at {TEMPLATES}")
    tdir = tmp_path / "templates"
    tdir.mkdir()
    shutil.copy(template, tdir / template.name)
    (tdir / "templates-default.txt").write_text(template.name + "\n")

    spec = star_like_coadd()
    coadd = tmp_path / "coadd-main-dark-27256.fits"
    write_spectra(coadd, spec)
    out = tmp_path / "redrock-main-dark-27256.fits"
    env = {**os.environ, "RR_TEMPLATE_DIR": str(tdir), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([rrdesi, "-i", str(coadd), "-o", str(out), "--ncpu", "1"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = read_redshifts(out)
    np.testing.assert_array_equal(result.redshifts["TARGETID"], spec.target_ids())
    np.testing.assert_array_equal(result.fibermap["TARGETID"], spec.target_ids())
    assert set(result.redshifts["SPECTYPE"]) == {"STAR"}
    assert set(result.redshifts["SUBTYPE"]) == {"K"}
    assert np.all(np.abs(result.redshifts["Z"]) < 0.01)      # inside the STAR scan range
    assert result.tsnr2 is not None and "TSNR2_LRG" in result.tsnr2.colnames
    np.testing.assert_allclose(result.tsnr2["TSNR2_LRG"], spec.scores["TSNR2_LRG"])
    assert "RRVER" in result.header and result.header["TEMNAM00"] == "STAR:::K"
    assert result.exp_fibermap is not None and len(result.exp_fibermap) == 2 * NSPEC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from astropy.io import fits
        with fits.open(out) as hdus:
            assert [h.name for h in hdus] == ["PRIMARY", "REDSHIFTS", "FIBERMAP", "EXP_FIBERMAP", "TSNR2"]
