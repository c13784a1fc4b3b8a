"""Faults: processes killed mid-write, and damaged files on disk.

A killed `train` resumes to the same weights as an uninterrupted run, losing at most the steps
since its last checkpoint; a killed `index` or `synth` leaves the previous output untouched; and
every damaged file a user can meet (checkpoint, weights, index, HDF5) is a one-line error, exit 2;
and a full disk is a one-line error that leaves no partial file.
See docs/reliability.md for the outcomes.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import tiny, write_galaxy10_h5
from galaxalign.cli import main
from galaxalign.config import config_to_dict
from galaxalign.data import DatasetView, open_dataset
from galaxalign.errors import GalaxAlignError
from galaxalign.io import append_line, atomic_path
from galaxalign.runs import load_run, save_weights
from galaxalign.search import GalaxyIndex, build_index
from galaxalign.synth import SynthConfig, write_synth
from galaxalign.training import train
from galaxalign.training.state import TrainState
from test_training import checkpoint_weights

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def as_flags(config) -> list[str]:
    """CLI flags for a TrainConfig, so a subprocess trains exactly the config an in-process run does."""
    flags = []
    for key, value in config_to_dict(config).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            flags.append(f"{flag}={value}")
    return flags


def _default_ctrl_c() -> None:
    """A shell starts background jobs with SIGINT ignored and children inherit that, so under
    `make test &` the CLI would never see the test's Ctrl-C. Give the child the default back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def galaxalign(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "galaxalign", *args],
        env=ENV,
        preexec_fn=_default_ctrl_c,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 60) -> None:
    """Poll `ready()` until true; fail if the process ends first (it was meant to be interrupted)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(
                f"process ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    return proc.returncode


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes under a file or folder, by relative name."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def temp_names(folder: Path, target: str) -> list[Path]:
    """atomic_path's temporaries for `target`: '.NAME.<random>.tmp' beside it."""
    return sorted(folder.glob(f".{target}.*"))


def cli_error(capsys, *argv: str) -> str:
    """Run the CLI expecting a user error: exit 2 and one line on stderr, no traceback."""
    capsys.readouterr()
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("galaxalign: error: ") and err.count("\n") == 1, err
    return err


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "garbage":
        data = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    elif how == "empty":
        data = b""
    path.write_bytes(data)


@pytest.fixture(scope="module")
def run_dir(easy_h5, tmp_path_factory):
    return train(tiny(easy_h5, tmp_path_factory.mktemp("runs") / "clip", method="clip", epochs=1))


@pytest.fixture(scope="module")
def index_dir(run_dir, easy_h5, tmp_path_factory):
    run = load_run(run_dir)
    out = tmp_path_factory.mktemp("indexes") / "idx"
    build_index(run, DatasetView(open_dataset(easy_h5, scheme=run.scheme), range(30)), out)
    return out


# ---------------------------------------------------------------- killed processes


@pytest.mark.slow
def test_train_killed_then_resumed_matches_an_uninterrupted_run(easy_h5, tmp_path):
    config = dict(method="galaxalign", epochs=2, stage1_fraction=0.5, checkpoint_every=1)  # 12 steps, 2 stages
    killed = tmp_path / "killed"
    proc = galaxalign("train", *as_flags(tiny(easy_h5, killed, **config)), "--quiet")

    def checkpoint_step() -> int:
        try:  # os.replace swaps the file whole, but it may vanish between exists() and open()
            return int(torch.load(killed / "checkpoint.pt", weights_only=True)["step"])
        except (FileNotFoundError, RuntimeError, EOFError):
            return -1

    wait_for(proc, lambda: checkpoint_step() >= 2, "checkpoint step 2")
    assert interrupt(proc, signal.SIGKILL) == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    saved = checkpoint_step()
    assert saved >= 2  # the file under the final name is whole after a kill
    before = (killed / "metrics.jsonl").read_text().splitlines()
    done = max(r["step"] for r in map(json.loads, before) if "loss" in r)
    assert done - saved <= 1  # lost: at most the steps since the last checkpoint (checkpoint_every=1)

    resume = galaxalign("train", "--out", str(killed), "--resume", "--quiet")  # a fresh process, as after a crash
    _, err = resume.communicate(timeout=300)  # reads both pipes to the end and closes them
    assert resume.returncode == 0, err[-2000:]
    straight = train(tiny(easy_h5, tmp_path / "straight", **config))
    a, b = checkpoint_weights(straight), checkpoint_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # The log is cut back to the checkpoint before the redone steps are written: each step once.
    def log(run_dir):
        return [
            {k: v for k, v in r.items() if k != "images_per_s"}
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        ]

    assert log(killed) == log(straight)
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert lines[:2] == before[:2]  # timings included: the steps before the checkpoint were not redone
    assert int(torch.load(killed / "checkpoint.pt", weights_only=True)["metrics_lines"]) == len(lines)
    # A kill may leave an atomic_path temporary ('.checkpoint.pt.*.tmp'), never a partial final file.
    names = {p.name for p in killed.iterdir() if not p.name.startswith(".")}
    assert names == {"config.json", "split.json", "checkpoint.pt", "model.safetensors", "metrics.jsonl", "summary.json"}


