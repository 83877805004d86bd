"""Round trips of every data-model product: write with desired.io, read back, compare.

Inputs are random arrays; the expected values are the inputs cast to the on-disk
dtype of the data model (float32 flux, float64 frame wavelength, ...), so a writer
that stored the wrong dtype or a reader that mixed up HDUs fails here.
The builders at the top are imported by test_io_desispec.py and test_io_badinput.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from desired.fiberflat import FiberFlat
from desired.fibermap import empty_fibermap
from desired.fluxcalib import FluxCalib
from desired.frame import Frame
from desired.image import Image
from desired.io.fiberflat import read_fiberflat, write_fiberflat
from desired.io.fibermap import read_fibermap, write_fibermap
from desired.io.fluxcalib import read_flux_calibration, write_flux_calibration
from desired.io.frame import CFRAME_UNITS, read_frame, write_frame
from desired.io.image import read_image, write_image
from desired.io.redshifts import (RedshiftCatalog, ZCatalog, read_redshifts, read_zcatalog, template_keywords,
                                  write_redshifts, write_zcatalog)
from desired.io.sky import read_sky, write_sky
from desired.io.spectra import read_spectra, write_spectra
from desired.io.stdstars import read_stdstar_models, write_stdstar_models
from desired.sky import SkyModel
from desired.spectra import Spectra
from desired.stdstars import StdStars

NSPEC, NWAVE, NDIAG = 5, 100, 11
BANDS = {"b": 3600.0, "r": 5760.0, "z": 7520.0}
EXPOSURE = {"NIGHT": 20250101, "EXPID": 1234, "TILEID": 1000, "FLAVOR": "science",
            "MJD-OBS": 60676.25, "EXPTIME": 900.0, "SURVEY": "main", "PROGRAM": "dark"}


def make_fibermap(nspec=NSPEC, fibermin=500, seed=0):
    """A small per-exposure fibermap (canonical columns of desired.fibermap) with targets filled in."""
    rng = np.random.default_rng(seed)
    fm = empty_fibermap(nspec, fibermin)
    fm["TARGETID"] = np.arange(1000, 1000 + nspec, dtype="i8") + 100 * seed
    fm["TARGET_RA"] = rng.uniform(150.0, 150.1, nspec)
    fm["TARGET_DEC"] = rng.uniform(2.0, 2.1, nspec)
    fm["OBJTYPE"] = np.array(["TGT", "SKY", "TGT", "TGT", "TGT"] * (nspec // 5 + 1))[:nspec]
    for col in ("FIBER_X", "FIBER_Y", "DELTA_X", "DELTA_Y"):
        fm[col] = rng.normal(0, 1, nspec).astype(fm[col].dtype)
    fm["FIBER_RA"] = np.asarray(fm["TARGET_RA"])
    fm["FIBER_DEC"] = np.asarray(fm["TARGET_DEC"])
    for col in ("GAIA_PHOT_G_MEAN_MAG", "GAIA_PHOT_BP_MEAN_MAG", "GAIA_PHOT_RP_MEAN_MAG"):
        fm[col] = rng.uniform(15, 20, nspec).astype("f4")
    fm["FLUX_R"] = rng.uniform(1, 10, nspec).astype("f4")
    fm["EXPTIME"] = np.full(nspec, 900.0)
    return fm


def make_resolution(rng, nspec=NSPEC, nwave=NWAVE):
    """Positive diagonals of random Gaussian-like kernels, shape (nspec, NDIAG, nwave)."""
    offsets = np.arange(NDIAG) - NDIAG // 2
    sigma = rng.uniform(0.8, 1.2, (nspec, 1, nwave))
    res = np.exp(-0.5 * (offsets[None, :, None] / sigma) ** 2)
    return res / res.sum(axis=1, keepdims=True)


def make_frame(camera="b1", seed=1, cframe=False, nspec=NSPEC, nwave=NWAVE, dwave=0.8):
    """A frame with every optional part filled (wavelength step ``dwave`` Angstrom)."""
    rng = np.random.default_rng(seed)
    wmin = BANDS[camera[0]]
    wave = wmin + dwave * np.arange(nwave)
    fibermin = 500 * int(camera[1])
    scores = Table({f"MEDIAN_CALIB_SNR_{camera[0].upper()}": rng.uniform(0, 5, nspec),
                    f"TSNR2_LRG_{camera[0].upper()}": rng.uniform(0, 5, nspec)})
    header = {**EXPOSURE, "CAMERA": camera, "SPECGRPH": int(camera[1]), "DETECTOR": "SIM"}
    if cframe:
        header["BUNIT"] = CFRAME_UNITS
    return Frame(wave, rng.normal(10, 3, (nspec, nwave)), rng.uniform(0.5, 2, (nspec, nwave)),
                 mask=rng.integers(0, 4, (nspec, nwave)) * (rng.uniform(size=(nspec, nwave)) < 0.1),
                 resolution_data=make_resolution(rng, nspec, nwave),
                 fibermap=make_fibermap(nspec, fibermin, seed=0), chi2pix=rng.uniform(0.5, 2, (nspec, nwave)),
                 header=header, scores=scores)


def make_spectra(coadd=False, seed=2, nspec=NSPEC, nwave=NWAVE):
    """Three-band spectra (or a coadd with an EXP_FIBERMAP)."""
    rng = np.random.default_rng(seed)
    wave = {b: w0 + 0.8 * np.arange(nwave) for b, w0 in BANDS.items()}
    bands = list(BANDS)
    fm = make_fibermap(nspec, 500, seed=0)
    if coadd:
        fm.rename_column("FIBERSTATUS", "COADD_FIBERSTATUS")
        exp = Table({"TARGETID": np.repeat(fm["TARGETID"], 2), "NIGHT": np.full(2 * nspec, 20250101, "i4"),
                     "EXPID": np.tile(np.array([11, 12], "i4"), nspec), "TILEID": np.full(2 * nspec, 1000, "i4"),
                     "FIBER": np.repeat(fm["FIBER"], 2), "FIBERSTATUS": np.zeros(2 * nspec, "i4"),
                     "IN_COADD_B": np.ones(2 * nspec, bool)})
    else:
        for col, value in (("NIGHT", 20250101), ("EXPID", 11), ("TILEID", 1000)):
            fm[col] = np.full(nspec, value, dtype="i4")
        fm["MJD"] = np.full(nspec, 60676.25)
        exp = None
    scores = Table({"TARGETID": np.asarray(fm["TARGETID"]), "TSNR2_LRG": rng.uniform(0, 9, nspec).astype("f4"),
                    "MEDIAN_COADD_SNR_B": rng.uniform(0, 9, nspec).astype("f4")})
    return Spectra(bands, wave,
                   {b: rng.normal(1, 0.3, (nspec, nwave)) for b in bands},
                   {b: rng.uniform(1, 4, (nspec, nwave)) for b in bands},
                   mask={b: (rng.uniform(size=(nspec, nwave)) < 0.05).astype(int) for b in bands},
                   resolution_data={b: make_resolution(rng, nspec, nwave) for b in bands},
                   fibermap=fm, exp_fibermap=exp, scores=scores,
                   header={"SPGRP": "healpix", "SPGRPVAL": 27256, "HPXPIXEL": 27256, "HPXNSIDE": 64,
                           "HPXNEST": True, "SURVEY": "main", "PROGRAM": "dark"})


def f32(a):
    """The value after a float32 round trip."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def assert_tables_equal(got, expected):
    assert got.colnames == expected.colnames
    for name in expected.colnames:
        assert got[name].unit == expected[name].unit, name
        e = np.asarray(expected[name])
        g = np.asarray(got[name])
        if e.dtype.kind in "US":
            assert list(g.astype(str)) == list(e.astype(str)), name
        else:
            assert g.dtype == e.dtype, (name, g.dtype, e.dtype)
            np.testing.assert_array_equal(g, e, err_msg=name)


