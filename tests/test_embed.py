"""`galaxalign embed`: input shards in every format into embedding shards that survive kill -9,
split over torchrun ranks with the same vectors, and bad input as one line with nothing to trust.

Real paths throughout: a tiny trained run, real h5/Parquet/tar/folder files, the real CLI in
this process or in subprocesses (torchrun with gloo; SIGKILL from the test).
"""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import easy_image, tiny, write_galaxy10_h5
from galaxalign.cli import main
from galaxalign.data import open_dataset
from galaxalign.data.shards import expand_inputs, open_shard, shard_rows
from galaxalign.errors import GalaxAlignError
from galaxalign.search.shards import done_shards, read_shard, shard_vectors
from test_faults import small_disk  # noqa: F401 (a fixture: a real 64 KiB file system)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


# ---------------------------------------------------------------- input shards written as surveys ship them


def images(n: int, seed: int, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [easy_image(int(c), rng, size) for c in rng.choice([2, 8, 1], n)]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_h5(path: Path, n: int, seed: int) -> Path:
    write_galaxy10_h5(path, np.stack(images(n, seed)), np.zeros(n, dtype=np.int64))
    return path


def write_parquet(path: Path, n: int, seed: int, row_group_size: int = 7, sky: bool = True) -> Path:
    columns = {"id": [f"pq{seed}-{i}" for i in range(n)], "image": [png(im) for im in images(n, seed)]}
    if sky:
        columns |= {"ra": list(np.linspace(10, 20, n)), "dec": list(np.linspace(-5, 5, n))}
    table = (
        pa.table(columns, schema=None)
        if n
        else pa.table({"id": pa.array([], pa.string()), "image": pa.array([], pa.binary())})
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_tar(path: Path, n: int, seed: int) -> Path:
    with tarfile.open(path, "w") as tar:
        for i, image in enumerate(images(n, seed)):
            key = f"obj{seed:02d}{i:04d}"
            record = json.dumps({"id": f"tar{seed}-{i}", "ra": 100.0 + i, "dec": -30.0 + i}).encode()
            for name, data in ((f"{key}.png", png(image)), (f"{key}.json", record)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(path: Path, n: int, seed: int) -> Path:
    path.mkdir()
    for i, image in enumerate(images(n, seed)):
        Image.fromarray(image).save(path / f"g{i:03d}.png")
    return path


@pytest.fixture(scope="module")
def run_dir(stage1_run):
    return stage1_run.run_dir


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> list[Path]:
    """Four input shards, one per format, of different sizes (sorted names fix their numbers)."""
    root = tmp_path_factory.mktemp("inputs")
    return [
        write_h5(root / "a.h5", 13, 0),
        write_parquet(root / "b.parquet", 20, 1),
        write_tar(root / "c.tar", 9, 2),
        write_folder(root / "d", 6, 3),
    ]


def embed(*args: str) -> int:
    return main(["embed", *args, "--quiet", "--device", "cpu"])


def vector_bytes(folder: Path) -> dict[int, bytes]:
    return {k: shard_vectors(read_shard(folder / f"shard-{k:05d}.parquet")).tobytes() for k in done_shards(folder)}


def one_line_error(capsys, *args: str) -> str:
    assert embed(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("galaxalign: error: ") and "\n" not in err, err
    return err


# ---------------------------------------------------------------- reading input shards


def test_every_input_format_gives_its_images_ids_and_sky_positions(mixed):
    h5, parquet, tar, folder = mixed
    for path, seed, n in ((h5, 0, 13), (parquet, 1, 20), (tar, 2, 9), (folder, 3, 6)):
        dataset = open_shard(path)
        assert len(dataset) == n
        for i in (0, n // 2, n - 1):  # lossless PNG: the very pixels written
            np.testing.assert_array_equal(dataset[i].image, images(n, seed)[i])
    assert shard_rows(open_shard(h5), str(h5)).ids[:2] == ["a:0", "a:1"]  # no ids in the file: stem:row
    rows = shard_rows(open_shard(parquet), str(parquet))
    assert rows.ids[3] == "pq1-3" and rows.ra[-1] == 20.0 and rows.dec[0] == -5.0
    rows = shard_rows(open_shard(tar), str(tar))
    assert rows.ids[4] == "tar2-4" and rows.ra[4] == 104.0 and rows.dec[4] == -26.0
    rows = shard_rows(open_shard(folder), str(folder))
    assert rows.ids[0] == "g000.png" and np.isnan(rows.ra).all()
    np.testing.assert_array_equal(shard_rows(open_shard(h5), str(h5)).ra, open_dataset(h5)._meta["ra"])


def test_fits_folders_and_galaxy_datasets_catalogues_are_input_shards_too(run_dir, tmp_path):
    """The other layouts issue 23 names: a folder of FITS cutouts and a galaxy-datasets catalogue."""
    from astropy.io import fits

    fits_dir = tmp_path / "fits"
    fits_dir.mkdir()
    for i, image in enumerate(images(4, 7)):
        fits.PrimaryHDU(np.moveaxis(image, -1, 0).astype(np.float32)).writeto(fits_dir / f"c{i}.fits")
    cat_dir = tmp_path / "catalogue"
    cat_dir.mkdir()
    for i, image in enumerate(images(5, 8)):
        Image.fromarray(image).save(cat_dir / f"J{i:03d}.png")
    (cat_dir / "catalog.csv").write_text(
        "id_str,file_loc,ra,dec\n" + "".join(f"gal{i},J{i:03d}.png,{10 + i},{-i}\n" for i in range(5))
    )
    out = tmp_path / "emb"
    assert embed("--run", str(run_dir), "--inputs", str(cat_dir / "catalog.csv"), str(fits_dir), "--out", str(out)) == 0
    catalogue = json.loads((out / "embedding.json").read_text())
    assert catalogue["sources"] == [str(cat_dir / "catalog.csv"), str(fits_dir)] and catalogue["rows"] == 9
    table = read_shard(out / "shard-00000.parquet")
    assert table.column("id").to_pylist() == [f"gal{i}" for i in range(5)]
    assert table.column("ra").to_pylist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert read_shard(out / "shard-00001.parquet").num_rows == 4


def test_a_parquet_shard_is_read_in_forked_loader_workers(mixed, stage1_run):
    parquet = open_shard(mixed[1], stage1_run.scheme)
    alone = stage1_run.embed_dataset(parquet, batch_size=6).embeddings
    forked = stage1_run.embed_dataset(parquet, batch_size=6, workers=2).embeddings
    np.testing.assert_array_equal(alone, forked)


def test_inputs_are_sorted_once_each_and_a_pattern_must_match(mixed, tmp_path):
    root = mixed[0].parent
    listed = expand_inputs([str(root / "*.parquet"), str(root / "a.h5"), str(root / "*.h5"), str(root / "d")])
    assert listed == [str(root / "a.h5"), str(root / "b.parquet"), str(root / "d")]
    with pytest.raises(GalaxAlignError, match=r"\*\.fits: matches no input shard"):
        expand_inputs([str(root / "*.h5"), str(root / "*.fits")])
    with pytest.raises(GalaxAlignError, match="nope.h5: no such input shard"):
        expand_inputs([str(tmp_path / "nope.h5")])


# ---------------------------------------------------------------- embedding


def test_embed_writes_one_shard_per_input_holding_the_run_s_own_vectors(run_dir, stage1_run, mixed, tmp_path):
    out = tmp_path / "emb"
    assert embed("--run", str(run_dir), "--inputs", *map(str, mixed), "--out", str(out), "--batch-size", "8") == 0
    catalogue = json.loads((out / "embedding.json").read_text())
    assert catalogue["sources"] == sorted(map(str, mixed)) and catalogue["rows"] == 13 + 20 + 9 + 6
    assert catalogue["fingerprint"] == stage1_run.fingerprint and catalogue["dim"] == stage1_run.model.embed_dim
    assert sorted(done_shards(out)) == [0, 1, 2, 3]
    for k, path in enumerate(mixed):
        table = read_shard(out / f"shard-{k:05d}.parquet")
        assert table.column_names == ["id", "ra", "dec", "source", "row", "vector"]
        dataset = open_shard(path, stage1_run.scheme)
        expected = stage1_run.embed_dataset(dataset, batch_size=8).embeddings.astype(np.float16)
        assert shard_vectors(table).tobytes() == expected.tobytes()
        rows = shard_rows(dataset, str(path))
        assert table.column("id").to_pylist() == rows.ids
        assert table.column("row").to_pylist() == list(range(len(dataset)))
        assert set(table.column("source").to_pylist()) == {str(path)}
        np.testing.assert_array_equal(table.column("ra").to_numpy(), rows.ra)
    norms = np.linalg.norm(shard_vectors(read_shard(out / "shard-00001.parquet")).astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def test_a_rerun_skips_finished_shards_and_redoes_a_half_written_one(run_dir, mixed, tmp_path):
    out = tmp_path / "emb"
    args = ("--run", str(run_dir), "--inputs", *map(str, mixed[:3]), "--out", str(out))
    assert embed(*args) == 0
    reference = vector_bytes(out)
    finished = (out / "shard-00000.parquet").stat().st_mtime_ns
    (out / "shard-00001.json").unlink()  # killed after the rename, before the manifest
    (out / "shard-00002.parquet").write_bytes(b"PAR1 half")  # a stale Parquet beside a manifest
    (out / ".shard-00002.parquet.x1y2.tmp").write_bytes(b"a killed write")
    assert embed(*args) == 0
    assert (out / "shard-00000.parquet").stat().st_mtime_ns == finished
    assert vector_bytes(out) == reference and sorted(done_shards(out)) == [0, 1, 2]
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_a_run_killed_mid_catalogue_resumes_to_the_same_vectors(run_dir, tmp_path):
    inputs = [write_parquet(tmp_path / f"part-{k}.parquet", 150, 10 + k, row_group_size=50) for k in range(6)]
    command = [sys.executable, "-m", "galaxalign", "embed", "--run", str(run_dir), "--device", "cpu", "--quiet"]
    command += ["--batch-size", "4", "--inputs", *map(str, inputs)]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    subprocess.run([*command, "--out", str(reference)], env=ENV, check=True, capture_output=True)
    proc = subprocess.Popen([*command, "--out", str(resumed)], env=ENV, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (resumed / "shard-00000.json").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # waits and closes the stderr pipe
    partial = done_shards(resumed)
    assert 0 < len(partial) < len(inputs), "the kill came too late to interrupt anything"
    subprocess.run([*command, "--out", str(resumed)], env=ENV, check=True, capture_output=True)
    assert vector_bytes(resumed) == vector_bytes(reference) and len(vector_bytes(reference)) == len(inputs)
    assert done_shards(resumed) == done_shards(reference)  # the very files: sizes and sha256
    assert json.loads((resumed / "embedding.json").read_text()) == json.loads(
        (reference / "embedding.json").read_text()
    )


@pytest.mark.slow
def test_two_gloo_ranks_write_the_same_shards_as_one_process(run_dir, mixed, tmp_path):
    args = ["embed", "--run", str(run_dir), "--device", "cpu", "--batch-size", "5", "--inputs", *map(str, mixed)]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "galaxalign", *args, "--out", str(one), "--quiet"], env=ENV, check=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    # "--": torchrun's own parser would take --run for an abbreviation of its --run-path
    done = subprocess.run(
        [*torchrun, "galaxalign", "--", *args, "--out", str(two)], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert vector_bytes(two) == vector_bytes(one) and sorted(vector_bytes(two)) == [0, 1, 2, 3]
    assert json.loads((two / "embedding.json").read_text())["rows"] == 48
    assert done_shards(two) == done_shards(one)  # the same files: sizes and sha256 in the manifests
    assert "4 shards" in done.stdout and done.stdout.count("shards in") == 1  # rank 0 alone reports
    assert "embed:" in done.stderr and "shards 4/4" in done.stderr  # rank 0's one bar, to its end


# ---------------------------------------------------------------- bad input


def test_a_missing_input_shard_is_one_line_and_writes_nothing(run_dir, mixed, tmp_path, capsys):
    out = tmp_path / "emb"
    err = one_line_error(
        capsys, "--run", str(run_dir), "--inputs", str(mixed[0]), str(tmp_path / "gone.h5"), "--out", str(out)
    )
    assert f"{tmp_path / 'gone.h5'}: no such input shard" in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["garbage h5", "truncated parquet", "empty parquet", "empty tar", "bad image"])
def test_an_unreadable_or_empty_input_shard_is_one_line_naming_it(run_dir, mixed, tmp_path, capsys, kind):
    if kind == "garbage h5":
        bad = tmp_path / "z.h5"
        bad.write_bytes(b"not an hdf5 file at all")
        expected = "not a readable HDF5 file"
    elif kind == "truncated parquet":
        whole = write_parquet(tmp_path / "whole.parquet", 10, 5).read_bytes()
        bad = tmp_path / "z.parquet"
        bad.write_bytes(whole[: len(whole) // 2])
        expected = "not a readable Parquet file"
    elif kind == "empty parquet":
        bad = write_parquet(tmp_path / "z.parquet", 0, 5)
        expected = "empty input shard (0 rows)"
    elif kind == "empty tar":
        bad = tmp_path / "z.tar"
        tarfile.open(bad, "w").close()
        expected = "empty input shard"
    else:
        bad = tmp_path / "z.parquet"
        table = pq.read_table(write_parquet(tmp_path / "whole.parquet", 10, 5))
        broken = table.column("image").to_pylist()
        broken[6] = broken[6][:40]
        pq.write_table(table.set_column(table.column_names.index("image"), "image", pa.array(broken)), bad)
        expected = "row 6: cannot read image"
    out = tmp_path / "emb"
    err = one_line_error(capsys, "--run", str(run_dir), "--inputs", str(mixed[0]), str(bad), "--out", str(out))
    assert f"{bad}: " in err and expected in err
    assert sorted(done_shards(out)) == [0]  # the good shard before it stays done; the bad one has nothing
    assert not (out / "shard-00001.json").exists() and not list(out.glob(".*.tmp"))


def test_a_folder_of_another_run_or_width_is_refused(run_dir, easy_h5, mixed, tmp_path, capsys):
    from galaxalign.training import train

    out = tmp_path / "emb"
    assert embed("--run", str(run_dir), "--inputs", str(mixed[0]), "--out", str(out)) == 0
    other = train(tiny(easy_h5, tmp_path / "other", method="galaxalign-stage1", epochs=1, seed=3))
    err = one_line_error(capsys, "--run", str(other), "--inputs", str(mixed[0]), "--out", str(out))
    assert f"{out / 'embedding.json'}: embedded by run fingerprint" in err and "use another --out" in err
    err = one_line_error(capsys, "--run", str(run_dir), "--inputs", str(mixed[0]), str(mixed[1]), "--out", str(out))
    assert "made from 1 other input shards" in err
    (out / "embedding.json").unlink()  # then each finished shard's own manifest is checked
    err = one_line_error(capsys, "--run", str(other), "--inputs", str(mixed[0]), "--out", str(out))
    assert f"{out / 'shard-00000.json'}: embedded by run fingerprint" in err
    manifest = json.loads((out / "shard-00000.json").read_text())
    (out / "shard-00000.json").write_text(json.dumps({**manifest, "dim": 16}))
    err = one_line_error(capsys, "--run", str(run_dir), "--inputs", str(mixed[0]), "--out", str(out))
    assert f"{out / 'shard-00000.json'}: vectors are 16 wide, the catalogue's are 32" in err


def test_a_full_disk_mid_shard_is_one_line_and_a_rerun_finishes(run_dir, tmp_path, small_disk, capsys):  # noqa: F811
    inputs = [str(write_parquet(tmp_path / f"p{k}.parquet", 60, 20 + k)) for k in range(3)]
    reference = tmp_path / "reference"
    assert embed("--run", str(run_dir), "--inputs", *inputs, "--out", str(reference)) == 0
    out, filler = small_disk / "emb", small_disk / "filler"
    out.mkdir()
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:  # fill the disk to its last block
            f.write(b"\0" * 4096)

    def blocks(path: Path) -> int:
        return -(-path.stat().st_size // 4096) * 4096

    # room for the catalogue manifest and all of shard 0, and for part of shard 1 only
    room = blocks(reference / "embedding.json") + blocks(reference / "shard-00000.parquet")
    room += blocks(reference / "shard-00000.json") + 4096
    assert blocks(reference / "shard-00001.parquet") > 4096
    os.truncate(filler, filler.stat().st_size - room)
    err = one_line_error(capsys, "--run", str(run_dir), "--inputs", *inputs, "--out", str(out))
    assert f"{out}/shard-00001" in err and "not written, no space left on device" in err
    assert sorted(done_shards(out)) == [0] and not list(out.glob(".*.tmp"))
    assert not (out / "shard-00001.json").exists()
    filler.unlink()
    assert embed("--run", str(run_dir), "--inputs", *inputs, "--out", str(out)) == 0
    assert vector_bytes(out) == vector_bytes(reference)


def test_srun_tasks_without_torchrun_are_refused(run_dir, mixed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.delenv("RANK", raising=False)
    err = one_line_error(capsys, "--run", str(run_dir), "--inputs", str(mixed[0]), "--out", str(tmp_path / "emb"))
    assert "srun with several tasks but without torchrun" in err and "torchrun --nnodes" in err
