"""Galaxy10-Sim: file layout, reproducibility, parameter ranges, atomic writes and CLI errors."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.synth import (
    DEFAULT_DIFFICULTY,
    PARAM_NAMES,
    SynthConfig,
    class_ranges,
    render_contact_sheet,
    render_galaxy,
    sample_params,
    write_synth,
)
from galaxalign.synth import params as params_module
from galaxalign.synth import render as render_module
from galaxalign.synth import writer as writer_module
from galaxalign.taxonomy import load_scheme

SIZE = 48
PER_CLASS = 3


@pytest.fixture(scope="module")
def g10(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "g10sim.h5"
    write_synth(path, SynthConfig(per_class=PER_CLASS, size=SIZE, seed=3, workers=1))
    return path


def _read(path):
    with h5py.File(path, "r") as h5:
        return h5["images"][:], h5["ans"][:], {k: h5["params"][k][:] for k in h5["params"]}


def test_file_has_galaxy10_layout_and_balanced_shuffled_classes(g10):
    scheme = load_scheme("galaxy10")
    n = PER_CLASS * len(scheme)
    with h5py.File(g10, "r") as h5:
        assert h5["images"].shape == (n, SIZE, SIZE, 3) and h5["images"].dtype == np.uint8
        assert h5["images"].chunks == (1, SIZE, SIZE, 3)
        assert h5["ans"].shape == (n,) and h5["ans"].dtype == np.uint8
        for key in ("ra", "dec", "redshift", "pxscale"):
            assert h5[key].shape == (n,) and h5[key].dtype == np.float64, key
        labels = h5["ans"][:]
        assert np.bincount(labels, minlength=len(scheme)).tolist() == [PER_CLASS] * len(scheme)
        assert np.any(np.diff(labels.astype(int)) < 0), "classes must be shuffled, not sorted"
        assert sorted(h5["params"].keys()) == sorted(PARAM_NAMES)
        assert all(h5["params"][k].dtype == np.float32 and h5["params"][k].shape == (n,) for k in PARAM_NAMES)
        np.testing.assert_allclose(h5["pxscale"][:], h5["params/fov_arcsec"][:] / SIZE, rtol=1e-6)
        assert np.all((h5["dec"][:] >= -20) & (h5["dec"][:] <= 35)) and np.all((h5["ra"][:] >= 0) & (h5["ra"][:] < 360))
        assert np.all((h5["redshift"][:] > 0) & (h5["redshift"][:] < 0.5))
        attrs = h5.attrs
        assert attrs["generator"] == "galaxalign-synth" and attrs["seed"] == 3 and attrs["scheme"] == "galaxy10"
        assert attrs["difficulty"] == DEFAULT_DIFFICULTY
        assert attrs["render_version"] == render_module.RENDER_VERSION
        assert json.loads(attrs["class_names"]) == scheme.names
        images = h5["images"][:]
    # Every image holds a galaxy: its centre is brighter than its border.
    centre = images[:, SIZE // 2 - 4 : SIZE // 2 + 4, SIZE // 2 - 4 : SIZE // 2 + 4].mean(axis=(1, 2, 3))
    border = images[:, :4].mean(axis=(1, 2, 3))
    assert np.all(centre > border + 20)


def test_same_seed_is_identical_for_any_worker_count(g10, tmp_path):
    other = tmp_path / "two_workers.h5"
    write_synth(other, SynthConfig(per_class=PER_CLASS, size=SIZE, seed=3, workers=2))
    a, b = _read(g10), _read(other)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(a[2][name], b[2][name], err_msg=name)


def test_different_seeds_differ(g10, tmp_path):
    other = tmp_path / "seed4.h5"
    write_synth(other, SynthConfig(per_class=PER_CLASS, size=SIZE, seed=4, workers=1))
    a, b = _read(g10), _read(other)
    assert not np.array_equal(a[1], b[1])
    assert np.mean(a[0] != b[0]) > 0.5


def _check_ranges(spec, p, difficulty):
    f, ranges = spec.features, class_ranges(spec.features, difficulty)
    eps = 1e-5
    for name, (lo, hi) in ranges.items():
        assert lo - eps <= getattr(p, name) <= hi + eps, (spec.key, name, getattr(p, name), (lo, hi))
    assert (p.n_arms > 0) == f.spiral_arms
    if f.spiral_arms:
        assert f.arm_count[0] <= p.n_arms <= f.arm_count[1]
    if f.bar:
        assert p.bar_strength > params_module.WEAK_BAR[1]
    else:
        assert p.bar_strength <= params_module.WEAK_BAR[1] + eps
    assert (p.tail_strength > 0) == f.merger
    assert (p.dust_strength > 0) == (f.edge_on and f.disk)
    assert p.magnitude <= params_module.MAX_MAGNITUDE + eps


def test_stored_params_lie_in_the_widened_class_ranges(g10):
    scheme = load_scheme("galaxy10")
    _, labels, table = _read(g10)
    for i, label in enumerate(labels):
        row = {name: float(table[name][i]) for name in PARAM_NAMES}
        row["n_arms"] = int(row["n_arms"])
        p = params_module.GalaxyParams(class_id=int(label), **row)
        _check_ranges(scheme[int(label)], p, DEFAULT_DIFFICULTY)


@pytest.mark.parametrize("difficulty", [0.0, 1.0])
def test_sampling_respects_ranges_and_difficulty_widens_them(difficulty):
    scheme = load_scheme("galaxy10")
    rng = np.random.default_rng(0)
    for spec in scheme:
        for _ in range(100):
            _check_ranges(spec, sample_params(spec, difficulty, rng), difficulty)
    round_, inbetween = scheme.by_key("round_smooth").features, scheme.by_key("inbetween_round_smooth").features
    tight, loose = scheme.by_key("unbarred_tight_spiral").features, scheme.by_key("unbarred_loose_spiral").features
    assert class_ranges(round_, 0.0)["axis_ratio"] == round_.axis_ratio
    if difficulty == 1.0:  # hard: pitch angles of tight and loose spirals overlap
        assert class_ranges(tight, 1.0)["pitch_deg"][1] > class_ranges(loose, 1.0)["pitch_deg"][0]
        assert class_ranges(inbetween, 1.0)["axis_ratio"][1] > class_ranges(round_, 1.0)["axis_ratio"][0] + 0.2


def test_render_galaxy_returns_rgb_uint8_with_red_bulges_and_blue_arms():
    scheme = load_scheme("galaxy10")
    rng = np.random.default_rng(1)
    image = render_galaxy(sample_params(scheme.by_key("round_smooth"), 0.0, rng), 64, rng)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    core = image[28:36, 28:36].reshape(-1, 3).astype(float).mean(axis=0)
    assert core[0] > core[2] + 10, f"an elliptical should look yellow-orange (R > B), got {core}"
    colours = []
    for _ in range(20):
        p = sample_params(scheme.by_key("unbarred_loose_spiral"), 0.0, rng)
        img = render_galaxy(p, 64, rng).astype(float)
        mask = img.sum(axis=2) > 120
        colours.append(img[mask].mean(axis=0))
    mean = np.mean(colours, axis=0)
    assert mean[2] / mean[0] > core[2] / core[0], "spirals should be bluer than ellipticals"


def test_display_puts_zero_flux_on_the_sky_pedestal_and_keeps_noise_below_it():
    """Sky noise shows on both sides of a grey pedestal instead of being clipped to black."""
    pedestal = round(255 * render_module.SKY_PEDESTAL)
    zero = render_module._lupton_rgb(np.zeros((3, 4, 4)))
    assert np.all(zero == pedestal)
    below = render_module._lupton_rgb(np.full((3, 4, 4), -0.002))
    assert np.all((below > 0) & (below < pedestal))
    rng = np.random.default_rng(2)
    params = sample_params(load_scheme("galaxy10").by_key("round_smooth"), DEFAULT_DIFFICULTY, rng)
    image = render_galaxy(params, 96, rng)
    border = np.concatenate([image[:8], image[-8:]]).reshape(-1, 3).astype(float)
    assert abs(np.median(border) - pedestal) <= 2
    assert np.mean(border.max(axis=1) == 0) < 0.02, "few sky pixels may be black in every band"


# sha256 of the pixels of galaxies 0 and 1 of the claim study's runs/claim/train.h5 (docs/results.md):
# `galaxalign synth --per-class 150 --size 128 --seed 0`, rendered on 2026-12-01 before render version 2.
CLAIM_STUDY_PIXELS = {
    0: "05eebef3f9f946491b03b447888a19336eab826135eb136c4be821d3df096bb9",
    1: "6bcff365dcb89876a8b25e8121b64a964afec9dd3b55ed8431166f6ca8517909",
}


def test_render_version_1_renders_the_claim_study_files_again_pixel_for_pixel():
    """Committed results on version-1 files stay reproducible after the look changed."""
    import hashlib

    look = params_module.RENDER_VERSIONS[1]
    labels = writer_module.class_order(10, 150, 0)
    job = writer_module._Job(load_scheme("galaxy10"), labels, 128, 0, look.difficulty, 1)
    for index, digest in CLAIM_STUDY_PIXELS.items():
        image, _, _ = writer_module.make_galaxy(job, index)
        assert hashlib.sha256(image.tobytes()).hexdigest() == digest
    newer = writer_module._Job(job.scheme, labels, 128, 0, look.difficulty, params_module.RENDER_VERSION)
    assert not np.array_equal(writer_module.make_galaxy(newer, 0)[0], writer_module.make_galaxy(job, 0)[0])


def test_render_version_is_written_read_and_sets_the_calibrated_difficulty(tmp_path):
    from galaxalign.data import open_dataset

    path = tmp_path / "v1.h5"
    assert (
        main(["synth", "--out", str(path), "--per-class", "1", "--size", "32", "--render-version", "1", "--quiet"]) == 0
    )
    with h5py.File(path, "r") as h5:
        assert h5.attrs["render_version"] == 1
        assert h5.attrs["difficulty"] == params_module.RENDER_VERSIONS[1].difficulty != DEFAULT_DIFFICULTY
    assert open_dataset(str(path)).render_version == 1


def test_disk_geometry_matches_galsim_disk():
    """The numpy disk-plane coordinates (used for arms, bars, dust) must line up with GalSim's disk."""
    import galsim

    from galaxalign.synth import render

    body = render._Body(
        x=3.2,
        y=-1.7,
        flux=1.0,
        hlr=9.0,
        q=0.4,
        pa=35.0,
        bulge_fraction=0.0,
        bulge_n=1.0,
        bulge_hlr=1.0,
        bulge_q=1.0,
        bulge_g_r=0.8,
        disk_g_r=0.5,
    )
    X, Y = render._disk_plane(64, body)
    numpy_disk = np.exp(-np.hypot(X, Y) * 1.6783469900166605 / body.hlr)
    profile = galsim.Exponential(half_light_radius=body.hlr).shear(q=body.q, beta=body.pa * galsim.degrees)
    galsim_disk = render._draw(profile.dilate(math.sqrt(body.q)), 64, body.x, body.y)
    np.testing.assert_allclose(numpy_disk / numpy_disk.max(), galsim_disk / galsim_disk.max(), atol=2e-3)