def test_index_failing_mid_build_keeps_the_previous_index(run_dir, easy_h5, index_dir, tmp_path):
    out = tmp_path / "idx"
    shutil.copytree(index_dir, out)
    before = snapshot(out)
    run = load_run(run_dir)

    class Failing(DatasetView):
        def _image(self, i: int) -> np.ndarray:
            if i >= 20:
                raise RuntimeError("disk went away")
            return super()._image(i)

    with pytest.raises(RuntimeError, match="disk went away"):
        build_index(run, Failing(open_dataset(easy_h5, scheme=run.scheme), range(40)), out, batch_size=8)
    assert snapshot(out) == before
    assert temp_names(tmp_path, "idx") == []  # an exception cleans its temporary folder up
    assert len(GalaxyIndex.load(out)) == 30


def test_index_killed_mid_build_keeps_the_previous_index(run_dir, easy_h5, index_dir, tmp_path):
    with h5py.File(easy_h5) as f:
        images, labels = f["images"][()], f["ans"][()]
    big = tmp_path / "big.h5"
    write_galaxy10_h5(big, np.resize(images, (1000, *images.shape[1:])), np.resize(labels, 1000))
    out = tmp_path / "idx"
    shutil.copytree(index_dir, out)
    before = snapshot(out)
    proc = galaxalign(
        "index", "--run", str(run_dir), "--data", str(big), "--out", str(out), "--batch-size", "1", "--quiet"
    )
    wait_for(
        proc, lambda: any((t / "embeddings.npy").exists() for t in temp_names(tmp_path, "idx")), "the build to start"
    )
    time.sleep(0.5)
    assert interrupt(proc, signal.SIGKILL) == -signal.SIGKILL
    assert snapshot(out) == before
    leftovers = temp_names(tmp_path, "idx")
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp")  # SIGKILL cannot clean up: a hidden leftover
    assert len(GalaxyIndex.load(out)) == 30


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_synth_interrupted_keeps_the_previous_file(tmp_path, sig):
    out = tmp_path / "sim.h5"
    write_synth(out, SynthConfig(per_class=1, size=16, workers=1))
    before = snapshot(out)
    # Big enough that it cannot finish before the signal lands, even on an idle machine.
    proc = galaxalign("synth", "--out", str(out), "--per-class", "500", "--size", "64", "--workers", "1", "--quiet")
    wait_for(proc, lambda: any(t.stat().st_size for t in temp_names(tmp_path, "sim.h5")), "the temporary file")
    time.sleep(0.3)
    rc = interrupt(proc, sig)
    assert snapshot(out) == before
    if sig == signal.SIGINT:  # Ctrl-C: the CLI removes its temporary file and exits 130
        assert rc == 130 and temp_names(tmp_path, "sim.h5") == []
    else:
        assert rc == -signal.SIGKILL and len(temp_names(tmp_path, "sim.h5")) == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["sim.h5"]


