"""Symbols: deterministic, distinct per class, faithful to their spec, and written as promised."""

from __future__ import annotations

import io
import itertools
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.symbols import (
    Primitive,
    render_symbol,
    symbol_family,
    symbol_gallery,
    symbol_geometry,
    symbol_svg,
    write_symbol_set,
)
from galaxalign.taxonomy import load_scheme

SIZE = 96
G10 = load_scheme("galaxy10")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64) / 255


def ink_box(img: Image.Image) -> tuple[int, int]:
    """Width and height of the region holding visible ink."""
    ys, xs = np.nonzero(grey(img) > 0.1)
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


@pytest.fixture(scope="module")
def canonical() -> dict[str, Image.Image]:
    return {c.key: render_symbol(c.symbol, SIZE) for c in G10}


def test_same_seed_same_bytes_and_different_seeds_differ():
    spec = G10.by_key("barred_spiral").symbol
    assert png_bytes(render_symbol(spec, SIZE, seed=7)) == png_bytes(render_symbol(spec, SIZE, seed=7))
    assert symbol_svg(spec, SIZE, seed=7) == symbol_svg(spec, SIZE, seed=7)
    assert png_bytes(render_symbol(spec, SIZE)) == png_bytes(render_symbol(spec, SIZE))
    a, b = grey(render_symbol(spec, SIZE, seed=7)), grey(render_symbol(spec, SIZE, seed=8))
    assert np.abs(a - b).mean() > 0.02


def test_family_is_seeded_per_class_and_variant():
    c = G10.by_key("merging")
    fam = symbol_family(c, 3, SIZE, seed=1)
    assert [png_bytes(i) for i in fam] == [png_bytes(i) for i in symbol_family(c, 3, SIZE, seed=1)]
    assert len({png_bytes(i) for i in fam}) == 3
    assert png_bytes(symbol_family(c, 1, SIZE, seed=2)[0]) != png_bytes(fam[0])


def test_canonical_symbols_of_all_classes_are_pairwise_distinct(canonical):
    assert len(canonical) == 10
    for (ka, a), (kb, b) in itertools.combinations(canonical.items(), 2):
        diff = np.abs(grey(a) - grey(b)).mean()
        assert diff > 0.01, f"{ka} and {kb} look alike (mean difference {diff:.4f})"


def test_pitch_angle_separates_tight_from_loose_arms():
    tight = G10.by_key("unbarred_tight_spiral").symbol
    loose = replace(tight, pitch_deg=30.0)
    a, b = grey(render_symbol(tight, SIZE)), grey(render_symbol(loose, SIZE))
    assert np.abs(a - b).mean() > 0.05

    # A tight spiral winds further round: more arm segments cross a ray from the centre.
    def crossings(img: np.ndarray) -> int:
        ray = img[SIZE // 2, SIZE // 2 + SIZE // 6 :] > 0.6
        return int(np.count_nonzero(ray[1:] & ~ray[:-1]))

    assert crossings(a) > crossings(b)


def test_raster_is_antialiased(canonical):
    values = np.unique(np.asarray(canonical["unbarred_loose_spiral"]))
    assert len(values) > 20


def test_edge_on_is_wide_and_round_smooth_is_square(canonical):
    w, h = ink_box(canonical["edge_on_no_bulge"])
    assert w > 4 * h
    w, h = ink_box(canonical["round_smooth"])
    assert 0.95 <= w / h <= 1.3
    w, h = ink_box(canonical["cigar_smooth"])
    assert w > 2 * h


def test_edge_on_bulge_shows(canonical):
    _, h_flat = ink_box(canonical["edge_on_no_bulge"])
    _, h_bulge = ink_box(canonical["edge_on_with_bulge"])
    assert h_bulge > 1.4 * h_flat


def test_rotation_turns_the_ink():
    spec = G10.by_key("edge_on_no_bulge").symbol
    boxes = [ink_box(render_symbol(spec, SIZE, seed=s)) for s in range(8)]
    assert any(h > w for w, h in boxes), "variants should come in other orientations"


def test_geometry_is_primitives_in_the_unit_square():
    for c in G10:
        for seed in (None, 3):
            prims = symbol_geometry(c.symbol, seed)
            assert prims and all(isinstance(p, Primitive) for p in prims)
            pts = np.concatenate([p.points for p in prims])
            assert np.abs(pts).max() <= 1.0, c.key


def test_svg_parses_with_expected_size():
    text = symbol_svg(G10.by_key("merging").symbol, 128, seed=4)
    root = ET.fromstring(text)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("128", "128", "-1 -1 2 2")
    ns = "{http://www.w3.org/2000/svg}"
    assert root.findall(f"{ns}polygon") and root.findall(f"{ns}defs/{ns}radialGradient")


def test_bad_arguments_are_user_errors(tmp_path):
    spec = G10[2].symbol
    with pytest.raises(GalaxAlignError, match="size"):
        render_symbol(spec, 8)
    with pytest.raises(GalaxAlignError, match="size"):
        write_symbol_set(G10, tmp_path, size=5000)
    with pytest.raises(GalaxAlignError, match="variants"):
        write_symbol_set(G10, tmp_path, size=32, variants=-1)
    with pytest.raises(GalaxAlignError, match="shape"):
        symbol_geometry(replace(spec, shape="hexagon"))
    assert list(tmp_path.iterdir()) == []


def test_write_symbol_set_names_and_gallery(tmp_path):
    gz2 = load_scheme("gz2")
    n = write_symbol_set(gz2, tmp_path, size=32, variants=2, seed=5)
    expected = {"gallery.png"}
    for c in gz2:
        stem = f"{c.id}_{c.key}"
        expected |= {f"{stem}.png", f"{stem}.svg", f"{stem}_v00.png", f"{stem}_v01.png"}
    assert {p.name for p in tmp_path.iterdir()} == expected
    assert n == len(expected)
    with Image.open(tmp_path / "4_barred_spiral.png") as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    with Image.open(tmp_path / "gallery.png") as gallery:
        assert gallery.height >= len(gz2) * 32 and gallery.width >= 3 * 32


def test_gallery_has_one_row_per_class():
    sheet = symbol_gallery(load_scheme("gz2"), size=32, variants=1)
    assert sheet.height >= 7 * 32 and sheet.width > 2 * 32


def test_cli_writes_symbols_and_rejects_bad_size(tmp_path, capsys):
    out = tmp_path / "sym"
    assert main(["symbols", "--out", str(out), "--size", "64", "--variants", "2"]) == 0
    assert (out / "gallery.png").exists() and (out / "5_barred_spiral_v01.png").exists()
    assert main(["symbols", "--out", str(tmp_path / "bad"), "--size", "3"]) == 2
    assert "size" in capsys.readouterr().err
