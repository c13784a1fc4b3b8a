"""The worker loader (same batches for any worker count, errors as one line, fork safe with h5py)
and the one-image-per-chunk h5 converter (bit-exact, everything copied, nothing half-written)."""

import argparse
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from galaxalign.config import add_config_arguments, config_from_args
from galaxalign.data import FolderDataset, H5Dataset, open_dataset
from galaxalign.data import convert as convert_module
from galaxalign.data.convert import COMPRESSIONS, GZIP_LEVEL, ConvertConfig, convert_h5
from galaxalign.data.loader import RawImages, image_batches, index_batches, worker_context
from galaxalign.errors import GalaxAlignError
from galaxalign.synth import SynthConfig, write_synth


@pytest.fixture(scope="module")
def sim_h5(tmp_path_factory) -> Path:
    """20 Galaxy10-Sim galaxies, 32 px, deflated one image per chunk, with a `params` group."""
    path = tmp_path_factory.mktemp("loader") / "sim.h5"
    write_synth(path, SynthConfig(per_class=2, size=32, workers=1))
    return path


def damaged_copy(source: Path, target: Path, image: int) -> Path:
    """`source` with 50 bytes of image `image`'s compressed chunk zeroed: opens fine, fails on read."""
    raw = bytearray(source.read_bytes())
    with h5py.File(source) as f:
        offset = f["images"].id.get_chunk_info(image).byte_offset
    raw[offset + 10 : offset + 60] = bytes(50)
    target.write_bytes(bytes(raw))
    return target


def no_workers_left() -> bool:
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not multiprocessing.active_children()


def as_list(batches) -> list:
    return [b if isinstance(b, list) else b.clone() for b in batches]


# ---------------------------------------------------------------- the loader


def test_workers_give_the_same_batches_in_the_same_order(sim_h5):
    dataset = H5Dataset(sim_h5)
    order = np.random.default_rng(0).permutation(len(dataset))
    lists = index_batches(order, 3)
    assert [len(b) for b in lists] == [3] * 6 + [2] and sum(lists, []) == order.tolist()
    alone = as_list(image_batches(dataset, lists, workers=0))
    forked = as_list(image_batches(dataset, lists, workers=2, prefetch=1))
    assert len(alone) == len(forked) == len(lists)
    for rows, a, b in zip(lists, alone, forked):
        assert a.dtype == torch.uint8 and a.shape == (len(rows), 3, 32, 32)
        assert torch.equal(a, b)
        expected = np.stack([dataset[i].image for i in rows]).transpose(0, 3, 1, 2)
        assert np.array_equal(a.numpy(), expected)
    assert no_workers_left()


def test_workers_fork_on_linux_and_leave_the_parents_handle_alone(sim_h5):
    """A forked worker reads through the HDF5 file it inherited (same fd, pread): the parent must
    keep reading, and keep its file lock, after the workers have closed theirs."""
    if sys.platform.startswith("linux"):
        assert worker_context().get_start_method() == "fork"
    dataset = H5Dataset(sim_h5)
    before = dataset[7].image.copy()
    code = (
        f"import h5py\ntry:\n h5py.File({str(sim_h5)!r}, 'r+').close()\n"
        "except OSError:\n print('locked')\nelse:\n print('free')"
    )
    probe = [sys.executable, "-c", code]
    locked = subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "locked"
    for _ in range(2):  # two rounds of workers, each opening and closing the file
        list(image_batches(dataset, [[0, 1], [2, 3], [4, 5]], workers=2))
    assert no_workers_left()
    assert np.array_equal(dataset[7].image, before)
    if locked:  # HDF5 file locking is on here: the workers' closing must not have released it
        assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "locked"


def test_spawned_workers_where_fork_is_not_used_give_the_same_batches(sim_h5, monkeypatch):
    """The macOS/Windows path: the dataset, the collate and the worker set-up are pickled."""
    from galaxalign.data import loader

    dataset = H5Dataset(sim_h5)
    lists = index_batches(range(7), 3)
    forked = as_list(image_batches(dataset, lists, workers=1))
    monkeypatch.setattr(loader, "worker_context", lambda: multiprocessing.get_context("spawn"))
    spawned = as_list(image_batches(dataset, lists, workers=1))
    assert all(torch.equal(a, b) for a, b in zip(forked, spawned)) and len(spawned) == 3
    assert no_workers_left()


def test_a_dataset_view_and_raw_images_read_the_parent(sim_h5):
    dataset = H5Dataset(sim_h5)
    view = dataset.subset([5, 0, 19])
    raw = RawImages(view)
    assert len(raw) == 3 and raw[0].shape == (3, 32, 32) and raw[0].dtype == torch.uint8
    (batch,) = image_batches(view, [[2, 0]], workers=1)
    assert np.array_equal(batch.numpy(), np.stack([dataset[19].image, dataset[5].image]).transpose(0, 3, 1, 2))


