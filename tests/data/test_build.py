
import numpy as np
import pytest
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data import DATASETS, build_data, make_loader
from cnnlab.data.build import pixel_stats
from cnnlab.data.select import select_per_class, stratified_split
from cnnlab.errors import DataError
from conftest import make_image_folder


def test_registry_lists_every_source_and_refuses_duplicates():
    assert {"digits", "imagefolder", "npz", "cifar10", "cifar100", "mnist",
            "fashion_mnist"} <= set(DATASETS.names())
    with pytest.raises(ValueError, match="already registered"):
        DATASETS.add("digits", lambda cfg: None)


def test_digits_splits_are_stratified_disjoint_and_seeded():
    a = build_data(DataConfig(name="digits", val_split=0.1, test_split=0.2))
    b = build_data(DataConfig(name="digits", val_split=0.1, test_split=0.2))
    assert a.in_shape == (1, 8, 8) and a.num_classes == 10
    sizes = {k: len(v) for k, v in a.splits().items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(0.2 * 1797, abs=10)
    assert sizes["val"] == pytest.approx(0.1 * 1797, abs=10)
    for split in a.splits().values():  # every class on every side
        assert len(torch.unique(split.labels)) == 10
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.test.images, b.test.images)
    assert a.train.images.dtype == torch.uint8 and int(a.train.images.max()) == 255


def test_normalization_modes_give_stats_on_the_255_scale():
    images = torch.randint(0, 256, (20, 3, 4, 4), dtype=torch.uint8)
    assert pixel_stats(images, "none") == ((0.0,) * 3, (1.0,) * 3)
    assert pixel_stats(images, "rescale") == ((0.0,) * 3, (255.0,) * 3)
    mean, std = pixel_stats(images, "standardize")
    x = images.double()
    assert np.allclose(mean, x.mean(dim=(0, 2, 3)).numpy())
    assert np.allclose(std, x.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-4)


def test_imagefolder_flat_layout_resize_channels_and_class_selection(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=10, size=12)
    bundle = build_data(DataConfig(root=root, image_size=8, channels=1, classes=["c", "a"],
                                   val_split=0.2, test_split=0.2, cache=False))
    assert bundle.classes == ["c", "a"] and bundle.in_shape == (1, 8, 8)
    assert sum(len(s) for s in bundle.splits().values()) == 20


def test_imagefolder_split_layout_uses_its_own_splits(tmp_path):
    for split, n in (("train", 8), ("val", 3), ("test", 4)):
        make_image_folder(tmp_path / "d" / split, classes=("x", "y"), per_class=n, seed=n)
    bundle = build_data(DataConfig(root=tmp_path / "d", cache=False))
    assert {k: len(v) for k, v in bundle.splits().items()} == {"train": 16, "val": 6, "test": 8}
    assert bundle.info["val_from"] == "source" and bundle.info["test_from"] == "source"


def test_max_per_class_caps_each_class(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=15)
    bundle = build_data(DataConfig(root=root, max_per_class=10, val_split=0.2, test_split=0.2,
                                   cache=False))
    assert sum(len(s) for s in bundle.splits().values()) == 20


def test_second_load_comes_from_the_disk_cache(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=10)
    cfg = DataConfig(root=root, cache=True, cache_dir=tmp_path / "cache")
    first = build_data(cfg)
    assert list((tmp_path / "cache" / "images").glob("*.safetensors"))
    import cnnlab.data.imagefolder as imagefolder

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(imagefolder, "decode_all", fail)
    second = build_data(cfg)
    assert torch.equal(first.train.images, second.train.images)


@pytest.mark.parametrize("make_problem, fragment", [
    (lambda root: None, "does not exist"),
    (lambda root: (root / "empty").mkdir(parents=True), "holds no class folders"),
])
def test_missing_or_empty_roots(tmp_path, make_problem, fragment):
    root = tmp_path / "data"
    make_problem(root)
    target = root / "empty" if (root / "empty").exists() else root
    with pytest.raises(DataError, match=fragment):
        build_data(DataConfig(root=target, cache=False))


def test_empty_class_folder_is_named(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"))
    (root / "c").mkdir()
    with pytest.raises(DataError, match=r"class folder .*c holds no images"):
        build_data(DataConfig(root=root, cache=False))


def test_corrupt_image_is_named(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"))
    bad = root / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        build_data(DataConfig(root=root, cache=False))


def test_single_class_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("only",))
    with pytest.raises(DataError, match="at least two"):
        build_data(DataConfig(root=root, cache=False))


def test_mixed_sizes_need_image_size(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a",), size=8)
    make_image_folder(tmp_path / "imgs", classes=("b",), size=10)
    with pytest.raises(DataError, match="image_size"):
        build_data(DataConfig(root=root, cache=False))
    assert build_data(DataConfig(root=root, image_size=9, cache=False)).in_shape == (3, 9, 9)


def test_npz_source_and_class_count_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 6, 6), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    good = tmp_path / "good.npz"
    np.savez(good, x=x, y=y, classes=np.array(["r", "g", "b"]))
    bundle = build_data(DataConfig(name="npz", root=good, channels=3))
    assert bundle.classes == ["r", "g", "b"] and bundle.in_shape == (3, 6, 6)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=y, classes=np.array(["r", "g"]))
    with pytest.raises(DataError, match="classes"):
        build_data(DataConfig(name="npz", root=bad))


def test_torchvision_source_offline_says_what_to_put_where(tmp_path):
    with pytest.raises(DataError) as info:
        build_data(DataConfig(name="cifar10", root=tmp_path / "tv", download=False))
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "tv") in message


def test_too_small_classes_for_a_stratified_split():
    with pytest.raises(DataError, match="smallest class"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5, 0, "validation")


def test_select_per_class_is_seeded():
    labels = np.repeat(np.arange(3), 10)
    a, b = select_per_class(labels, 4, 1), select_per_class(labels, 4, 1)
    assert np.array_equal(a, b) and np.bincount(labels[a]).tolist() == [4, 4, 4]


def test_loader_yields_uint8_batches_and_avoids_a_final_batch_of_one():
    bundle = build_data(DataConfig(name="digits"))
    n = len(bundle.train)
    batch_size = n - 1  # leaves a final batch of 1
    batches = list(make_loader(bundle.train, batch_size, shuffle=True, seed=0))
    assert len(batches) == 1 and batches[0][0].dtype == torch.uint8
    assert batches[0][0].shape == (batch_size, 1, 8, 8)
