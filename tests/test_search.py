"""Similarity search: index building, storage, run matching and every query kind, on a tiny run."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

import galaxalign
from conftest import easy_image
from galaxalign.cli import main
from galaxalign.data import DatasetView, open_dataset
from galaxalign.errors import GalaxAlignError
from galaxalign.runs import load_run
from galaxalign.search import GalaxyIndex, Searcher, build_index, load_index, sketch_to_symbol
from galaxalign.search.index import (
    AUTO_ANN_FROM,
    choose_kind,
    exact_knn,
    fill_index,
    new_faiss_index,
    recall_at,
    tune_search,
)

K = 5


@pytest.fixture(scope="module")
def run(stage1_run):
    return stage1_run


@pytest.fixture(scope="module")
def other_run(run, tmp_path_factory):
    """The same run with one weight changed: another fingerprint."""
    other = tmp_path_factory.mktemp("runs") / "other"
    shutil.copytree(run.run_dir, other)
    state = load_file(str(other / "model.safetensors"))
    state["logit_scale"] = state["logit_scale"] + 1
    save_file(state, str(other / "model.safetensors"))
    return load_run(other)


@pytest.fixture(scope="module")
def dataset(easy_h5):
    return open_dataset(easy_h5)


@pytest.fixture(scope="module")
def index(run, dataset, tmp_path_factory):
    return build_index(run, dataset, tmp_path_factory.mktemp("indexes") / "flat")


def brute_force(embeddings: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ embeddings.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def assert_matches_brute_force(index: GalaxyIndex, embeddings: np.ndarray, queries: np.ndarray, k: int) -> None:
    """Same scores, and the same rows except where two rows tie to float precision."""
    want_scores, want_rows = brute_force(embeddings, queries, k)
    results = index.search(queries, k)
    got_rows = np.array([[h.index for h in hits] for hits in results])
    got_scores = np.array([[h.score for h in hits] for hits in results])
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)
    all_scores = queries @ embeddings.T
    for q, (got, want) in enumerate(zip(got_rows, want_rows)):
        differ = got != want
        np.testing.assert_allclose(all_scores[q, got[differ]], all_scores[q, want[differ]], atol=1e-5)
        assert [h.id for h in results[q]] == [index.ids[r] for r in got]


def test_exact_index_equals_brute_force_and_stores_its_layout(index, run, dataset):
    images = [dataset[i].image for i in range(len(dataset))]
    embeddings = run.embed_images(images)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(index.embeddings, embeddings, atol=1e-6)
    queries = np.concatenate([embeddings[:7], run.embed_texts(["a round smooth galaxy", "an edge-on disk"])])
    assert_matches_brute_force(index, embeddings, queries, K)

    assert index.kind == "flat" and len(index) == len(dataset)
    assert {p.name for p in index.dir.iterdir()} == {
        "index.faiss",
        "embeddings.npy",
        "meta.npz",
        "thumbnails.npy",
        "manifest.json",
    }
    manifest = json.loads((index.dir / "manifest.json").read_text())
    assert manifest["run_fingerprint"] == run.fingerprint and manifest["count"] == len(dataset)
    assert manifest["dim"] == run.model.embed_dim and manifest["scheme"] == "galaxy10"
    assert index.thumbnails.shape == (len(dataset), 64, 64, 3) and index.thumbnails.dtype == np.uint8
    hit = index.hit(3, 0.5)
    assert hit.id == dataset.ids[3] and hit.label == dataset.labels[3]
    assert hit.label_name == run.scheme[hit.label].name and hit.source == dataset.source
    assert hit.ra == pytest.approx(dataset.metadata(3)["ra"])
    assert json.loads(json.dumps(hit.to_dict()))["id"] == hit.id


def sketch_png(path, size=(180, 140), transparent=False):
    """A hand-drawn edge-on disk: dark strokes on white paper (or on a transparent canvas)."""
    im = Image.new("RGBA", size, (0, 0, 0, 0) if transparent else (255, 255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.line([(25, 75), (155, 62)], fill=(0, 0, 0, 255), width=7)
    draw.ellipse([(80, 60), (100, 78)], outline=(30, 30, 30, 255), width=3)
    im.save(path)
    return path


def assert_ranked(hits, k=K):
    assert len(hits) == k
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_every_query_kind_returns_k_sorted_hits(index, run, dataset, tmp_path):
    searcher = Searcher(index, run)
    image = easy_image(8, np.random.default_rng(5))
    Image.fromarray(image).save(tmp_path / "galaxy.png")
    assert_ranked(searcher.by_image(image, K))
    assert [h.id for h in searcher.by_image(tmp_path / "galaxy.png", K)] == [h.id for h in searcher.by_image(image, K)]
    by_id = searcher.by_id(dataset.ids[4], K)
    assert_ranked(by_id)
    assert dataset.ids[4] not in [h.id for h in by_id]
    assert_ranked(searcher.by_text("edge-on galaxy without bulge", K))
    assert_ranked(searcher.by_symbol("edge_on_no_bulge", K))
    assert [h.id for h in searcher.by_symbol(8, K)] == [h.id for h in searcher.by_symbol("edge_on_no_bulge", K)]
    assert_ranked(searcher.by_sketch(sketch_png(tmp_path / "sketch.png"), K))
    assert_ranked(searcher.by_sketch(sketch_png(tmp_path / "canvas.png", transparent=True), K))
    assert_ranked(searcher.by_text("anything", 1000), len(dataset))  # k above the catalogue size


def test_a_class_symbol_is_embedded_once_per_searcher(index, run, monkeypatch):
    searcher = Searcher(index, run)
    first = [h.id for h in searcher.by_symbol("merging", K)]
    calls = []
    monkeypatch.setattr(run, "embed_symbols", lambda images: calls.append(len(images)))
    assert [h.id for h in searcher.by_symbol("merging", K)] == first and calls == []


def test_sketch_becomes_light_strokes_on_black_centred(tmp_path):
    from galaxalign.search.query import read_sketch

    paper = sketch_to_symbol(np.asarray(Image.open(sketch_png(tmp_path / "s.png")).convert("RGB")))
    canvas = sketch_to_symbol(read_sketch(sketch_png(tmp_path / "c.png", transparent=True)))
    for out in (paper, canvas):
        assert out.shape[0] == out.shape[1] and out.shape[2] == 3 and out.dtype == np.uint8
        assert out[0].max() == 0 and out[:, 0].max() == 0 and out.max() == 255  # black margin, full-scale ink
        ink_rows, ink_cols = np.nonzero(out[..., 0] > 32)
        centre = (out.shape[0] - 1) / 2
        assert abs((ink_cols.min() + ink_cols.max()) / 2 - centre) <= 1
        assert abs((ink_rows.min() + ink_rows.max()) / 2 - centre) <= 1
    with pytest.raises(GalaxAlignError, match="blank"):
        sketch_to_symbol(np.full((50, 50, 3), 255, np.uint8))


def test_unknown_id_or_class_and_missing_run_are_errors(index, run):
    searcher = Searcher(index, run)
    with pytest.raises(GalaxAlignError, match="no galaxy with id"):
        searcher.by_id("no-such-galaxy")
    with pytest.raises(GalaxAlignError, match="no class"):
        searcher.by_symbol("dragon")
    with pytest.raises(GalaxAlignError, match="needs the run"):
        Searcher(index).by_text("spiral")
    assert len(Searcher(index).by_id(index.ids[0], 3)) == 3  # by id needs no run


def test_cli_index_and_search(run, easy_h5, tmp_path, capsys):
    out = tmp_path / "cli-index"
    assert (
        main(
            [
                "index",
                "--run",
                str(run.run_dir),
                "--data",
                str(easy_h5),
                "--out",
                str(out),
                "--no-thumbnails",
                "--quiet",
            ]
        )
        == 0
    )
    assert "flat index of 120 galaxies" in capsys.readouterr().out
    assert not (out / "thumbnails.npy").exists()
    assert (
        main(["search", "--index", str(out), "--text", "a merger", "-k", "4", "--json"]) == 0
    )  # run from the manifest
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == {"text": "a merger"} and len(result["hits"]) == 4
    assert set(result["hits"][0]) == {"id", "score", "label", "label_name", "index", "source", "ra", "dec"}
    assert main(["search", "--index", str(out), "--id", "7", "-k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "id", "score", "label"] and len(table) == 4


def test_index_of_another_run_is_refused(index, other_run, dataset, capsys):
    with pytest.raises(GalaxAlignError, match="rebuild the index"):
        GalaxyIndex.load(index.dir, other_run)
    assert main(["search", "--index", str(index.dir), "--run", str(other_run.run_dir), "--text", "spiral"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rebuild the index with this run" in err and str(other_run.run_dir) in err
    with pytest.raises(GalaxAlignError, match="rebuild"):
        load_index(index.dir).add(other_run, dataset.subset([0]))


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_add_grows_the_index_consistently(run, dataset, tmp_path, kind):
    out = tmp_path / kind
    built = build_index(run, dataset.subset(range(80)), out, kind=kind)
    assert len(built) == 80
    grown = built.add(run, dataset.subset(range(80, 120)))
    assert grown is built and len(built) == 120 and built.kind == kind
    reloaded = load_index(out, run)
    assert reloaded.ids == dataset.ids and reloaded.thumbnails.shape[0] == 120
    np.testing.assert_array_equal(reloaded.labels, dataset.labels)
    fresh = build_index(run, dataset, tmp_path / "fresh", kind="flat")
    np.testing.assert_allclose(reloaded.embeddings, fresh.embeddings, atol=1e-6)
    if kind == "flat":
        assert_matches_brute_force(reloaded, np.asarray(fresh.embeddings), np.asarray(fresh.embeddings[::10]), K)
    else:  # approximate, but each query still finds itself first among all 120
        hits = reloaded.search(np.asarray(fresh.embeddings[100:]), 1)
        assert all(h[0].score == pytest.approx(1.0, abs=1e-5) for h in hits)
    with pytest.raises(GalaxAlignError, match="already in the index"):
        reloaded.add(run, dataset.subset([3]))
    assert len(load_index(out)) == 120


class FailingView(DatasetView):
    """A catalogue whose 6th image cannot be read: the build dies half-way."""

    def __getitem__(self, i):
        if i == 5:
            raise RuntimeError("disk went away")
        return super().__getitem__(i)


def test_interrupted_build_or_add_keeps_the_previous_index(run, dataset, tmp_path):
    out = tmp_path / "kept"
    build_index(run, dataset.subset(range(40)), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError, match="disk went away"):
        build_index(run, FailingView(dataset, range(60)), out, batch_size=4)
    with pytest.raises(RuntimeError, match="disk went away"):
        load_index(out).add(run, FailingView(dataset, range(40, 100)), batch_size=4)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]  # no temporary folders left behind
    assert len(load_index(out, run)) == 40


@pytest.mark.parametrize(
    "damage",
    [
        "truncate index.faiss",
        "truncate embeddings.npy",
        "truncate meta.npz",
        "delete thumbnails.npy",
        "garble manifest.json",
    ],
)
def test_damaged_index_folder_is_a_one_line_error(index, tmp_path, capsys, damage):
    action, name = damage.split()
    broken = tmp_path / "broken"
    shutil.copytree(index.dir, broken)
    path = broken / name
    if action == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif action == "delete":
        path.unlink()
    else:
        path.write_text("{not json")
    with pytest.raises(GalaxAlignError) as err:
        GalaxyIndex.load(broken)
    assert name in str(err.value) and "\n" not in str(err.value)
    assert main(["search", "--index", str(broken), "--id", "1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def clustered(n, dim, clusters, rng):
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + rng.normal(0, 1.0 / np.sqrt(dim), (n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_reach_recall_on_clustered_data(kind):
    rng = np.random.default_rng(1)
    points = clustered(6200, 32, 50, rng)
    data, queries = points[:6000], points[6000:]  # queries from the same clusters, not indexed
    index = new_faiss_index(kind, 32, len(data))
    fill_index(index, data)
    tuned = tune_search(index, data)
    assert tuned["tuned_recall"] >= 0.95
    truth_scores, truth = exact_knn(data, queries, 10)
    np.testing.assert_allclose(truth_scores, brute_force(data, queries, 10)[0], atol=1e-5)
    assert recall_at(index.search(queries, 10)[1], truth) >= 0.9


def test_auto_kind_rule_and_lazy_public_api():
    assert choose_kind("auto", AUTO_ANN_FROM - 1) == "flat" and choose_kind("auto", AUTO_ANN_FROM) == "ivf"
    assert choose_kind("ivf", 10) == "ivf"
    with pytest.raises(GalaxAlignError, match="index kind"):
        choose_kind("annoy", 10)
    assert galaxalign.load_index == GalaxyIndex.load and galaxalign.load_run is load_run
