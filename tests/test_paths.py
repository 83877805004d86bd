import pytest

from desired import paths


def test_findfile_desi_layout():
    assert paths.findfile("raw", night=20261124, expid=7) == "20261124/00000007/desi-00000007.fits.fz"
    assert paths.findfile("psfnight", root="/p", night=20261124, camera="R0") == \
        "/p/calibnight/20261124/psfnight-r0-20261124.fits"
    assert paths.findfile("spectra", survey="MAIN", program="dark", healpix=18071) == \
        "healpix/main/dark/180/18071/spectra-main-dark-18071.fits"
    assert paths.findfile("stdstars", night=20261124, expid=12, spectrograph=3).endswith("stdstars-3-00000012.fits")


def test_findfile_errors():
    with pytest.raises(KeyError, match="unknown product"):
        paths.findfile("nope")
    with pytest.raises(KeyError, match="camera"):
        paths.findfile("preproc", night=1, expid=2)
