import json

import pytest

from galaxalign.cli import main
from galaxalign.errors import GalaxAlignError
from galaxalign.taxonomy import BULGE_FRACTION, load_scheme, parse_scheme

ASTRONN_NAMES = [
    "Disturbed Galaxies",
    "Merging Galaxies",
    "Round Smooth Galaxies",
    "In-between Round Smooth Galaxies",
    "Cigar Shaped Smooth Galaxies",
    "Barred Spiral Galaxies",
    "Unbarred Tight Spiral Galaxies",
    "Unbarred Loose Spiral Galaxies",
    "Edge-on Galaxies without Bulge",
    "Edge-on Galaxies with Bulge",
]


def test_galaxy10_matches_astronn_ids_and_names():
    scheme = load_scheme("galaxy10")
    assert [c.id for c in scheme] == list(range(10))
    assert scheme.names == ASTRONN_NAMES


def test_gz2_summary_scheme_keys():
    assert load_scheme("gz2").keys == [
        "smooth_round",
        "smooth_inbetween",
        "smooth_cigar",
        "edge_on_disk",
        "barred_spiral",
        "unbarred_spiral",
        "featured_without_bar_or_spiral",
    ]


def test_symbol_specs_follow_features():
    s = load_scheme("galaxy10")
    shapes = {c.key: c.symbol.shape for c in s}
    assert shapes["merging"] == "merger" and shapes["disturbed"] == "irregular"
    assert shapes["edge_on_no_bulge"] == shapes["edge_on_with_bulge"] == "edge_on"
    assert s.by_key("edge_on_no_bulge").symbol.bulge_radius == 0 < s.by_key("edge_on_with_bulge").symbol.bulge_radius
    assert s.by_key("barred_spiral").symbol.bar and not s.by_key("unbarred_loose_spiral").symbol.bar
    # Winding separates tight from loose through the pitch angle.
    assert s.by_key("unbarred_tight_spiral").symbol.pitch_deg < s.by_key("unbarred_loose_spiral").symbol.pitch_deg
    # Smooth classes differ in axis ratio: round > in-between > cigar.
    q = [s.by_key(k).symbol.axis_ratio for k in ("round_smooth", "inbetween_round_smooth", "cigar_smooth")]
    assert q[0] > q[1] > q[2]


def test_every_class_has_label_and_several_descriptions():
    for name in ("galaxy10", "gz2"):
        for c in load_scheme(name):
            assert c.label and len(c.descriptions) >= 3
            assert c.texts[0] == c.label
            lo, hi = c.features.bulge_fraction
            assert BULGE_FRACTION[c.features.bulge] == (lo, hi)


def test_by_key_accepts_key_id_and_name():
    s = load_scheme("galaxy10")
    assert s.by_key("barred_spiral").id == 5 == s.by_key("5").id == s.by_key("Barred Spiral Galaxies").id
    with pytest.raises(GalaxAlignError, match="no class 'spiral'"):
        s.by_key("spiral")


def test_round_trip_through_user_json_and_yaml(tmp_path):
    import yaml

    data = load_scheme("gz2").to_dict()
    (tmp_path / "mine.json").write_text(json.dumps(data))
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    assert load_scheme(tmp_path / "mine.json") == load_scheme("gz2")
    assert load_scheme(str(tmp_path / "mine.yaml")) == load_scheme("gz2")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["classes"][1]["features"].pop("bar"), r"classes\[1\]\.features\.bar: missing field"),
        (
            lambda d: d["classes"][0]["features"].update(bulge="huge"),
            r"classes\[0\]\.features\.bulge: 'huge' is not one of",
        ),
        (lambda d: d["classes"][2]["features"].update(axis_ratio=[0.9, 0.2]), r"classes\[2\]\.features\.axis_ratio"),
        (lambda d: d["classes"][3].update(id=7), r"classes\[3\]\.id: ids must run 0..N-1"),
        (lambda d: d["classes"][4].update(descriptions=[]), r"classes\[4\]\.descriptions"),
        (lambda d: d["classes"][5].update(key=d["classes"][0]["key"]), "duplicate key"),
        (lambda d: d["classes"][4]["features"].update(arm_winding=None), r"classes\[4\]\.features\.arm_winding"),
    ],
)
def test_malformed_scheme_names_the_field(tmp_path, mutate, message):
    data = load_scheme("gz2").to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GalaxAlignError, match=message) as info:
        load_scheme(path)
    assert str(path) in str(info.value)


def test_builtin_schemes_share_coarse_groups():
    galaxy10, gz2 = load_scheme("galaxy10"), load_scheme("gz2")
    assert galaxy10.groups == gz2.groups
    assert list(galaxy10.group_names) == ["smooth", "featured", "edge_on", "merger"]
    assert {c.group for c in galaxy10} == set(galaxy10.group_names)  # every group has a Galaxy10 class
    assert galaxy10.by_key("merging").group == "merger" and gz2.by_key("edge_on_disk").group == "edge_on"
    assert "merger" not in {c.group for c in gz2}  # GZ2's summary has no merger class


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["classes"][0].update(group="spiral"), r"classes\[0\]\.group: 'spiral' is not one of"),
        (lambda d: d["classes"][2].pop("group"), r"classes\[2\]\.group: missing field"),
        (lambda d: d.pop("groups"), r"classes\[0\]\.group: the scheme declares no groups"),
        (lambda d: d.update(groups=[{"key": "a"}]), r"groups\[0\]\.name: missing field"),
    ],
)
def test_malformed_groups_name_the_field(mutate, message):
    data = load_scheme("galaxy10").to_dict()
    mutate(data)
    with pytest.raises(GalaxAlignError, match=message):
        parse_scheme(data, source="mine.json")


def test_a_scheme_without_groups_still_loads():
    data = load_scheme("gz2").to_dict()
    data.pop("groups")
    for c in data["classes"]:
        c.pop("group")
    scheme = parse_scheme(data, source="old.json")
    assert scheme.groups == () and all(c.group is None for c in scheme)
    assert "groups" not in scheme.to_dict() and "group" not in scheme.to_dict()["classes"][0]


def test_unreadable_scheme_files(tmp_path):
    with pytest.raises(GalaxAlignError, match="no such scheme file"):
        load_scheme(tmp_path / "nope.json")
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(GalaxAlignError, match="not valid JSON"):
        load_scheme(bad)
    with pytest.raises(GalaxAlignError, match="expected a non-empty list"):
        parse_scheme({"classes": []}, source="x.json")


def test_cli_reports_bad_scheme_in_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("classes: [1, 2]\n")
    assert main(["symbols", "--out", str(tmp_path / "out"), "--scheme", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("galaxalign: error: ") and str(bad) in err and "\n" not in err
    assert not (tmp_path / "out").exists()