def test_interrupted_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "out.h5"
    target.write_bytes(b"previous output")
    calls = {"n": 0}
    real = writer_module.render_galaxy

    def failing(*args):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(writer_module, "render_galaxy", failing)
    with pytest.raises(KeyboardInterrupt):
        write_synth(target, SynthConfig(per_class=2, size=32, workers=1))
    assert target.read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"], "no temporary file may be left"
    missing = tmp_path / "new.h5"
    with pytest.raises(KeyboardInterrupt):
        write_synth(missing, SynthConfig(per_class=2, size=32, workers=1))
    assert not missing.exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--per-class", "0"],
        ["--size", "8"],
        ["--size", "2048"],
        ["--difficulty", "1.5"],
        ["--difficulty", "-0.1"],
        ["--workers", "-1"],
        ["--seed", "-3"],
        ["--render-version", "3"],
    ],
)
def test_bad_config_is_a_user_error(tmp_path, capsys, option):
    out = tmp_path / "bad.h5"
    args = ["synth", "--out", str(out), "--per-class", "1", "--size", "32", "--quiet"]
    assert main(args + option) == 2
    assert option[0] in capsys.readouterr().err
    assert not out.exists()


def test_bad_config_raises_galaxalign_error_naming_the_option(tmp_path):
    with pytest.raises(GalaxAlignError, match="--per-class"):
        write_synth(tmp_path / "x.h5", SynthConfig(per_class=0))
    with pytest.raises(GalaxAlignError, match="no such scheme"):
        write_synth(tmp_path / "x.h5", SynthConfig(per_class=1, scheme=str(tmp_path / "none.json")))


