"""studies/sim_to_real/sim_to_real.py: its pieces on tiny data with known answers, so its tables can be trusted.

Image statistics on drawn Gaussians and noise, the domain AUC on separable and identical feature
clouds, the coarse labels on hand-made vote rows (and the wheel's real rows), the accuracy rows
and the accuracy path on an untrained tiny run.
"""

import math

import numpy as np
import pytest

from conftest import benchmark_script, tiny
from galaxalign.evaluation.metrics import wilson_interval

s2r = benchmark_script("sim_to_real")
N = s2r.FRAME
YY, XX = np.mgrid[:N, :N] - N / 2 + 0.5


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(np.round(grey), 0, 255)[..., None], 3, axis=-1).astype(np.uint8)


def _blob(sigma: float, amplitude: float = 230.0, sky: float = 20.0, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    return sky + amplitude * np.exp(-((XX - x0) ** 2 + (YY - y0) ** 2) / (2 * sigma**2))


# ---------------------------------------------------------------- image statistics


@pytest.mark.parametrize("sigma", [6.0, 12.0])
def test_gaussian_blob_size_in_frame(sigma):
    st = s2r.source_stats(_rgb(_blob(sigma)))
    # The source ends at the 10 DN isophote (sky + 10 of a 230 peak: 2.5 sigma), which trims the
    # wings: the half-light radius barely moves (1.1774 sigma -> 1.14), the second moment more.
    assert st["r50"] * N == pytest.approx(1.1774 * sigma, rel=0.06)
    assert st["r_rms"] * N == pytest.approx(math.sqrt(2) * sigma, rel=0.12)
    assert st["r_rms"] * N < math.sqrt(2) * sigma
    assert st["area"] == pytest.approx(math.pi * (2.50 * sigma) ** 2 / N**2, rel=0.1)
    assert st["sky_level"] == pytest.approx(20.0) and st["sky_noise"] == pytest.approx(0.0, abs=0.01)
    core = np.hypot(XX - XX[127, 127], YY - YY[127, 127]) <= 3.0  # around the first of the 4 peak pixels
    assert st["central_sb"] == pytest.approx(float((_blob(sigma) - 20.0)[core].mean()), rel=0.01)
    assert st["saturated"] == 0.0 and st["g_r"] == pytest.approx(0.0, abs=1e-9)


def test_size_scales_with_the_galaxy_and_not_with_the_frame_position():
    small = s2r.source_stats(_rgb(_blob(5.0)))["r50"]
    big = s2r.source_stats(_rgb(_blob(10.0)))["r50"]
    assert big / small == pytest.approx(2.0, rel=0.05)
    shifted = s2r.source_stats(_rgb(_blob(5.0, x0=20.0, y0=-15.0)))["r50"]  # off-centre still found
    assert shifted == pytest.approx(small, rel=0.02)


def test_a_larger_image_is_measured_in_the_256_px_frame():
    big = np.kron(_rgb(_blob(8.0))[..., 0], np.ones((2, 2)))  # the same scene at 512 px
    st = s2r.source_stats(_rgb(big))
    assert st["r50"] * N == pytest.approx(1.1774 * 8.0, rel=0.08)


@pytest.mark.parametrize("sd", [3.0, 8.0])
def test_sky_noise_is_the_robust_std(sd):
    rng = np.random.default_rng(1)
    grey = 60.0 + rng.normal(0.0, sd, (N, N))
    grey[5:9, 5:9] = 250.0  # a bright star in the border: clipped away
    level, sigma = s2r.sky_stats(_rgb(grey))
    assert sigma == pytest.approx(sd, rel=0.05) and level == pytest.approx([60, 60, 60], abs=0.5)
    assert s2r.robust_std(rng.normal(0.0, sd, 20000)) == pytest.approx(sd, rel=0.03)


def test_colour_proxy_reads_blue_over_green():
    grey = _blob(8.0, sky=0.0)
    rgb = np.stack([grey, grey, grey * 10 ** (-0.4 * 0.5)], axis=-1)  # B fainter than G by 0.5 mag
    st = s2r.source_stats(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    assert st["g_r"] == pytest.approx(0.5, abs=0.03) and st["r_z"] == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("fwhm", [3.0, 5.0])
def test_compact_sources_give_their_fwhm(fwhm):
    rng = np.random.default_rng(2)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    grey = _blob(15.0, amplitude=200.0, sky=10.0) + rng.normal(0.0, 2.0, (N, N))
    for x0, y0, peak in ((-80, -80, 60.0), (70, -90, 120.0), (-85, 75, 90.0)):
        grey += peak * np.exp(-((XX - x0) ** 2 + (YY - y0) ** 2) / (2 * sigma**2))
    found = s2r.compact_fwhms(_rgb(grey), exclude=None)
    stars = found[found[:, 0] < 3 * fwhm]  # the central galaxy is not compact; the stars are
    # Centred between four pixels, a 3 px star's sampled peak is low, so it reads ~10% wide.
    assert len(stars) == 3 and np.allclose(stars[:, 0], fwhm, rtol=0.15)
    assert s2r.psf_proxy(_rgb(grey)) == pytest.approx(fwhm, rel=0.15)  # the faintest one; galaxy masked
    assert math.isnan(s2r.psf_proxy(_rgb(_blob(10.0))))  # a lone galaxy: no compact source


# ---------------------------------------------------------------- the domain classifier


def test_domain_auc_separable_clouds_near_one():
    rng = np.random.default_rng(3)
    sim, real = rng.normal(0, 1, (120, 16)), rng.normal(0, 1, (15, 16)) + 3.0
    a = s2r.domain_auc(sim, real, repeats=2, boots=100)
    assert a["auc"] > 0.98 and a["lo"] > 0.9 and a["n_real"] == 15 and a["folds"] == 5


def test_domain_auc_one_distribution_near_half():
    rng = np.random.default_rng(4)
    aucs = [
        s2r.domain_auc(rng.normal(0, 1, (150, 8)), rng.normal(0, 1, (50, 8)), repeats=2, boots=0, seed=i)["auc"]
        for i in range(3)
    ]
    assert abs(np.mean(aucs) - 0.5) < 0.1 and all(abs(a - 0.5) < 0.17 for a in aucs)


def test_domain_auc_few_real_uses_fewer_folds():
    rng = np.random.default_rng(5)
    a = s2r.domain_auc(rng.normal(0, 1, (40, 4)), rng.normal(0, 1, (3, 4)) + 5, repeats=1, boots=10)
    assert a["folds"] == 3 and a["auc"] > 0.95
    with pytest.raises(ValueError):
        s2r.domain_auc(rng.normal(0, 1, (40, 4)), rng.normal(0, 1, (1, 4)))


def test_single_stat_auc():
    assert s2r.single_stat_auc(np.array([1.0, 2.0, np.nan]), np.array([5.0, 6.0])) == 1.0
    assert s2r.single_stat_auc(np.array([5.0, 6.0]), np.array([1.0])) == 0.0
    assert math.isnan(s2r.single_stat_auc(np.array([1.0]), np.array([np.nan])))


def test_backbone_features_tiny():
    from galaxalign.models.backbones import build_backbone

    backbone = build_backbone("tiny")
    images = [_rgb(_blob(5.0)), _rgb(_blob(20.0))[:200]]  # any size: centre-cropped and resized
    feats = s2r.backbone_features(backbone, images, batch_size=1)
    assert feats.shape == (2, backbone.image_dim) and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])


