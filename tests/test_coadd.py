"""Coadds (desired.coadd, desired coadd): against the simulator's truth and desispec side by side."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from desired.coadd import coadd_band, coadd_fibermap, use_for_coadd
from desired.grouping import healpix_pixels
from desired.io.frame import read_frame, write_frame, CFRAME_UNITS
from desired.io.spectra import read_spectra
from desired.scripts import coadd as coadd_step
from desired.scripts import group_spectra
from spectra_sim import simulate_cframes, true_flux

NIGHT = 20261124
NEXP = 4
TEMPLATES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "redrock-templates"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Four mini exposures of one tile as truth-calibrated cframes, grouped into their healpix files."""
    root = tmp_path_factory.mktemp("coaddsim")
    cframes = simulate_cframes(str(root), night=NIGHT, nscience=NEXP, seed=3)
    frames = group_spectra.read_frame_metas(cframes)
    pixels = np.concatenate([healpix_pixels(f.fibermap["TARGET_RA"], f.fibermap["TARGET_DEC"]) for f in frames])
    values, counts = np.unique(pixels, return_counts=True)
    pix = int(values[np.argmax(counts)])
    survey, program = frames[0].survey, frames[0].program
    spectra = str(root / f"spectra-{pix}.fits")
    group_spectra.run(cframes, spectra, group_spectra.healpix_group(pix, survey=survey, program=program))
    return {"root": str(root), "cframes": cframes, "spectra": spectra, "pix": pix, "survey": survey, "program": program}


def _truth_by_target(sim, spectra, band):
    """Intrinsic flux of every row of ``spectra`` in ``band`` (looked up by EXPID and FIBER)."""
    out = np.zeros(spectra.flux[band].shape)
    cache = {}
    for i, (expid, fiber) in enumerate(zip(spectra.fibermap["EXPID"], spectra.fibermap["FIBER"])):
        cam = f"{band}{int(fiber) // 500}"
        if (expid, cam) not in cache:
            path = [p for p in sim["cframes"] if f"cframe-{cam}-{int(expid):08d}" in p][0]
            cache[expid, cam] = (read_frame(path).fibers, true_flux(sim["root"], NIGHT, int(expid), cam))
        fibers, flux = cache[expid, cam]
        out[i] = flux[int(np.flatnonzero(fibers == int(fiber))[0])]
    return out


def test_ivar_is_the_sum_of_the_unmasked_inputs(sim):
    spectra = read_spectra(sim["spectra"])
    tids = spectra.target_ids()
    for b in spectra.bands:
        mask = spectra.mask[b].copy()
        mask[::3, 100:140] = 4           # some masked input pixels
        res = coadd_band(spectra.wave[b], spectra.flux[b], spectra.ivar[b], mask, spectra.resolution_data[b], tids,
                         cosmics_nsig=0.0)
        expected = np.array([np.sum((spectra.ivar[b] * (mask == 0))[tids == t], axis=0) for t in res["targetid"]])
        covered = expected > 0
        assert np.allclose(res["ivar"][covered], expected[covered], rtol=1e-6)
        assert np.all(res["mask"][covered] == 0)
        # where every exposure is masked the pixel keeps the unmasked ivar and the OR of the masks
        if (~covered).any():
            assert np.all(res["mask"][~covered] != 0)


def test_flux_pulls_against_resolution_convolved_truth(sim):
    spectra = read_spectra(sim["spectra"])
    coadd = coadd_step.run(sim["spectra"], os.path.join(sim["root"], "coadd.fits"))
    tids = spectra.target_ids()
    for b in spectra.bands:
        truth = _truth_by_target(sim, spectra, b)
        # the intrinsic flux of a target is the same in every exposure (same fiber, same tile)
        first = np.array([np.flatnonzero(tids == t)[0] for t in coadd["targetid"]])
        t = truth[first]
        from desired.resolution import apply_resolution
        model = apply_resolution(np.asarray(coadd["resolution_data"][b], dtype=np.float64), t)
        ivar = np.asarray(coadd["ivar"][b], dtype=np.float64)
        edge = np.zeros(ivar.shape[1], bool)
        edge[6:-6] = True                              # resolution rows cut by the band edges
        ok = (ivar > 0) & edge[None, :]
        pull = ((coadd["flux"][b] - model) * np.sqrt(ivar))[ok]
        assert abs(np.std(pull) - 1) < 0.05, (b, np.std(pull))
        assert abs(np.mean(pull)) < 0.05


