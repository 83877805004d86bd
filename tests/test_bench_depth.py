"""The survey depth of ``benchmarks/bench_sim_redrock.py --program``: DESI's effective-time definition."""
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("desispec")
    pytest.importorskip("speclite")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_sim_redrock
    return bench_sim_redrock


def test_nominal_conditions_give_efftime_equal_to_exptime(bench):
    """Schlafly et al. 2023: in nominal conditions (dark sky 3.73 nMgy/arcsec² = r 21.07, zenith,
    no dust, nominal seeing) the effective time is the exposure time, for both programs."""
    dark, bright = bench.efftimes(1000.0, 22.5 - 2.5 * np.log10(3.73), 1.0, 0.114, 0.0)
    assert dark == pytest.approx(1000.0, rel=1e-6)
    assert bright == pytest.approx(1000.0, rel=1e-6)


def test_bright_program_depth(bench):
    """The moonlit sky is brighter, airmass and dust cost time, and the night reaches DESI's goal."""
    dark = bench.program_depth("dark")
    bright = bench.program_depth("bright")
    assert dark["sky"] == "dark" and dark["exptime"] == 900.0      # the default night is unchanged
    assert bright["sky_r"] < dark["sky_r"] - 0.5                    # moonlight: at least 0.5 mag brighter in r
    # KPNO zenith extinction in r: desispec's survey-speed constant is 0.114 mag/airmass
    assert 0.09 < bright["k_r"] < 0.14
    assert bright["efftime_bright"] == pytest.approx(bench.BRIGHT_EFFTIME, abs=2.0)
    # longer than the goal: brighter sky, airmass 1.2, dust, read noise of short exposures
    assert bench.NEXP * bright["exptime"] > bench.BRIGHT_EFFTIME
