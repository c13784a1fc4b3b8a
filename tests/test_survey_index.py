"""The survey index: built from embedding shards, resumable, memory-mapped, tuned, with sky queries."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from galaxalign.errors import GalaxAlignError
from galaxalign.search import shards
from galaxalign.search.index import exact_knn, recall_at
from galaxalign.search.survey import (
    RELEASE_EVERY,
    BuildOptions,
    Cone,
    SurveyIndex,
    SurveySearcher,
    build_survey_index,
    plan_index,
)
from test_faults import small_disk  # noqa: F401 (a fixture: a real 64 KiB file system)

FP = "c" * 64
DIM, SHARDS, PER_SHARD = 32, 4, 900
OPTIONS = BuildOptions(threads=1, tune_queries=48, opq=False)


def write_embedding_folder(folder: Path, seed: int = 0, shards_n: int = SHARDS, per: int = PER_SHARD) -> np.ndarray:
    """Clustered unit vectors with sky positions, in shards laid out as `embed` writes them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(24, DIM))
    shards.write_catalogue_manifest(
        folder, {"run": "", "fingerprint": FP, "dim": DIM, "sources": [f"in/part{k}.h5" for k in range(shards_n)]}
    )
    out = []
    for k in range(shards_n):
        v = centres[rng.integers(0, len(centres), per)] + 0.6 * rng.normal(size=(per, DIM))
        v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
        ra = rng.uniform(0, 360, per)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, per)))
        if k == 0:
            ra[:3], dec[:3] = [150.0, 150.001, 359.9995], [2.0, 2.0, -0.5]
        shards.write_shard(
            folder,
            k,
            ids=[f"g{k}-{i}" for i in range(per)],
            ra=ra,
            dec=dec,
            source=f"in/part{k}.h5",
            rows=np.arange(per),
            vectors=v,
            fingerprint=FP,
        )
        out.append(v)
    return np.concatenate(out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    vectors = write_embedding_folder(root / "emb")
    index = build_survey_index(root / "emb", root / "big", OPTIONS)
    return root, vectors, index


def test_plan_follows_faiss_guidelines_by_size():
    small = plan_index(3600, 32)
    assert small.nlist == 64 and small.factory.startswith("IVF64,PQ4")  # 4 sqrt(N) = 240, capped at N / 39
    mid = plan_index(10**7, 256)
    assert mid.factory == "OPQ32_128,IVF16384_HNSW32,PQ32"  # 4 sqrt(1e7) = 12649 -> 2^14; D/8 bytes; y = 4x
    assert 30 * mid.nlist <= mid.train_size <= 256 * mid.nlist
    assert plan_index(10**9, 256, build_memory_gb=32).nlist == 1 << 17  # 4 sqrt(1e9) = 126k -> 2^17
    with pytest.raises(GalaxAlignError, match="--build-memory-gb 0.01 holds"):
        plan_index(10**8, 256, build_memory_gb=0.01)


def test_survey_index_recall_against_exact_search(built):
    root, vectors, index = built
    assert len(index) == SHARDS * PER_SHARD and index.manifest["tuning"]["image"]["reached"]
    rows = np.random.default_rng(5).choice(len(vectors), 40, replace=False)
    queries = vectors[rows].astype(np.float32)
    _, truth = exact_knn(vectors.astype(np.float32), queries, 10)
    found = np.array([r for _, r in index.search(queries, 10)])
    assert recall_at(found, truth) >= 0.95
    scores, top = index.search(queries[:1], 3)[0]
    q = queries[0] / np.linalg.norm(queries[0])
    np.testing.assert_allclose(scores, vectors[top].astype(np.float32) @ q, rtol=1e-5)  # exact re-rank


def test_tuning_is_stored_per_query_type_and_used(built):
    root, _, index = built
    manifest = json.loads((root / "big" / "survey.json").read_text())
    assert {"image", "cross"} <= set(manifest["tuning"])
    assert manifest["tuning"]["cross"]["from"] == "displaced"
    assert index.depth("text").nprobe == manifest["tuning"]["cross"]["nprobe"]
    assert index.depth("image").rerank == manifest["tuning"]["image"]["rerank"]


def test_files_are_recorded_and_build_folder_removed(built):
    root, _, index = built
    files = index.manifest["files"]
    assert set(files) >= {"populated.index", "lists.ivfdata", "vectors.f16", "catalogue.arrow"}
    assert files["vectors.f16"]["bytes"] == SHARDS * PER_SHARD * DIM * 2
    assert not (root / "big" / "build").exists()


def test_vectors_file_is_the_shards_in_global_row_order(built):
    root, vectors, index = built
    np.testing.assert_array_equal(np.asarray(index.vectors), vectors)
    assert index.galaxy_id(PER_SHARD + 2) == "g1-2" and index.row("g3-7") == 3 * PER_SHARD + 7
    with pytest.raises(GalaxAlignError, match="no galaxy with id 'nope'"):
        index.row("nope")


def test_index_moves_with_its_folder(built, tmp_path):
    root, _, index = built
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(root / "big", moved)
    other = SurveyIndex.open(moved)
    q = np.asarray(index.vectors[:2], np.float32)
    assert [r.tolist() for _, r in other.search(q, 5)] == [r.tolist() for _, r in index.search(q, 5)]


def _vm_flags(path: Path) -> list[str]:
    """The kernel's flags of this process's mappings of `path` (rr: random access advised)."""
    lines, flags = Path("/proc/self/smaps").read_text().splitlines(), []
    for i, line in enumerate(lines):
        if line.endswith(str(path)):
            flags.append(next(x for x in lines[i + 1 :] if x.startswith("VmFlags:")))
    return flags


def test_vectors_are_mapped_for_random_access(built):
    root = built[0]
    served = SurveyIndex.open(root / "big")
    assert _vm_flags(root / "big" / "vectors.f16") and all(" rr" in f for f in _vm_flags(root / "big" / "vectors.f16"))
    assert served.vectors.shape[0] > 0


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path`."""
    lines, total = Path("/proc/self/smaps").read_text().splitlines(), 0
    for i, line in enumerate(lines):
        if line.endswith(str(path)):
            total += int(next(x for x in lines[i + 1 :] if x.startswith("Rss:")).split()[1])
    return total


def test_a_server_lets_its_mapped_pages_go_every_so_many_queries(built, tmp_path):
    """Re-ranked rows map their pages (and cached neighbours) into the server; every
    RELEASE_EVERY queries they are let go, so its RSS does not grow with the queries answered."""
    root, vectors, _ = built
    shutil.copytree(root / "big", tmp_path / "big")  # a path no other open index maps
    served = SurveyIndex.open(tmp_path / "big")
    path = tmp_path / "big" / "vectors.f16"
    assert np.asarray(served.vectors, np.float32).shape == vectors.shape  # every page touched
    assert _mapped_kb(path) >= 0.9 * path.stat().st_size / 1024
    queries = vectors[: RELEASE_EVERY - 1].astype(np.float32)
    served.search(queries, 10)
    assert _mapped_kb(path) >= 0.9 * path.stat().st_size / 1024  # not yet
    served.search(queries[:1], 10)
    assert _mapped_kb(path) < 0.1 * path.stat().st_size / 1024


def _rss_file_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssFile:")) / 1024


def test_exact_scan_of_a_mapped_file_lets_its_pages_go(tmp_path):
    """An exact scan over memory-mapped vectors (the build's tuning, the benchmark's truth) gives
    the in-memory answer without keeping the file's pages resident in the process."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200_000, 128)).astype(np.float16)  # 51 MB, 4 scan blocks
    path = tmp_path / "vectors.f16"
    vectors.tofile(path)
    queries = rng.standard_normal((8, 128)).astype(np.float32)
    mapped = np.memmap(path, dtype=np.float16, mode="r", shape=vectors.shape)
    before = _rss_file_mb()
    scores, ids = exact_knn(mapped, queries, 10)
    assert _rss_file_mb() - before < 10  # of the 51 MB read
    want_scores, want_ids = exact_knn(vectors, queries, 10)
    assert np.array_equal(ids, want_ids) and np.allclose(scores, want_scores)


def test_by_id_leaves_the_galaxy_out(built):
    _, _, index = built
    hits = SurveySearcher(index).by_id("g2-11", k=5)
    assert len(hits) == 5 and "g2-11" not in [h.id for h in hits]
    assert hits[0].source == "in/part2.h5" or hits[0].source.startswith("in/part")


def test_by_position_finds_the_nearest_galaxy_within_tolerance(built):
    _, _, index = built
    row, sep = index.nearest(150.0 + 1 / 3600, 2.0)  # 1 arcsec (times cos dec) east of g0-0
    assert row == 0 and 0.9 < sep < 1.1
    assert index.nearest(0.0005, -0.5)[0] == 2  # across RA = 0
    hits = SurveySearcher(index).by_position(150.0, 2.0, k=4)
    assert "g0-0" not in [h.id for h in hits] and len(hits) == 4
    with pytest.raises(GalaxAlignError, match="no catalogue galaxy within 5 arcsec of RA 10, Dec 10"):
        index.nearest(10.0, 10.0)


def test_cone_filter_keeps_only_galaxies_inside(built):
    _, vectors, index = built
    cone = Cone(150.0, 2.0, 30.0)
    members = index.cone_rows(cone)
    ra, dec = index.ra.to_numpy(), index.dec.to_numpy()
    from astropy.coordinates import SkyCoord

    sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(150.0, 2.0, unit="deg")).deg
    assert members.tolist() == np.flatnonzero(sep <= 30.0).tolist()  # the same set astropy's full scan gives
    hits = SurveySearcher(index).by_vector(vectors[100].astype(np.float32), 10, cone=cone)
    assert hits and all(h.index in set(members.tolist()) for h in hits)
    inside = vectors[members].astype(np.float32) @ vectors[100].astype(np.float32)
    assert hits[0].index == members[np.argmax(inside)]  # exact within a small cone


def test_cone_lookup_reads_a_declination_band_not_all_rows(built):
    _, _, index = built
    band = index._band(2.0, 1.0)
    assert 0 < len(band) < len(index) / 20


def test_bad_cone_is_refused():
    with pytest.raises(GalaxAlignError, match="cone: need dec in"):
        Cone(10.0, 95.0, 1.0)


def _kill_at(step: str, emb: Path, out: Path) -> int:
    code = (
        "import os, sys\n"
        "from galaxalign.search.survey import BuildOptions, build_survey_index\n"
        "def step(name):\n"
        f"    if name == {step!r}: os.kill(os.getpid(), 9)\n"
        f"build_survey_index({str(emb)!r}, {str(out)!r}, BuildOptions(threads=1, tune_queries=48, opq=False), on_step=step)\n"
    )
    src = str(Path(__file__).parents[1] / "src")
    return subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src, "OMP_NUM_THREADS": "1"}).returncode


@pytest.mark.slow
def test_build_killed_mid_way_resumes_to_identical_files(built, tmp_path):
    root, _, index = built
    out = tmp_path / "big"
    assert _kill_at("block-1", root / "emb", out) == -9
    assert (out / "build" / "block-00001.index").exists() and not (out / "build" / "block-00002.index").exists()
    assert not (out / "survey.json").exists()
    with pytest.raises(GalaxAlignError, match="survey.json: no such survey index manifest"):
        SurveyIndex.open(out)
    assert _kill_at("merge", root / "emb", out) == -9  # resumed, then killed again after the merge
    resumed = build_survey_index(root / "emb", out, OPTIONS)
    assert resumed.manifest["files"] == index.manifest["files"]  # sizes and sha256 of every file, bytes equal
    assert resumed.manifest["tuning"] == index.manifest["tuning"]


def test_rebuild_with_nothing_changed_is_a_no_op(built):
    root, _, index = built
    before = (root / "big" / "survey.json").stat().st_mtime_ns
    build_survey_index(root / "emb", root / "big", OPTIONS)
    assert (root / "big" / "survey.json").stat().st_mtime_ns == before


def _copy(built, tmp_path) -> Path:
    import shutil

    root = built[0]
    shutil.copytree(root / "big", tmp_path / "big")
    return tmp_path / "big"


def test_truncated_lists_file_is_refused(built, tmp_path):
    big = _copy(built, tmp_path)
    data = (big / "lists.ivfdata").read_bytes()
    (big / "lists.ivfdata").write_bytes(data[: len(data) // 2])
    with pytest.raises(GalaxAlignError) as err:
        SurveyIndex.open(big)
    assert str(big / "lists.ivfdata") in str(err.value) and "truncated or rewritten" in str(err.value)


def test_changed_byte_is_refused_by_checksum(built, tmp_path):
    big = _copy(built, tmp_path)
    data = bytearray((big / "vectors.f16").read_bytes())
    data[0] ^= 0x01
    (big / "vectors.f16").write_bytes(bytes(data))
    with pytest.raises(GalaxAlignError, match=r"vectors.f16: sha256 differs from the index manifest"):
        SurveyIndex.open(big)


def test_truncated_index_file_is_refused_even_without_checks(built, tmp_path):
    big = _copy(built, tmp_path)
    data = (big / "populated.index").read_bytes()
    (big / "populated.index").write_bytes(data[:100])
    with pytest.raises(GalaxAlignError, match=r"populated.index: unreadable FAISS index"):
        SurveyIndex.open(big, verify="none")


def test_truncated_shard_is_refused_at_build(tmp_path):
    write_embedding_folder(tmp_path / "emb", shards_n=2, per=300)
    path = shards.shard_path(tmp_path / "emb", 1)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(GalaxAlignError, match=r"shard-00001.parquet: \d+ bytes, its manifest says"):
        build_survey_index(tmp_path / "emb", tmp_path / "big", OPTIONS)
    assert not (tmp_path / "big").exists()


def test_foreign_shard_is_refused_at_build(tmp_path):
    write_embedding_folder(tmp_path / "emb", shards_n=2, per=300)
    v = (np.ones((4, DIM)) / np.sqrt(DIM)).astype(np.float16)
    other = tmp_path / "other"
    shards.write_shard(
        other, 0, ids=list("abcd"), ra=[0] * 4, dec=[0] * 4, source="x", rows=range(4), vectors=v, fingerprint="d" * 64
    )
    for suffix in (".parquet", ".json"):
        (other / f"shard-00000{suffix}").replace(tmp_path / "emb" / f"shard-00001{suffix}")
    with pytest.raises(GalaxAlignError, match=r"shard-00001.parquet: embedded by run fingerprint dddddddddddd"):
        build_survey_index(tmp_path / "emb", tmp_path / "big", OPTIONS)


def test_index_command_picks_survey_for_an_embedding_folder_and_says_why(built, tmp_path, capsys):
    from galaxalign.cli import main

    root = built[0]
    import shutil

    shutil.copytree(root / "big", tmp_path / "big")  # already built: the command resumes to a no-op
    assert (
        main(
            [
                "index",
                "--data",
                str(root / "emb"),
                "--out",
                str(tmp_path / "big"),
                "--threads",
                "1",
                "--no-opq",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"index kind: survey ({root / 'emb'} is an embedding folder)"
    assert out[-1].startswith(f"survey index of {SHARDS * PER_SHARD} galaxies in {tmp_path / 'big'}: IVF64,PQ4")


def test_index_command_refuses_flags_the_chosen_kind_ignores(built, capsys):
    from galaxalign.cli import main

    root = built[0]
    assert main(["index", "--data", str(root / "emb"), "--out", str(root / "x"), "--batch-size", "8"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "galaxalign: error: index: --batch-size do nothing for a survey index; drop them"
    )
    assert main(["index", "--data", str(root / "emb"), "--out", str(root / "x"), "--kind", "hnsw"]) == 2
    assert "an embedding folder makes a survey index, not --kind hnsw" in capsys.readouterr().err


def test_index_kind_choice_for_image_catalogues_by_size():
    from galaxalign.search.index import SURVEY_FROM, IndexConfig, choose_index_kind

    config = IndexConfig(data="cat.h5", out="idx", run="run")
    assert choose_index_kind(config, 5_000) == ("flat", "5000 galaxies, under 200000: exact search is cheap")
    assert choose_index_kind(config, 500_000)[0] == "ivf"
    with pytest.raises(GalaxAlignError, match="embed them first with `galaxalign embed`"):
        choose_index_kind(config, SURVEY_FROM + 1)
    with pytest.raises(GalaxAlignError, match="--nlist do nothing for a flat index"):
        choose_index_kind(IndexConfig(data="cat.h5", out="idx", run="run", nlist=64), 5_000)
    with pytest.raises(GalaxAlignError, match="--run is needed"):
        choose_index_kind(IndexConfig(data="cat.h5", out="idx"), 5_000)


def test_search_command_by_sky_position_with_a_cone(built, capsys):
    from galaxalign.cli import main

    root = built[0]
    argv = ["search", "--index", str(root / "big"), "--ra", "150", "--dec", "2", "-k", "3", "--json"]
    assert main([*argv, "--cone", "150,2,40"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == {"position": [150.0, 2.0]} and len(result["hits"]) == 3
    assert all(h["id"] != "g0-0" for h in result["hits"])
    assert main([*argv, "--cone", "150,2"]) == 2
    assert "--cone must be RA,DEC,RADIUS" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input and faults (issue 23, section 5)


def _one_line(capsys, argv: list[str]) -> str:
    from galaxalign.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("galaxalign: error: ") and "\n" not in err, err
    return err


def test_a_shard_of_another_width_is_refused_at_build(tmp_path):
    write_embedding_folder(tmp_path / "emb", shards_n=2, per=300)
    other = tmp_path / "other"
    v = (np.ones((4, 16)) / 4).astype(np.float16)
    shards.write_shard(
        other, 0, ids=list("abcd"), ra=[0] * 4, dec=[0] * 4, source="x", rows=range(4), vectors=v, fingerprint=FP
    )
    for suffix in (".parquet", ".json"):
        (other / f"shard-00000{suffix}").replace(tmp_path / "emb" / f"shard-00001{suffix}")
    with pytest.raises(GalaxAlignError, match=r"shard-00001.parquet: vectors are 16 wide, the catalogue's are 32"):
        build_survey_index(tmp_path / "emb", tmp_path / "big", OPTIONS)
    assert not (tmp_path / "big").exists()


def test_a_missing_or_half_written_shard_is_named_at_build(tmp_path, capsys):
    write_embedding_folder(tmp_path / "emb", shards_n=3, per=200)
    argv = ["index", "--data", str(tmp_path / "emb"), "--out", str(tmp_path / "big"), "--threads", "1", "--quiet"]
    shards.manifest_path(tmp_path / "emb", 2).unlink()  # killed between the Parquet's rename and its manifest
    err = _one_line(capsys, argv)
    assert f"{shards.shard_path(tmp_path / 'emb', 2)}: has no manifest (half-written" in err
    shards.shard_path(tmp_path / "emb", 2).unlink()
    assert f"{shards.shard_path(tmp_path / 'emb', 2)}: missing" in _one_line(capsys, argv)
    assert not (tmp_path / "big").exists()


def test_a_full_disk_mid_build_is_one_line_and_a_rerun_finishes(tmp_path, small_disk):  # noqa: F811
    """In child processes: FAISS's merge keeps the block files mapped until its process ends."""
    import contextlib
    import os

    emb = tmp_path / "emb"
    write_embedding_folder(emb, shards_n=2, per=80)
    env = {"PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}

    def index(out: Path) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "galaxalign", "index", "--data", str(emb), "--out", str(out), "--quiet"]
        return subprocess.run([*argv, "--threads", "1", "--no-opq"], env=env, capture_output=True, text=True)

    assert index(tmp_path / "ref").returncode == 0
    reference = json.loads((tmp_path / "ref" / "survey.json").read_text())["files"]
    out, filler = small_disk / "big", small_disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    os.truncate(filler, filler.stat().st_size - 4096 * 4)  # 16 KiB: less than the index needs
    failed = index(out)
    err = failed.stderr.strip()
    assert failed.returncode == 2 and err.startswith("galaxalign: error: ") and "\n" not in err, err
    assert f"{out}/" in err and "not written, no space left on device" in err
    assert not (out / "survey.json").exists() and not list(out.rglob(".*.tmp"))
    filler.unlink()
    assert index(out).returncode == 0
    assert json.loads((out / "survey.json").read_text())["files"] == reference  # the same bytes as an undisturbed build


@pytest.mark.parametrize("how", ["truncated lists", "changed vector byte", "catalogue removed", "extra bytes"])
def test_serve_refuses_an_index_whose_files_differ_from_the_manifest(built, tmp_path, capsys, how):
    big = _copy(built, tmp_path)
    name = {"truncated lists": "lists.ivfdata", "changed vector byte": "vectors.f16"}.get(how, "catalogue.arrow")
    path = big / name
    data = bytearray(path.read_bytes())
    if how == "truncated lists":
        path.write_bytes(bytes(data[:-10]))
    elif how == "changed vector byte":
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    elif how == "catalogue removed":
        path.unlink()
    else:
        path.write_bytes(bytes(data) + b"\0")
    err = _one_line(capsys, ["serve", "--index", str(big), "--port", "0"])
    assert f"{path}: " in err
    expected = {
        "truncated lists": "bytes, the index manifest says",
        "changed vector byte": "sha256 differs from the index manifest",
        "catalogue removed": "missing (incomplete survey index)",
        "extra bytes": "bytes, the index manifest says",
    }[how]
    assert expected in err
