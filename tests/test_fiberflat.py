"""fiberflat / fiberflatnight on frame-level simulated flats: accuracy against the true throughput,
desispec side by side, desispec reads our files, bad input (dead fiber, bad FIBERSTATUS, outlier flat)."""
from __future__ import annotations

import numpy as np
import pytest

from desired import bandsolve
from desired.fiberflat import apply_fiberflat, average_fiberflats, compute_fiberflat
from desired.frame import Frame
from desired.io.fiberflat import read_fiberflat, write_fiberflat
from desired.maskbits import fibermask, specmask
from desired.resolution import Resolution

from calib_frames import FLATS, normalised, quiet_desispec, simulate_frame_night, to_desispec_frame


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return simulate_frame_night(tmp_path_factory.mktemp("ffnight"))


@pytest.fixture(scope="module")
def flats(night):
    return {cam: [compute_fiberflat(night.frame(e, cam)) for e in FLATS] for cam in ("b0", "r0", "z0")}


def test_banded_solves_match_dense():
    rng = np.random.default_rng(3)
    nspec, nwave = 4, 120
    rdata = np.array([Resolution.from_sigma(1.0 + 0.5 * rng.uniform(size=nwave)).data for _ in range(nspec)])
    w = rng.uniform(0.5, 2.0, (nspec, nwave))
    w[1, 30:40] = 0.0
    d = rng.normal(size=(nspec, nwave))
    ab, rhs = bandsolve.normal_equations(rdata, w, d)
    dense = [Resolution(r).to_dense() for r in rdata]
    a = sum(r.T @ np.diag(w[f]) @ r for f, r in enumerate(dense))
    b = sum(r.T @ (w[f] * d[f]) for f, r in enumerate(dense))
    chol, _ = bandsolve.cholesky_band(ab, ridge=0.0)
    x = bandsolve.solve_band(chol, rhs)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-6, atol=1e-8)
    inv = np.linalg.inv(a)
    var = bandsolve.convolved_variance(rdata, bandsolve.inverse_band(chol))
    np.testing.assert_allclose(var, [np.diag(r @ inv @ r.T) for r in dense], rtol=1e-6)
    np.testing.assert_allclose(bandsolve.convolve(rdata, x), [r @ x for r in dense], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("camera", ["b0", "r0", "z0"])
def test_fiberflatnight_matches_true_throughput(night, flats, camera):
    ffn = average_fiberflats(flats[camera])
    truth = normalised(night.truth(FLATS[0], camera)["FIBERFLAT"])
    rms = np.std(normalised(ffn.fiberflat) - truth)
    # photon-noise limit of a per-pixel flat from these exposures
    frames = [night.frame(e, camera) for e in FLATS]
    photon = np.sqrt(np.mean(1.0 / sum(f.ivar * f.flux ** 2 for f in frames)))
    assert rms <= 1.5 * photon, (rms, photon)
    assert rms < 0.01
    assert np.all(np.isfinite(ffn.fiberflat)) and np.all(ffn.ivar > 0)
    for flat in flats[camera]:
        assert abs(flat.header["CHI2PDF"] - 1.0) < 0.1
        # the single-flat ivar describes its error (once desispec's 0.0035 systematic floor is taken out)
        stat_var = 1.0 / flat.ivar - 0.0035 ** 2
        pull = (normalised(flat.fiberflat) - truth) / np.sqrt(stat_var)
        assert 0.95 < np.std(pull) < 1.05


def test_same_as_desispec_and_at_least_as_accurate(night, flats):
    import desispec.fiberflat
    quiet_desispec()
    frame = night.frame(FLATS[0], "r0")
    theirs = desispec.fiberflat.compute_fiberflat(to_desispec_frame(frame))
    ours = flats["r0"][0]
    truth = normalised(night.truth(FLATS[0], "r0")["FIBERFLAT"])
    err_ours = np.std(normalised(ours.fiberflat) - truth)
    err_theirs = np.std(normalised(theirs.fiberflat) - truth)
    assert err_ours <= 1.01 * err_theirs, (err_ours, err_theirs)
    assert np.std(ours.fiberflat - theirs.fiberflat) < 0.05 * err_theirs
    np.testing.assert_allclose(np.median(ours.ivar / theirs.ivar), 1.0, rtol=0.01)


def test_apply_fiberflat_is_desispecs(night, flats):
    import desispec.fiberflat
    import desispec.io
    quiet_desispec()
    frame = night.frame(SCIENCE_EXPID, "z0")
    flat = flats["z0"][1]
    ours = apply_fiberflat(frame, flat)
    theirs = to_desispec_frame(frame)
    desispec.fiberflat.apply_fiberflat(theirs, desispec.fiberflat.FiberFlat(flat.wave, flat.fiberflat, flat.ivar,
                                                                           mask=flat.mask, meanspec=flat.meanspec))
    np.testing.assert_allclose(ours.flux, theirs.flux, rtol=1e-12)
    np.testing.assert_allclose(ours.ivar, theirs.ivar, rtol=1e-10)
    assert np.array_equal(ours.mask, theirs.mask)
    assert ours is not frame and np.array_equal(frame.flux, night.frame(SCIENCE_EXPID, "z0").flux)


SCIENCE_EXPID = 4


def test_desispec_reads_our_fiberflat(tmp_path, flats):
    import desispec.io
    quiet_desispec()
    flat = flats["b0"][0]
    path = tmp_path / "fiberflat-b0-00000001.fits"
    write_fiberflat(str(path), flat)
    theirs = desispec.io.read_fiberflat(str(path))
    np.testing.assert_allclose(theirs.fiberflat, flat.fiberflat, rtol=1e-6)
    np.testing.assert_allclose(theirs.ivar, flat.ivar, rtol=1e-6)
    np.testing.assert_array_equal(theirs.mask, flat.mask)
    np.testing.assert_allclose(theirs.meanspec, flat.meanspec, rtol=1e-6)
    np.testing.assert_allclose(theirs.wave, flat.wave, rtol=1e-7)
    assert theirs.header["CAMERA"].strip().lower() == "b0"
    back = read_fiberflat(str(path))
    assert back.header["CHI2PDF"] == pytest.approx(flat.header["CHI2PDF"])


def _copy(frame, **arrays):
    kw = dict(flux=frame.flux.copy(), ivar=frame.ivar.copy(), mask=frame.mask.copy())
    kw.update(arrays)
    return Frame(frame.wave, kw["flux"], kw["ivar"], kw["mask"], frame.resolution_data, frame.fibermap.copy(),
                 None, dict(frame.header), frame.fibers)


def test_dead_fiber_masked_without_nan(night):
    frame = night.frame(FLATS[0], "r0")
    flux = frame.flux.copy()
    flux[7] = np.random.default_rng(1).normal(0.0, 1.0, frame.nwave)       # dead: noise only
    flat = compute_fiberflat(_copy(frame, flux=flux))
    assert np.all(np.isfinite(flat.fiberflat)) and np.all(np.isfinite(flat.ivar))
    assert np.all(flat.ivar[7] == 0)
    assert np.all(flat.mask[7] & specmask.BADFIBERFLAT) and np.all(flat.mask[7] & specmask.LOWFLAT)
    others = np.delete(np.arange(frame.nspec), 7)
    assert (flat.ivar[others] > 0).mean() > 0.999
    sci = apply_fiberflat(night.frame(SCIENCE_EXPID, "r0"), flat)
    assert np.all(np.isfinite(sci.flux)) and np.all(np.isfinite(sci.ivar))
    assert np.all(sci.ivar[7] == 0) and np.all(sci.mask[7] & specmask.BADFIBERFLAT)


def test_bad_fiberstatus_and_cosmic(night, flats):
    frame = night.frame(FLATS[0], "z0")
    # the simulator's flat exposures carry a FIBERMAP like DESI's (no targets, FIBERSTATUS 0)
    assert frame.header["OBSTYPE"] == "FLAT" and len(frame.fibermap) == frame.nspec
    assert np.all(frame.fibermap["FIBERSTATUS"] == 0) and np.all(frame.fibermap["FIBER"] == frame.fibers)
    fm = frame.fibermap.copy()
    fm["FIBERSTATUS"][3] |= fibermask.BROKENFIBER
    flux = frame.flux.copy()
    flux[11, 500] += 50.0 / np.sqrt(frame.ivar[11, 500])                   # a 50-sigma cosmic
    bad = Frame(frame.wave, flux, frame.ivar, frame.mask, frame.resolution_data, fm, None, dict(frame.header),
                frame.fibers)
    flat = compute_fiberflat(bad)
    assert np.all(flat.ivar[3] == 0) and np.all(flat.mask[3] & specmask.BADFIBERFLAT)
    assert flat.ivar[11, 500] == 0 and flat.mask[11, 500] & specmask.BADFIBERFLAT
    # the cosmic's pixel is interpolated: close to the clean flat there
    assert abs(flat.fiberflat[11, 500] - flats["z0"][0].fiberflat[11, 500]) < 0.02
    assert (flat.ivar[11] == 0).sum() <= 5


def test_outlier_flat_does_not_pull_the_night(night, flats):
    good = flats["r0"]
    truth = normalised(night.truth(FLATS[0], "r0")["FIBERFLAT"])
    reference = np.std(normalised(average_fiberflats(good[:2]).fiberflat) - truth)     # the two good flats
    outlier = good[2]
    bent = outlier.fiberflat.copy()
    bent[:10] *= 1.05                                                      # 10 fibers 5 % off in one flat
    from desired.fiberflat import FiberFlat
    odd = FiberFlat(outlier.wave, bent, outlier.ivar, outlier.mask, outlier.meanspec, outlier.header)
    combined = average_fiberflats([good[0], good[1], odd])
    rms = np.std(normalised(combined.fiberflat) - truth)
    assert rms < 1.05 * reference, (rms, reference)
    plain = np.mean([good[0].fiberflat, good[1].fiberflat, bent], axis=0)
    # the 10 fibers: unbiased in the robust combination, pulled by >1 % in a plain mean
    assert abs(np.mean((normalised(combined.fiberflat) - truth)[:10])) < 0.001
    assert np.mean((normalised(plain) - truth)[:10]) > 0.01
    assert not (combined.mask[:10] & specmask.BADFIBERFLAT).any()


def test_inputs_unchanged_and_errors(night):
    frame = night.frame(FLATS[0], "b0")
    before = frame.flux.copy()
    compute_fiberflat(frame)
    np.testing.assert_array_equal(frame.flux, before)
    with pytest.raises(ValueError, match="b0"):
        compute_fiberflat(_copy(frame, ivar=np.zeros_like(frame.ivar)))
    with pytest.raises(ValueError, match="no fiber flat"):
        average_fiberflats([])


def test_cli_writes_flat_and_night(night, tmp_path):
    from desired.cli import main
    from desired.paths import findfile
    infiles = []
    for e in FLATS:
        frame = findfile("frame", root=night.root / "prod", night=20261124, expid=e, camera="r0")
        out = tmp_path / f"fiberflat-r0-{e:08d}.fits"
        assert main(["fiberflat", "--infile", frame, "--outfile", str(out)]) == 0
        infiles.append(str(out))
    nightfile = tmp_path / "fiberflatnight-r0-20261124.fits"
    assert main(["fiberflatnight", "--infiles", *infiles, str(tmp_path / "missing.fits"),
                 "--outfile", str(nightfile)]) == 0
    ffn = read_fiberflat(str(nightfile))
    assert ffn.header["NFLATS"] == 3 and ffn.header["INFLT000"] == "fiberflat-r0-00000001.fits"
    assert main(["fiberflat", "--infile", str(tmp_path / "nope.fits"), "--outfile", str(tmp_path / "x.fits")]) == 1
    assert not (tmp_path / "x.fits").exists()
