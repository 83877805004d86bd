"""Truth calibration of frame-level simulations: the reference every calibrated product is measured against."""
import numpy as np
import pytest

from desired import paths
from desired.io.frame import read_frame
from desired.io.truth import read_camera_truth
from desired.io.util import DataModelError
from desired.scripts import simulate
from desired.sim.truthcal import true_cframe_flux, truth_calibrate

NIGHT = 20261124


@pytest.fixture(scope="module")
def frame_night(tmp_path_factory):
    root = tmp_path_factory.mktemp("truthcal")
    simulate.run(NIGHT, calib_dir=str(root / "calib"), truth_dir=str(root / "truth"), preset="mini", seed=5,
                 narc=0, nflat=0, nscience=1, level="frame", frame_dir=str(root / "prod"))
    return root


@pytest.mark.parametrize("camera", ["b0", "r0", "z0"])
def test_truth_calibrated_frame_pulls_are_unit_normal(frame_night, camera):
    frame = read_frame(paths.findfile("frame", root=frame_night / "prod", night=NIGHT, expid=1, camera=camera))
    truth = read_camera_truth(paths.findfile("truth_camera", root=frame_night / "truth", night=NIGHT, expid=1,
                                             camera=camera))
    cframe = truth_calibrate(frame, truth)
    expected = true_cframe_flux(frame, truth)
    pulls = ((cframe.flux - expected) * np.sqrt(cframe.ivar))[cframe.ivar > 0]
    assert pulls.size > 0.9 * cframe.flux.size
    assert abs(pulls.mean()) < 0.02 and abs(pulls.std() - 1) < 0.03
    # the frame itself is untouched and the cframe is in flux units, not electrons
    assert cframe.flux is not frame.flux and cframe.header["BUNIT"].startswith("10**-17")
    assert np.median(np.abs(cframe.flux)) < 0.2 * np.median(np.abs(frame.flux))


def test_unreadable_truth_file_is_a_data_model_error(tmp_path):
    bad = tmp_path / "truth-b0-00000001.fits"
    bad.write_bytes(b"SIMPLE  = T" + b" " * 100)
    with pytest.raises(DataModelError, match="truth-b0-00000001.fits"):
        read_camera_truth(str(bad))