# ---------------------------------------------------------------- labels


def _decals(smooth, featured, artifact, edge=(np.nan, np.nan), merging=(np.nan,) * 4) -> dict:
    row = {"smooth": smooth, "featured": featured, "artifact": artifact}
    row.update(edge_on_yes=edge[0], edge_on_no=edge[1])
    row.update(dict(zip(s2r.MERGING_ANSWERS, merging)))
    return row


@pytest.mark.parametrize(
    "row, group",
    [
        (_decals(0.8, 0.15, 0.05, merging=(0.9, 0.1, 0.0, 0.0)), "smooth"),
        (_decals(0.1, 0.85, 0.05, edge=(0.2, 0.8), merging=(0.9, 0.1, 0.0, 0.0)), "featured"),
        (_decals(0.1, 0.85, 0.05, edge=(0.7, 0.3), merging=(0.9, 0.1, 0.0, 0.0)), "edge_on"),
        (_decals(0.6, 0.3, 0.1, merging=(0.3, 0.1, 0.2, 0.4)), "merger"),  # plurality merger
        (_decals(0.6, 0.3, 0.1, merging=(0.3, 0.1, 0.45, 0.15)), "merger"),  # major disturbance
        (_decals(0.6, 0.3, 0.1, merging=(0.4, 0.35, 0.15, 0.1)), "smooth"),  # minor is not a merger
        (_decals(0.1, 0.85, 0.05, edge=(0.1, 0.9), merging=(0.0, 0.0, 0.0, 0.03)), "featured"),  # broken shares
        (_decals(0.2, 0.1, 0.7, merging=(0.0, 0.0, 0.0, 1.0)), None),  # an artifact is never a merger
        (_decals(0.1, 0.85, 0.05), None),  # featured, edge-on never asked
        (_decals(np.nan, np.nan, np.nan), None),
        # GZ2: the merger comes from "odd" and the odd feature
        (
            {**_decals(0.1, 0.9, 0.0, edge=(0.0, 1.0)), "odd_yes": 0.7, "odd_no": 0.3, "merger": 0.6, "ring": 0.1},
            "merger",
        ),
        ({**_decals(0.1, 0.9, 0.0, edge=(0.0, 1.0)), "odd_yes": 0.3, "odd_no": 0.7, "merger": 0.9}, "featured"),
        (
            {**_decals(0.1, 0.9, 0.0, edge=(0.0, 1.0)), "odd_yes": 0.7, "odd_no": 0.3, "merger": 0.2, "ring": 0.7},
            "featured",
        ),
        ({**_decals(0.8, 0.2, 0.0), "odd_yes": 0.6, "odd_no": 0.4, "disturbed": 0.5, "merger": 0.1}, "merger"),
    ],
)
def test_coarse_group_from_hand_made_votes(row, group):
    got, why = s2r.coarse_group(row)
    assert got == group and why