def write_png(path: Path, height: int, width: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def test_images_of_different_shapes_come_as_lists(tmp_path):
    for name, (h, w) in {"a.png": (16, 16), "b.png": (16, 16), "c.png": (20, 12), "d.png": (16, 16)}.items():
        write_png(tmp_path / "gallery" / name, h, w, seed=ord(name[0]))
    dataset = FolderDataset(tmp_path / "gallery")
    lists = [[0, 1], [1, 2, 3], [3]]
    for workers in (0, 2):
        same, mixed, single = image_batches(dataset, lists, workers=workers)
        assert isinstance(same, torch.Tensor) and same.shape == (2, 3, 16, 16)
        assert isinstance(mixed, list) and [tuple(t.shape) for t in mixed] == [(3, 16, 16), (3, 20, 12), (3, 16, 16)]
        assert all(t.is_contiguous() and t.dtype == torch.uint8 for t in mixed)
        assert np.array_equal(mixed[1].numpy(), dataset[2].image.transpose(2, 0, 1))
        assert single.shape == (1, 3, 16, 16)
    assert no_workers_left()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_h5_image_is_its_own_one_line_error(sim_h5, tmp_path, workers):
    dataset = H5Dataset(damaged_copy(sim_h5, tmp_path / "damaged.h5", image=5))
    with pytest.raises(GalaxAlignError) as direct:
        dataset[5]
    seen = []
    with pytest.raises(GalaxAlignError) as caught:
        for batch in image_batches(dataset, [[0, 1], [2, 3], [4, 5], [6, 7]], workers=workers):
            seen.append(batch)
    message = str(caught.value)
    assert message == str(direct.value) and "\n" not in message
    assert message.startswith(f"{tmp_path / 'damaged.h5'}: key 'images': image 5 unreadable")
    assert len(seen) == 2  # the batches before the bad one arrive, in order
    assert no_workers_left()


def test_an_unreadable_image_file_in_a_worker_is_a_one_line_error(tmp_path):
    for i in range(4):
        write_png(tmp_path / "gallery" / f"{i}.png", 8, 8, seed=i)
    (tmp_path / "gallery" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    dataset = FolderDataset(tmp_path / "gallery")
    with pytest.raises(GalaxAlignError) as caught:
        list(image_batches(dataset, index_batches(range(4), 1), workers=2))
    assert str(caught.value).startswith(f"{tmp_path / 'gallery' / '2.png'}: cannot read image")
    assert "\n" not in str(caught.value) and "DataLoader" not in str(caught.value)
    assert no_workers_left()


def test_stopping_early_stops_the_workers(sim_h5):
    batches = image_batches(H5Dataset(sim_h5), index_batches(range(20), 2), workers=2)
    assert next(batches).shape == (2, 3, 32, 32)
    batches.close()
    assert no_workers_left()


def test_bad_arguments_fail_before_any_read(sim_h5):
    dataset = H5Dataset(sim_h5)
    with pytest.raises(GalaxAlignError, match="workers must be 0 or more, got -1"):
        image_batches(dataset, [[0]], workers=-1)
    with pytest.raises(GalaxAlignError, match="prefetch must be at least 1"):
        image_batches(dataset, [[0]], workers=1, prefetch=0)
    with pytest.raises(IndexError, match="index 20 out of range for 20 galaxies"):
        image_batches(dataset, [[0], [3, 20]])
    with pytest.raises(GalaxAlignError, match="index batch 1 is empty"):
        image_batches(dataset, [[0], []])
    with pytest.raises(GalaxAlignError, match="batch size must be at least 1"):
        index_batches([1, 2], 0)
    assert index_batches(np.array([4, 5, 6]), 5) == [[4, 5, 6]] and index_batches([], 2) == []
    assert torch.equal(next(image_batches(dataset, [[-1]]))[0], RawImages(dataset)[19])


# ---------------------------------------------------------------- the converter


@pytest.fixture
def layered_h5(tmp_path) -> Path:
    """Galaxy10 layout whose chunks span 5 images (as automatic chunking would), with a `params`
    group, a nested group, and attributes of several types on the file, a group and `images`."""
    rng = np.random.default_rng(1)
    path = tmp_path / "src.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "images", data=rng.integers(0, 256, (12, 9, 7, 3), dtype=np.uint8), chunks=(5, 9, 7, 3), compression="gzip"
        )
        f.create_dataset("ans", data=rng.integers(0, 10, 12).astype(np.uint8))
        f.create_dataset("ra", data=rng.uniform(0, 360, 12))
        f.create_dataset("ids", data=np.array([f"g{i}".encode() for i in range(12)]))
        params = f.create_group("params")
        params.create_dataset("sersic_n", data=rng.uniform(0.5, 6, 12).astype(np.float32))
        params.create_group("deeper").create_dataset("x", data=np.arange(3))
        params.attrs["units"] = "mixed"
        f.attrs["generator"] = "test"
        f.attrs["size"] = np.int16(9)
        f.attrs["bands"] = np.array([b"g", b"r", b"z"])
        f.attrs["weights"] = np.array([0.5, 0.25], np.float32)
        f["images"].attrs["note"] = "pixels"
    return path


def assert_same_tree(a: h5py.Group, b: h5py.Group) -> None:
    assert sorted(a.keys()) == sorted(b.keys())
    for name in a.attrs:
        assert a.attrs.get_id(name).dtype == b.attrs.get_id(name).dtype
        assert np.array_equal(np.asarray(a.attrs[name]), np.asarray(b.attrs[name]))
    assert sorted(a.attrs) == sorted(b.attrs)
    for key in a:
        if isinstance(a[key], h5py.Group):
            assert_same_tree(a[key], b[key])
        else:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key][()], b[key][()])
            assert sorted(a[key].attrs) == sorted(b[key].attrs)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_convert_copies_bit_for_bit_with_the_chunking_asked_for(layered_h5, tmp_path, monkeypatch, compression):
    monkeypatch.setattr(convert_module, "BLOCK_BYTES", 400)  # several blocks, each one whole source chunk
    with h5py.File(layered_h5) as f:
        assert convert_module._block(f["images"], 9 * 7 * 3) == 5
    out = convert_h5(layered_h5, tmp_path / "out" / "copy.h5", compression=compression)
    assert out == tmp_path / "out" / "copy.h5"
    with h5py.File(layered_h5) as a, h5py.File(out) as b:
        assert_same_tree(a, b)
        assert b["images"].chunks == (1, 9, 7, 3)
        assert b["images"].compression == {"none": None, "lzf": "lzf", "gzip": "gzip"}[compression]
        assert b["images"].compression_opts == (GZIP_LEVEL if compression == "gzip" else None)
        assert b["images"].attrs["note"] == "pixels"
    assert list(tmp_path.glob("out/.copy.h5.*")) == []


