"""The project's own template set (`desired templates`): readers, physics, determinism, redshifts vs truth."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from desired.io.templates import read_templates
from desired.redshift import basis, basis_galaxy, basis_qso
from desired.scripts import templates as templates_script

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_set(tmp_path_factory):
    """The reduced template set, built once (about 20 CPU s)."""
    outdir = tmp_path_factory.mktemp("rrtemplates")
    paths = templates_script.run(str(outdir), seed=1, quick=True)
    return outdir, paths


def test_files_open_with_redrock_and_ours(quick_set):
    outdir, paths = quick_set
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        f"rrtemplate-{n}-{basis.VERSION}.fits" for n in
        ["GALAXY", "QSO"] + [f"STAR-{s}" for s in basis.STAR_SUBTYPES])
    ours = {t.fulltype: t for t in read_templates(str(outdir))}
    assert set(ours) == {"GALAXY", "QSO"} | {f"STAR:::{s}" for s in basis.STAR_SUBTYPES}
    rrtemplates = pytest.importorskip("redrock.templates")
    for path in paths:
        rr = rrtemplates.Template(filename=path)
        mine = ours[rr.full_type]
        assert rr.flux.shape == mine.flux.shape
        assert np.allclose(rr.wave, mine.wave, rtol=1e-12)
        assert np.array_equal(rr.flux, mine.flux)
        assert np.allclose(rr.redshifts, mine.redshifts)
        assert rr.template_type == mine.spectype and rr.sub_type == mine.subtype
    gal, qso = ours["GALAXY"], ours["QSO"]
    assert (gal.nbasis, qso.nbasis) == (basis.GALAXY_NBASIS[True], 6)
    assert gal.wave[0] <= 1000.5 and gal.wave[-1] >= 11990 and qso.wave[0] <= 500.5 and qso.wave[-1] >= 9990
    # resolution at least DESI's (R ~ 2000-5000): template pixels of 35 km/s (GALAXY), 69 km/s (QSO lines >= 300)
    for t, kms in ((gal, 35.0), (qso, 70.0), (ours["STAR:::G"], 18.0)):
        assert np.max(np.diff(np.log(t.wave))) * 299792.458 < kms
    assert gal.igm_model == "Calura12" and ours["STAR:::G"].igm_model == "None"


def _peak_contrast(wave, flux, center, half=3.0, side=(15.0, 40.0)):
    """Largest |vector| within ±half Å of ``center`` over the median |vector| of side bands."""
    near = np.abs(wave - center) < half
    far = (np.abs(wave - center) > side[0]) & (np.abs(wave - center) < side[1])
    return max(np.abs(f[near]).max() / np.median(np.abs(f[far])) for f in flux)


def test_bases_carry_the_physical_features(quick_set):
    ours = {t.fulltype: t for t in read_templates(str(quick_set[0]))}
    gal, qso = ours["GALAXY"], ours["QSO"]
    for line in (3727.09, 4862.68, 5008.24, 6564.61, 6585.27, 6718.29):    # ELG lines
        assert _peak_contrast(gal.wave, gal.flux, line) > 3, line
    for line in (1215.67, 1549.06, 2798.75, 4862.68, 6564.61):            # broad QSO lines
        assert _peak_contrast(qso.wave, qso.flux, line, half=20, side=(150, 300)) > 1.5, line
    # G-star mean template: Ca II K absorption and the H-alpha line are dips of the first vector
    g = ours["STAR:::G"]
    for line, depth in ((3934.78, 0.7), (6564.61, 0.9)):
        core = np.interp(line, g.wave, g.flux[0])
        cont = np.median(g.flux[0][(np.abs(g.wave - line) > 30) & (np.abs(g.wave - line) < 60)])
        assert core < depth * cont, line


def test_spectra_are_deterministic():
    _, wave = basis_galaxy.log_wave(600.0, 9000.0, 1e-4)
    a, b = basis_qso.qso_spectra(wave, 5, seed=4), basis_qso.qso_spectra(wave, 5, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, basis_qso.qso_spectra(wave, 5, seed=5))
    _, wave = basis_galaxy.log_wave(3500.0, 7000.0, 5e-5)
    assert np.array_equal(basis.star_spectra(wave, "K", 2, 3), basis.star_spectra(wave, "K", 2, 3))
    rng = np.random.default_rng(0)
    r1 = basis_galaxy.line_ratios(rng)
    assert abs(r1["OIII5007"] / r1["OIII4959"] - 2.98) < 1e-9 and abs(r1["NII6584"] / r1["NII6548"] - 3.05) < 1e-9


def test_reduce_to_basis_spans_its_inputs():
    rng = np.random.default_rng(1)
    wave = np.linspace(3000, 8000, 500)
    truth = rng.normal(size=(3, 500)) + 5
    spectra = rng.uniform(0.5, 2, (40, 3)) @ truth
    vectors, var = basis.reduce_to_basis(wave, spectra, 3, (4000, 6000))
    coef, *_ = np.linalg.lstsq(vectors.T, spectra.T, rcond=None)
    assert np.allclose(vectors.T @ coef, spectra.T, rtol=1e-8, atol=1e-8)
    assert np.isclose(var.sum(), 1.0) and vectors[0].sum() > 0


def test_redshifts_of_simulated_coadds_with_own_templates(quick_set, tmp_path):
    """Fit a frame-level mini simulation's coadd with the reduced set; galaxies and QSOs against truth."""
    pytest.importorskip("desispec")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from redshift_inputs import make_coadd
    from desired.scripts.redshifts import run
    coadd, truth = make_coadd(str(tmp_path), preset="mini", nscience=2, seed=5)
    table = run(coadd, str(tmp_path / "redrock.fits"), templates=str(quick_set[0]))
    idx = {int(t): i for i, t in enumerate(truth["TARGETID"])}
    rows = np.array([idx[int(t)] for t in table["TARGETID"]])
    kind = np.char.strip(np.asarray(truth["TEMPLATETYPE"]).astype(str))[rows]
    ztrue = np.asarray(truth["TRUEZ"], float)[rows]
    dv = 299792.458 * np.abs(np.asarray(table["Z"]) - ztrue) / (1 + ztrue)
    good = (np.asarray(table["ZWARN"]) == 0) & (dv < np.where(kind == "QSO", 3000.0, 1000.0))
    gal = np.isin(kind, ["BGS", "LRG", "ELG"])
    assert gal.sum() >= 10
    print(f"galaxy efficiency of the reduced own set on the mini simulation: {good[gal].mean():.3f} ({gal.sum()})")
    assert good[gal].mean() >= GALAXY_MIN_EFFICIENCY, (good[gal].mean(), dict(zip(kind, good)))
    spectype = np.char.strip(np.asarray(table["SPECTYPE"]).astype(str))
    sky = kind == "SKY"
    assert not np.any(sky & (np.asarray(table["ZWARN"]) == 0) & np.isin(spectype, ["GALAXY", "QSO"]))


