"""Metrics checked against hand computation and a brute-force reference; evaluate and classify end to end."""

import json
import math
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import EASY_CLASSES, easy_image, tiny, write_galaxy10_h5
from galaxalign.cli import main
from galaxalign.data import Split, open_dataset
from galaxalign.evaluation import classification_metrics, evaluate_run, metrics, retrieval_metrics
from galaxalign.evaluation.evaluate import predict_split, read_predictions
from galaxalign.runs import load_run
from galaxalign.training import train


def at(degrees, length=1.0):
    """A 2-D embedding at an angle: cosine similarity to the x axis falls as the angle grows."""
    r = math.radians(degrees)
    return [length * math.cos(r), length * math.sin(r)]


# ---------------------------------------------------------------- classification, by hand


def test_classification_metrics_by_hand():
    got = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c", "d"])
    assert got["accuracy"] == pytest.approx(3 / 5)
    # a: 1 of 2 predicted right, 1 of 2 found. b: 2 of 3 predicted, 2 of 2 found. c: never predicted.
    assert got["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert got["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert got["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert got["per_class"]["d"]["support"] == 0
    assert got["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)  # d occurs nowhere: not averaged
    assert got["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


# ---------------------------------------------------------------- retrieval, by hand


def test_wilson_interval_by_hand():
    wilson = metrics.wilson_interval
    lo, hi = wilson(7, 10)
    # p = 0.7, z = 1.96: centre (0.7 + 0.19208) / 1.38415 = 0.64449, half 1.96 / 1.38415 * sqrt(0.021 + 0.0096) = 0.24771
    assert lo == pytest.approx(0.3968, abs=1e-3) and hi == pytest.approx(0.8922, abs=1e-3)
    assert wilson(0, 5)[0] == pytest.approx(0.0, abs=1e-9) and wilson(0, 5)[1] == pytest.approx(0.4345, abs=1e-3)
    assert wilson(5, 5)[1] == pytest.approx(1.0) and wilson(5, 5)[0] == pytest.approx(0.5655, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson(6, 5)


def test_retrieval_binary_by_hand():
    # Ranked by angle: relevant, not, relevant, not, then the third relevant item last. R = 3, k = 4.
    db = [at(0, 3.0), at(20), at(40, 0.5), at(60), at(170)]
    got = retrieval_metrics([at(0)], [0], db, [0, 1, 0, 1, 0], k=4)
    assert got["map@4"] == pytest.approx((1 / 1 + 2 / 3) / 3)  # P@1 and P@3, over min(k, R) = 3
    assert got["precision@4"] == pytest.approx(2 / 4)
    assert got["recall@4"] == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@4"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert got["n_queries"] == 1 and got["graded"] is False


def test_retrieval_ap_normalises_by_k_when_many_are_relevant():
    db = [at(a) for a in (0, 10, 20, 30, 40)]
    got = retrieval_metrics([at(0)], [0], db, [0, 0, 0, 0, 0], k=2)
    assert got["map@2"] == 1.0 and got["ndcg@2"] == 1.0 and got["recall@2"] == pytest.approx(2 / 5)


def test_retrieval_graded_ndcg_by_hand():
    # Attribute 0 is standardised over the database to [-1, 1, 1, -1] (mean 0, std 1), the query
    # to 1. Attribute 1 is unknown everywhere and attribute 2 never varies: both are ignored.
    db = [at(0), at(30), at(60), at(150)]
    db_attrs = [[-1, np.nan, 3], [1, np.nan, 3], [1, np.nan, 3], [-1, np.nan, 3]]
    got = retrieval_metrics([at(0)], [0], db, [0, 1, 0, 0], k=3, query_attrs=[[1, 5, 7]], db_attrs=db_attrs)
    far, near = 1 + math.exp(-2), 2.0  # gain: same class times (1 + exp(-distance))
    dcg = far / 1 + 0 + near / math.log2(4)  # ranking: item 0, item 1 (other class), item 2
    ideal = near / 1 + far / math.log2(3) + far / math.log2(4)
    assert got["ndcg@3"] == pytest.approx(dcg / ideal)
    assert got["map@3"] == pytest.approx((1 + 2 / 3) / 3)  # AP stays binary
    assert got["graded"] is True


def test_retrieval_skips_queries_without_relevant_items_and_unknown_labels():
    db = [at(0), at(10)]
    got = retrieval_metrics([at(0), at(5), at(9)], [0, 2, -1], db, [0, -1], k=1)
    assert got["n_queries"] == 1 and got["map@1"] == 1.0  # class 2 and unknown have nothing to find
    assert retrieval_metrics([at(0)], [2], db, [0, 1], k=1)["map@1"] is None


def test_retrieval_excludes_the_query_itself():
    emb = [at(0), at(1), at(90)]
    got = retrieval_metrics(emb, [0, 1, 0], emb, [0, 1, 0], k=1, query_ids=[0, 1, 2], db_ids=[0, 1, 2])
    assert got["n_queries"] == 2  # query 1 is alone in its class once it cannot find itself
    assert got["map@1"] == 0.0  # query 0's nearest other item is query 1, of another class


# ---------------------------------------------------------------- retrieval against brute force


def brute_force(q, q_labels, d, d_labels, k, q_attrs=None, d_attrs=None, q_ids=None, d_ids=None):
    """The definitions in retrieval_metrics' docstring, one query and one pair at a time."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    if q_attrs is not None:
        mean, std = np.nanmean(d_attrs, axis=0), np.nanstd(d_attrs, axis=0)
        keep = std > 0
        q_attrs, d_attrs = (q_attrs[:, keep] - mean[keep]) / std[keep], (d_attrs[:, keep] - mean[keep]) / std[keep]
    totals = {"ap": [], "p": [], "r": [], "ndcg": []}
    for i in range(len(q)):
        items = [j for j in range(len(d)) if q_ids is None or q_ids[i] != d_ids[j]]
        order = sorted(items, key=lambda j: -(q[i] @ d[j]))
        rel = [q_labels[i] >= 0 and d_labels[j] == q_labels[i] for j in order]
        n_rel = sum(rel)
        if n_rel == 0:
            continue

        def gain(j):
            if d_labels[j] != q_labels[i]:
                return 0.0
            if q_attrs is None:
                return 1.0
            both = np.isfinite(q_attrs[i]) & np.isfinite(d_attrs[j])
            if not both.any():
                return 1.0
            return 1.0 + math.exp(-math.sqrt(np.mean((q_attrs[i][both] - d_attrs[j][both]) ** 2)))

        gains = [gain(j) for j in order]
        top = rel[:k]
        totals["ap"].append(sum(sum(top[: n + 1]) / (n + 1) for n in range(len(top)) if top[n]) / min(k, n_rel))
        totals["p"].append(sum(top) / k)
        totals["r"].append(sum(top) / n_rel)
        dcg = sum(g / math.log2(n + 2) for n, g in enumerate(gains[:k]))
        ideal = sum(g / math.log2(n + 2) for n, g in enumerate(sorted(gains, reverse=True)[:k]))
        totals["ndcg"].append(dcg / ideal)
    return {
        f"map@{k}": np.mean(totals["ap"]),
        f"precision@{k}": np.mean(totals["p"]),
        f"recall@{k}": np.mean(totals["r"]),
        f"ndcg@{k}": np.mean(totals["ndcg"]),
        "n_queries": len(totals["ap"]),
    }


@pytest.mark.parametrize("graded", [False, True])
def test_retrieval_matches_brute_force_on_random_data(graded, monkeypatch):
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(25, 6)), rng.normal(size=(60, 6))
    q_labels, d_labels = rng.integers(-1, 4, 25), rng.integers(-1, 4, 60)
    q_attrs = d_attrs = None
    if graded:
        q_attrs, d_attrs = rng.normal(size=(25, 3)), rng.normal(size=(60, 3)) * [1, 5, 0.1]
        q_attrs[rng.random(q_attrs.shape) < 0.2] = np.nan
        d_attrs[rng.random(d_attrs.shape) < 0.2] = np.nan
    expected = brute_force(q, q_labels, d, d_labels, 10, q_attrs, d_attrs)
    got = retrieval_metrics(q, q_labels, d, d_labels, k=10, query_attrs=q_attrs, db_attrs=d_attrs)
    monkeypatch.setattr(metrics, "CHUNK_PAIRS", 130)  # two queries per block
    chunked = retrieval_metrics(q, q_labels, d, d_labels, k=10, query_attrs=q_attrs, db_attrs=d_attrs)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
        assert chunked[key] == pytest.approx(value, abs=1e-12), key


def test_retrieval_self_exclusion_matches_brute_force():
    rng = np.random.default_rng(2)
    emb, labels, ids = rng.normal(size=(40, 5)), rng.integers(0, 3, 40), np.arange(40)
    expected = brute_force(emb, labels, emb, labels, 5, q_ids=ids, d_ids=ids)
    got = retrieval_metrics(emb, labels, emb, labels, k=5, query_ids=ids, db_ids=ids)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# ---------------------------------------------------------------- evaluate_run and the CLI


@pytest.fixture(scope="module")
def run_dir(easy_h5, tmp_path_factory):
    """A two-stage GalaxAlign run, so every scoring mode has something to score with."""
    config = tiny(easy_h5, tmp_path_factory.mktemp("runs") / "ga", method="galaxalign", stage1_fraction=0.5)
    return train(config)


REQUIRED = (
    "accuracy",
    "macro_f1",
    "per_class",
    "confusion",
    "map@10",
    "precision@10",
    "recall@10",
    "ndcg@10",
    "scoring",
    "split",
    "n",
    "run",
    "fingerprint",
    "accuracy_by_mode",
)


def test_evaluate_run_writes_metrics_and_png(run_dir, easy_h5, tmp_path):
    run = load_run(run_dir)
    result = evaluate_run(run, easy_h5)
    written = json.loads((run_dir / "eval-test" / "metrics.json").read_text())
    assert set(REQUIRED) <= set(written)
    assert written == {k: v for k, v in result.items() if k != "files"}
    assert written["n"] == 24 and written["split"] == "test" and written["scoring"] == run.scoring  # chosen on val
    assert written["retrieval_space"] == "embeddings"
    assert written["fingerprint"] == run.fingerprint and written["database"]["n"] == 72
    assert written["graded"] is False  # easy_h5 has no attributes
    assert set(written["accuracy_by_mode"]) == {"text", "symbol", "fusion"}
    assert written["accuracy_by_mode"][run.scoring] == written["accuracy"]
    assert sum(map(sum, written["confusion"])) == 24 and len(written["confusion"]) == len(run.scheme)
    for key in ("map@10", "precision@10", "recall@10", "ndcg@10"):
        assert 0.0 <= written[key] <= 1.0
    with Image.open(run_dir / "eval-test" / "confusion.png") as png:
        assert png.format == "PNG" and min(png.size) > 400
    # One row per galaxy: the predictions agree with the confusion matrix, and the light
    # test-only pass (what the benchmark uses for runs evaluated before this file existed) with both.
    indices, truth, predicted = read_predictions(run_dir / "eval-test" / "predictions.csv")
    assert len(indices) == 24 and np.array_equal(indices, Split.load(run_dir / "split.json").test)
    confusion = np.zeros((len(run.scheme),) * 2, dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    assert confusion.tolist() == written["confusion"]
    test_only, by_mode = predict_split(run, open_dataset(easy_h5, scheme=run.scheme), "test")
    assert np.array_equal(test_only, indices) and np.array_equal(by_mode["fusion"], predicted)

    # The same galaxies with generator parameters: graded nDCG, and a chosen mode and folder.
    with_params = tmp_path / "params.h5"
    shutil.copy(easy_h5, with_params)
    with h5py.File(with_params, "a") as f:
        f.create_dataset("params/size", data=np.linspace(1, 3, len(f["ans"])))
    graded = evaluate_run(run, with_params, split="val", out_dir=tmp_path / "ev", mode="text")
    assert graded["graded"] is True and graded["scoring"] == "text" and graded["n"] == 24
    assert graded["accuracy"] == graded["accuracy_by_mode"]["text"]
    assert (tmp_path / "ev" / "metrics.json").exists() and (tmp_path / "ev" / "confusion.png").exists()


def test_cli_evaluate_summary_and_mismatched_dataset(run_dir, easy_h5, tmp_path, capsys):
    assert (
        main(
            [
                "evaluate",
                "--run",
                str(run_dir),
                "--data",
                str(easy_h5),
                "--split",
                "train",
                "--out",
                str(tmp_path / "tr"),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "accuracy" in out and "mAP@10" in out and "nDCG@10" in out and str(tmp_path / "tr" / "metrics.json") in out
    other = tmp_path / "other.h5"
    rng = np.random.default_rng(5)
    labels = np.repeat(EASY_CLASSES, 40)
    write_galaxy10_h5(other, np.stack([easy_image(int(c), rng) for c in labels]), labels)  # same size, other order
    assert main(["evaluate", "--run", str(run_dir), "--data", str(other), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different dataset" in err


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    from astropy.io import fits

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    png = folder / "round.png"
    Image.fromarray(easy_image(2, rng)).save(png)
    y, x = np.mgrid[:40, :40] - 20.0
    flux = np.exp(-(x**2) / 60 - y**2 / 2)  # an edge-on streak, in raw fluxes
    fits_path = folder / "streak.fits"
    fits.PrimaryHDU(np.stack([flux, 1.3 * flux, 1.6 * flux]).astype(np.float32)).writeto(fits_path)
    return [str(png), str(fits_path)]


def test_cli_classify_json_and_table(run_dir, image_files, capsys):
    assert main(["classify", "--run", str(run_dir), *image_files, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in results] == image_files
    for r in results:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probs) and r["probability"] == probs[0]
    assert main(["classify", "--run", str(run_dir), "--mode", "symbol", "--top-k", "2", *image_files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(image_files[0] + ":") and lines[0].count(",") == 1


def test_cli_classify_errors_are_one_line(run_dir, image_files, tmp_path, capsys):
    missing = str(tmp_path / "nope.png")
    assert main(["classify", "--run", str(run_dir), image_files[0], missing]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err
    assert main(["classify", "--run", str(run_dir), "--mode", "head", image_files[0]]) == 2
    assert "no classifier head" in capsys.readouterr().err