def assert_keywords_kept(got, expected):
    for key, value in expected.items():
        assert got[key] == value, key


def on_disk(path):
    """{EXTNAME: (dtype, shape, BUNIT)} of every image HDU, read with plain astropy."""
    out = {}
    with fits.open(path) as hdus:
        for hdu in hdus:
            if hdu.is_image and hdu.data is not None:
                out[hdu.name] = (hdu.data.dtype.newbyteorder("=").name if hdu.data.dtype.byteorder != "|"
                                 else hdu.data.dtype.name, hdu.data.shape, hdu.header.get("BUNIT"))
    return out


def test_fibermap_roundtrip(tmp_path):
    fm = make_fibermap(7)
    path = tmp_path / "fibermap-00001234.fits"
    write_fibermap(path, fm, header=EXPOSURE)
    got = read_fibermap(path)
    assert_tables_equal(got, fm)
    assert_keywords_kept(got.meta, EXPOSURE)
    with fits.open(path) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "FIBERMAP"]
        assert hdus["FIBERMAP"].columns["OBJTYPE"].format == "3A"
        assert hdus["FIBERMAP"].columns["TARGETID"].format == "K"


def test_fibermap_string_columns_keep_data_model_width(tmp_path):
    """DESI's data model declares MORPHTYPE 4A and BRICKNAME 8A; values shorter than that ('PSF', 'EXP', '')
    must not shrink the column (desispec's annotate_fibermap rejects MORPHTYPE 3A)."""
    fm = make_fibermap(3)
    fm["MORPHTYPE"][:] = ["PSF", "EXP", ""]
    fm["BRICKNAME"][:] = ["0001p000", "", "x"]
    path = tmp_path / "fibermap-00001235.fits"
    write_fibermap(path, fm, header=EXPOSURE)
    with fits.open(path) as hdus:
        assert hdus["FIBERMAP"].columns["MORPHTYPE"].format == "4A"
        assert hdus["FIBERMAP"].columns["BRICKNAME"].format == "8A"
    assert list(read_fibermap(path)["MORPHTYPE"]) == ["PSF", "EXP", ""]