def _inject_cosmic(path, out, fiber_row, pix, amplitude_sigma=40.0):
    frame = read_frame(path)
    sigma = 1 / np.sqrt(frame.ivar[fiber_row, pix])
    frame.flux[fiber_row, pix] += amplitude_sigma * sigma
    write_frame(out, frame, units=CFRAME_UNITS)
    return frame.fibermap["TARGETID"][fiber_row]


def test_cosmic_ray_in_one_exposure_does_not_reach_the_coadd(sim, tmp_path):
    # copy the cframes, add a cosmic-ray hit (3 pixels, 40 sigma) to one spectrum of one exposure
    cframes = []
    for p in sim["cframes"]:
        q = tmp_path / Path(p).name
        shutil.copy(p, q)
        cframes.append(str(q))
    spectra0 = read_spectra(sim["spectra"])
    target = int(spectra0.fibermap["TARGETID"][0])
    fiber = int(spectra0.fibermap["FIBER"][0])
    expid = int(spectra0.fibermap["EXPID"][0])
    victim = [p for p in cframes if f"cframe-r0-{expid:08d}" in p][0]
    frame = read_frame(victim)
    row = int(np.flatnonzero(frame.fibers == fiber)[0])
    pix = np.arange(1000, 1003)
    assert _inject_cosmic(victim, victim, row, pix) == target
    spectra_path = str(tmp_path / "spectra.fits")
    group_spectra.run(cframes, spectra_path, group_spectra.healpix_group(sim["pix"], survey=sim["survey"], program=sim["program"]))
    clean = coadd_step.run(sim["spectra"], str(tmp_path / "clean.fits"))
    hit = coadd_step.run(spectra_path, str(tmp_path / "hit.fits"))
    off = coadd_step.run(spectra_path, str(tmp_path / "off.fits"), cosmics_nsig=0.0)
    t = int(np.flatnonzero(hit["targetid"] == target)[0])
    sigma = 1 / np.sqrt(clean["ivar"]["r"][t, pix])
    # without rejection the hit shows (this test can fail) ...
    assert np.all(np.abs(off["flux"]["r"][t, pix] - clean["flux"]["r"][t, pix]) > 5 * sigma)
    # ... with it, the coadd stays within its noise of the clean coadd and the hit spectrum is flagged
    assert np.all(np.abs(hit["flux"]["r"][t, pix] - clean["flux"]["r"][t, pix]) < 2 * sigma)
    spectra = read_spectra(spectra_path)
    victim_row = int(np.flatnonzero((spectra.fibermap["TARGETID"] == target) & (spectra.fibermap["EXPID"] == expid))[0])
    assert hit["nrejected"]["r"][victim_row] >= 3
    # other targets are untouched by the rejection beyond their own noise outliers
    others = hit["targetid"] != target
    assert np.median(np.abs(hit["flux"]["r"][others] - clean["flux"]["r"][others])) == 0


