"""benchmarks/gpu.sh and gpu_e2e.py must work the first time they run on the GPU machine.

That machine gets one try at `bash benchmarks/gpu.sh`, with no network and no pip, and a python3
without GalSim (nor faiss, fastapi, astropy). So every code path of gpu_e2e.py runs here, tiny,
on the CPU, with those imports made to fail as they will there; the full-size models are built
on the meta device to check their shapes without the minutes a CPU would take.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import benchmark_script
from galaxalign.data import H5Dataset

ROOT = Path(__file__).parents[1]
BENCHMARKS = ROOT / "benchmarks"
MISSING_ON_GPU = ("galsim", "faiss", "fastapi", "uvicorn", "astropy")
# Runs a script with MISSING_ON_GPU unimportable, as on the GPU machine's python3.
WITHOUT_MISSING = f"""
import importlib.abc, runpy, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {MISSING_ON_GPU!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Missing())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


gpu_e2e = benchmark_script("gpu_e2e")
gpu_paths = benchmark_script("gpu_paths")


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _table(stdout: str) -> dict[str, dict[str, str]]:
    """The markdown table's rows by model name."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]
    return {row["model"]: row for row in rows}


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.mark.slow
def test_smoke_run_without_the_packages_the_gpu_machine_lacks():
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MISSING, str(BENCHMARKS / "gpu_e2e.py"), "--device", "cpu", "--smoke"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    assert "GalSim is not installed: drawing numpy galaxies instead" in done.stderr
    rows = _table(done.stdout)
    assert set(rows) == {"clip-vit-b16", "packaged"}, done.stdout
    for row in rows.values():
        for key in ("trainer img/s", "model-only img/s", "ratio", "val img/s", "embed-only img/s", "10-epoch G10 min"):
            assert _number(row[key]) > 0, (key, row)
        assert row["steps timed"] == "2" and row[">= 0.8"] in ("met", "missed")
    assert "not timed" not in done.stdout and "skipped" not in done.stdout and "failed" not in done.stdout


@pytest.mark.slow
def test_gpu_sh_skips_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: gpu.sh would run the benchmarks")
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh")], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no CUDA device: skipped"


def test_full_size_models_have_the_benchmarked_shapes():
    """ViT-B/16 CLIP as gpu_bench builds it (same parameter count), and the packaged towers at
    224 px, with byte-level tokens inside both vocabularies."""
    config, tokenizer = gpu_e2e.clip_config(full=True)
    from transformers import CLIPModel

    with torch.device("meta"):
        clip = CLIPModel(config)
        reference = gpu_e2e.gpu_bench.clip_b16_architecture()[0]
        packaged = gpu_e2e.packaged_backbone(full=True)
    assert sum(p.numel() for p in clip.parameters()) == sum(p.numel() for p in reference.parameters())
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (768, 12, 16, 224)
    assert config.text_config.eos_token_id == tokenizer.eos_token_id
    ids = tokenizer(["an edge-on disk galaxy with a bulge"])["input_ids"][0]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert max(ids) < config.text_config.vocab_size
    assert (packaged.image_size, packaged.image_dim, packaged.text_dim) == (224, 768, 384)
    tokens = packaged.tokenize(["galaxy " * 40, "bar"])
    assert tokens["input_ids"].shape == (2, 64) and int(tokens["input_ids"].max()) < gpu_e2e.BERT_VOCAB


@pytest.mark.parametrize("renderer", ["numpy", "galsim"])
def test_rendered_file_is_uncompressed_one_image_per_chunk(tmp_path, renderer):
    if renderer == "galsim" and not gpu_e2e.HAVE_GALSIM:
        pytest.skip("GalSim is not installed")
    path = tmp_path / "sim.h5"
    assert gpu_e2e.render_h5(path, per_class=2, size=32, workers=1, renderer=renderer) == renderer
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (20, 32, 32, 3) and f["images"].chunks == (1, 32, 32, 3)
        assert f["images"].compression is None
    dataset = H5Dataset(path)
    assert np.bincount(dataset.labels).tolist() == [2] * 10
    assert dataset[0].image.std() > 0


def test_deadline_stops_only_what_it_guards():
    finished = []
    with gpu_e2e.Deadline(0.2) as deadline:
        time.sleep(5)
        finished.append(True)  # not reached: the deadline interrupts the sleep
    assert deadline.fired and not finished
    with gpu_e2e.Deadline(5) as deadline:
        pass
    assert not deadline.fired


def test_step_times_and_extrapolation(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        '{"step": 1, "images_per_s": 10.0}\n{"val_accuracy": 0.5}\n{"step": 2, "images_per_s": 16.0}\n{"st'
    )
    assert gpu_e2e.step_times(metrics, batch=8).tolist() == [0.8, 1.0]
    split = gpu_e2e.galaxy10_split(256)
    assert split["train"] + split["val"] + split["test"] == 17_736 and split["steps"] == split["train"] // 256
    minutes, how = gpu_e2e.extrapolate(
        {"trainer_img_s": 1000.0, "init_s": 0.0, "n_val": 100, "val_embed_s": 1.0, "val_save_s": 0.0}, batch=256
    )
    train_s = 10 * split["steps"] * 256 / 1000.0
    val_s = 10 * split["val"] / 100 + split["test"] / 100
    assert minutes == pytest.approx((train_s + val_s) / 60) and "10 epochs" in how
    assert gpu_e2e.extrapolate({"trainer_img_s": "no steps"}, batch=256) is None


@pytest.mark.slow
def test_gpu_paths_smoke_runs_every_check_in_one_table():
    """Every check of gpu_paths.py, tiny, on the CPU (about 2 minutes on 2 cores, half of it the
    compile), without the packages the GPU machine lacks; the sync count alone needs CUDA."""
    script = [str(BENCHMARKS / "gpu_paths.py"), "--device", "cpu", "--smoke", "--budget", "500"]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MISSING, *script],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    rows = {row[0]: row[1:] for row in cells}
    assert sorted(rows) == sorted(gpu_paths.CHECKS) and len(cells) == len(gpu_paths.CHECKS), done.stdout
    results = {check: row[0] for check, row in rows.items()}
    assert results.pop("syncs/step") == "n/a"
    assert results.pop("h5 read").startswith("x")  # converted reads, against h5py's default chunks
    assert results.pop("index") == "embed only"  # faiss is missing there, as on the GPU machine
    assert set(results.values()) == {"ok"}, done.stdout
    assert "losses within" in rows["ddp-1"][1] and "stage 2" in rows["two-stage"][1]


def test_stage_rates_and_syncs_per_step(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    lines = [{"stage": 1, "images_per_s": 10.0}, {"stage": 1, "images_per_s": 10.0}, {"val_accuracy": 0.1}]
    lines += [{"stage": 2, "images_per_s": 6.0}]  # 3 steps of 10 images in 5 s: the third took 3 s
    metrics.write_text("\n".join(map(json.dumps, lines)))
    rates = gpu_paths.stage_rates(metrics, batch=10)
    assert rates[1] == pytest.approx(10.0) and rates[2] == pytest.approx(10 / 3)
    assert gpu_paths.per_step([4, 7, 9, 12]) == [3, 2, 3]


def test_included_tables_become_rows_of_one_table(tmp_path):
    captured = tmp_path / "gpu_bench.md"
    captured.write_text("# t\n\n| model | task | batch | img/s |\n|---|---|---|---|\n| clip | train | 256 | 1,700 |\n")
    (row,) = gpu_paths.included_rows(captured)
    assert row == {"check": "gpu_bench: clip train 256", "result": "measured", "figure": "img/s 1,700"}
    assert gpu_paths.included_rows(tmp_path / "gpu_bench.md")[0]["check"].startswith("gpu_bench")