#: the reduced set reached 0.75 on the mini simulation (seed 5) under this test with the
#: simulator of 8e1b4c1, 0.69 after its galaxy changes (vacuum wavelengths, quiescent
#: dust/metallicity), and 0.917 (33/36) once basis_galaxy gained metal-line blanketing and
#: mid-UV/ISM features (absorption-line galaxies had been fitted at z ~ 1.6-1.7).  The full
#: set on a petal simulation: benchmarks/bench_templates.py.  A regression guard with room
#: for the small sample (31/36), not the issue's goal (>= 90-95 % per class).
GALAXY_MIN_EFFICIENCY = 0.85


def _dn4000(wave, flux):
    """Narrow 4000-Å break (Balogh et al. 1999): <f_ν> 4000-4100 Å over 3850-3950 Å."""
    fnu = flux * wave ** 2
    return fnu[(wave > 4000) & (wave < 4100)].mean() / fnu[(wave > 3850) & (wave < 3950)].mean()


def test_old_populations_have_real_breaks():
    """Blanketing gives old populations the 4000-Å and mid-UV breaks that real ones have.

    Literature values, not the simulator: Dn4000 ~ 1.8-2.2 for old, ~1.1-1.4 for young
    populations (Kauffmann et al. 2003; Balogh et al. 1999); mid-UV breaks B(2900) ~ 1.7
    and B(2640) ~ 1.6 of a 3-4 Gyr old galaxy (Spinrad et al. 1997, LBDS 53W091).
    """
    _, wave = basis_galaxy.log_wave(2000.0, 6000.0, 5e-5)
    ages = np.array([1e8, 4e9, 1e10])
    plain = basis_galaxy.ssp_spectra(basis_galaxy.stellar_library(wave, (0.0,), quick=True, blanket=False),
                                     ages)[0.0]
    ssp = basis_galaxy.ssp_spectra(basis_galaxy.stellar_library(wave, (0.0,), quick=True), ages)[0.0]

    def ratio(f, blue, red):
        return f[(wave > red[0]) & (wave < red[1])].mean() / f[(wave > blue[0]) & (wave < blue[1])].mean()
    young, mid, old = (_dn4000(wave, f) for f in ssp)
    assert young < 1.45 and 1.6 < mid < 2.4 and 1.8 < old < 2.6, (young, mid, old)
    assert _dn4000(wave, plain[2]) < old - 0.5           # the LTE recipe alone had a weak break
    b2900, b2640 = ratio(ssp[1], (2855, 2885), (2915, 2945)), ratio(ssp[1], (2600, 2630), (2645, 2675))
    assert 1.3 < b2900 < 2.6 and 1.2 < b2640 < 2.4, (b2900, b2640)
    assert ratio(plain[1], (2855, 2885), (2915, 2945)) < 1.25       # ... and no mid-UV break
    mg2 = (wave > 2790) & (wave < 2810)
    side = ((wave > 2750) & (wave < 2770)) | ((wave > 2830) & (wave < 2845))
    assert ssp[2][mg2].min() < 0.6 * np.median(ssp[2][side])         # Mg II 2800 absorption


