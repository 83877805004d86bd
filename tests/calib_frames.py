"""Frame-level simulated nights shared by tests/test_fiberflat.py and tests/test_sky.py."""
from __future__ import annotations

import numpy as np

from desired.io.frame import read_frame
from desired.io.truth import read_camera_truth
from desired.paths import findfile

NIGHT = 20261124
FLATS = (1, 2, 3)
SCIENCE = (4, 5)


class FrameNight:
    """A frame-level ``mini`` night (3 flats, 2 science exposures) under ``root``."""

    def __init__(self, root):
        self.root = root

    def frame(self, expid, camera):
        return read_frame(findfile("frame", root=self.root / "prod", night=NIGHT, expid=expid, camera=camera))

    def truth(self, expid, camera):
        return read_camera_truth(findfile("truth_camera", root=self.root / "truth", night=NIGHT, expid=expid,
                                          camera=camera))


def simulate_frame_night(root, preset="mini", seed=0):
    """Simulate the night at frame level (about 10 s for ``mini``) and return a :class:`FrameNight`."""
    from desired.scripts.simulate import run
    run(NIGHT, preset=preset, level="frame", frame_dir=str(root / "prod"), truth_dir=str(root / "truth"),
        calib_dir=str(root / "calib"), narc=0, nflat=len(FLATS), nscience=len(SCIENCE), seed=seed)
    return FrameNight(root)


def to_desispec_frame(frame):
    """A desispec.frame.Frame holding copies of our Frame's arrays."""
    import desispec.frame
    return desispec.frame.Frame(frame.wave.copy(), frame.flux.copy(), frame.ivar.copy(),
                                mask=frame.mask.astype(np.uint32), resolution_data=frame.resolution_data.copy(),
                                fibermap=frame.fibermap.copy(), meta=dict(frame.header))


def quiet_desispec():
    import logging
    from desiutil.log import get_logger
    get_logger().setLevel(logging.WARNING)


def normalised(flat):
    """Flat divided by its mean over fibers at each wavelength."""
    return flat / flat.mean(axis=0, keepdims=True)
