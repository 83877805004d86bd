"""Bad input: truncated files, missing HDUs and wrong shapes give a DataModelError that
names the file and the problem; a failed write leaves nothing at the destination."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from desired.fiberflat import FiberFlat
from desired.fluxcalib import FluxCalib
from desired.image import Image
from desired.io.fiberflat import read_fiberflat, write_fiberflat
from desired.io.fibermap import read_fibermap, write_fibermap
from desired.io.fluxcalib import read_flux_calibration, write_flux_calibration
from desired.io.frame import read_frame, write_frame
from desired.io.image import read_image, write_image
from desired.io.redshifts import RedshiftCatalog, read_redshifts, write_redshifts
from desired.io.sky import read_sky, write_sky
from desired.io.spectra import read_spectra, write_spectra
from desired.io.stdstars import read_stdstar_models, write_stdstar_models
from desired.io.util import DataModelError
from desired.sky import SkyModel
from desired.stdstars import StdStars

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_io_roundtrip import NSPEC, NWAVE, make_fibermap, make_frame, make_redshifts, make_spectra  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning"),
              pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")]

RNG = np.random.default_rng(31)
SHAPE = (NSPEC, NWAVE)
WAVE = 3600 + 0.8 * np.arange(NWAVE)


def _image():
    return Image(RNG.normal(size=(40, 30)), np.ones((40, 30)), readnoise=3.0, camera="b0")


def _stdstars():
    meta = Table({"TARGETID": np.array([1, 2], "i8"), "FIBER": np.array([3, 4], "i4"), "TEFF": [6000.0, 6100.0]})
    return StdStars(np.linspace(3500, 9900, 50), np.ones((2, 50)), [3, 4], meta)


def _redshifts():
    spec = make_spectra(coadd=True)
    return RedshiftCatalog(make_redshifts(spec.target_ids()), spec.fibermap, spec.exp_fibermap, None, {"RRVER": "x"})


#: product -> (writer, reader, factory, an HDU that must exist, (HDU to reshape, bad shape) or None)
PRODUCTS = {
    "frame": (write_frame, read_frame, make_frame, "IVAR", ("IVAR", (NSPEC, NWAVE - 1))),
    "frame-wavelength": (write_frame, read_frame, make_frame, "WAVELENGTH", ("WAVELENGTH", (NWAVE + 3,))),
    "frame-resolution": (write_frame, read_frame, make_frame, "FLUX", ("RESOLUTION", (NSPEC, 11, NWAVE - 2))),
    "preproc": (write_image, read_image, _image, "MASK", ("IVAR", (40, 29))),
    "fiberflat": (write_fiberflat, read_fiberflat,
                  lambda: FiberFlat(WAVE, np.ones(SHAPE), np.ones(SHAPE)), "MEANSPEC", ("MEANSPEC", (NWAVE - 1,))),
    "sky": (write_sky, read_sky, lambda: SkyModel(WAVE, np.ones(SHAPE), np.ones(SHAPE)), "MASK", ("MASK", (NSPEC - 1, NWAVE))),
    "fluxcalib": (write_flux_calibration, read_flux_calibration,
                  lambda: FluxCalib(WAVE, np.ones(SHAPE), np.ones(SHAPE)), "WAVELENGTH", ("IVAR", (NSPEC, 3))),
    "stdstars": (write_stdstar_models, read_stdstar_models, _stdstars, "METADATA", ("FIBERS", (3,))),
    "spectra": (write_spectra, read_spectra, make_spectra, "R_IVAR", ("R_IVAR", (NSPEC, NWAVE + 1))),
    "coadd": (write_spectra, read_spectra, lambda: make_spectra(coadd=True), "Z_FLUX", ("B_WAVELENGTH", (NWAVE - 5,))),
    "redrock": (write_redshifts, read_redshifts, _redshifts, "REDSHIFTS", None),
    "fibermap": (lambda p, fm: write_fibermap(p, fm), read_fibermap, make_fibermap, "FIBERMAP", None),
}


def _write(tmp_path, product):
    writer, reader, factory, _, _ = PRODUCTS[product]
    path = tmp_path / f"{product}.fits"
    writer(path, factory())
    reader(path)                 # the unmodified file reads fine
    return path


def _expect_error(reader, path, *words):
    with pytest.raises(DataModelError) as info:
        reader(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_truncated_file(tmp_path, product):
    path = _write(tmp_path, product)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 2880 - 100)         # loses the end of the last HDU
    _expect_error(PRODUCTS[product][1], path)


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_not_fits_and_absent(tmp_path, product):
    reader = PRODUCTS[product][1]
    path = tmp_path / "junk.fits"
    path.write_text("this is not a FITS file\n" * 200)
    _expect_error(reader, path, "FITS")
    _expect_error(reader, tmp_path / "absent.fits", "does not exist")


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_missing_hdu(tmp_path, product):
    path = _write(tmp_path, product)
    extname = PRODUCTS[product][3]
    with fits.open(path) as hdus:
        kept = [h.copy() for h in hdus if h.name != extname]
    if not isinstance(kept[0], fits.PrimaryHDU):    # the dropped HDU was the primary: promote the next one
        kept[0] = fits.PrimaryHDU(kept[0].data, header=kept[0].header)
    path.unlink()
    fits.HDUList(kept).writeto(path)
    _expect_error(PRODUCTS[product][1], path, extname)


@pytest.mark.parametrize("product", sorted(p for p in PRODUCTS if PRODUCTS[p][4]))
def test_wrong_shape(tmp_path, product):
    path = _write(tmp_path, product)
    extname, shape = PRODUCTS[product][4]
    with fits.open(path) as hdus:
        new = [h.copy() for h in hdus]
    for i, h in enumerate(new):
        if h.name == extname:
            header = h.header.copy()
            for key in list(header):
                if key.startswith(("NAXIS", "ZNAXIS", "ZTILE")):
                    del header[key]
            data = np.zeros(shape, dtype=h.data.dtype)
            new[i] = (fits.PrimaryHDU(data, header=header) if i == 0
                      else fits.ImageHDU(data, header=header, name=extname))
    path.unlink()
    fits.HDUList(new).writeto(path)
    message = _expect_error(PRODUCTS[product][1], path, extname)
    assert "shape" in message or "entries" in message or "spectra" in message


def test_preproc_without_camera_or_readnoise(tmp_path):
    path = _write(tmp_path, "preproc")
    with fits.open(path) as hdus:
        new = [h.copy() for h in hdus if h.name != "READNOISE"]
    path.unlink()
    fits.HDUList(new).writeto(path)
    _expect_error(read_image, path, "READNOISE", "RDNOISE")
    new[0].header.remove("CAMERA")
    path.unlink()
    fits.HDUList(new).writeto(path)
    _expect_error(read_image, path, "CAMERA")


def test_fluxcalib_with_nan_ivar(tmp_path):
    path = _write(tmp_path, "fluxcalib")
    with fits.open(path, mode="update") as hdus:
        hdus["IVAR"].data[0, 0] = np.nan
    _expect_error(read_flux_calibration, path, "IVAR")


def test_frame_fibermap_without_fiber_column(tmp_path):
    path = _write(tmp_path, "frame")
    with fits.open(path) as hdus:
        new = [h.copy() for h in hdus]
    for i, h in enumerate(new):
        if h.name == "FIBERMAP":
            t = Table(h.data)
            t.remove_column("FIBER")
            new[i] = fits.table_to_hdu(t)
            new[i].name = "FIBERMAP"
    path.unlink()
    fits.HDUList(new).writeto(path)
    _expect_error(read_frame, path, "FIBER")


def test_redrock_tables_not_row_matched(tmp_path):
    path = _write(tmp_path, "redrock")
    with fits.open(path) as hdus:
        new = [h.copy() for h in hdus]
    for i, h in enumerate(new):
        if h.name == "FIBERMAP":
            new[i] = fits.table_to_hdu(Table(h.data)[::-1])
            new[i].name = "FIBERMAP"
    path.unlink()
    fits.HDUList(new).writeto(path)
    _expect_error(read_redshifts, path, "FIBERMAP", "row-matched")


def test_writers_reject_bad_containers(tmp_path):
    cat = _redshifts()
    cat.redshifts.remove_column("DELTACHI2")
    with pytest.raises(ValueError, match="DELTACHI2"):
        write_redshifts(tmp_path / "rr.fits", cat)
    cat = _redshifts()
    cat.redshifts["SPECTYPE"] = ["TOOLONGTYPE"] * len(cat.redshifts)
    with pytest.raises(ValueError, match="SPECTYPE"):
        write_redshifts(tmp_path / "rr.fits", cat)
    with pytest.raises(ValueError, match="CAMERA"):
        write_image(tmp_path / "img.fits", Image(np.ones((4, 4)), np.ones((4, 4))))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("product", ["frame", "preproc", "spectra", "redrock"])
def test_failed_write_leaves_nothing(tmp_path, product, monkeypatch):
    writer, _, factory, _, _ = PRODUCTS[product]
    obj = factory()
    original = fits.HDUList.writeto

    def half_write_then_fail(self, fileobj, *args, **kwargs):
        original(self[:2], fileobj, *args, **kwargs)        # something is on disk...
        raise OSError("disk full (simulated)")               # ...then the write dies

    monkeypatch.setattr(fits.HDUList, "writeto", half_write_then_fail)
    dest = tmp_path / "out" / f"{product}.fits"
    with pytest.raises(OSError, match="disk full"):
        writer(dest, obj)
    assert not dest.exists()
    assert os.listdir(dest.parent) == []                     # no temporary file left behind either

    # an existing product is left untouched by a failed rewrite
    monkeypatch.setattr(fits.HDUList, "writeto", original)
    writer(dest, obj)
    before = dest.read_bytes()
    monkeypatch.setattr(fits.HDUList, "writeto", half_write_then_fail)
    with pytest.raises(OSError):
        writer(dest, obj)
    assert dest.read_bytes() == before
    assert os.listdir(dest.parent) == [dest.name]


def test_truncated_gzip_file(tmp_path):
    import gzip
    path = _write(tmp_path, "frame")
    gz = tmp_path / "frame.fits.gz"
    with gzip.open(gz, "wb") as stream:
        stream.write(path.read_bytes())
    assert read_frame(gz).nspec == NSPEC          # the intact .fits.gz reads
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])
    _expect_error(read_frame, gz, "FITS")