def test_desispec_coadd_and_coadd_cameras_agree(sim, tmp_path):
    desispec_io = pytest.importorskip("desispec.io")
    from desispec.coaddition import coadd as ds_coadd, coadd_cameras as ds_coadd_cameras
    ours = tmp_path / "coadd.fits"
    ours_brz = tmp_path / "coadd-brz.fits"
    coadd_step.run(sim["spectra"], str(ours))
    coadd_step.run(sim["spectra"], str(ours_brz), cameras=True)
    theirs = desispec_io.read_spectra(sim["spectra"])
    ds_coadd(theirs, cosmics_nsig=4.0)
    o = desispec_io.read_spectra(str(ours))          # desispec reads our coadd
    assert o.exp_fibermap is not None and len(o.fibermap) == len(theirs.fibermap)
    for b in "brz":
        ok = theirs.ivar[b] > 0
        dflux = np.abs(o.flux[b] - theirs.flux[b])[ok] * np.sqrt(theirs.ivar[b][ok])
        assert np.median(dflux) < 0.05
        assert np.allclose(o.ivar[b], theirs.ivar[b], rtol=1e-3, atol=0)
        assert np.allclose(o.resolution_data[b], theirs.resolution_data[b], atol=1e-5)
    for col in theirs.fibermap.colnames:
        assert col in o.fibermap.colnames, col
        if theirs.fibermap[col].dtype.kind in "fi":
            assert np.allclose(o.fibermap[col], theirs.fibermap[col], rtol=1e-5, equal_nan=True), col
    assert set(o.exp_fibermap.colnames) == set(theirs.exp_fibermap.colnames)
    brz = ds_coadd_cameras(theirs)
    ob = desispec_io.read_spectra(str(ours_brz))
    assert ob.bands == ["brz"] and np.allclose(ob.wave["brz"], brz.wave["brz"])
    ok = brz.ivar["brz"] > 0
    dflux = np.abs(ob.flux["brz"] - brz.flux["brz"])[ok] * np.sqrt(brz.ivar["brz"][ok])
    assert np.median(dflux) < 0.05
    assert np.allclose(ob.ivar["brz"], brz.ivar["brz"], rtol=1e-3, atol=0)


def test_coadd_fibermap_matches_desispec_across_tiles():
    pytest.importorskip("desispec")
    from astropy.table import Table
    from desispec.coaddition import coadd_fibermap as ds_coadd_fibermap
    rng = np.random.default_rng(5)
    n = 40
    fm = Table()
    fm["TARGETID"] = rng.integers(0, 9, n)
    fm["FIBERSTATUS"] = np.where(rng.uniform(size=n) < 0.2, 2 ** 16, 0).astype("i4")
    fm["FIBERSTATUS"][:3] |= 2 ** 22                                       # BADAMPB only
    fm["NIGHT"] = rng.integers(20260101, 20260104, n).astype("i4")
    fm["EXPID"] = np.arange(n).astype("i4")
    fm["TILEID"] = rng.integers(1, 3, n).astype("i4")
    fm["MJD"] = 60000 + rng.uniform(size=n)
    fm["EXPTIME"] = rng.uniform(800, 1000, n)
    fm["FIBER"] = rng.integers(0, 5000, n).astype("i4")
    for c in ("DELTA_X", "DELTA_Y", "FIBER_X", "FIBER_Y"):
        fm[c] = rng.normal(0, 0.01, n)
    fm["FIBER_RA"] = 359.9999 + rng.normal(0, 1e-4, n)                      # RA wrap
    fm["FIBER_DEC"] = 2 + rng.normal(0, 1e-4, n)
    fm["PSF_TO_FIBER_SPECFLUX"] = rng.uniform(0.7, 0.8, n)
    fm["DESI_TARGET"] = rng.integers(0, 8, n)
    fm["OBJTYPE"] = "TGT"
    ours, ours_exp = coadd_fibermap(fm)
    theirs, theirs_exp = ds_coadd_fibermap(fm)
    assert ours.colnames == theirs.colnames or set(ours.colnames) == set(theirs.colnames)
    for c in theirs.colnames:
        if theirs[c].dtype.kind in "fiu":
            assert np.allclose(np.asarray(ours[c], float), np.asarray(theirs[c], float), rtol=1e-6, atol=1e-6), c
    assert set(ours_exp.colnames) == set(theirs_exp.colnames)
    for c in ("IN_COADD_B", "IN_COADD_R", "IN_COADD_Z"):
        assert np.array_equal(ours_exp[c], theirs_exp[c])
    assert np.array_equal(use_for_coadd(fm["FIBERSTATUS"], "b"), ours_exp["IN_COADD_B"])