# ---------------------------------------------------------------- damaged files


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "foreign", "other-model"])
def test_damaged_checkpoint_is_a_one_line_error_on_resume(run_dir, tmp_path, capsys, how):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "split.json", "checkpoint.pt"):
        shutil.copy(run_dir / name, run / name)
    checkpoint = run / "checkpoint.pt"
    if how == "foreign":
        torch.save({"weights": torch.zeros(3)}, checkpoint)
    elif how == "other-model":
        state = torch.load(checkpoint, weights_only=True)
        torch.save({**state, "model": {"layer.weight": torch.zeros(3)}}, checkpoint)
    else:
        damage(checkpoint, how)
    err = cli_error(capsys, "train", "--out", str(run), "--resume", "--quiet")
    assert "checkpoint.pt" in err


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "other-tensors"])
def test_damaged_weights_are_a_one_line_error(run_dir, easy_h5, tmp_path, capsys, how):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    if how == "other-tensors":
        save_file({"layer.weight": torch.zeros(3)}, str(run / "model.safetensors"))
    else:
        damage(run / "model.safetensors", how)
    image = tmp_path / "g.png"
    with h5py.File(easy_h5) as f:
        Image.fromarray(f["images"][0]).save(image)
    assert "model.safetensors" in cli_error(capsys, "classify", "--run", str(run), str(image))