def test_user_scheme_renders_and_contact_sheet_has_a_row_per_class(tmp_path, g10):
    scheme = load_scheme("galaxy10").to_dict()
    scheme["name"] = "mine"
    scheme["classes"] = [scheme["classes"][k] for k in (2, 7)]
    for new_id, c in enumerate(scheme["classes"]):
        c["id"] = new_id
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(scheme))
    out = tmp_path / "mine.h5"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--per-class",
                "2",
                "--size",
                "32",
                "--scheme",
                str(path),
                "--workers",
                "1",
                "--quiet",
                "--difficulty",
                "0.2",
            ]
        )
        == 0
    )
    with h5py.File(out, "r") as h5:
        assert h5.attrs["scheme"] == "mine" and h5.attrs["difficulty"] == pytest.approx(0.2)
        assert json.loads(h5.attrs["class_names"]) == [c["name"] for c in scheme["classes"]]
        assert sorted(h5["ans"][:].tolist()) == [0, 0, 1, 1]
    sheet = render_contact_sheet(g10, per_class=2)
    from galaxalign.synth.sheet import LABEL_WIDTH

    assert sheet.size == (LABEL_WIDTH + 2 * SIZE, 10 * SIZE)
    with pytest.raises(GalaxAlignError, match="no such file"):
        render_contact_sheet(tmp_path / "missing.h5")


def test_background_galaxies_smaller_than_a_pixel_keep_their_light_at_16_px():
    """At 16 px a pixel of the widest cutouts spans 18 arcsec, and a small background galaxy's
    profile underflows float32 at every pixel centre: its light must stay finite and sum to its
    flux (one in a hundred was NaN). The whole render must raise no warning (they are errors)."""
    scale = params_module.RENDER_VERSIONS[params_module.RENDER_VERSION].fov_limits[1] / 16
    faintest, brightest = (10.0 ** ((22.5 - mag) / 2.5) for mag in (23.0, 19.5))  # r-band nanomaggies
    for seed in range(300):
        light = np.zeros((3, 16, 16), np.float32)
        render_module._add_background(light, 1, scale, np.random.default_rng(seed))
        assert np.isfinite(light).all(), seed
        assert faintest * 0.999 <= light[1].sum() <= brightest * 1.001, seed
    rng = np.random.default_rng(3)
    for spec in load_scheme("galaxy10"):
        render_galaxy(sample_params(spec, 0.5, rng), 16, rng)
