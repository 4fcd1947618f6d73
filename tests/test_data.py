import gzip
import shutil

import pytest
import torch
from conftest import copy_raw, fake_debian

import d2lutils as d2l
from d2lutils.data import FILES


@pytest.fixture(scope="module")
def splits(raw_dir):
    return d2l.read_fashion_mnist(True, raw_dir), d2l.read_fashion_mnist(False, raw_dir)


def test_splits_shapes_dtypes_and_6000_per_class(splits):
    (xtr, ytr), (xte, yte) = splits
    assert xtr.shape == (60000, 28, 28) and xtr.dtype == torch.uint8
    assert ytr.shape == (60000,) and ytr.dtype == torch.int64
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    assert torch.bincount(ytr).tolist() == [6000] * 10
    assert torch.bincount(yte).tolist() == [1000] * 10
    assert 0 < xtr.float().mean() / 255 < 0.5  # real images: mostly dark background


def test_batches_resized_like_the_seed_pipeline(splits):
    """Our tensor resize equals torchvision's Resize + ToTensor on PIL, up to rounding."""
    from PIL import Image
    from torchvision import transforms as T

    (_, _), (xte, yte) = splits
    it = d2l.FashionMNISTIter(xte[:32], yte[:32], 32, resize=224)
    X, y = next(iter(it))
    assert X.shape == (32, 1, 224, 224) and X.dtype == torch.float32 and y.dtype == torch.int64
    seed_tf = T.Compose([T.Resize(224), T.ToTensor()])
    ref = torch.stack([seed_tf(Image.fromarray(a.numpy(), mode="L")) for a in xte[:32]])
    assert (X - ref).abs().max() <= 1 / 255 + 1e-6
    assert torch.equal(y, yte[:32])


def test_iter_len_last_batch_and_no_resize(raw_dir):
    tr, te = d2l.load_data_fashion_mnist(100, root=raw_dir, n_train=250, n_test=120)
    assert len(tr) == 3 and tr.num_examples == 250
    sizes = [X.shape[0] for X, _ in tr]
    assert sizes == [100, 100, 50]
    X, _ = next(iter(te))
    assert X.shape == (100, 1, 28, 28) and 0 <= X.min() and X.max() <= 1


def test_shuffle_is_seeded_and_changes_per_epoch(raw_dir):
    a, _ = d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=10, seed=1)
    b, _ = d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=10, seed=1)
    c, _ = d2l.load_data_fashion_mnist(50, root=raw_dir, n_train=200, n_test=10, seed=2)
    first = lambda it: next(iter(it))[1]
    assert torch.equal(first(a), first(b))
    assert not torch.equal(first(a), first(c))
    a.set_epoch(0); e0 = first(a)
    a.set_epoch(1); e1 = first(a)
    a.set_epoch(0)
    assert torch.equal(first(a), e0) and not torch.equal(e0, e1)


def test_balanced_subsets(raw_dir):
    tr, te = d2l.load_data_fashion_mnist(64, root=raw_dir, n_train=500, n_test=250)
    assert torch.bincount(tr.labels).tolist() == [50] * 10
    assert torch.bincount(te.labels, minlength=10).tolist() == [25] * 10


def test_class_names_and_image_grid(splits):
    (_, _), (xte, yte) = splits
    names = d2l.get_fashion_mnist_labels(yte[:3])
    assert names == [d2l.TEXT_LABELS[i] for i in yte[:3].tolist()]
    assert d2l.get_fashion_mnist_labels([9, 0]) == ["ankle boot", "t-shirt"]
    axes = d2l.show_images(xte[:6], 2, 4, titles=names)
    assert len(axes) == 8 and axes[0].get_title() == names[0] and axes[0].images


# ---- where the data is found -------------------------------------------------

def test_lookup_explicit_root_first(raw_dir, isolated, monkeypatch):
    root = copy_raw(raw_dir, isolated / "mine")
    monkeypatch.setenv("D2L_FASHION_MNIST", str(copy_raw(raw_dir, isolated / "env")))
    assert d2l.find_fashion_mnist(root, download=False) == root