@pytest.mark.parametrize("cframe", [False, True])
def test_frame_roundtrip(tmp_path, cframe):
    frame = make_frame(cframe=cframe)
    path = tmp_path / "frame-b1-00001234.fits"
    write_frame(path, frame)
    got = read_frame(path)
    np.testing.assert_array_equal(got.wave, frame.wave)
    np.testing.assert_array_equal(got.flux, f32(frame.flux))
    np.testing.assert_array_equal(got.ivar, f32(frame.ivar))
    np.testing.assert_array_equal(got.mask, frame.mask)
    np.testing.assert_array_equal(got.resolution_data, f32(frame.resolution_data))
    np.testing.assert_array_equal(got.chi2pix, f32(frame.chi2pix))
    np.testing.assert_array_equal(got.fibers, np.arange(500, 505))
    assert_tables_equal(got.fibermap, frame.fibermap)
    assert_tables_equal(got.scores, frame.scores)
    assert_keywords_kept(got.header, frame.header)
    layout = on_disk(path)
    assert list(layout)[:5] == ["FLUX", "IVAR", "MASK", "WAVELENGTH", "RESOLUTION"]
    assert layout["FLUX"][0] == "float32" and layout["WAVELENGTH"][0] == "float64"
    assert layout["MASK"][0] == "int32" and layout["RESOLUTION"][1] == (NSPEC, NDIAG, NWAVE)
    assert layout["FLUX"][2] == (CFRAME_UNITS if cframe else "electron/Angstrom")
    assert layout["WAVELENGTH"][2] == "Angstrom"


def test_frame_without_optional_hdus(tmp_path):
    frame = make_frame()
    bare = Frame(frame.wave, frame.flux, frame.ivar, header={"CAMERA": "z3", "SPECGRPH": 3},
                 fibers=1500 + np.arange(NSPEC))
    path = tmp_path / "frame.fits"
    write_frame(path, bare)
    got = read_frame(path)
    assert got.resolution_data is None and got.fibermap is None and got.scores is None
    np.testing.assert_array_equal(got.fibers, 1500 + np.arange(NSPEC))
    assert not got.mask.any()


