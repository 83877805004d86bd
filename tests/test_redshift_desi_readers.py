"""Our redrock and zcatalog files, made by the pipeline's own steps, open with DESI's readers.

Frame-level path (no pixels): a simulated ``mini`` science exposure calibrated with the
truth -> ``desired group-spectra`` (one healpix pixel, with its coadd) -> ``desired
redshifts`` (one of DESI's redrock templates, so the run stays short) -> ``desired
zcatalog``.  The files are then read as DESI users read them: ``desispec.io.read_table``
(fitsio), astropy ``Table.read``, redrock's template bookkeeping
(``redrock.templates.header2templatefiles``) and desispec's own primary-spectrum choice
(``desispec.zcatalog.find_primary_spectra``).  Skipped when desispec/redrock are not
importable or the templates of ../shared/data are absent.
"""
from __future__ import annotations

import os
import shutil
import warnings

import fitsio
import numpy as np
import pytest
from astropy.table import Table

from conftest import SHARED_DATA
from spectra_sim import simulate_cframes

TEMPLATE = SHARED_DATA / "redrock-templates" / "rrtemplate-STAR-K-v0.1.fits"
#: HDUs of an rrdesi output (redrock.external.desi.write_zbest), in order
RRDESI_HDUS = ["PRIMARY", "REDSHIFTS", "FIBERMAP", "EXP_FIBERMAP", "TSNR2"]
#: REDSHIFTS columns of rrdesi (redrock 0.21: zfit minus zz/zzchi2/znum, upper case), DESI data model
RRDESI_COLUMNS = {"TARGETID", "CHI2", "COEFF", "Z", "ZERR", "ZWARN", "NPIXELS", "SPECTYPE", "SUBTYPE", "NCOEFF",
                  "DELTACHI2"}

pytestmark = pytest.mark.skipif(not TEMPLATE.exists(), reason=f"no redrock template at {TEMPLATE}")


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """(redrock file, zcatalog file, template dir, coadd file) of one healpix pixel of a mini exposure."""
    import healpy
    from desired.io.frame import read_frame
    from desired.paths import findfile
    from desired.scripts import group_spectra, redshifts, zcatalog
    root = tmp_path_factory.mktemp("rr_readers")
    cframes = simulate_cframes(str(root), nscience=1, seed=5)
    fm = read_frame(cframes[0]).fibermap
    pix = healpy.ang2pix(64, np.asarray(fm["TARGET_RA"]), np.asarray(fm["TARGET_DEC"]), nest=True, lonlat=True)
    healpix = int(np.bincount(pix).argmax())
    group = group_spectra.healpix_group(healpix, survey=None, program=None)
    prod = root / "prod"
    spectra = findfile("spectra", root=str(prod), survey="main", program="dark", healpix=healpix)
    coadd = findfile("coadd", root=str(prod), survey="main", program="dark", healpix=healpix)
    group = dict(group, survey="main", program="dark")
    assert group_spectra.run(cframes, spectra, group, coadd_outfile=coadd) > 0
    tdir = root / "templates"
    tdir.mkdir()
    shutil.copy(TEMPLATE, tdir / TEMPLATE.name)
    rrfile = findfile("redrock", root=str(prod), survey="main", program="dark", healpix=healpix)
    redshifts.run(coadd, rrfile, templates=str(tdir))
    zfile = findfile("zcatalog", root=str(prod), survey="main", program="dark")
    zcatalog.run([rrfile], zfile)
    return {"redrock": rrfile, "zcatalog": zfile, "templates": tdir, "coadd": coadd}


def test_redrock_file_reads_as_rrdesi_output(products):
    pytest.importorskip("desispec")
    rrt = pytest.importorskip("redrock.templates")
    from desispec.io import read_table
    rrfile = products["redrock"]
    with fitsio.FITS(rrfile) as fx:
        assert [hdu.get_extname() or "PRIMARY" for hdu in fx] == RRDESI_HDUS
    z = read_table(rrfile, "REDSHIFTS")
    fibermap = read_table(rrfile, "FIBERMAP")
    tsnr2 = read_table(rrfile, "TSNR2")
    exp_fibermap = read_table(rrfile, "EXP_FIBERMAP")
    assert RRDESI_COLUMNS <= set(z.colnames), RRDESI_COLUMNS - set(z.colnames)
    # the row alignment desispec's desi_zcatalog asserts when it joins a redrock file's HDUs
    assert len(z) > 0 and np.all(z["TARGETID"] == fibermap["TARGETID"]) and np.all(z["TARGETID"] == tsnr2["TARGETID"])
    assert set(exp_fibermap["TARGETID"]) == set(z["TARGETID"])
    assert z["Z"].dtype.kind == "f" and z["ZWARN"].dtype.kind == "i" and z["SPECTYPE"].dtype.kind in "SU"
    assert z["COEFF"].ndim == 2 and np.all(z["NCOEFF"] <= z["COEFF"].shape[1])
    assert set(np.char.strip(np.asarray(z["SPECTYPE"]).astype(str))) == {"STAR"}
    # redrock's bookkeeping of the templates used (TEMNAMnn/TEMVERnn/TEMFILnn) finds our template
    files = rrt.header2templatefiles(fitsio.read_header(rrfile, 0), template_dir=str(products["templates"]))
    assert [os.path.basename(f) for f in files] == [TEMPLATE.name]
    assert "TSNR2_LRG" in tsnr2.colnames and np.all(np.isfinite(tsnr2["TSNR2_LRG"]))