def test_weights_changed_after_indexing_are_refused_by_search(run_dir, index_dir, tmp_path, capsys):
    """safetensors has no checksum: flipped bytes in tensor data load. The index's weights
    fingerprint is what catches them, for every query that embeds."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:-50] = bytes(b ^ 0xFF for b in data[-100:-50])
    weights.write_bytes(bytes(data))
    assert "built by run" in cli_error(
        capsys, "search", "--index", str(index_dir), "--run", str(run), "--text", "spiral"
    )


@pytest.mark.parametrize("name", ["index.faiss", "embeddings.npy", "manifest.json", "meta.npz", "thumbnails.npy"])
@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_index_file_is_a_one_line_error(index_dir, tmp_path, capsys, name, how):
    index = tmp_path / "idx"
    shutil.copytree(index_dir, index)
    damage(index / name, how)
    assert name in cli_error(capsys, "search", "--index", str(index), "--id", "3")


def test_index_arrays_of_the_wrong_shape_are_a_one_line_error(index_dir, tmp_path, capsys):
    index = tmp_path / "idx"
    shutil.copytree(index_dir, index)
    np.save(index / "embeddings.npy", np.zeros((3, 3), np.float32))
    assert "embeddings.npy: expected" in cli_error(capsys, "search", "--index", str(index), "--id", "3")


def h5_variant(path: Path, how: str, source: Path) -> None:
    if how in ("truncated", "garbage", "empty"):
        shutil.copy(source, path)
        damage(path, how)
        return
    with h5py.File(source) as f:
        images, labels = f["images"][()], f["ans"][()]
    if how == "float-images":
        write_galaxy10_h5(path, images.astype(np.float32), labels)
    elif how == "float-labels":
        with h5py.File(path, "w") as f:
            f.create_dataset("images", data=images)
            f.create_dataset("ans", data=labels.astype(np.float64))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "float-images", "float-labels"])
def test_bad_h5_is_a_one_line_error(easy_h5, tmp_path, capsys, how):
    bad = tmp_path / "bad.h5"
    h5_variant(bad, how, easy_h5)
    err = cli_error(
        capsys, "train", "--data", str(bad), "--out", str(tmp_path / "run"), "--backbone", "tiny", "--quiet"
    )
    assert str(bad) in err
    assert not (tmp_path / "run" / "config.json").exists()  # so the same --out works once the data is fixed


def test_h5_with_a_damaged_compressed_chunk_is_a_one_line_error(run_dir, tmp_path, capsys):
    """HDF5 opens such a file fine; the damage shows only when that image is read."""
    data = tmp_path / "sim.h5"
    write_synth(data, SynthConfig(per_class=2, size=32, workers=1))
    raw = bytearray(data.read_bytes())
    with h5py.File(data) as f:
        offset = f["images"].id.get_chunk_info(5).byte_offset
    raw[offset + 10 : offset + 60] = bytes(50)
    data.write_bytes(bytes(raw))
    err = cli_error(
        capsys, "index", "--run", str(run_dir), "--data", str(data), "--out", str(tmp_path / "idx"), "--quiet"
    )
    assert "sim.h5: key 'images': image 5 unreadable" in err
    assert not (tmp_path / "idx").exists() and temp_names(tmp_path, "idx") == []


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk():
    """A real 64 KiB filesystem (tmpfs), so writers meet the kernel's own ENOSPC. Mounting needs
    root, as on this project's machines and CI; elsewhere the /dev/full test below still runs."""
    where = Path(tempfile.mkdtemp(prefix="galaxalign-small-disk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True).returncode:
        where.rmdir()
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


def _torch_save(path: Path) -> None:
    with open(path, "wb") as file:
        torch.save({"weights": torch.zeros(100_000)}, file)


def _h5py_save(path: Path) -> None:
    with h5py.File(path, "w") as h5:
        h5["images"] = np.zeros(100_000)


@pytest.mark.parametrize(
    "writer", [_torch_save, _h5py_save, lambda p: p.write_text("x" * 100_000)], ids=["torch", "h5py", "text"]
)
def test_a_write_into_a_full_device_is_a_one_line_error(tmp_path, writer):
    target = tmp_path / "out.bin"
    target.write_text("previous")
    with pytest.raises(GalaxAlignError, match=r"out\.bin: not written, no space left on device") as caught:
        with atomic_path(target) as tmp:
            tmp.unlink()
            tmp.symlink_to("/dev/full")  # every write to /dev/full fails with ENOSPC
            writer(tmp)
    assert "\n" not in str(caught.value)
    assert target.read_text() == "previous" and temp_names(tmp_path, "out.bin") == []


def test_a_log_line_that_does_not_fit_is_cut_back_off(small_disk):
    log = small_disk / "metrics.jsonl"
    append_line(log, '{"step": 1}')
    with open(small_disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:  # fill the disk to its last block
            filler.write(b"\0" * 4096)
    filler_size = (small_disk / "filler").stat().st_size
    os.truncate(small_disk / "filler", filler_size - 8192)  # room for part of the next line only
    with pytest.raises(GalaxAlignError, match=r"metrics\.jsonl: not written, no space left on device"):
        append_line(log, json.dumps({"step": 2, "note": "x" * 20_000}))
    assert log.read_text() == '{"step": 1}\n'  # whole lines only


def test_synth_on_a_full_disk_is_a_one_line_error_leaving_nothing(small_disk, capsys):
    err = cli_error(
        capsys,
        "synth",
        "--out",
        str(small_disk / "sim.h5"),
        "--per-class",
        "20",
        "--size",
        "64",
        "--workers",
        "1",
        "--quiet",
    )
    assert f"{small_disk / 'sim.h5'}: not written, no space left on device" in err
    assert list(small_disk.iterdir()) == []


def test_train_on_a_full_disk_is_a_one_line_error_leaving_no_partial_file(easy_h5, small_disk, capsys):
    out = small_disk / "run"
    err = cli_error(capsys, "train", *as_flags(tiny(easy_h5, out, method="clip", epochs=1)), "--quiet")
    assert "no space left on device" in err and str(out) in err
    # What fitted (config, split, log) stays, so the run can resume once there is room; no temporaries.
    assert {p.name for p in out.iterdir()} <= {"config.json", "split.json", "metrics.jsonl"}


def test_weights_and_checkpoint_on_a_full_disk_are_one_line_errors(run_dir, small_disk):
    model = load_run(run_dir).model
    with pytest.raises(GalaxAlignError, match="model.safetensors: not written, no space left on device"):
        save_weights(small_disk / "model.safetensors", model)  # safetensors: a Rust IoError, no errno
    state = TrainState(model, torch.optim.AdamW(model.parameters()))
    with pytest.raises(GalaxAlignError, match="checkpoint.pt: not written, no space left on device"):
        state.save(small_disk / "checkpoint.pt")
    assert list(small_disk.iterdir()) == []