def test_blanketing_fades_in_hot_stars_and_ism_lines_keep_their_widths():
    _, wave = basis_galaxy.log_wave(1200.0, 9000.0, 5e-5)
    hot = basis_galaxy.blanketing(wave, 20000.0, 4.0, 0.0)
    cool = basis_galaxy.blanketing(wave, 4500.0, 2.5, 0.0)
    poor = basis_galaxy.blanketing(wave, 4500.0, 2.5, -1.0)
    assert hot[wave > 3000].min() > 0.9 and np.all((cool > 0) & (cool <= 1))
    blue = (wave > 3850) & (wave < 3950)
    assert cool[blue].mean() < poor[blue].mean() < hot[blue].mean()
    trans = basis_galaxy.ism_absorption(wave, 1.0)
    shift = 1 + basis_galaxy.ISM_OUTFLOW_KMS / basis_galaxy.C_KMS
    for center, ew in ((1334.53, 1.72), (1608.45, 0.91)):                  # isolated lines
        near = np.abs(wave - center * shift) < 8
        assert abs(np.trapezoid(1 - trans[near], wave[near]) - ew) < 0.05 * ew, center
        assert abs(wave[near][np.argmin(trans[near])] - center * shift) < 0.3


def test_old_population_lick_indices_like_real_ones():
    """An old (10 Gyr) solar population of the own basis has the Lick metal indices of real old
    populations (G4300 ~5.4, Fe4383 ~4.9, Mgb ~3.5, Fe5270 ~2.9, Fe5335 ~2.6 Å, Mg2 ~0.23 mag:
    Worthey 1994 / Thomas et al. 2003 12-Gyr solar models, which match ellipticals), not the
    near-zero G band and half-strength Fe indices of the ~30-line LTE recipe alone."""
    _, wave = basis_galaxy.log_wave(4000.0, 5500.0, 5e-5)
    ssp = basis_galaxy.ssp_spectra(basis_galaxy.stellar_library(wave, (0.0,), quick=True), np.array([1e10]))[0.0][0]
    flux = basis_galaxy.broaden(wave, ssp, 200.0)
    idx = {n: basis_galaxy.lick_index(wave, flux, n) for n in ("G4300", "Fe4383", "Mgb", "Fe5270", "Fe5335", "Mg2")}
    expected = {"G4300": 5.4, "Fe4383": 4.9, "Mgb": 3.5, "Fe5270": 2.9, "Fe5335": 2.6, "Mg2": 0.23}
    for name, value in expected.items():
        assert 0.7 * value < idx[name] < 1.3 * value, (name, idx[name])