def test_lookup_env_var_then_torchvision_layout(raw_dir, isolated, monkeypatch):
    env = copy_raw(raw_dir, isolated / "env")
    monkeypatch.setenv("D2L_FASHION_MNIST", str(env))
    tv_root = isolated / "tv"
    copy_raw(raw_dir, tv_root / "FashionMNIST" / "raw")
    assert d2l.find_fashion_mnist(tv_root, download=False) == env
    monkeypatch.delenv("D2L_FASHION_MNIST")
    assert d2l.find_fashion_mnist(tv_root, download=False) == tv_root / "FashionMNIST" / "raw"
    # and torchvision itself reads what we found, with download=False
    from torchvision.datasets import FashionMNIST
    assert len(FashionMNIST(str(tv_root), train=False, download=False)) == 10000


def test_gz_files_in_root_are_read(raw_dir, isolated):
    root = isolated / "gz"
    root.mkdir()
    for f in raw_dir.iterdir():
        with open(f, "rb") as src, gzip.open(root / (f.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    x, y = d2l.read_fashion_mnist(False, root, download=False)
    assert x.shape == (10000, 28, 28) and torch.bincount(y).tolist() == [1000] * 10


def test_debian_is_decompressed_once_into_the_cache(debian_dir, isolated, monkeypatch):
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(debian_dir))
    folder = d2l.find_fashion_mnist("~/no/such/dir", download=False)
    assert folder == isolated / "cache" / "FashionMNIST" / "raw"
    stamp = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    assert set(stamp) == set(FILES) and not list(folder.glob("*.part"))
    assert d2l.find_fashion_mnist(download=False) == folder
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == stamp  # not redone


# ---- clear errors --------------------------------------------------------------

def test_missing_data_without_download_names_the_fixes(isolated):
    with pytest.raises(d2l.DatasetNotFoundError) as e:
        d2l.load_data_fashion_mnist(32, root=isolated / "nothing", download=False)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "D2L_FASHION_MNIST" in msg


def test_missing_data_and_no_network_is_one_clear_error(isolated, monkeypatch):
    """The download is really attempted, against a closed local port, and fails."""
    from torchvision.datasets import FashionMNIST

    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(d2l.DatasetNotFoundError) as e:
        d2l.find_fashion_mnist(isolated / "dl", download=True)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "download failed" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no urllib stack



def test_corrupt_debian_archive_is_named(debian_dir, isolated, monkeypatch):
    fake = fake_debian(debian_dir, isolated, monkeypatch)
    bad = fake / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as g:  # valid gzip, wrong content
        g.write(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes(10000))
    with pytest.raises(d2l.CorruptDatasetError, match="t10k-labels-idx1-ubyte.gz.*SHA-256"):
        d2l.find_fashion_mnist(download=False)
    assert not list((isolated / "cache").rglob("*.part"))  # nothing half-written left


def test_truncated_gzip_is_named(debian_dir, isolated, monkeypatch):
    bad = fake_debian(debian_dir, isolated, monkeypatch) / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100000])
    with pytest.raises(d2l.CorruptDatasetError, match="train-images-idx3-ubyte.gz"):
        d2l.find_fashion_mnist(download=False)


def test_truncated_raw_file_is_named(raw_dir, isolated):
    root = copy_raw(raw_dir, isolated / "trunc")
    f = root / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-784])
    with pytest.raises(d2l.CorruptDatasetError, match=r"t10k-images-idx3-ubyte: truncated"):
        d2l.read_fashion_mnist(False, root, download=False)


def test_bad_header_is_named(raw_dir, isolated):
    root = copy_raw(raw_dir, isolated / "hdr")
    f = root / "t10k-labels-idx1-ubyte"
    f.write_bytes(b"<html>not found</html>" + bytes(100))
    with pytest.raises(d2l.CorruptDatasetError, match="t10k-labels-idx1-ubyte: not an idx1"):
        d2l.read_fashion_mnist(False, root, download=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        d2l.FashionMNISTIter(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="uint8"):
        d2l.FashionMNISTIter(torch.zeros(4, 28, 28), torch.zeros(4, dtype=torch.long), 2)
