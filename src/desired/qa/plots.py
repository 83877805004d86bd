"""QA figures (matplotlib, Agg): each function returns a ``matplotlib.figure.Figure``.

Figures are built without pyplot (no global state, no display); save them with
:func:`desired.io.qa.write_figure`.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .metrics import CLASSES, REF_WAVE, sky_fibers

#: colour of each target class in every figure
CLASS_COLORS = {"STD": "tab:orange", "QSO": "tab:purple", "LRG": "tab:red", "ELG": "tab:blue",
                "BGS": "tab:green", "MWS": "tab:brown", "OTHER": "tab:gray", "SKY": "k", "GALAXY": "tab:red",
                "STAR": "tab:orange"}


def _figure(width=6.0, height=3.6):
    fig = Figure(figsize=(width, height))
    return fig


def _binned(array, size):
    """Block-average a 2-D array down to at most ``size`` pixels a side."""
    ny, nx = array.shape
    fy, fx = max(1, int(np.ceil(ny / size))), max(1, int(np.ceil(nx / size)))
    ny2, nx2 = ny // fy * fy, nx // fx * fx
    return array[:ny2, :nx2].reshape(ny2 // fy, fy, nx2 // fx, fx).mean(axis=(1, 3))


def preproc_thumbnail(image, title="", size=256):
    """Thumbnail of a preproc image (block-averaged, 1-99.5 percentile stretch) and its masked pixels."""
    fig = _figure(6.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    small = _binned(np.asarray(image.pix), size)
    lo, hi = np.percentile(small, [1.0, 99.5])
    ax1.imshow(small, origin="lower", cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect="auto")
    ax1.set_title(f"{title} image (e-)", fontsize=9)
    masked = _binned((np.asarray(image.mask) != 0).astype(float), size)
    ax2.imshow(masked, origin="lower", cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax2.set_title(f"masked fraction {np.mean(np.asarray(image.mask) != 0):.4f}", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def sample_spectra(frame, sky=None, nsample=3, title=""):
    """A few fibers of a frame (electron/Angstrom) with the sky model of the same fibers."""
    fig = _figure()
    ax = fig.subplots()
    idx = np.unique(np.linspace(0, frame.nspec - 1, min(nsample, frame.nspec)).astype(int))
    for k, i in enumerate(idx):
        ax.plot(frame.wave, frame.flux[i] + k * 0, lw=0.5, label=f"fiber {frame.fibers[i]}")
        if sky is not None:
            ax.plot(sky.wave, sky.flux[i], lw=0.5, color="k", alpha=0.6, label="sky model" if k == 0 else None)
    ax.set_xlabel("wavelength (A)")
    ax.set_ylabel("electron/A")
    ax.set_title(f"{title} sample spectra", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def fiberflat_per_fiber(fiberflat, title=""):
    """Fiber flat as an image (fiber x wavelength) and its median per fiber."""
    fig = _figure(6.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    flat = fiberflat.fiberflat
    ax1.imshow(flat, origin="lower", aspect="auto", cmap="viridis", vmin=0.9, vmax=1.1,
               extent=(fiberflat.wave[0], fiberflat.wave[-1], fiberflat.fibers[0] - 0.5, fiberflat.fibers[-1] + 0.5))
    ax1.set_xlabel("wavelength (A)")
    ax1.set_ylabel("fiber")
    ax2.plot(fiberflat.fibers, np.median(flat, axis=1), ".")
    ax2.axhline(1.0, color="k", lw=0.5)
    ax2.set_xlabel("fiber")
    ax2.set_ylabel("median fiberflat")
    fig.suptitle(f"{title} fiberflat", fontsize=9)
    fig.tight_layout()
    return fig


def sky_residuals(frame, sky, title=""):
    """Residual (frame - sky)/sigma of the sky fibers: median versus wavelength and histogram."""
    fig = _figure(6.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    idx = sky_fibers(frame)
    if idx.size == 0:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no sky fibers", ha="center", transform=ax.transAxes, color="red")
    else:
        var = np.where(frame.ivar[idx] > 0, 1.0 / np.where(frame.ivar[idx] > 0, frame.ivar[idx], 1), np.inf)
        var = var + np.where(sky.ivar[idx] > 0, 1.0 / np.where(sky.ivar[idx] > 0, sky.ivar[idx], 1), 0.0)
        chi = (frame.flux[idx] - sky.flux[idx]) / np.sqrt(var)
        ax1.plot(frame.wave, np.median(chi, axis=0), lw=0.5)
        ax1.set_xlabel("wavelength (A)")
        ax1.set_ylabel("median (data - sky)/sigma")
        finite = chi[np.isfinite(chi)]
        ax2.hist(np.clip(finite, -6, 6), bins=60, histtype="step")
        grid = np.linspace(-6, 6, 200)
        ax2.plot(grid, finite.size * 0.2 * np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k--", lw=0.5)
        ax2.set_xlabel("(data - sky)/sigma")
    fig.suptitle(f"{title} sky residuals ({idx.size} sky fibers)", fontsize=9)
    fig.tight_layout()
    return fig


def snr_vs_mag(per_fiber, band, title=""):
    """S/N per bin at the reference wavelength versus magnitude, one colour per class."""
    fig = _figure()
    ax = fig.subplots()
    for name in CLASSES:
        sel = (per_fiber["CLASS"] == name) & np.isfinite(per_fiber["MAG"])
        if name == "SKY" or not sel.any():
            continue
        ax.semilogy(per_fiber["MAG"][sel], np.clip(per_fiber["SNR"][sel], 1e-2, None), "o", ms=3,
                    color=CLASS_COLORS[name], label=name)
    ax.set_xlabel(f"{ {'b': 'g', 'r': 'r', 'z': 'z'}[band]} magnitude (AB)")
    ax.set_ylabel(f"mean S/N per bin at {REF_WAVE[band]:.0f} A")
    ax.set_title(f"{title} S/N vs magnitude", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def calibration_vector(fluxcalib, title=""):
    """Median calibration vector over fibers (electron/A per 1e-17 erg/s/cm2/A) with its 10-90 % range."""
    fig = _figure()
    ax = fig.subplots()
    lo, med, hi = np.percentile(fluxcalib.calib, [10, 50, 90], axis=0)
    ax.fill_between(fluxcalib.wave, lo, hi, alpha=0.3)
    ax.plot(fluxcalib.wave, med, lw=0.7)
    ax.set_xlabel("wavelength (A)")
    ax.set_ylabel("calibration")
    ax.set_title(f"{title} flux calibration", fontsize=9)
    fig.tight_layout()
    return fig


def trace_shift_maps(dx, dy, wave, fibers, title=""):
    """Maps of the trace shifts dx and dy (pixels) over fiber and wavelength."""
    fig = _figure(6.0, 3.2)
    axes = fig.subplots(1, 2)
    extent = (wave[0], wave[-1], fibers[0] - 0.5, fibers[-1] + 0.5)
    for ax, shift, name in zip(axes, (dx, dy), ("dx", "dy")):
        # at least +-0.02 px around the mean, so that a uniform shift shows as one colour
        half = max(0.02, 0.5 * float(np.ptp(shift))) if shift.size else 0.02
        mid = float(np.mean(shift)) if shift.size else 0.0
        im = ax.imshow(shift, origin="lower", aspect="auto", extent=extent, cmap="coolwarm",
                       vmin=mid - half, vmax=mid + half)
        fig.colorbar(im, ax=ax, label=f"{name} (px)")
        ax.set_xlabel("wavelength (A)")
        ax.set_ylabel("fiber")
    fig.suptitle(f"{title} trace shifts", fontsize=9)
    fig.tight_layout()
    return fig


def redshift_histograms(per_target, title=""):
    """n(z) of the successful redshifts, one histogram per class."""
    fig = _figure()
    ax = fig.subplots()
    z = per_target["Z"]
    for name in np.unique(per_target["CLASS"]):
        sel = (per_target["CLASS"] == name) & per_target["SUCCESS"]
        if sel.any():
            ax.hist(z[sel], bins=np.linspace(0, max(4.0, z.max()), 41), histtype="step",
                    color=CLASS_COLORS.get(str(name), "tab:gray"), label=f"{name} ({sel.sum()})")
    ax.set_xlabel("redshift")
    ax.set_ylabel("N")
    ax.set_title(f"{title} n(z) of successful fits", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sample_rows(nspec, nsample=3):
    """Indices of the targets :func:`spectra_with_model` shows: ``nsample`` spread over ``nspec``."""
    return np.unique(np.linspace(0, nspec - 1, min(nsample, nspec)).astype(int))


def spectra_with_model(spectra, per_target, nsample=3, title=""):
    """A few coadded spectra (all bands, rows :func:`sample_rows`) with their best-fit model when the spectra carry one."""
    fig = _figure(6.0, 1.6 * nsample + 0.6)
    rows = sample_rows(spectra.num_spectra(), nsample)
    axes = np.atleast_1d(fig.subplots(max(len(rows), 1), 1, sharex=True))
    for k, i in enumerate(rows):
        ax = axes[k]
        shown = []
        for band in spectra.bands:
            good = spectra.ivar[band][i] > 0       # masked and zero-weight pixels are not data
            flux = np.where(good, spectra.flux[band][i], np.nan)
            shown.append(flux[good])
            ax.plot(spectra.wave[band], flux, lw=0.4, color="0.4")
            if spectra.model is not None and band in spectra.model:
                ax.plot(spectra.wave[band], np.where(good, spectra.model[band][i], np.nan), lw=0.6, color="r")
        values = np.concatenate(shown)
        if values.size:                            # y range of the bulk, not of a few spikes
            lo, hi = np.percentile(values, [1, 99])
            pad = 0.2 * (hi - lo) + 1e-30
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"TARGETID {per_target['TARGETID'][i]}  z={per_target['Z'][i]:.4f} "
                     f"{per_target['SPECTYPE'][i]}", fontsize=7)
    axes[-1].set_xlabel("wavelength (A)")
    fig.suptitle(f"{title} spectra" + (" with best-fit model" if spectra.model is not None else ""), fontsize=9)
    fig.tight_layout()
    return fig


def dz_vs_z(per_target, title=""):
    """(z - ztrue)/(1 + ztrue) versus the true redshift, successful fits in colour, failures in grey."""
    fig = _figure()
    ax = fig.subplots()
    truez, z = per_target["TRUEZ"], per_target["Z"]
    known = np.isfinite(truez)
    dz = (z - truez) / (1 + truez)
    ok = per_target["SUCCESS"] & known
    ax.plot(truez[known & ~ok], dz[known & ~ok], "x", color="0.6", ms=4, label="failed")
    for name in np.unique(per_target["CLASS"][ok]):
        sel = ok & (per_target["CLASS"] == name)
        ax.plot(truez[sel], dz[sel], "o", ms=3, color=CLASS_COLORS.get(str(name), "tab:gray"), label=str(name))
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("true z")
    ax.set_ylabel("dz/(1+z)")
    ax.set_title(f"{title} redshift errors", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

