"""The real user's `hf:` path on CPU, with a tiny CLIP laid out like openai/clip-vit-base-patch16.

Covers: fp16-saved checkpoints (fp32 master weights, with and without bf16 autocast), the
checkpoint's own logit_scale, missing weights, the transformers floor, the checkpoint's
preprocessing (bicubic, crop, mean/std) and self-contained run folders.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from clip_folder import OPENAI_MEAN, OPENAI_STD, write_tiny_clip
from conftest import easy_image, tiny
from galaxalign.data.augment import GalaxyAugment, Resize, resize_batch, to_tensor_batch
from galaxalign.errors import GalaxAlignError
from galaxalign.models import build_backbone
from galaxalign.models.backbones import (
    TRANSFORMERS_FLOOR,
    check_transformers_version,
    clip_preprocessing,
)
from galaxalign.models.model import GalaxAlignModel

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def clip32(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip") / "fp32"
    write_tiny_clip(folder)
    return folder


@pytest.fixture(scope="module")
def clip16(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip") / "fp16"
    write_tiny_clip(folder, dtype=torch.float16)
    return folder


# ---------------------------------------------------------------- dtype, temperature, weights


def test_fp16_checkpoint_loads_as_fp32_master_weights(clip16):
    saved = load_file(str(clip16 / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float16}
    backbone = build_backbone(f"hf:{clip16}")
    assert {p.dtype for p in backbone.parameters()} == {torch.float32}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_fp16_checkpoint_trains_and_validates(clip16, easy_h5, tmp_path, bf16):
    from galaxalign.runs import load_run, read_summary
    from galaxalign.training import train

    config = tiny(easy_h5, tmp_path / "run", backbone=f"hf:{clip16}", image_size=0, method="clip", epochs=1, bf16=bf16)
    run_dir = train(config)
    assert math.isfinite(read_summary(run_dir)["test_accuracy"])
    assert all(p.dtype == torch.float32 for p in load_run(run_dir).model.parameters())


def test_clip_logit_scale_is_the_checkpoints(clip32):
    model = GalaxAlignModel(build_backbone(f"hf:{clip32}"))
    assert model.logit_scale.item() == pytest.approx(math.log(100.0), abs=1e-6)
    assert GalaxAlignModel(build_backbone("tiny")).logit_scale.item() == pytest.approx(math.log(1 / 0.07), abs=1e-6)


@pytest.fixture
def clip_without_text(clip32, tmp_path) -> Path:
    folder = tmp_path / "no-text"
    shutil.copytree(clip32, folder)
    weights = load_file(str(folder / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith("text_model.")}
    assert len(kept) < len(weights)
    save_file(kept, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_missing_weights_are_an_error_naming_them(clip_without_text):
    with pytest.raises(GalaxAlignError, match=r"lacks \d+ tensors: text_model\..*--allow-missing-weights") as err:
        build_backbone(f"hf:{clip_without_text}")
    assert "\n" not in str(err.value)


def test_allow_missing_weights_builds_and_names_them(clip_without_text, caplog):
    with caplog.at_level(logging.WARNING, logger="galaxalign.models.backbones"):
        backbone = build_backbone(f"hf:{clip_without_text}", allow_missing_weights=True)
    assert backbone.text_dim == 32
    assert any("text_model." in r.getMessage() and "start random" in r.getMessage() for r in caplog.records)


def test_allow_missing_weights_is_an_hf_flag(easy_h5, tmp_path):
    with pytest.raises(GalaxAlignError, match="allow_missing_weights applies to hf: backbones only"):
        tiny(easy_h5, tmp_path / "run", allow_missing_weights=True)


# ---------------------------------------------------------------- the Hub and transformers


def test_absent_hub_model_offline_is_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GalaxAlignError) as err:
        build_backbone("hf:nobody-here/no-such-clip")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("hf:nobody-here/no-such-clip: no CLIPModel checkpoint")
    assert "HF_HUB_OFFLINE is set" in message


class _LoopbackHub:
    """A Hugging Face Hub on 127.0.0.1 serving one folder as repo `someone/tiny-clip`, in the
    Hub's own URL layout (`/<repo>/resolve/<revision>/<file>`, with commit and ETag headers)."""

    def __init__(self, folder: Path):
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        requests: list[str] = []
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, send_body: bool) -> None:
                requests.append(self.path)
                found = re.match(r"^/someone/tiny-clip/resolve/[^/]+/([^?]+)", self.path)
                if self.path.startswith("/api/models/someone/tiny-clip/tree/"):
                    data, status = b"[]", 200  # no extra folders (chat templates) in this repo
                elif found and (folder / found.group(1)).is_file():
                    data, status = (folder / found.group(1)).read_bytes(), 200
                else:
                    data, status = b"", 404
                self.send_response(status)
                self.send_header("X-Repo-Commit", "0" * 40)
                if status == 404:
                    self.send_header("X-Error-Code", "EntryNotFound" if found else "RepoNotFound")
                else:
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def test_hub_id_is_fetched_when_not_offline(clip32, tmp_path):
    import subprocess
    import sys

    hub = _LoopbackHub(clip32)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "HF_ENDPOINT": hub.url,  # read when huggingface_hub is imported: hence a fresh process
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),  # an empty cache: only the (loopback) network has it
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": "1",
    }
    code = (
        "from galaxalign.models import build_backbone\n"
        "b = build_backbone('hf:someone/tiny-clip')\n"
        "print(b.image_dim, b.text_dim, b.resize.interpolation)"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    finally:
        hub.server.shutdown()
        hub.server.server_close()
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["48", "32", "bicubic"]
    assert any(path.endswith("/resolve/main/model.safetensors") for path in hub.requests)


def test_declared_transformers_floor_is_the_codes():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (declared,) = [d for d in dependencies if re.match(r"transformers\b", d)]
    assert declared == f"transformers>={TRANSFORMERS_FLOOR}"
    check_transformers_version(TRANSFORMERS_FLOOR)
    import transformers

    check_transformers_version(transformers.__version__)  # the installed one is new enough
    with pytest.raises(GalaxAlignError, match=r"transformers>=4\.46\.0 .*found 4\.45\.2"):
        check_transformers_version("4.45.2")


def _imports(module: str) -> set[str]:
    """The galaxalign modules a source file imports, at any level (lazy imports included)."""
    import ast

    tree = ast.parse((ROOT / "src" / (module.replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("galaxalign")}


def test_tower_interface_is_a_leaf_the_registry_imports():
    assert _imports("galaxalign.models.tower") == set()
    assert "galaxalign.models.backbones" not in _imports("galaxalign.models.efficientnet")
    assert {"galaxalign.models.tower", "galaxalign.models.efficientnet"} <= _imports("galaxalign.models.backbones")


# ---------------------------------------------------------------- preprocessing


def test_preprocessing_follows_the_checkpoint(clip32, tmp_path, caplog):
    folder = tmp_path / "custom"
    shutil.copytree(clip32, folder)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre |= {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "size": {"shortest_edge": 40}}
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    with caplog.at_level(logging.INFO, logger="galaxalign.models.backbones"):
        backbone = build_backbone(f"hf:{folder}")
    assert backbone.image_mean == (0.1, 0.2, 0.3) and backbone.image_std == (0.4, 0.5, 0.6)
    assert backbone.resize == Resize("bicubic", 32 / 40)
    (line,) = [r.getMessage() for r in caplog.records if "preprocessing" in r.getMessage()]
    assert "mean (0.1, 0.2, 0.3)" in line and "bicubic" in line and "0.8" in line


@pytest.mark.parametrize(
    "pre,interpolation,fraction",
    [
        ({"resample": 3, "size": 224, "crop_size": 224}, "bicubic", 1.0),  # openai/clip-vit-base-patch16
        (
            {"resample": 2, "size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}},
            "bilinear",
            0.875,
        ),
        ({"resample": 3, "size": 256, "crop_size": 224, "do_center_crop": False}, "bicubic", 1.0),
    ],
)
def test_preprocessor_config_fields(pre, interpolation, fraction):
    mean, std, resize = clip_preprocessing(pre, "hf:x", "test")
    assert (mean, std) == (tuple(OPENAI_MEAN), tuple(OPENAI_STD))
    assert resize == Resize(interpolation, fraction)


def test_missing_preprocessor_config_falls_back_loudly(caplog):
    with caplog.at_level(logging.INFO, logger="galaxalign.models.backbones"):
        mean, std, resize = clip_preprocessing({}, "hf:x", "not in x")
    assert (mean, std, resize) == (tuple(OPENAI_MEAN), tuple(OPENAI_STD), Resize("bicubic"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "OpenAI CLIP's statistics" in record.getMessage()


def test_unknown_resample_is_said(caplog):
    with caplog.at_level(logging.INFO, logger="galaxalign.models.backbones"):
        _, _, resize = clip_preprocessing({"resample": 1}, "hf:x", "test")  # PIL's LANCZOS
    assert resize.interpolation == "bicubic"
    assert "resample 1 has no torch equivalent" in caplog.records[0].getMessage()


def _images(size: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(size)
    return [easy_image(c, rng, size) for c in (2, 8, 1)[:n]]


# PIL rounds its output to uint8 (half a level); torch's antialiased kernels mirror PIL's, so the
# device path agrees with PIL within 1 level (bilinear) or 4 levels at bicubic overshoots, and on
# average within half a level.
@pytest.mark.parametrize("interpolation,worst", [("bilinear", 1.5), ("bicubic", 4.0)])
@pytest.mark.parametrize("src,dst", [(256, 224), (48, 32)])
def test_device_resize_matches_pil_within_tolerance(interpolation, worst, src, dst):
    pil = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[interpolation]
    images = _images(src)
    ours = to_tensor_batch(images, dst, Resize(interpolation)).numpy() * 255
    ref = np.stack([np.asarray(Image.fromarray(im).resize((dst, dst), pil)) for im in images]).transpose(0, 3, 1, 2)
    diff = np.abs(ours - ref.astype(np.float64))
    assert diff.max() <= worst and diff.mean() <= 0.5


def test_eval_pixels_equal_training_pixels_at_identity():
    images = _images(48)
    resize = Resize("bicubic", 0.875)
    augment = GalaxyAugment(32, resize=resize)
    b = len(images)
    identity = {
        "angle": torch.zeros(b),
        "flip_h": torch.zeros(b, dtype=torch.bool),
        "flip_v": torch.zeros(b, dtype=torch.bool),
        "scale": torch.ones(b),
        "shift": torch.zeros(b, 2),
    }
    chw = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in images])
    trained = augment.apply(chw, identity)
    assert torch.allclose(trained, to_tensor_batch(images, 32, resize), atol=1e-5)
    assert torch.equal(to_tensor_batch(chw, 32, resize), resize_batch(chw, 32, resize))
    assert not torch.allclose(trained, to_tensor_batch(images, 32, Resize("bilinear", 0.875)), atol=1e-3)


def test_mixed_sizes_resize_one_by_one():
    images = [*_images(48, 2), *_images(40, 1)]
    out = to_tensor_batch(images, 32, Resize("bicubic"))
    assert out.shape == (3, 3, 32, 32)
    assert torch.equal(out[2:], to_tensor_batch(images[2:], 32, Resize("bicubic")))


def test_trainer_augments_with_the_checkpoints_interpolation(clip32, easy_h5, tmp_path):
    from galaxalign.training.trainer import Trainer

    trainer = Trainer(tiny(easy_h5, tmp_path / "run", backbone=f"hf:{clip32}", image_size=0), False)
    assert trainer.builder.augment.resize == Resize("bicubic") == trainer.model.backbone.resize


# ---------------------------------------------------------------- self-contained runs


def test_hf_run_classifies_and_indexes_without_its_checkpoint(easy_h5, tmp_path, monkeypatch, capsys):
    from galaxalign.cli import main

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    write_tiny_clip(work / "clip")
    monkeypatch.chdir(work)
    config = tiny(easy_h5, "run", backbone="hf:clip", image_size=0, method="galaxalign-stage1", epochs=1)
    from galaxalign.training import train

    train(config)
    assert json.loads((work / "run" / "config.json").read_text())["backbone"] == "hf:clip"
    carried = sorted(p.name for p in (work / "run" / "backbone").iterdir())
    assert "config.json" in carried and "preprocessor_config.json" in carried and "tokenizer_config.json" in carried
    assert not any(name.endswith((".safetensors", ".bin")) for name in carried)  # weights live in the run

    elsewhere.mkdir()
    shutil.move(str(work / "run"), str(elsewhere / "run"))
    shutil.rmtree(work)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    png = other / "galaxy.png"
    Image.fromarray(easy_image(8, np.random.default_rng(1), 48)).save(png)
    run = str(elsewhere / "run")
    capsys.readouterr()  # the training's own lines
    assert main(["classify", "--run", run, "--json", str(png)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert 0 < result["probability"] <= 1
    assert main(["index", "--run", run, "--data", str(easy_h5), "--out", "idx", "--quiet", "--device", "cpu"]) == 0
    assert (other / "idx").is_dir()

    from galaxalign.runs import load_run

    loaded = load_run(run)
    assert loaded.model.backbone.resize == Resize("bicubic")
    assert loaded.model.backbone.image_mean == tuple(OPENAI_MEAN)
