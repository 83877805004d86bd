"""Healpix and tile spectra (desired group-spectra) and the spectra workflow (rules/spectra.smk)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from desired.cli import main as cli_main
from desired.grouping import (exposure_groups, exposure_healpix_groups, healpix_members, healpix_pixels,
                              survey_program)
from desired.io.frame import CFRAME_UNITS, read_frame, write_frame
from desired.io.spectra import read_healpix_list, read_spectra
from desired.io.util import DataModelError
from desired.paths import findfile
from desired.scripts import group_spectra
from spectra_sim import simulate_cframes

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
NIGHT1, NIGHT2 = 20261124, 20261125


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Two mini exposures on night 1 and one on night 2 of tile 1000, as truth-calibrated cframes."""
    root = tmp_path_factory.mktemp("spectrasim")
    cframes = simulate_cframes(str(root), night=NIGHT1, nscience=2, seed=2, expid_start=1)
    cframes += simulate_cframes(str(root), night=NIGHT2, nscience=1, seed=2, expid_start=3)
    frames = group_spectra.read_frame_metas(cframes)
    return {"root": root, "cframes": sorted(cframes), "frames": frames, "groups": exposure_groups(frames)}


def test_every_target_lands_in_its_pixel_once_per_exposure(sim, tmp_path):
    total = 0
    for survey, program, pix in sim["groups"]:
        out = tmp_path / f"spectra-{pix}.fits"
        n = group_spectra.run(sim["cframes"], str(out), group_spectra.healpix_group(pix, survey=survey, program=program))
        s = read_spectra(str(out))
        assert n == s.num_spectra() > 0
        fm = s.fibermap
        assert np.all(healpix_pixels(fm["TARGET_RA"], fm["TARGET_DEC"], 64, True) == pix)
        # DESI's row order: (spectrograph, night, expid), then fiber order within the frame
        key = np.stack([np.asarray(fm["FIBER"]) // 500, fm["NIGHT"], fm["EXPID"], fm["FIBER"]])
        assert np.all(np.diff(np.ravel_multi_index(key - key.min(axis=1, keepdims=True),
                                                   key.max(axis=1) - key.min(axis=1) + 1)) > 0)
        assert s.header["SPGRP"] == "healpix" and s.header["HPXPIXEL"] == pix and s.header["HPXNSIDE"] == 64
        assert s.header["SURVEY"] == survey and s.header["PROGRAM"] == program
        # every row is a copy of its cframe row (float32 in both files)
        for i in (0, n - 1):
            expid, fiber = int(fm["EXPID"][i]), int(fm["FIBER"][i])
            for band in "brz":
                frame = read_frame([p for p in sim["cframes"] if f"cframe-{band}0-{expid:08d}" in p][0])
                row = int(np.flatnonzero(frame.fibers == fiber)[0])
                assert np.array_equal(s.flux[band][i], frame.flux[row])
                assert np.array_equal(s.ivar[band][i], frame.ivar[row])
                assert np.array_equal(s.resolution_data[band][i], frame.resolution_data[row])
        assert s.scores is not None and "MEDIAN_CALIB_SNR_R" in s.scores.colnames
        total += n
    nexp = len({f.expid for f in sim["frames"]})
    nfib = len(sim["frames"][0].fibermap)
    assert total == nexp * nfib


def test_desispec_reads_our_spectra_and_rrdesi_columns_are_there(sim, tmp_path):
    desispec_io = pytest.importorskip("desispec.io")
    survey, program, pix = sim["groups"][0]
    out = tmp_path / "spectra.fits"
    group_spectra.run(sim["cframes"], str(out), group_spectra.healpix_group(pix, survey=survey, program=program))
    theirs = desispec_io.read_spectra(str(out))
    ours = read_spectra(str(out))
    assert theirs.bands == ["b", "r", "z"]
    for b in "brz":
        assert np.allclose(theirs.flux[b], ours.flux[b]) and np.allclose(theirs.wave[b], ours.wave[b])
        assert theirs.resolution_data[b].shape[1] == 11
    for col in ("TARGETID", "FIBERSTATUS", "OBJTYPE", "TILEID", "NIGHT", "EXPID", "MJD", "TARGET_RA"):
        assert col in theirs.fibermap.colnames
    assert theirs.scores is not None


def test_tile_groupings(sim, tmp_path):
    def run(kind, value):
        out = tmp_path / f"{kind}-{value}.fits"
        n = group_spectra.run(sim["cframes"], str(out), group_spectra.tile_group(kind, 1000, 0, value))
        return n, (read_spectra(str(out)) if n else None)
    n_cum1, cum1 = run("cumulative", NIGHT1)
    n_cum2, cum2 = run("cumulative", NIGHT2)
    n_night2, night2 = run("pernight", NIGHT2)
    n_exp, exp = run("perexp", 2)
    nfib = len(sim["frames"][0].fibermap)
    assert (n_cum1, n_cum2, n_night2, n_exp) == (2 * nfib, 3 * nfib, nfib, nfib)
    assert set(cum2.fibermap["EXPID"]) == {1, 2, 3} and set(night2.fibermap["EXPID"]) == {3}
    assert set(exp.fibermap["EXPID"]) == {2}
    assert cum1.header["SPGRP"] == "cumulative" and cum1.header["SPGRPVAL"] == NIGHT1 and cum1.header["TILEID"] == 1000
    assert exp.header["SPGRP"] == "perexp" and exp.header["SPGRPVAL"] == 2
    # tile coadds keep the tile columns (onetile)
    from desired.scripts.coadd import run as coadd
    res = coadd(str(tmp_path / f"cumulative-{NIGHT2}.fits"), str(tmp_path / "coadd-tile.fits"))
    assert "FIBER" in res["fibermap"].colnames and "MEAN_FIBER_X" in res["fibermap"].colnames
    assert np.all(res["fibermap"]["COADD_NUMEXP"] == 3) and np.all(res["fibermap"]["COADD_NUMNIGHT"] == 2)
    assert n_cum1 == 2 * nfib and run("cumulative", 20261123)[0] == 0


def test_survey_program_keywords():
    assert survey_program({"SURVEY": "SV3", "FAPRGRM": "Bright"}) == ("sv3", "bright")
    assert survey_program({"FA_SURV": "sv1", "FAFLAVOR": "sv1dark"}) == ("sv1", "dark")
    assert survey_program({"PROGRAM": "some free text"}) == ("main", "other")
    assert survey_program({}, "special", "backup") == ("special", "backup")


def test_healpix_members_keeps_only_the_cameras_of_feeding_spectrographs():
    # two exposures: fibers of spectrographs 0 and 1 at two positions; the second exposure has only camera b1
    ra, dec = np.array([10.0, 10.0, 150.0]), np.array([5.0, 5.0, -20.0])
    fibers = np.array([3, 700, 710])
    groups = exposure_healpix_groups(ra, dec, fibers, {"SURVEY": "main", "FAPRGRM": "dark"}, nside=64)
    pix = healpix_pixels(ra, dec, 64, True)
    pix_a, pix_b = int(pix[0]), int(pix[2])
    assert pix_a != pix_b
    members = healpix_members([(20261124, 5, ("b0", "r0", "b1"), groups), (20261125, 9, ("b1",), groups)])
    assert members[("main", "dark", pix_a)] == [(20261124, 5, "b0"), (20261124, 5, "b1"), (20261124, 5, "r0"),
                                                (20261125, 9, "b1")]
    assert members[("main", "dark", pix_b)] == [(20261124, 5, "b1"), (20261125, 9, "b1")]
    # a pixel fed only by a spectrograph whose cameras are absent has no member and is left out
    assert healpix_members([(20261125, 9, ("b0",), {("main", "dark", pix_b): (1,)})]) == {}


def _copy_frames(sim, tmp_path):
    out = []
    for p in sim["cframes"]:
        q = tmp_path / "in" / Path(p).name
        q.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, q)
        out.append(str(q))
    return out


def test_bad_cframes_are_refused_naming_the_file(sim, tmp_path, capsys):
    cframes = _copy_frames(sim, tmp_path)
    # 1. a fibermap without TARGET_RA/TARGET_DEC
    victim = cframes[1]
    frame = read_frame(victim)
    frame.fibermap.remove_columns(["TARGET_RA", "TARGET_DEC"])
    write_frame(victim, frame, units=CFRAME_UNITS)
    with pytest.raises(DataModelError, match=re.escape(victim) + ".*TARGET_RA"):
        group_spectra.read_frame_metas(cframes)
    out = tmp_path / "spectra.fits"
    survey, program, pix = sim["groups"][0]
    status = cli_main(["group-spectra", "--infiles", *cframes, "--healpix", str(pix), "-o", str(out)])
    assert status != 0 and not out.exists()
    assert Path(victim).name in capsys.readouterr().err
    # 2. a wavelength grid that differs from its camera's
    cframes = _copy_frames(sim, tmp_path / "2")
    victim = [p for p in cframes if "cframe-r0-00000002" in p][0]
    frame = read_frame(victim)
    frame.wave = frame.wave + 0.4
    write_frame(victim, frame, units=CFRAME_UNITS)
    with pytest.raises(ValueError, match=re.escape(victim) + ".*wavelength grid"):
        group_spectra.run(cframes, str(out), group_spectra.healpix_group(pix, survey=survey, program=program))
    assert not out.exists()


def test_ang2pix_nest_equals_healpy_everywhere():
    healpy = pytest.importorskip("healpy")
    from desired.grouping import ang2pix_nest
    rng = np.random.default_rng(3)
    ra = rng.uniform(-360, 720, 200_000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, ra.size)))
    dec[:2000] = np.concatenate([90 - rng.uniform(0, 1e-3, 1000), -90 + rng.uniform(0, 1e-3, 1000)])
    for nside in (1, 2, 16, 64, 1024, 2 ** 20):
        assert np.array_equal(ang2pix_nest(nside, ra, dec), healpy.ang2pix(nside, ra, dec, lonlat=True, nest=True))
    # pixel corners and centres: the points where rounding decides
    nside = 16
    ipix = np.arange(12 * nside * nside)
    corners = healpy.boundaries(nside, ipix, step=1, nest=True).transpose(0, 2, 1).reshape(-1, 3)
    for theta, phi in (healpy.pix2ang(nside, ipix, nest=True), healpy.vec2ang(corners)):
        ra, dec = np.degrees(phi), 90 - np.degrees(theta)
        assert np.array_equal(ang2pix_nest(nside, ra, dec), healpy.ang2pix(nside, ra, dec, lonlat=True, nest=True))
    assert np.array_equal(healpix_pixels([10.0, np.nan], [5.0, 1.0], 64, True),
                          [healpy.ang2pix(64, 10.0, 5.0, lonlat=True, nest=True), -1])
    with pytest.raises(ValueError, match="power of 2"):
        ang2pix_nest(12, ra, dec)


