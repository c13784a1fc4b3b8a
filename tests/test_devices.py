"""`--device`: resolved in one place, checked before anything is written, and runs that load anywhere."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import one_line_error
from galaxalign.devices import autocast, check_device_name, resolve_device
from galaxalign.errors import GalaxAlignError
from galaxalign.runs import MODEL_FILE, load_run

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")


def test_auto_is_cpu_without_cuda_and_names_are_checked():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "cuda:-1", ""):
        with pytest.raises(GalaxAlignError, match="device must be"):
            check_device_name(bad)
    a = torch.full((2, 2), 1.0 + 2**-10)  # exact in float32; bfloat16's 8-bit mantissa rounds it to 1
    exact = torch.full((2, 2), 2 * (1.0 + 2**-10) ** 2)
    with autocast(torch.device("cpu")):  # CPU inference stays float32 by default
        product = a @ a
    assert product.dtype == torch.float32 and product.device.type == "cpu"
    assert torch.equal(product, exact)
    with autocast(torch.device("cpu"), enabled=True):  # the switch does reach the matmul
        low = a @ a
    assert low.dtype == torch.bfloat16 and not torch.equal(low.float(), exact)


@no_cuda
def test_train_on_cuda_without_cuda_writes_nothing(easy_h5, tmp_path, capsys):
    out = tmp_path / "run"
    err = one_line_error(
        capsys,
        ["train", "--data", str(easy_h5), "--out", str(out), "--backbone", "tiny", "--device", "cuda", "--quiet"],
    )
    assert "CUDA is not available" in err
    assert not out.exists()


@no_cuda
@pytest.mark.parametrize("command", ["evaluate", "index", "classify"])
def test_run_commands_on_cuda_without_cuda_write_nothing(stage1_run, easy_h5, tmp_path, capsys, command):
    out = tmp_path / "out"
    image = tmp_path / "galaxy.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    argv = {
        "evaluate": ["evaluate", "--run", str(stage1_run.run_dir), "--data", str(easy_h5), "--out", str(out)],
        "index": ["index", "--run", str(stage1_run.run_dir), "--data", str(easy_h5), "--out", str(out)],
        "classify": ["classify", "--run", str(stage1_run.run_dir), str(image)],
    }[command]
    err = one_line_error(capsys, [*argv, "--device", "cuda:0"])
    assert "CUDA is not available" in err
    assert not out.exists()


def test_bad_device_name_is_a_config_error(easy_h5, tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--data", str(easy_h5), "--out", str(tmp_path / "r"), "--device", "tpu"])
    assert "device must be" in err and not (tmp_path / "r").exists()


def test_saved_weights_are_cpu_tensors_and_load_on_any_device(stage1_run):
    state = load_file(str(stage1_run.run_dir / MODEL_FILE))
    assert all(t.device.type == "cpu" for t in state.values())
    run = load_run(stage1_run.run_dir, device="auto")
    assert run.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert run.embed_texts(["a bar"]).shape == (1, run.model.embed_dim)


def test_training_does_not_import_galsim():
    """A GPU host may lack GalSim: training (per-galaxy symbols included) reads parameters without it."""
    import subprocess
    import sys

    code = "import sys, galaxalign.training.trainer, galaxalign.cli; sys.exit('galsim' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_every_command_defaults_to_auto_device():
    """The README says `--device auto` is every command's default; the configs must agree."""
    from dataclasses import fields

    from galaxalign.evaluation.evaluate import EvaluateConfig
    from galaxalign.jobs.embed import EmbedConfig
    from galaxalign.run_config import TrainConfig
    from galaxalign.runs import ClassifyConfig
    from galaxalign.search.index import IndexConfig
    from galaxalign.search.query import SearchConfig
    from galaxalign.web.app import ServeConfig

    for config in (TrainConfig, EvaluateConfig, IndexConfig, ClassifyConfig, SearchConfig, ServeConfig, EmbedConfig):
        default = {f.name: f.default for f in fields(config)}["device"]
        assert default == "auto", f"{config.__name__}.device defaults to {default!r}"