def test_broad_profile_runs_from_gaussian_to_lorentzian():
    _, wave = basis_galaxy.log_wave(1000.0, 2200.0, 1e-5)
    fwhm_kms, center = 4000.0, 1549.06
    half = center * fwhm_kms / basis_qso.C_KMS / 2
    dl = np.gradient(wave)
    for eta, area in ((0.0, 1.0), (0.5, 1 - 0.5 * 2 / (30 * np.pi)), (1.0, 1 - 2 / (30 * np.pi))):
        prof = basis_qso.broad_profile(wave, center, fwhm_kms, eta)
        assert abs(np.sum(prof * dl) - area) < 2e-3, eta    # unit area (the Lorentzian loses its far wings)
        peak = np.interp(center, wave, prof)
        for side in (-half, half):                          # the same FWHM whatever the shape
            assert abs(np.interp(center + side, wave, prof) / peak - 0.5) < 0.01, eta
    gauss, lorentz = (basis_qso.broad_profile(wave, center, fwhm_kms, e) for e in (0.0, 1.0))
    wing = np.abs(wave - center) > 3 * half
    assert np.sum((lorentz * dl)[wing]) > 10 * np.sum((gauss * dl)[wing])  # peaky core, extended wings
    rng = np.random.default_rng(0)
    narrow = np.mean([basis_qso.lorentzian_fraction(2500.0, rng) for _ in range(200)])
    broad = np.mean([basis_qso.lorentzian_fraction(8000.0, rng) for _ in range(200)])
    assert narrow > 0.75 and broad < 0.2


def test_qso_training_hosts_added_to_half_within_their_range():
    """add_hosts: a new array; about half the quasars get a host whose 5100 Å share lies in
    HOST_RATIO_RANGE; the others and the input are untouched."""
    _, wave = basis_galaxy.log_wave(3000.0, 7000.0, 1e-4)
    quasars = basis_qso.qso_spectra(wave, 60, seed=4)
    before = quasars.copy()
    hosts = np.stack([np.where(wave > 4000.0, 1.0, 0.3) * (1 + 0.1 * k) for k in range(3)])  # 4000 Å break
    out = basis_qso.add_hosts(wave, quasars, hosts, seed=1)
    assert np.array_equal(quasars, before)
    changed = np.any(out != quasars, axis=1)
    assert 15 <= changed.sum() <= 45
    near = np.abs(wave - 5100.0) < 20
    ratio = np.median((out - quasars)[changed][:, near] / quasars[changed][:, near], axis=1)
    lo, hi = basis_qso.HOST_RATIO_RANGE
    assert np.all(ratio > 0.5 * lo) and np.all(ratio < 2 * hi) and ratio.max() > 10 * ratio.min()


def test_galaxies_without_nebular_lines_for_quasar_hosts():
    """galaxy_spectra(nebular=False), the quasar hosts of build_template_set: the same stars and dust
    (same draws), no emission line: the spectra with lines exceed them only at the nebular lines
    ([O II] 3727, Hβ, [O III] 5007, Hα among them)."""
    _, wave = basis_galaxy.log_wave(3500.0, 7000.0, 5e-5)
    lines = basis_galaxy.galaxy_spectra(wave, 12, seed=5, quick=True)
    stars = basis_galaxy.galaxy_spectra(wave, 12, seed=5, quick=True, nebular=False)
    excess = lines - stars
    assert np.all(excess >= -1e-12 * np.abs(lines).max())
    near_line = np.zeros(wave.size, dtype=bool)
    for center in basis_galaxy.LINES.values():
        near_line |= np.abs(wave - center) < 15.0
    assert np.all(np.abs(excess[:, ~near_line]) <= 1e-3 * np.abs(lines[:, ~near_line]))
    forming = excess.max(axis=1) > 0.2 * stars.max(axis=1)
    assert forming.sum() >= 3, "the test needs star-forming galaxies"
    for center in (3728.5, 4862.68, 5008.24, 6564.61):
        at = np.abs(wave - center) < 3.0
        assert np.all(excess[forming][:, at].max(axis=1) > 0.05 * stars[forming][:, at].max(axis=1)), center