def test_spectra_file_equals_desispec_group_spectra(sim, tmp_path):
    """Same cframes, same pixel: our spectra file holds desispec's rows, arrays and fibermap values."""
    pytest.importorskip("desispec")
    from desispec.io import read_spectra as desispec_read
    from desispec.scripts.group_spectra import main as ds_main, parse as ds_parse
    survey, program, pix = max(sim["groups"], key=lambda g: sum(
        int(np.sum(healpix_pixels(f.fibermap["TARGET_RA"], f.fibermap["TARGET_DEC"]) == g[2])) for f in sim["frames"]))
    # desispec's grouping needs a SCORES HDU in every cframe (DESI's cframes have one)
    from astropy.table import Table
    from desired.coadd import band_scores
    cframes = _copy_frames(sim, tmp_path / "in")
    for path in cframes:
        frame = read_frame(path)
        frame.scores = Table(band_scores(frame.wave, frame.flux, frame.ivar, frame.camera[0], suffix="CALIB"))
        write_frame(path, frame, units=CFRAME_UNITS)
    ours_path, theirs_path = tmp_path / "ours.fits", tmp_path / "theirs.fits"
    group_spectra.run(cframes, str(ours_path), group_spectra.healpix_group(pix, survey=survey, program=program))
    ds_main(ds_parse(["--inframes", *cframes, "--healpix", str(pix), "-o", str(theirs_path)]))
    ours, theirs = desispec_read(str(ours_path)), desispec_read(str(theirs_path))
    # desispec orders by (night, expid); ours by (spectrograph, night, expid): the same for one spectrograph
    assert np.array_equal(ours.fibermap["TARGETID"], theirs.fibermap["TARGETID"])
    assert np.array_equal(ours.fibermap["EXPID"], theirs.fibermap["EXPID"])
    for b in "brz":
        assert np.array_equal(ours.wave[b], theirs.wave[b])
        assert np.array_equal(ours.flux[b], theirs.flux[b]) and np.array_equal(ours.ivar[b], theirs.ivar[b])
        assert np.array_equal(ours.mask[b], theirs.mask[b])
        assert np.array_equal(ours.resolution_data[b], theirs.resolution_data[b])
    for col in theirs.fibermap.colnames:
        if col in ours.fibermap.colnames:
            a, t = np.asarray(ours.fibermap[col]), np.asarray(theirs.fibermap[col])
            assert np.array_equal(a, t) or (a.dtype.kind == "f" and np.allclose(a, t, equal_nan=True)), col
    missing = set(theirs.fibermap.colnames) - set(ours.fibermap.colnames)
    assert missing <= {"PLATE_RA", "PLATE_DEC"}, missing
    assert "MEDIAN_CALIB_SNR_B" in theirs.scores.colnames
    for name in theirs.scores.colnames:
        if name in ours.scores.colnames and name != "TARGETID":
            assert np.allclose(ours.scores[name], theirs.scores[name]), name