def test_image_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    shape = (40, 30)
    mask = np.where(rng.uniform(size=shape) < 0.1, 16, 0) | np.where(rng.uniform(size=shape) < 0.05, 512, 0)
    image = Image(rng.normal(0, 3, shape), rng.uniform(0.1, 1, shape), mask=mask,
                  readnoise=rng.uniform(2, 4, shape), header={**EXPOSURE, "GAINA": 1.5}, camera="r2")
    fm = make_fibermap(5, 1000)
    path = tmp_path / "preproc-r2-00001234.fits"
    write_image(path, image, fibermap=fm)
    got = read_image(path)
    np.testing.assert_array_equal(got.pix, f32(image.pix))
    np.testing.assert_array_equal(got.ivar, f32(image.ivar))
    np.testing.assert_array_equal(got.mask, mask)
    np.testing.assert_array_equal(got.readnoise, f32(image.readnoise))
    assert got.camera == "r2"
    assert_keywords_kept(got.header, {**EXPOSURE, "GAINA": 1.5, "CAMERA": "r2"})
    assert_tables_equal(got.fibermap, fm)
    with fits.open(path) as hdus:
        assert [h.name for h in hdus] == ["IMAGE", "IVAR", "MASK", "READNOISE", "FIBERMAP"]
        assert isinstance(hdus["MASK"], fits.CompImageHDU)
        assert hdus["MASK"].data.dtype.kind == "i" and hdus["MASK"].data.dtype.itemsize == 2
        assert hdus["IMAGE"].data.dtype.itemsize == 4


def test_fiberflat_roundtrip(tmp_path):
    rng = np.random.default_rng(4)
    wave = 3600 + 0.8 * np.arange(NWAVE)
    ff = FiberFlat(wave, rng.normal(1, 0.05, (NSPEC, NWAVE)), rng.uniform(1e3, 1e4, (NSPEC, NWAVE)),
                   mask=(rng.uniform(size=(NSPEC, NWAVE)) < 0.1) * 8, meanspec=rng.uniform(100, 200, NWAVE),
                   header={**EXPOSURE, "CAMERA": "b1", "CHI2PDF": 1.1}, fibermap=make_fibermap())
    path = tmp_path / "fiberflat-b1-00001234.fits"
    write_fiberflat(path, ff)
    got = read_fiberflat(path)
    np.testing.assert_array_equal(got.wave, f32(wave))
    np.testing.assert_array_equal(got.fiberflat, f32(ff.fiberflat))
    np.testing.assert_array_equal(got.ivar, f32(ff.ivar))
    np.testing.assert_array_equal(got.mask, ff.mask)
    np.testing.assert_array_equal(got.meanspec, f32(ff.meanspec))
    np.testing.assert_array_equal(got.fibers, 500 + np.arange(NSPEC))
    assert_keywords_kept(got.header, ff.header)
    layout = on_disk(path)
    assert list(layout) == ["FIBERFLAT", "IVAR", "MASK", "MEANSPEC", "WAVELENGTH"]
    assert layout["WAVELENGTH"][0] == "float32" and layout["MEANSPEC"][2] == "electron/Angstrom"


def test_sky_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    wave = 5760 + 0.8 * np.arange(NWAVE)
    sky = SkyModel(wave, rng.uniform(0, 50, (NSPEC, NWAVE)), rng.uniform(0.1, 1, (NSPEC, NWAVE)),
                   mask=(rng.uniform(size=(NSPEC, NWAVE)) < 0.1) * 64, header={**EXPOSURE, "CAMERA": "r1"},
                   stat_ivar=rng.uniform(0.1, 1, (NSPEC, NWAVE)), throughput_corrections=rng.normal(1, .01, NSPEC))
    path = tmp_path / "sky-r1-00001234.fits"
    write_sky(path, sky)
    got = read_sky(path)
    for name in ("wave", "flux", "ivar", "stat_ivar", "throughput_corrections"):
        np.testing.assert_array_equal(getattr(got, name), f32(getattr(sky, name)), err_msg=name)
    np.testing.assert_array_equal(got.mask, sky.mask)
    assert_keywords_kept(got.header, sky.header)
    layout = on_disk(path)
    assert list(layout)[:4] == ["SKY", "IVAR", "MASK", "WAVELENGTH"]
    assert layout["SKY"][2] == "electron/Angstrom" and layout["WAVELENGTH"][0] == "float32"


