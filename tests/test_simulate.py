"""Acceptance tests of the instrument simulator (issue 3), on the tiny/mini presets."""
from __future__ import annotations

import numpy as np
import pytest
from pathlib import Path

import fitsio

from desired import paths
from desired.io.psf import read_psf
from desired.io.raw import parse_section, read_raw_camera
from desired.sim import arclines, instrument as ins
from desired.sim.night import NightConfig, exposure_sequence, simulate_camera_exposure, simulate_night

NIGHT = 20261124
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _exp(cfg, obstype):
    return next(e for e in exposure_sequence(cfg) if e["obstype"] == obstype)


@pytest.fixture(scope="module")
def tiny_night(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinynight")
    cfg = NightConfig(preset="tiny", night=NIGHT, seed=11, narc=1, nflat=1, nscience=1, cosmic_rate=1.0,
                      bad_column=True)
    seq = simulate_night(cfg, raw_dir=root / "raw", calib_dir=root / "calib", truth_dir=root / "truth")
    return cfg, seq, root


# --------------------------------------------------------------------------- layout
def test_real_z_layout_matches_desi_keywords():
    """Full-size z camera sections equal the real z0 header values (desi-datamodel.md §3)."""
    shape, sections = ins.amp_layout("z", 4128, 4114)
    kw = ins.section_keywords(sections)
    assert shape == (4194, 4256)
    assert kw["DATASECA"] == "[8:2064, 2:2065]"
    assert kw["BIASSECA"] == "[2065:2128, 2:2065]"
    assert kw["ORSECA"] == "[8:2064, 2066:2097]"
    assert kw["CCDSECB"] == "[2058:4114, 1:2064]"
    assert kw["DATASECD"] == "[2193:4249, 2130:4193]"
    assert kw["PRESECD"] == "[4250:4256, 2130:4193]"
    assert ins.amp_layout("b", 4096, 4096)[0] == (4162, 4232)


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_sections_consistent(preset):
    from desired.sim.optics import build_camera_optics
    geo = ins.get_preset(preset)
    for camera in geo.cameras:
        opt = build_camera_optics(camera, geo, 0)
        ny, nx = opt.shape
        raw_shape, sections = ins.amp_layout(camera[0], ny, nx)
        kw = ins.section_keywords(sections)
        covered = np.zeros((ny, nx), int)
        used = np.zeros(raw_shape, int)
        for amp in "ABCD":
            dr, dc = parse_section(kw[f"DATASEC{amp}"])
            cr, cc = parse_section(kw[f"CCDSEC{amp}"])
            assert (dr.stop - dr.start, dc.stop - dc.start) == (cr.stop - cr.start, cc.stop - cc.start)
            covered[cr, cc] += 1
            for key in ("DATASEC", "BIASSEC", "PRESEC", "ORSEC"):
                r, c = parse_section(kw[f"{key}{amp}"])
                assert 0 <= r.start < r.stop <= raw_shape[0] and 0 <= c.start < c.stop <= raw_shape[1]
                used[r, c] += 1
        assert np.all(covered == 1)           # CCDSECs tile the trimmed image exactly
        assert used.max() == 1                 # raw sections never overlap
        assert (dr.stop - dr.start) > 100      # desispec's overscan statistics need > 100 rows per amp


# ------------------------------------------------------------------------ raw files
def test_raw_files_open_and_headers(tiny_night):
    cfg, seq, root = tiny_night
    required = ("EXPID", "NIGHT", "OBSTYPE", "FLAVOR", "EXPTIME", "TILEID", "PROGRAM", "SURVEY", "FAPRGRM",
                "DATE-OBS", "MJD-OBS", "AIRMASS", "TARGTRA", "TARGTDEC", "CAMERA", "SPECGRPH", "DETECTOR",
                "DOSVER", "FEEVER")
    psf = read_psf(paths.findfile("truth_psf", root=root / "truth", camera="b0"))
    for exp in seq:
        path = paths.findfile("raw", root=root / "raw", night=NIGHT, expid=exp["expid"])
        with fitsio.FITS(path) as f:
            names = [h.get_extname() for h in f]
            assert "SPEC" in names and "B0" in names
            img = f["B0"].read()
            hdr = f["B0"].read_header()
        assert img.dtype == np.uint16
        assert hdr["CCDSIZE"] == f"{img.shape[0]},{img.shape[1]}"
        image, merged = read_raw_camera(path, "b0")
        for key in required:
            assert key in merged, key
        assert merged["OBSTYPE"] == exp["obstype"] and merged["EXPID"] == exp["expid"]
        assert (merged["NPIX_Y"], merged["NPIX_X"]) == (psf.npix_y, psf.npix_x)
        trimmed = sum((parse_section(merged[f"CCDSEC{a}"])[0].stop - parse_section(merged[f"CCDSEC{a}"])[0].start)
                      * (parse_section(merged[f"CCDSEC{a}"])[1].stop - parse_section(merged[f"CCDSEC{a}"])[1].start)
                      for a in "ABCD")
        assert trimmed == psf.npix_x * psf.npix_y


def test_desispec_preproc_accepts_raw(tmp_path, monkeypatch):
    """DESI's own preproc handles a full-size simulated camera (a zero, to stay fast).

    ``desispec.io.read_raw`` = read the HDU + ``desispec.preproc.preproc`` + fibermap
    bookkeeping that needs DESI's calibration tree; we read the HDU with astropy
    and run desispec's preproc (amplifier sections, overscan, gain) directly.
    desispec's overscan cosmic-trail check looks 300 columns into the active area,
    so it needs full-width amplifiers; the cropped presets are checked with fitsio above.
    """
    preproc = pytest.importorskip("desispec.preproc")
    from astropy.io import fits
    from desired.io.raw import write_raw
    from desired.sim.night import exposure_header
    monkeypatch.setenv("DESI_SPECTRO_CALIB", str(tmp_path))     # empty: no CCD region masks
    cfg = NightConfig(preset="petal", night=NIGHT, seed=2, nzero=1, narc=0, nflat=0, nscience=0, cosmic_rate=0.0)
    exp = exposure_sequence(cfg)[0]
    res = simulate_camera_exposure(cfg, exp, "b0")
    path = str(tmp_path / "desi-00000001.fits.fz")
    write_raw(path, exposure_header(cfg, exp), {"b0": (res["raw"], res["header"])})
    with fits.open(path) as hdus:
        primary = hdus["SPEC"].header.copy()
        header = hdus["B0"].header.copy()
        rawimage = hdus["B0"].data.astype(np.float64)
    img = preproc.preproc(rawimage, header, primary, bias=False, dark=False, pixflat=False, mask=False,
                          nocrosstalk=True, no_cte_corr=True, nocosmic=True)
    assert img.pix.shape == (4096, 4096)
    # overscan-subtracted, gain-corrected zero: mean ~0 e-, rms ~ the truth read noise
    rn = np.mean(list(res["ccd"]["readnoise"].values()))
    assert abs(np.median(img.pix)) < 0.3
    assert np.std(img.pix[100:-100, 100:-100]) == pytest.approx(rn, rel=0.1)


def test_fibermap_and_truth(tiny_night):
    from desired.io.fibermap import read_fibermap
    from desired.maskbits import desi_target
    cfg, seq, root = tiny_night
    exp = _exp(cfg, "SCIENCE")
    fm = read_fibermap(paths.findfile("raw_fibermap", root=root / "raw", night=NIGHT, expid=exp["expid"]))
    assert len(fm) == 25 and list(fm["FIBER"]) == list(range(25))
    for col in ("TARGETID", "PETAL_LOC", "DEVICE_LOC", "LOCATION", "OBJTYPE", "DESI_TARGET", "FIBERSTATUS",
                "TARGET_RA", "TARGET_DEC", "FLUX_G", "FLUX_R", "FLUX_Z", "FIBER_X", "FIBER_Y", "DELTA_X",
                "DELTA_Y", "FIBER_RA", "FIBER_DEC", "GAIA_PHOT_G_MEAN_MAG", "EBV", "PHOTSYS"):
        assert col in fm.colnames, col
    assert fm.meta["SURVEY"] == "main" and fm.meta["FAPRGRM"] == "dark" and fm.meta["TILEID"] == cfg.tileid
    assert np.sum(fm["OBJTYPE"] == "SKY") >= 2
    assert np.sum((fm["DESI_TARGET"] & desi_target.mask("STD_FAINT")) != 0) >= 1
    import healpy
    pix = healpy.ang2pix(64, fm["TARGET_RA"], fm["TARGET_DEC"], lonlat=True, nest=True)
    assert len(set(pix)) <= 4
    with fitsio.FITS(paths.findfile("truth", root=root / "truth", night=NIGHT, expid=exp["expid"])) as f:
        truth = f["TRUTH"].read()
    assert np.array_equal(truth["TARGETID"], np.asarray(fm["TARGETID"]))
    spectype = np.char.strip(truth["TRUESPECTYPE"].astype(str))
    z = truth["TRUEZ"]
    assert np.all((z[spectype == "QSO"] > 0.85) & (z[spectype == "QSO"] < 3.6))
    assert np.all(np.abs(z[spectype == "STAR"]) < 0.002)
    # WISE W1 where simulated (LRGs): the truth magnitude reddened by A_W1 = 0.184 E(B-V); zero elsewhere
    lrg = np.char.strip(truth["TEMPLATETYPE"].astype(str)) == "LRG"
    assert lrg.any()
    w1 = 22.5 - 2.5 * np.log10(np.asarray(fm["FLUX_W1"])[lrg])
    np.testing.assert_allclose(w1, truth["PAR_MAG_W1"][lrg] + 0.184 * np.asarray(fm["EBV"])[lrg], atol=1e-4)
    assert np.all(np.asarray(fm["FLUX_W1"])[~lrg] == 0)


def test_calibration_files(tiny_night):
    from desired.io.calib import read_ccd_calib
    import yaml
    cfg, seq, root = tiny_night
    calib = read_ccd_calib(paths.findfile("calib_ccd", root=root / "calib", camera="b0"))
    with open(paths.findfile("truth_ccd", root=root / "truth", camera="b0")) as fh:
        truth = yaml.safe_load(fh)
    for amp in "ABCD":
        assert calib["amplifiers"][amp]["gain"] == pytest.approx(truth["amplifiers"][amp]["gain"])
    assert calib["bad_columns"] == truth["bad_columns"] and len(calib["bad_columns"]) == 1
    nominal = read_psf(paths.findfile("calib_psf", root=root / "calib", camera="b0"))
    true = read_psf(paths.findfile("truth_psf", root=root / "truth", camera="b0"))
    wave = np.linspace(4050, 4400, 5)
    dx = nominal.x(12, wave) - true.x(12, wave)
    assert np.all((np.abs(dx) > 0.3) & (np.abs(dx) < 1.8))
    dy = nominal.y(12, wave) - true.y(12, wave)
    assert np.all((np.abs(dy) > 2.0) & (np.abs(dy) < 9.0))        # 2-4 A at ~1.7 px/A


# -------------------------------------------------------------------- pixel physics
def test_photon_statistics_flat():
    """Mean and variance of flat-field pixels match the truth gain, read noise and bias."""
    cfg = NightConfig(preset="tiny", night=NIGHT, seed=5, cosmic_rate=0.0)
    exp = _exp(cfg, "FLAT")
    res = simulate_camera_exposure(cfg, exp, "b0")
    raw, hdr, ccd = res["raw"].astype(np.float64), res["header"], res["ccd"]
    expected_e = res["pixels"] + ccd["dark_current"] * exp["exptime"] / 3600.0
    for amp in "ABCD":
        gain, rn = ccd["gain"][amp], ccd["readnoise"][amp]
        dr, dc = parse_section(hdr[f"DATASEC{amp}"])
        br, bc = parse_section(hdr[f"BIASSEC{amp}"])
        cr, cc = parse_section(hdr[f"CCDSEC{amp}"])
        overscan = raw[br, bc]
        # read noise and bias level from the overscan
        assert np.std(overscan - overscan.mean(axis=1, keepdims=True)) == pytest.approx(
            np.sqrt((rn / gain) ** 2 + 1 / 12) * np.sqrt(63 / 64), rel=0.03)
        assert overscan.mean() == pytest.approx(ccd["bias"][amp], abs=1.5)
        bias_row = overscan.mean(axis=1, keepdims=True)
        signal = raw[dr, dc] - bias_row
        mean_e = expected_e[cr, cc]
        bright = mean_e > 2000
        assert bright.sum() > 2000
        var_adu = mean_e / gain ** 2 + (rn / gain) ** 2 * (1 + 1 / 64) + 1 / 12
        pull = (signal - mean_e / gain)[bright] / np.sqrt(var_adu[bright])
        assert abs(pull.mean()) < 0.05
        assert pull.std() == pytest.approx(1.0, abs=0.03)
        # gain from the mean: sum of ADU over bright pixels vs sum of electrons
        assert signal[bright].sum() * gain / mean_e[bright].sum() == pytest.approx(1.0, abs=2e-3)


def test_arc_centroids_at_truth():
    """Centroids of isolated arc lines on the noiseless image are at the true trace positions."""
    cfg = NightConfig(preset="tiny", night=NIGHT, seed=7, cosmic_rate=0.0)
    exp = _exp(cfg, "ARC")
    res = simulate_camera_exposure(cfg, exp, "b0")
    img, psf = res["pixels"], res["psf"]
    wave, _ = arclines.arc_lines("b", min_separation=20.0)
    ny, nx = img.shape
    half = ins.FIBER_PITCH / 2
    worst, nline = 0.0, 0
    for w in wave:
        for fiber in range(1, psf.nfiber - 1):
            xc, yc = psf.x(fiber, w).item(), psf.y(fiber, w).item()
            x0, y0 = int(np.rint(xc)), int(np.rint(yc))
            if y0 - 6 < 0 or y0 + 6 >= ny:
                continue
            # window of exactly +-half a fiber pitch around the trace (fractional edge pixels), so
            # that the light of the two neighbouring fibers leaks in symmetrically
            cols = np.arange(x0 - 6, x0 + 7)
            weight = np.clip(np.minimum(cols + 0.5, xc + half) - np.maximum(cols - 0.5, xc - half), 0.0, 1.0)
            cut = img[y0 - 5:y0 + 6, cols] * weight[None, :]
            rows = np.arange(y0 - 5, y0 + 6)
            xm = (cut.sum(axis=0) * cols).sum() / cut.sum()
            ym = (cut.sum(axis=1) * rows).sum() / cut.sum()
            worst = max(worst, abs(xm - xc), abs(ym - yc))
            nline += 1
    assert nline > 50
    assert worst < 0.01


def test_camera_bit_identical_and_independent_of_workers(tmp_path):
    cfg = NightConfig(preset="mini", night=NIGHT, seed=3, narc=1, nflat=0, nscience=0, cosmic_rate=2.0)
    exp = exposure_sequence(cfg)[0]
    a = simulate_camera_exposure(cfg, exp, "r0")["raw"]
    b = simulate_camera_exposure(cfg, exp, "r0")["raw"]
    assert a.tobytes() == b.tobytes()
    simulate_night(cfg, raw_dir=tmp_path / "raw", nproc=2)
    path = paths.findfile("raw", root=tmp_path / "raw", night=NIGHT, expid=exp["expid"])
    on_disk, _ = read_raw_camera(path, "r0")
    assert on_disk.tobytes() == a.tobytes()
    other = simulate_camera_exposure(NightConfig(preset="mini", night=NIGHT, seed=4, narc=1, nflat=0, nscience=0,
                                                 cosmic_rate=2.0), exp, "r0")["raw"]
    assert other.tobytes() != a.tobytes()


# ---------------------------------------------------------------------- frame level
def test_frame_level_noise_matches_ivar(tmp_path):
    desispec_io = pytest.importorskip("desispec.io")
    cfg = NightConfig(preset="tiny", night=NIGHT, seed=9, narc=0, nflat=0, nscience=1)
    simulate_night(cfg, raw_dir=tmp_path / "raw", truth_dir=tmp_path / "truth", level="frame",
                   frame_dir=tmp_path / "redux")
    exp = _exp(cfg, "SCIENCE")
    frame = desispec_io.read_frame(paths.findfile("frame", root=tmp_path / "redux", night=NIGHT,
                                                  expid=exp["expid"], camera="b0"))
    truth = fitsio.read(paths.findfile("truth_camera", root=tmp_path / "truth", night=NIGHT,
                                       expid=exp["expid"], camera="b0"), "ELECTRONS").astype(np.float64)
    assert frame.flux.shape == truth.shape
    assert frame.resolution_data.shape[1] == 11
    pulls = np.concatenate([(frame.flux[i] - frame.R[i].dot(truth[i])) * np.sqrt(frame.ivar[i])
                            for i in range(frame.nspec)])
    assert np.sqrt(np.mean(pulls ** 2)) == pytest.approx(1.0, abs=0.03)
    assert frame.fibermap is not None and len(frame.fibermap) == frame.nspec


# ------------------------------------------------------------------------ line list
def test_arc_line_vacuum_wavelengths():
    """Air -> vacuum conversion reproduces NIST vacuum wavelengths of Hg lines."""
    hg, _ = arclines.LAMP_LINES["Hg"]
    assert np.min(np.abs(hg - 4359.56)) < 0.01      # Hg I 4358.328 air
    ne, _ = arclines.LAMP_LINES["Ne"]
    assert np.min(np.abs(ne - 5854.110)) < 0.01     # Ne I 5852.488 air
    assert np.min(np.abs(ne - 6404.018)) < 0.01     # Ne I 6402.248 air
    w, i = arclines.arc_lines("r")
    assert np.all(np.diff(w) > 0) and np.all(i > 0) and w.size > 20


def test_truth_trace_shifts_and_fiber_throughput(tiny_night):
    cfg, seq, root = tiny_night
    for exp in seq:
        with fitsio.FITS(paths.findfile("truth", root=root / "truth", night=NIGHT, expid=exp["expid"])) as f:
            shifts = f["TRACESHIFT"].read()
        cam_hdr = fitsio.read_header(paths.findfile("truth_camera", root=root / "truth", night=NIGHT,
                                                    expid=exp["expid"], camera="b0"), "ELECTRONS")
        assert shifts["DX"][0] == pytest.approx(cam_hdr["TRSHIFTX"]) and shifts["DY"][0] == pytest.approx(cam_hdr["TRSHIFTY"])
        if exp["obstype"] == "ARC":
            assert shifts["DX"][0] == 0 and shifts["DY"][0] == 0
        else:
            assert 0 < np.hypot(shifts["DX"][0], shifts["DY"][0]) and max(abs(shifts["DX"][0]), abs(shifts["DY"][0])) <= 0.3
    flat = _exp(cfg, "FLAT")
    thru = fitsio.read(paths.findfile("truth_camera", root=root / "truth", night=NIGHT, expid=flat["expid"],
                                      camera="b0"), "FIBERFLAT")
    rms = np.std(thru.mean(axis=1) / thru.mean())
    assert 0.005 < rms < 0.04          # 1-3 % fiber-to-fiber throughput scatter