def test_decoded_rows_equal_copied_rows(sim, tmp_path):
    """cframes whose HDUs cannot be copied as bytes (float64 FLUX, compressed MASK, gzipped) give the same file."""
    from astropy.io import fits
    survey, program, pix = sim["groups"][0]
    group = group_spectra.healpix_group(pix, survey=survey, program=program)
    plain = tmp_path / "plain.fits"
    group_spectra.run(sim["cframes"], str(plain), group)
    cframes = _copy_frames(sim, tmp_path / "odd")
    for i, path in enumerate(cframes):
        with fits.open(path) as hdus:
            out = [h.copy() for h in hdus]
        for j, h in enumerate(out):
            if h.name == "FLUX" and i % 2 == 0:
                h.data = h.data.astype(np.float64)
            if h.name == "MASK" and i % 3 == 0:
                out[j] = fits.CompImageHDU(h.data, header=h.header, name="MASK")
        if i % 4 == 1:
            fits.HDUList(out).writeto(path + ".gz")
            os.remove(path)
            cframes[i] = path + ".gz"
        else:
            fits.HDUList(out).writeto(path, overwrite=True)
    metas = group_spectra.read_frame_metas(cframes)
    assert any(m.layout["flux"] is None for m in metas) and any(m.layout["mask"] is None for m in metas)
    assert any(m.layout["flux"] is not None for m in metas)
    odd = tmp_path / "odd.fits"
    group_spectra.run(cframes, str(odd), group)
    a, b = read_spectra(str(plain)), read_spectra(str(odd))
    for band in "brz":
        for kind in ("flux", "ivar", "mask", "resolution_data"):
            assert np.array_equal(getattr(a, kind)[band], getattr(b, kind)[band]), (band, kind)
    assert np.array_equal(a.fibermap["TARGETID"], b.fibermap["TARGETID"])