def test_missing_camera_is_coadded_from_the_others_and_flagged(sim, tmp_path):
    # drop every z camera of one exposure, and in a second file every z camera
    expids = sorted({int(Path(p).stem.split("-")[-1]) for p in sim["cframes"]})
    drop_one = [p for p in sim["cframes"] if not (f"cframe-z0-{expids[0]:08d}" in p)]
    path = str(tmp_path / "spectra-missing.fits")
    group_spectra.run(drop_one, path, group_spectra.healpix_group(sim["pix"], survey=sim["survey"], program=sim["program"]))
    res = coadd_step.run(path, str(tmp_path / "coadd-missing.fits"), cosmics_nsig=0.0)
    full = coadd_step.run(sim["spectra"], str(tmp_path / "coadd-full.fits"), cosmics_nsig=0.0)
    spectra = read_spectra(path)
    rows0 = np.asarray(spectra.fibermap["EXPID"]) == expids[0]
    assert np.all(spectra.ivar["z"][rows0] == 0) and np.all(spectra.mask["z"][rows0] == 256)
    exp = res["exp_fibermap"]
    assert not np.any(exp["IN_COADD_Z"][np.asarray(exp["EXPID"]) == expids[0]])
    assert np.all(exp["IN_COADD_B"])
    assert np.all(res["ivar"]["z"] < full["ivar"]["z"] + 1e-12) and np.all(res["ivar"]["b"] == full["ivar"]["b"])
    no_z = [p for p in sim["cframes"] if "cframe-z" not in p]
    path2 = str(tmp_path / "spectra-noz.fits")
    group_spectra.run(no_z, path2, group_spectra.healpix_group(sim["pix"], survey=sim["survey"], program=sim["program"]))
    # without any z camera the file simply has b and r
    assert read_spectra(path2).bands == ["b", "r"]


@pytest.mark.skipif(not TEMPLATES.is_dir(), reason="redrock templates (../shared/data/redrock-templates) absent")
def test_rrdesi_runs_on_our_coadd(sim, tmp_path):
    rrdesi = Path(sys.executable).parent / "rrdesi"
    if not rrdesi.exists():
        pytest.skip("rrdesi not installed")
    coadd = tmp_path / "coadd.fits"
    coadd_step.run(sim["spectra"], str(coadd))
    tdir = tmp_path / "templates"
    tdir.mkdir()
    shutil.copy(TEMPLATES.resolve() / "rrtemplate-STAR-K-v0.1.fits", tdir)
    out = tmp_path / "redrock.fits"
    proc = subprocess.run([str(rrdesi), "-i", str(coadd), "-o", str(out), "-t", str(tdir), "--ntargets", "3",
                           "--mp", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from astropy.table import Table
    z = Table.read(out, "REDSHIFTS")
    assert len(z) == 3 and np.all(np.isfinite(z["Z"]))


def test_group_and_coadd_in_one_pass_equals_two_steps(sim, tmp_path):
    spectra, coadd1 = str(tmp_path / "s.fits"), str(tmp_path / "c1.fits")
    group_spectra.run(sim["cframes"], spectra, group_spectra.healpix_group(sim["pix"], survey=sim["survey"],
                      program=sim["program"]), coadd_outfile=coadd1)
    two = coadd_step.run(sim["spectra"], str(tmp_path / "c2.fits"))
    one = read_spectra(coadd1)
    assert np.array_equal(np.asarray(one.fibermap["TARGETID"]), two["targetid"])
    for b in "brz":
        assert np.array_equal(one.flux[b], two["flux"][b]) and np.array_equal(one.ivar[b], two["ivar"][b])
        assert np.array_equal(one.resolution_data[b], two["resolution_data"][b])
    assert np.array_equal(read_spectra(spectra).flux["r"], read_spectra(sim["spectra"]).flux["r"])

