"""Shared fixtures: small generated data sets written the way real ones are laid out."""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).parents[1]
BENCHMARKS = ROOT / "benchmarks"
# Scripts that tests import by name: the speed benchmarks, then each study's folder.
SCRIPT_DIRS = (BENCHMARKS, *sorted(p for p in (ROOT / "studies").iterdir() if p.is_dir()))
EASY_CLASSES = (2, 8, 1)  # round smooth blob, edge-on streak, merging pair (Galaxy10 ids)


@pytest.fixture(autouse=True)
def _quiet():
    """No bars or progress lines in the tests (the CLI's --quiet); a test that checks a bar turns them on."""
    from galaxalign.progress import set_quiet

    set_quiet(True)


def package_dir(name: str) -> Path:
    """The folder of an installed package (the data wheels are located, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(list(spec.submodule_search_locations)[0])


def benchmark_script(name: str):
    """Import benchmarks/NAME.py or studies/*/NAME.py as a module, so tests call what the scripts run."""
    import importlib.util
    import sys

    (path,) = [d / f"{name}.py" for d in SCRIPT_DIRS if (d / f"{name}.py").exists()]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI on `argv` and return its error: exit 2, one line on stderr, no traceback."""
    from galaxalign.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def train_alone_and_on_two_ranks(tmp_path: Path, args: list[str]) -> tuple[Path, Path]:
    """`galaxalign train ARGS` in one process (OUT one/) and as two gloo ranks under torchrun (two/)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    launches = {"one": [sys.executable, "-m", "galaxalign"], "two": [*torchrun, "-m", "galaxalign", "--"]}
    for name, launch in launches.items():
        done = subprocess.run(
            [*launch, "train", "--out", str(tmp_path / name), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return tmp_path / "one", tmp_path / "two"


def tiny(data, out, **overrides):
    """A TrainConfig for the tiny backbone that trains in seconds."""
    from galaxalign.training import TrainConfig

    values = dict(
        data=str(data),
        out=str(out),
        backbone="tiny",
        image_size=32,
        epochs=2,
        batch_size=12,
        lr=2e-3,
        head_lr=5e-3,
        trainable_blocks=-1,
        symbol_variants=3,
        embed_dim=32,
        warmup_fraction=0.0,
        val_fraction=0.2,
        test_fraction=0.2,
        threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def easy_image(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A clearly separable toy galaxy: a round blob, a thin streak, or two blobs."""
    y, x = np.mgrid[:size, :size] - size / 2 + rng.normal(0, 1.5, 2)[:, None, None]
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    if label == 2:
        light = np.exp(-(x**2 + y**2) / (2 * (size / 8) ** 2))
    elif label == 8:
        light = np.exp(-(u**2) / (2 * (size / 4) ** 2) - v**2 / (2 * 1.2**2))
    else:
        d = size / 5
        light = np.exp(-((u - d) ** 2 + v**2) / 8) + np.exp(-((u + d) ** 2 + v**2) / 8)
    light = light / light.max() + rng.normal(0, 0.05, light.shape)
    rgb = np.clip(light[..., None] * np.array([1.0, 0.85, 0.7]) * 255, 0, 255)
    return rgb.astype(np.uint8)


def write_galaxy10_h5(path, images: np.ndarray, labels: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
        f.create_dataset("ans", data=labels.astype(np.uint8))
        n = len(labels)
        for key in ("ra", "dec", "redshift"):
            f.create_dataset(key, data=np.linspace(0, 1, n))
        f.create_dataset("pxscale", data=np.full(n, 0.262))


@pytest.fixture(scope="session")
def easy_h5(tmp_path_factory):
    """A Galaxy10-layout h5 of 3 easy classes, 40 images each, 48 px."""
    rng = np.random.default_rng(0)
    labels = np.repeat(EASY_CLASSES, 40)
    rng.shuffle(labels)
    images = np.stack([easy_image(int(c), rng) for c in labels])
    path = tmp_path_factory.mktemp("data") / "easy.h5"
    write_galaxy10_h5(path, images, labels)
    return path


@pytest.fixture(scope="session")
def stage1_run(easy_h5, tmp_path_factory):
    """One tiny galaxalign-stage1 run, loaded, shared by the search, web and fault tests."""
    from galaxalign.runs import load_run
    from galaxalign.training import train

    config = tiny(easy_h5, tmp_path_factory.mktemp("runs") / "stage1", method="galaxalign-stage1", epochs=1)
    return load_run(train(config))


# ---- the web app over a tiny run: module fixtures of the web, bad-input and load tests
# (module scope: each test module builds its own index and app)

WEB_N = 30  # galaxies in the web tests' index
WEB_MAX_BYTES, WEB_MAX_PIXELS = 150_000, 300 * 300  # the page's 224 px sketch fits


@pytest.fixture(scope="module")
def run(stage1_run):
    return stage1_run


@pytest.fixture(scope="module")
def dataset(easy_h5, run):
    from galaxalign.data import DatasetView, open_dataset

    return DatasetView(open_dataset(easy_h5, scheme=run.scheme), range(WEB_N))


@pytest.fixture(scope="module")
def app(run, dataset, tmp_path_factory):
    from galaxalign.search import build_index
    from galaxalign.web import create_app

    index_dir = tmp_path_factory.mktemp("indexes") / "web"
    build_index(run, dataset, index_dir)
    return create_app(index_dir, max_upload_bytes=WEB_MAX_BYTES, max_pixels=WEB_MAX_PIXELS)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)  # a server error raises here: the API must never answer 500