def test_convert_of_a_synthetic_file_opens_as_the_same_dataset(sim_h5, tmp_path):
    out = convert_h5(sim_h5, tmp_path / "sim-lzf.h5", compression="lzf")
    a, b = H5Dataset(sim_h5), open_dataset(out)
    assert np.array_equal(a.labels, b.labels) and a.ids == b.ids
    assert all(np.array_equal(a.attributes()[k], b.attributes()[k]) for k in a.attributes())
    assert all(np.array_equal(a[i].image, b[i].image) for i in range(len(a)))


def test_convert_errors_name_the_file_and_leave_nothing(layered_h5, sim_h5, tmp_path, monkeypatch):
    def fails(*args, match: str):
        with pytest.raises(GalaxAlignError, match=match) as caught:
            convert_h5(*args)
        assert "\n" not in str(caught.value)

    out = tmp_path / "out.h5"
    fails(tmp_path / "nope.h5", out, match=r"nope\.h5: no such file")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    fails(tmp_path / "junk.h5", out, match=r"junk\.h5: not a readable HDF5 file")
    with h5py.File(tmp_path / "noimages.h5", "w") as f:
        f.create_dataset("ans", data=np.zeros(3, np.uint8))
    fails(tmp_path / "noimages.h5", out, match=r"noimages\.h5: missing key 'images' \(found: ans\)")
    with h5py.File(tmp_path / "group.h5", "w") as f:
        f.create_group("images")
    fails(tmp_path / "group.h5", out, match="expected a dataset, found a group")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((0, 4, 4, 3), np.uint8))
    fails(tmp_path / "empty.h5", out, match=r"expected a non-empty \(N, H, W, 3\) array, got shape \(0, 4, 4, 3\)")
    fails(layered_h5, layered_h5, match="the output is the source file")
    (tmp_path / "link.h5").symlink_to(layered_h5)
    fails(layered_h5, tmp_path / "link.h5", match="the output is the source file")
    fails(layered_h5, tmp_path, match="is a folder")
    fails(layered_h5, out, "zstd", match=r"--compression must be one of none, lzf, gzip, got 'zstd'")
    assert not out.exists() and list(tmp_path.glob(".out.h5.*")) == []

    # A damaged image late in the source: earlier blocks were written, yet nothing is left, and
    # an earlier output at that name survives.
    out.write_bytes(b"previous")
    monkeypatch.setattr(convert_module, "BLOCK_BYTES", 32 * 32 * 3 * 4)
    damaged = damaged_copy(sim_h5, tmp_path / "damaged.h5", image=17)
    fails(damaged, out, match=r"damaged\.h5: key 'images': images 16\.\.19 unreadable")
    assert out.read_bytes() == b"previous" and list(tmp_path.glob(".out.h5.*")) == []
    assert (layered_h5.stat().st_size, sim_h5.exists()) == (layered_h5.stat().st_size, True)