def test_fluxcalib_roundtrip(tmp_path):
    rng = np.random.default_rng(6)
    wave = 7520 + 0.8 * np.arange(NWAVE)
    fibercorr = Table({"FLAT_TO_PSF_FLUX": rng.uniform(0.9, 1.1, NSPEC),
                       "PSF_TO_FIBER_FLUX": rng.uniform(0.7, 0.8, NSPEC)})
    fc = FluxCalib(wave, rng.uniform(10, 20, (NSPEC, NWAVE)), rng.uniform(0, 5, (NSPEC, NWAVE)),
                   header={**EXPOSURE, "CAMERA": "z1"}, fibercorr=fibercorr, stdstar_fibermap=make_fibermap(2))
    path = tmp_path / "fluxcalib-z1-00001234.fits"
    write_flux_calibration(path, fc)
    got = read_flux_calibration(path)
    for name in ("wave", "calib", "ivar"):
        np.testing.assert_array_equal(getattr(got, name), f32(getattr(fc, name)), err_msg=name)
    assert_tables_equal(got.fibercorr, fibercorr)
    assert_tables_equal(got.stdstar_fibermap, fc.stdstar_fibermap)
    assert_keywords_kept(got.header, fc.header)
    layout = on_disk(path)
    assert list(layout) == ["FLUXCALIB", "IVAR", "MASK", "WAVELENGTH"]
    assert layout["FLUXCALIB"][2] == "10**+17 cm2 count s / erg"
    assert got.extinction is None


def test_nominal_fluxcalib_keeps_its_extinction_and_desispec_reads_it(tmp_path):
    """A nominal calibration of the calibration tree carries the extinction it includes (EXTINCTION HDU,
    mag per airmass); it is read back as written, and desispec's fluxcalib reader still opens the file."""
    rng = np.random.default_rng(8)
    wave = 7520 + 0.8 * np.arange(NWAVE)
    ext = rng.uniform(0.01, 1.5, NWAVE)
    fc = FluxCalib(wave, rng.uniform(10, 20, (1, NWAVE)), np.zeros((1, NWAVE)),
                   header={"CAMERA": "z1", "AIRMASS": 1.0, "CALTYPE": "NOMINAL"}, extinction=ext)
    path = tmp_path / "fluxcalib-nominal-z1.fits"
    write_flux_calibration(path, fc)
    got = read_flux_calibration(path)
    np.testing.assert_array_equal(got.extinction, ext)
    assert list(on_disk(path)) == ["FLUXCALIB", "IVAR", "MASK", "WAVELENGTH", "EXTINCTION"]
    with pytest.raises(ValueError, match="extinction"):
        FluxCalib(wave, fc.calib, fc.ivar, extinction=ext[:-1])
    from desispec.io import read_flux_calibration as desi_read
    np.testing.assert_allclose(desi_read(str(path)).calib, f32(fc.calib))


def test_stdstars_roundtrip(tmp_path):
    rng = np.random.default_rng(7)
    wave = np.linspace(3500, 10000, 300)
    meta = Table({"TARGETID": np.array([5, 9], "i8"), "FIBER": np.array([501, 503], "i4"),
                  "LOGG": [4.5, 4.0], "TEFF": [6000.0, 5800.0], "FEH": [-1.0, -0.5], "CHI2DOF": [1.1, 0.9],
                  "REDSHIFT": [1e-4, -2e-4], "DATA_G-R": np.array([0.3, 0.35], "f4"), "MODEL_G-R": [0.31, 0.34]})
    frames = Table({"NIGHT": np.array([20250101] * 3, "i8"), "EXPID": np.array([1234] * 3, "i8"),
                    "CAMERA": ["b1", "r1", "z1"]})
    std = StdStars(wave, rng.uniform(1, 2, (2, 300)), [501, 503], meta, coeff=rng.uniform(size=(2, 4)),
                   fibermap=make_fibermap(2), input_frames=frames, header={"EXPID": 1234})
    path = tmp_path / "stdstars-1-00001234.fits"
    write_stdstar_models(path, std)
    got = read_stdstar_models(path)
    np.testing.assert_array_equal(got.wave, f32(wave))
    np.testing.assert_array_equal(got.flux, f32(std.flux))
    np.testing.assert_array_equal(got.fibers, [501, 503])
    np.testing.assert_array_equal(got.coeff, std.coeff)
    assert_tables_equal(got.metadata, meta)
    assert_tables_equal(got.input_frames, frames)
    layout = on_disk(path)
    assert list(layout) == ["FLUX", "WAVELENGTH", "FIBERS", "COEFF"]