def test_zcatalog_reads_with_desispec_and_astropy(products):
    pytest.importorskip("desispec")
    from desispec.io import read_table
    from desispec.zcatalog import find_primary_spectra
    zfile = products["zcatalog"]
    zcat = read_table(zfile, "ZCATALOG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # astropy's unit parsing of DESI unit strings
        astro = Table.read(zfile, "ZCATALOG")
    assert len(zcat) == len(astro) > 0
    assert np.all(np.asarray(zcat["TARGETID"]) == np.asarray(astro["TARGETID"]))
    assert np.allclose(np.asarray(zcat["Z"]), np.asarray(astro["Z"]))
    # desispec's desi_zcatalog writes its keywords into the ZCATALOG HDU: read_table(...).meta has them
    assert zcat.meta["SURVEY"] == "main" and zcat.meta["PROGRAM"] == "dark"
    assert fitsio.read_header(zfile, 0)["SURVEY"] == "main"
    # one row per target of the redrock file, with its redshift
    rr = read_table(products["redrock"], "REDSHIFTS")
    byid = {int(t): i for i, t in enumerate(rr["TARGETID"])}
    rows = [byid[int(t)] for t in zcat["TARGETID"]]
    assert sorted(rows) == list(range(len(rr)))
    assert np.array_equal(np.asarray(zcat["Z"]), np.asarray(rr["Z"])[rows])
    assert np.array_equal(np.asarray(zcat["ZWARN"]), np.asarray(rr["ZWARN"])[rows])
    for column in ("TARGET_RA", "TARGET_DEC", "HEALPIX", "SURVEY", "PROGRAM", "COADD_FIBERSTATUS", "TSNR2_LRG",
                   "ZCAT_NSPEC", "ZCAT_PRIMARY"):
        assert column in zcat.colnames, column
    nspec, primary = find_primary_spectra(zcat)                 # desispec's own choice of primary spectrum
    assert np.array_equal(np.asarray(zcat["ZCAT_NSPEC"]), nspec)
    assert np.array_equal(np.asarray(zcat["ZCAT_PRIMARY"]), primary)


def test_report_models_match_redrock_template_eval(products):
    """The QA report's best-fit models (no rrmodel file: evaluated from the templates) against redrock's
    own ``Template.eval`` of the same REDSHIFTS row through the coadd's resolution (desispec Resolution)."""
    rrt = pytest.importorskip("redrock.templates")
    from desispec.resolution import Resolution
    from desired.io.spectra import read_spectra
    from desired.qa.plots import sample_rows
    from desired.qa.report import sample_models
    spectra = read_spectra(products["coadd"])
    z = Table(fitsio.read(products["redrock"], "REDSHIFTS"))
    models = sample_models(spectra, z, None, str(products["templates"]))
    (template,) = rrt.load_templates_from_header(fitsio.read_header(products["redrock"], 0),
                                                 template_dir=str(products["templates"]))
    rows = sample_rows(spectra.num_spectra())
    assert len(rows) == 3
    for i in rows:
        coeff = np.asarray(z["COEFF"][i])[:template.nbasis]
        for band in spectra.bands:
            expected = template.eval(coeff, spectra.wave[band], float(z["Z"][i]),
                                     Resolution(spectra.resolution_data[band][i]))
            scale = np.max(np.abs(expected))
            assert scale > 0 and np.max(np.abs(models[band][i] - expected)) < 0.01 * scale, (i, band)
    others = np.setdiff1d(np.arange(spectra.num_spectra()), rows)
    assert not np.any(models["r"][others])                       # only the plotted rows are evaluated
