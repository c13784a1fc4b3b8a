"""The embedding shard format: what `embed` writes and the survey index reads."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from galaxalign.errors import GalaxAlignError
from galaxalign.search import shards

FP = "a" * 64


def _vectors(n, dim=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)


def _write(folder, k=0, n=5, dim=8, fingerprint=FP, seed=0):
    return shards.write_shard(
        folder,
        k,
        ids=[f"g{k}-{i}" for i in range(n)],
        ra=np.linspace(10, 11, n),
        dec=np.full(n, np.nan),
        source=f"in/part{k}.h5",
        rows=np.arange(n),
        vectors=_vectors(n, dim, seed),
        fingerprint=fingerprint,
    )


def _catalogue(folder, n_shards=2, dim=8):
    shards.write_catalogue_manifest(
        folder, {"run": "runs/x", "fingerprint": FP, "dim": dim, "sources": [f"in/part{k}.h5" for k in range(n_shards)]}
    )


def test_shard_round_trips_columns_and_fp16_vectors(tmp_path):
    path = _write(tmp_path, k=3, n=7)
    assert path.name == "shard-00003.parquet"
    table = shards.read_shard(path)
    assert table.column_names == list(shards.COLUMNS)
    assert table.schema.field("vector").type.list_size == 8
    assert pa.types.is_float16(table.schema.field("vector").type.value_type)
    np.testing.assert_array_equal(shards.shard_vectors(table), _vectors(7))
    assert table.column("id").to_pylist()[2] == "g3-2"
    assert table.column("source").to_pylist() == ["in/part3.h5"] * 7
    assert np.isnan(table.column("dec").to_numpy()).all()
    manifest = json.loads((tmp_path / "shard-00003.json").read_text())
    assert manifest == {
        "shard": 3,
        "source": "in/part3.h5",
        "rows": 7,
        "dim": 8,
        "fingerprint": FP,
        "bytes": path.stat().st_size,
        "sha256": shards.file_sha256(path),
        "format": 1,
    }


def test_shard_vectors_are_a_view_of_the_arrow_buffer(tmp_path):
    table = shards.read_shard(_write(tmp_path, n=4))
    vectors = shards.shard_vectors(table)
    assert not vectors.flags.owndata and vectors.dtype == np.float16 and vectors.shape == (4, 8)


def test_done_shards_lists_only_shards_with_a_matching_manifest(tmp_path):
    _write(tmp_path, k=0)
    _write(tmp_path, k=1)
    _write(tmp_path, k=2)
    shards.manifest_path(tmp_path, 1).unlink()  # parquet renamed in, killed before its manifest
    with open(shards.shard_path(tmp_path, 2), "ab") as f:  # rewritten after its manifest
        f.write(b"x")
    assert sorted(shards.done_shards(tmp_path)) == [0]
    assert shards.done_shards(tmp_path / "absent") == {}


def test_verify_shard_names_a_half_written_shard(tmp_path):
    _write(tmp_path, k=0)
    shards.manifest_path(tmp_path, 0).unlink()
    with pytest.raises(GalaxAlignError, match=r"shard-00000.parquet: has no manifest"):
        shards.verify_shard(tmp_path, 0)


def test_verify_shard_catches_a_changed_byte_by_sha256(tmp_path):
    path = _write(tmp_path, k=0, n=50)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the data pages: same size, same footer
    path.write_bytes(bytes(data))
    shards.verify_shard(tmp_path, 0, check_sha=False)  # sizes alone cannot see it
    with pytest.raises(GalaxAlignError, match=r"shard-00000.parquet: sha256 differs"):
        shards.verify_shard(tmp_path, 0)


def test_truncated_parquet_is_a_one_line_error_naming_it(tmp_path):
    path = _write(tmp_path, k=0, n=50)
    shards.manifest_path(tmp_path, 0).unlink()  # no manifest: the reader itself must notice
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(GalaxAlignError) as err:
        shards.read_shard(path)
    assert str(path) in str(err.value) and "truncated or not a Parquet file" in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_parquet_with_manifest_is_refused_by_size(tmp_path):
    path = _write(tmp_path, k=0, n=50)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(GalaxAlignError, match=r"shard-00000.parquet: \d+ bytes, its manifest says \d+"):
        shards.read_shard(path)


def test_wrong_width_is_refused_on_write_and_on_verify(tmp_path):
    _catalogue(tmp_path, dim=8)
    with pytest.raises(GalaxAlignError, match=r"shard-00000.parquet: vectors are 4 wide, the catalogue's are 8"):
        _write(tmp_path, k=0, dim=4)
    assert not shards.shard_path(tmp_path, 0).exists()
    other = tmp_path / "other"
    _write(other, k=0, dim=4)  # written without a catalogue manifest, then put beside one
    _catalogue(other, dim=8)
    with pytest.raises(GalaxAlignError, match=r"vectors are 4 wide, the catalogue's are 8"):
        shards.verify_shard(other, 0)


def test_foreign_fingerprint_is_refused(tmp_path):
    _catalogue(tmp_path)
    with pytest.raises(
        GalaxAlignError, match=r"embedded by run fingerprint bbbbbbbbbbbb, this catalogue is aaaaaaaaaaaa"
    ):
        _write(tmp_path, k=0, fingerprint="b" * 64)
    other = tmp_path / "other"
    _write(other, k=0, fingerprint="b" * 64)
    _catalogue(other)
    with pytest.raises(GalaxAlignError, match=r"shard-00000.parquet: embedded by run fingerprint bbbb"):
        shards.verify_shard(other, 0)


def test_non_fp16_vector_column_is_refused(tmp_path):
    path = tmp_path / "shard-00000.parquet"
    table = pa.table({"vector": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(8, np.float32)), 4)})
    pq.write_table(table, path)
    with pytest.raises(GalaxAlignError, match=r"vector column is fixed_size_list<.*float>\[4\], not"):
        shards.read_shard(path)


def test_catalogue_shards_requires_every_input_shard(tmp_path):
    _catalogue(tmp_path, n_shards=3)
    _write(tmp_path, k=0)
    _write(tmp_path, k=1)
    with pytest.raises(GalaxAlignError, match=r"shard-00002.parquet: missing"):
        shards.catalogue_shards(tmp_path)
    _write(tmp_path, k=2)
    catalogue, manifests = shards.catalogue_shards(tmp_path)
    assert catalogue["dim"] == 8 and [m["shard"] for m in manifests] == [0, 1, 2]


def test_catalogue_manifest_round_trips_and_refuses_junk(tmp_path):
    _catalogue(tmp_path)
    manifest = shards.read_catalogue_manifest(tmp_path)
    assert manifest["format"] == 1 and manifest["modality"] == "image" and manifest["dim"] == 8
    (tmp_path / "embedding.json").write_text("{not json")
    with pytest.raises(GalaxAlignError, match=r"embedding.json: not a readable embedding catalogue manifest"):
        shards.read_catalogue_manifest(tmp_path)
    with pytest.raises(GalaxAlignError, match=r"no such embedding folder"):
        shards.read_catalogue_manifest(tmp_path / "absent")


def test_rewriting_a_shard_drops_its_old_manifest_first(tmp_path):
    _write(tmp_path, k=0, n=5)
    _write(tmp_path, k=0, n=9, seed=1)
    assert shards.verify_shard(tmp_path, 0)["rows"] == 9
    assert shards.read_shard(shards.shard_path(tmp_path, 0)).num_rows == 9