def test_broken_merging_shares_are_named():
    row = _decals(0.1, 0.85, 0.05, edge=(0.1, 0.9), merging=(0.0, 0.0, 0.0, 0.03))
    assert s2r.merger_call(row) == (None, "merging shares sum to 0.03: ignored")
    assert s2r.merger_call(_decals(0.5, 0.5, 0.0))[0] is None  # nobody asked


def test_every_galaxy10_and_gz2_class_has_a_group():
    from galaxalign.taxonomy import load_scheme

    for name in ("galaxy10", "gz2"):
        assert {s2r.KEY_GROUP[c.key] for c in load_scheme(name)} <= set(s2r.GROUPS)
    assert {s2r.KEY_GROUP[c.key] for c in load_scheme("galaxy10")} == set(s2r.GROUPS)


def test_odd_fractions_are_the_libraries_odd_columns():
    hart = {"t06_odd_a14_yes_debiased": [0.7], "t06_odd_a15_no_debiased": [0.3]}
    hart["t08_odd_feature_a24_merger_debiased"] = [0.8]
    got = s2r.odd_fractions(hart)
    assert set(got) == {"odd_yes", "odd_no", "merger"} and got["merger"][0] == 0.8
    assert s2r.odd_fractions({"smooth-or-featured_smooth_fraction": [1.0]}) == {}


def test_the_wheels_real_set():
    galaxies = s2r.real_galaxies()
    labelled = [g for g in galaxies if g.group]
    assert len(galaxies) == 27 and len(labelled) == 22
    assert sum(g.survey == "DECaLS" for g in galaxies) == 18
    assert sum(g.labeller == "volunteers" for g in labelled) == 18
    by_id = {g.id: g for g in galaxies}
    assert by_id["J022745.78-010914.1"].group is None and by_id["J022745.78-010914.1"].why.startswith("artifact")
    assert by_id["587726016142835881"].group == "merger"  # published gz2_class Sb?m(m)
    assert by_id["587736542560715163"].group == "edge_on"  # published Ser
    assert by_id["J081412.47+220853.0"].group == "smooth"
    assert all(g.path.is_file() for g in galaxies)


def test_gz_decals_frame():
    assert s2r.gz_decals_frame_arcsec(10.0, 30.0) == pytest.approx(424 * 0.4)
    assert s2r.gz_decals_frame_arcsec(10.0, 15.0) == pytest.approx(424 * 0.3)
    assert s2r.gz_decals_frame_arcsec(1.0, 2.0) == pytest.approx(42.4)  # the 0.1 arcsec/px floor


# ---------------------------------------------------------------- accuracy


def test_accuracy_rows_count_and_interval():
    truth = ["smooth", "smooth", "featured", "merger"]
    predicted = ["smooth", "featured", "featured", None]
    subsets = {"all": [True] * 4, "first two": [True, True, False, False], "none": [False] * 4}
    rows = s2r.accuracy_rows("r", truth, predicted, subsets)
    assert [(r["correct"], r["n"]) for r in rows] == [(2, 4), (1, 2), (0, 0)]
    assert (rows[0]["lo"], rows[0]["hi"]) == wilson_interval(2, 4)


def test_an_untrained_tiny_run_scores_the_real_set(easy_h5, tmp_path):
    from galaxalign.data import load_image
    from galaxalign.runs import init_run, load_run

    run = load_run(init_run(tiny(easy_h5, tmp_path / "run", method="supervised")))
    galaxies = [g for g in s2r.real_galaxies() if g.group][:5]
    predicted = s2r.predicted_groups(run, [load_image(g.path) for g in galaxies])
    assert len(predicted) == 5 and set(predicted) <= set(s2r.GROUPS)
    rows = s2r.accuracy_rows("tiny", [g.group for g in galaxies], predicted, {"all": [True] * 5})
    assert rows[0]["n"] == 5 and 0 <= rows[0]["correct"] <= 5


@pytest.mark.slow
def test_the_command_end_to_end_on_tiny_data(easy_h5, tmp_path, capsys):
    from galaxalign.runs import init_run

    run_dir = init_run(tiny(easy_h5, tmp_path / "untrained", method="supervised"))
    argv = ["--sim", str(easy_h5), "--backbone", "tiny", "--repeats", "1", "--boots", "20", "--threads", "1"]
    s2r.main([*argv, "--runs", str(run_dir)])
    out = capsys.readouterr().out
    assert "Galaxy10-Sim: 120 images" in out and "Real: 27 images" in out
    for heading in ("## The real set", "## Image statistics", "## Domain gap", "## Sim-to-real accuracy"):
        assert heading in out
    assert "## Catalogue sizes" not in out  # the easy file has no generating parameters
    assert "| untrained (supervised, head) | volunteer labels, all |" in out and "/ 18 |" in out
