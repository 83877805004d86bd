"""Detector model: electrons on the CCD -> raw uint16 ADU with the real amplifier layout.

Order of operations (simulator-research.md §5.3):

1. mean electrons = projected light + dark current (e-/px/hour x EXPTIME);
2. Poisson draw;
3. cosmic rays: straight tracks through the 250 µm (r/z) or 100 µm-like (b)
   silicon depositing ~70-90 e-/µm spread along the track's projected length,
   rate ``cosmic_rate`` events per cm² per minute (14.6 cm² for a 4k x 4k 15 µm CCD
   area scaled to the simulated area);
4. optional bad column: a dead column (5 % response) in amp A;
5. per amplifier: ADU = electrons / gain + bias + bias gradient + read noise / gain,
   on data, prescan, overscan columns and row overscan alike; rounded and clipped
   to 0..65535 (saturation).

The truth CCD constants of a camera are drawn once per night per camera
(``SeedSequence([seed, 0, camera_index, 2])``): gains and read noises scatter
around the medians of the June 2022 table (±8 %), bias levels 1000-2000 ADU.
"""
from __future__ import annotations

import numpy as np

from . import instrument as ins

AMPS = ("A", "B", "C", "D")
PIXEL_CM = 15e-4


def draw_ccd_truth(camera, seed, shape, bad_column=False):
    """Per-amplifier truth constants of one camera.

    Parameters
    ----------
    camera : str
    seed : int
    shape : (int, int)
        Trimmed image shape (rows, cols).
    bad_column : bool
        Put one dead column into amplifier A.

    Returns
    -------
    dict
        ``gain``, ``readnoise``, ``bias`` (amp -> float), ``bias_slope`` (amp ->
        ADU across the amp's rows), ``dark_current`` (e-/px/hour), ``saturation``
        (ADU), ``bad_columns`` (list of trimmed-image columns).
    """
    band = camera[0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, ins.camera_index(camera), 2]))
    gain = {a: float(ins.GAIN[band] * rng.uniform(0.92, 1.08)) for a in AMPS}
    readnoise = {a: float(ins.READNOISE[band] * rng.uniform(0.9, 1.1)) for a in AMPS}
    bias = {a: float(rng.uniform(1000.0, 2000.0)) for a in AMPS}
    slope = {a: float(rng.uniform(-2.0, 2.0)) for a in AMPS}
    bad = []
    if bad_column:
        ny, nx = shape
        bad = [int(rng.integers(nx // 8, max(nx // 8 + 1, nx // 2 - 2)))]
    return {"gain": gain, "readnoise": readnoise, "bias": bias, "bias_slope": slope,
            "dark_current": ins.DARK_CURRENT[band], "saturation": ins.SATURATION_ADU,
            "bad_columns": bad}


def add_cosmics(image, rate, exptime, rng, band):
    """Add cosmic-ray tracks (electrons) to ``image`` in place.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
    rate : float
        Events per cm² per minute.
    exptime : float
        Seconds (the read-out time is ignored).
    rng : numpy.random.Generator
    band : str

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        Pixels receiving more than 5 electrons from cosmic rays.
    """
    ny, nx = image.shape
    deposit = np.zeros(ny * nx)
    area = ny * nx * PIXEL_CM ** 2
    nevent = rng.poisson(rate * area * exptime / 60.0) if rate > 0 and exptime > 0 else 0
    thickness_px = (250.0 if band in "rz" else 100.0) / 15.0
    for _ in range(nevent):
        y0, x0 = rng.uniform(0, ny), rng.uniform(0, nx)
        phi = rng.uniform(0, 2 * np.pi)
        # cos(zenith) ~ sqrt(U): projected length = thickness * tan(theta)
        cth = np.sqrt(rng.uniform(0.05, 1.0))
        length = min(thickness_px * np.sqrt(1 - cth ** 2) / cth, 60.0)
        total = rng.uniform(70.0, 90.0) * thickness_px * 15.0 / cth * rng.lognormal(0.0, 0.3)
        nstep = max(2, int(4 * length) + 1)
        t = np.linspace(0.0, 1.0, nstep)
        yy = np.rint(y0 + t * length * np.sin(phi)).astype(np.int64)
        xx = np.rint(x0 + t * length * np.cos(phi)).astype(np.int64)
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
        np.add.at(deposit, yy[ok] * nx + xx[ok], total / nstep)
    deposit = deposit.reshape(ny, nx)
    image += deposit
    return deposit > 5.0


def read_out(electrons, camera, ccd, rng, exptime, cosmic_rate=0.0):
    """Turn a noiseless electron image into a raw uint16 image.

    Parameters
    ----------
    electrons : ndarray, shape (ny, nx)
        Mean photo-electrons of the light (no dark current), trimmed image.
    camera : str
    ccd : dict
        From :func:`draw_ccd_truth`.
    rng : numpy.random.Generator
    exptime : float
        Seconds (dark current, cosmic rays).
    cosmic_rate : float
        Cosmic rays per cm² per minute.

    Returns
    -------
    raw : ndarray of uint16, shape (raw rows, raw cols)
    header : dict
        Amplifier section keywords plus GAINx, RDNOISEx, CCDSIZE (saturation is in the calibration yaml).
    crmask : ndarray of bool, shape (ny, nx)
        Truth cosmic-ray mask.
    """
    band = camera[0]
    ny, nx = electrons.shape
    raw_shape, sections = ins.amp_layout(band, ny, nx)
    mean = electrons + ccd["dark_current"] * exptime / 3600.0
    signal = rng.poisson(np.clip(mean, 0.0, None)).astype(np.float64)
    crmask = add_cosmics(signal, cosmic_rate, exptime, rng, band)
    for col in ccd["bad_columns"]:
        signal[:, col] *= 0.05
    height, width = raw_shape
    raw = np.zeros(raw_shape)
    header = ins.section_keywords(sections)
    for amp in AMPS:
        sec = sections[amp]
        gain, rn = ccd["gain"][amp], ccd["readnoise"][amp]
        top, right = amp in "CD", amp in "BD"
        rows = slice(height // 2, height) if top else slice(0, height // 2)
        cols = slice(width // 2, width) if right else slice(0, width // 2)
        nr = rows.stop - rows.start
        # bias level plus a weak linear gradient along the readout direction (rows)
        ramp = np.arange(nr) / (nr - 1) - 0.5
        grad = ccd["bias_slope"][amp] * (ramp[::-1] if top else ramp)
        noise = rng.standard_normal((nr, cols.stop - cols.start), dtype=np.float32)
        noise *= np.float32(rn / gain)
        raw[rows, cols] = noise
        raw[rows, cols] += ccd["bias"][amp] + grad[:, None]
        drows, dcols = sec["DATASEC"]
        crows, ccols = sec["CCDSEC"]
        raw[drows, dcols] += signal[crows, ccols] / gain
        header[f"GAIN{amp}"] = round(gain, 4)
        header[f"RDNOISE{amp}"] = round(rn, 3)
    raw = np.clip(np.rint(raw), 0, ccd["saturation"]).astype(np.uint16)
    header["CCDSIZE"] = f"{height},{width}"
    return raw, header, crmask