@pytest.mark.parametrize("coadd", [False, True])
def test_spectra_roundtrip(tmp_path, coadd):
    spec = make_spectra(coadd=coadd)
    path = tmp_path / ("coadd.fits" if coadd else "spectra.fits")
    write_spectra(path, spec)
    got = read_spectra(path)
    assert got.bands == ["b", "r", "z"]
    for b in got.bands:
        np.testing.assert_array_equal(got.wave[b], spec.wave[b])
        np.testing.assert_array_equal(got.flux[b], f32(spec.flux[b]))
        np.testing.assert_array_equal(got.ivar[b], f32(spec.ivar[b]))
        np.testing.assert_array_equal(got.mask[b], spec.mask[b])
        np.testing.assert_array_equal(got.resolution_data[b], f32(spec.resolution_data[b]))
    assert_tables_equal(got.fibermap, spec.fibermap)
    assert_tables_equal(got.scores, spec.scores)
    assert got.is_coadd == coadd
    if coadd:
        assert_tables_equal(got.exp_fibermap, spec.exp_fibermap)
    assert_keywords_kept(got.header, spec.header)
    with fits.open(path) as hdus:
        names = [h.name for h in hdus]
    expected = ["PRIMARY", "FIBERMAP"] + (["EXP_FIBERMAP"] if coadd else [])
    expected += [f"{b}_{k}" for b in "BRZ" for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")]
    assert names == expected + ["SCORES"]
    assert on_disk(path)["B_FLUX"][2] == "10**-17 erg/(s cm2 Angstrom)"


def make_redshifts(targetids, ncoeff=10, seed=8):
    rng = np.random.default_rng(seed)
    n = len(targetids)
    return Table({"TARGETID": np.asarray(targetids, "i8"), "Z": rng.uniform(0, 2, n), "ZERR": rng.uniform(0, 1e-3, n),
                  "ZWARN": np.array([0, 4] * n)[:n], "CHI2": rng.uniform(100, 200, n),
                  "COEFF": rng.normal(size=(n, ncoeff)), "FITMETHOD": ["PCA"] * n, "NPIXELS": np.full(n, 7000),
                  "SPECTYPE": (["GALAXY", "STAR", "QSO", "GALAXY", "STAR"] * (n // 5 + 1))[:n],
                  "SUBTYPE": (["", "K", "LOZ", "", "WD"] * (n // 5 + 1))[:n], "NCOEFF": np.full(n, ncoeff),
                  "DELTACHI2": rng.uniform(0, 100, n)})


def test_redshifts_roundtrip(tmp_path):
    spec = make_spectra(coadd=True)
    tid = np.asarray(spec.fibermap["TARGETID"])
    zt = make_redshifts(tid)
    tsnr2 = Table({"TARGETID": tid, "TSNR2_LRG": np.arange(NSPEC, dtype="f4")})
    header = {"RRVER": "0.21.0", "SPGRP": "healpix", "HPXPIXEL": 27256,
              **template_keywords([("GALAXY", "", "2.6", "rrtemplate-GALAXY-None-v2.6.fits"),
                                   ("STAR", "K", "0.1", "rrtemplate-STAR-K-v0.1.fits")])}
    path = tmp_path / "redrock.fits"
    write_redshifts(path, RedshiftCatalog(zt, spec.fibermap, spec.exp_fibermap, tsnr2, header))
    got = read_redshifts(path)
    assert_tables_equal(got.redshifts, zt)
    assert_tables_equal(got.fibermap, spec.fibermap)
    assert_tables_equal(got.exp_fibermap, spec.exp_fibermap)
    assert_tables_equal(got.tsnr2, tsnr2)
    assert_keywords_kept(got.header, header)
    assert got.header["TEMNAM00"] == "GALAXY" and got.header["TEMNAM01"] == "STAR:::K"
    with fits.open(path) as hdus:
        assert [h.name for h in hdus] == ["PRIMARY", "REDSHIFTS", "FIBERMAP", "EXP_FIBERMAP", "TSNR2"]
        dt = hdus["REDSHIFTS"].data.dtype
        assert dt["SPECTYPE"] == np.dtype("S6") and dt["SUBTYPE"] == np.dtype("S20")
        assert dt["FITMETHOD"] == np.dtype("S4") and dt["COEFF"].shape == (10,)
        assert dt["ZWARN"].kind == "i" and dt["ZWARN"].itemsize == 8
        assert dt.names[:12] == ("TARGETID", "Z", "ZERR", "ZWARN", "CHI2", "COEFF", "FITMETHOD", "NPIXELS",
                                 "SPECTYPE", "SUBTYPE", "NCOEFF", "DELTACHI2")


def test_zcatalog_roundtrip(tmp_path):
    zt = make_redshifts(np.arange(5) + 10)
    zt["SURVEY"] = "main"
    zt["HEALPIX"] = np.full(5, 27256, "i4")
    zt["ZCAT_PRIMARY"] = np.array([True, False, True, True, True])
    exp = Table({"TARGETID": np.arange(5) + 10, "EXPID": np.arange(5, dtype="i4")})
    path = tmp_path / "zpix-main-dark.fits"
    write_zcatalog(path, ZCatalog(zt, exp, {"SURVEY": "main", "PROGRAM": "dark"}))
    got = read_zcatalog(path)
    assert_tables_equal(got.zcatalog, zt)
    assert_tables_equal(got.exp_fibermap, exp)
    assert got.header["PROGRAM"] == "dark"


def test_spectra_select_stack_update():
    spec = make_spectra(seed=3)
    tid = spec.target_ids()
    sub = spec.select(targets=tid[[3, 1]])
    np.testing.assert_array_equal(sub.target_ids(), tid[[1, 3]])
    np.testing.assert_array_equal(sub.flux["r"], spec.flux["r"][[1, 3]])
    assert sub.num_spectra() == 2 and spec.num_targets() == NSPEC

    other = make_spectra(seed=4)
    other.fibermap["EXPID"] = 12
    stacked = Spectra.stack([spec, other])
    assert stacked.num_spectra() == 2 * NSPEC and stacked.num_targets() == NSPEC
    np.testing.assert_array_equal(stacked.flux["z"][NSPEC:], other.flux["z"])

    # replace exposure 11 row of target tid[2] and add the exposure-12 rows
    patch = spec.select(index=[2])
    patch = Spectra(patch.bands, patch.wave, {b: patch.flux[b] + 7.0 for b in patch.bands}, patch.ivar,
                    patch.mask, patch.resolution_data, patch.fibermap, None, patch.scores)
    updated = spec.update(patch).update(other)
    assert updated.num_spectra() == 2 * NSPEC
    np.testing.assert_array_equal(updated.flux["b"][2], spec.flux["b"][2] + 7.0)
    np.testing.assert_array_equal(updated.flux["b"][[0, 1, 3, 4]], spec.flux["b"][[0, 1, 3, 4]])
    np.testing.assert_array_equal(updated.flux["b"][NSPEC:], other.flux["b"])
    np.testing.assert_array_equal(updated.fibermap["EXPID"], [11] * NSPEC + [12] * NSPEC)


def test_fibermap_units_are_spelled_as_desis_files(tmp_path):
    """TUNITn as DESI's own fibermaps write them ('nanomaggy', 'nanomaggy^-2', 'deg', 'mas yr-1'), not astropy's generic
    'nmgy' / '1 / nmgy2'; they read back as the same units."""
    import astropy.units as u
    fm = make_fibermap(2)
    path = tmp_path / "fibermap-00001236.fits"
    write_fibermap(path, fm, header=EXPOSURE)
    header = fits.getheader(path, "FIBERMAP")
    tunit = {header[k]: header.get("TUNIT" + k[5:]) for k in header if k.startswith("TTYPE")}
    assert tunit["FLUX_G"] == "nanomaggy" and tunit["FLUX_IVAR_G"] == "nanomaggy^-2"
    assert tunit["PLATE_RA"] == "deg" and tunit["PMRA"] == "mas yr-1"
    got = read_fibermap(path)
    assert got["FLUX_G"].unit == u.nanomaggy and got["FLUX_IVAR_G"].unit == u.nanomaggy ** -2