def test_convert_config_builds_the_cli_flags():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ConvertConfig)
    args = parser.parse_args(["--src", "a.h5", "--out", "b.h5", "--compression", "lzf"])
    config = config_from_args(ConvertConfig, args)
    assert config == ConvertConfig(src="a.h5", out="b.h5", compression="lzf")
    assert parser.parse_args(["--src", "a.h5", "--out", "b.h5"]).compression == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["--src", "a.h5", "--out", "b.h5", "--compression", "zstd"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--src", "a.h5"])


def test_cli_convert_rewrites_and_reports(sim_h5, tmp_path, capsys):
    from galaxalign.cli import main

    out = tmp_path / "fast.h5"
    assert main(["convert", "--src", str(sim_h5), "--out", str(out), "--compression", "lzf", "--quiet"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with h5py.File(sim_h5) as a, h5py.File(out) as b:
        assert b["images"].compression == "lzf" and b["images"].chunks[0] == 1
        assert np.array_equal(a["images"][()], b["images"][()]) and np.array_equal(a["ans"][()], b["ans"][()])
    assert main(["convert", "--src", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x.h5"), "--quiet"]) == 2
    assert "missing.h5" in capsys.readouterr().err and not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------- the layout check


def galaxy10_h5(path: Path, n: int = 300, size: int = 64, **storage) -> Path:
    """A Galaxy10-layout h5 whose `images` are stored as `storage` asks (h5py keywords)."""
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), **storage)
        f.create_dataset("ans", data=(np.arange(n) % 10).astype(np.uint8))
    return path


def layout_lines(caplog, path: Path) -> list[str]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="galaxalign.data.datasets"):
        H5Dataset(path)
        H5Dataset(path)  # a second open in the same process says nothing more
    return [r.getMessage() for r in caplog.records]


def test_slow_h5_layout_is_said_in_one_line_with_the_convert_command(tmp_path, caplog):
    auto = galaxy10_h5(tmp_path / "auto.h5", chunks=True, compression="gzip")  # h5py's automatic chunking
    with h5py.File(auto) as f:
        assert f["images"].chunks[0] > 1  # chunks span several images, as the guessed layout does
    (line,) = layout_lines(caplog, auto)
    assert line.startswith(f"{auto}: key 'images' is slow to read at random (gzip chunks of ")
    assert line.endswith(f"galaxalign convert --src {auto} --out {tmp_path / 'auto_per_image.h5'}")
    assert "\n" not in line
    # Many small chunks per image are slow even stored raw.
    (line,) = layout_lines(caplog, galaxy10_h5(tmp_path / "tiles.h5", chunks=(1, 8, 8, 1)))
    assert "each image read gathers 192 chunks" in line


def test_fast_h5_layouts_say_nothing(tmp_path, caplog):
    auto = galaxy10_h5(tmp_path / "auto.h5", chunks=True, compression="gzip")
    fast = [convert_h5(auto, tmp_path / f"{c}.h5", compression=c) for c in COMPRESSIONS]  # convert's layout
    fast.append(galaxy10_h5(tmp_path / "contiguous.h5"))
    fast.append(galaxy10_h5(tmp_path / "tiles.h5", chunks=(1, 32, 32, 3), compression="gzip"))  # 4 tiles of one image
    fast.append(galaxy10_h5(tmp_path / "blocks.h5", chunks=(4, 64, 64, 3)))  # raw: read in place
    for path in fast:
        assert layout_lines(caplog, path) == [], path


def test_slow_h5_layout_line_reaches_stderr_without_logging_set_up(tmp_path):
    """A command that never configured logging still shows the line (logging's last resort)."""
    auto = galaxy10_h5(tmp_path / "auto.h5", n=40, chunks=(8, 64, 64, 3), compression="lzf")
    code = f"from galaxalign.data import H5Dataset; H5Dataset({str(auto)!r}); H5Dataset({str(auto)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    (line,) = done.stderr.splitlines()
    assert "lzf chunks of (8, 64, 64, 3): each image read inflates 1 chunk(s) holding 8 images each" in line