# ------------------------------------------------------------------ workflow
def _write_raw_exposure(raw, night, expid, fibermap, header):
    from desired.io.fibermap import write_fibermap
    from desired.io.raw import write_raw
    hdr = {"EXPID": expid, "NIGHT": night, "OBSTYPE": "SCIENCE", "EXPTIME": 900.0, "TILEID": 1000,
           "SURVEY": header.get("SURVEY", "main"), "FAPRGRM": header.get("FAPRGRM", "dark")}
    sections = {"BIASSECA": "[1:2, 1:8]", "DATASECA": "[3:8, 1:8]", "CCDSECA": "[1:6, 1:8]"}
    write_raw(findfile("raw", root=raw, night=night, expid=expid), hdr,
              {c: (np.full((8, 8), 1000, np.uint16), dict(sections)) for c in ("b0", "r0", "z0")})
    write_fibermap(findfile("raw_fibermap", root=raw, night=night, expid=expid), fibermap, hdr)


def _snakemake(workdir, *args):
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args]
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(cmd, cwd=workdir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _jobs(text):
    counts = {}
    blocks = text.split("Job stats:")
    for line in (blocks[-1].splitlines()[3:] if len(blocks) > 1 else []):
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def test_workflow_lists_every_pixel_and_reruns_only_touched_ones(sim, tmp_path):
    """Raw tree (headers + fibermaps) and cframes in place: the spectra stage's DAG, run, and a new exposure."""
    work = tmp_path
    (work / "calib").mkdir()
    (work / "config.yaml").write_text("raw_dir: raw\ncalib_dir: calib\nredux_dir: prod\nnights: [20261124]\n")
    for frame in sim["frames"]:
        if frame.night != NIGHT1:
            continue
        if frame.band == "b":
            _write_raw_exposure(str(work / "raw"), frame.night, frame.expid, frame.fibermap, frame.header)
        dest = work / findfile("cframe", root="prod", night=frame.night, expid=frame.expid, camera=frame.camera)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(frame.path, dest)
    pixels = sorted({g[2] for g in sim["groups"]})
    proc = _snakemake(work, "spectra_all", "-n")
    assert proc.returncode == 0, proc.stdout[-3000:]
    if _jobs(proc.stdout).get("exposure_table"):
        # exposures are discovered by a checkpoint on this branch: scan first, then the DAG is complete
        for night in (NIGHT1,):
            table = findfile("exposure_table", root="prod", night=night)
            assert _snakemake(work, table).returncode == 0
        proc = _snakemake(work, "spectra_all", "-n")
    jobs = _jobs(proc.stdout)
    assert jobs.get("spectra_healpix") == len(pixels) and jobs.get("coadd_healpix") == len(pixels), proc.stdout[-3000:]
    for pix in pixels:
        assert f"spectra-main-dark-{pix}.fits" in proc.stdout
    run = _snakemake(work, "spectra_all")
    assert run.returncode == 0, run.stdout[-4000:]
    listing = work / findfile("healpix_list", root="prod", survey="main", program="dark")
    assert read_healpix_list(str(listing)) == pixels
    coadd = read_spectra(str(work / findfile("coadd", root="prod", survey="main", program="dark", healpix=pixels[0])))
    assert coadd.exp_fibermap is not None
    assert _jobs(_snakemake(work, "spectra_all", "-n").stdout) == {}
    # a new exposure whose targets all fall into one pixel reruns that pixel only
    target_pix = pixels[-1]
    import healpy
    ra0, dec0 = healpy.pix2ang(64, target_pix, nest=True, lonlat=True)
    template = [f for f in sim["frames"] if f.expid == 1]
    for frame_meta in template:
        frame = read_frame(frame_meta.path)
        frame.fibermap["TARGET_RA"] = ra0
        frame.fibermap["TARGET_DEC"] = dec0
        frame.header["EXPID"] = 9
        dest = work / findfile("cframe", root="prod", night=NIGHT1, expid=9, camera=frame.camera)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_frame(str(dest), frame, units=CFRAME_UNITS)
        if frame.camera == "b0":
            _write_raw_exposure(str(work / "raw"), NIGHT1, 9, frame.fibermap, frame.header)
    _snakemake(work, findfile("exposure_table", root="prod", night=NIGHT1))
    proc = _snakemake(work, "spectra_all", "-n")
    jobs = _jobs(proc.stdout)
    assert jobs.get("spectra_healpix") == 1 and jobs.get("coadd_healpix") == 1, proc.stdout[-3000:]
    assert f"spectra-main-dark-{target_pix}.fits" in proc.stdout
    assert all(f"spectra-main-dark-{p}.fits" not in proc.stdout.split("Job stats:")[0] for p in pixels[:-1])
