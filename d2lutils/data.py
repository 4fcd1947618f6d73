"""Fashion-MNIST: find it offline, verify it, and serve it fast.

Lookup order (first hit wins), see :func:`find_fashion_mnist`:

1. an explicit ``root`` holding the four idx files (``.gz`` or not);
2. the directory named by ``$D2L_FASHION_MNIST`` (set, it must hold the files: it is
   not silently skipped);
3. torchvision's layout under ``root`` (``root/FashionMNIST/raw``);
4. Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``),
   decompressed once into a cache and checked against known SHA-256 sums;
5. only then torchvision's download (needs the internet).

The fast path (:class:`FashionMNISTIter`) keeps the whole split as one
``uint8`` tensor and resizes each batch with tensor ops, so there is no PIL
call per image and no worker process: it behaves the same on Linux, macOS and
Windows, and can live on the GPU.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ._io import atomic_write_text
from .devices import as_device
from .errors import (ArgumentError, CorruptDatasetError, DatasetNotFoundError, check_bool, check_int,
                     check_number)
from .resize import check_resize, resize_bilinear, upsample_bilinear

__all__ = [
    "TEXT_LABELS",
    "DatasetNotFoundError",
    "CorruptDatasetError",
    "FashionMNISTIter",
    "find_fashion_mnist",
    "read_fashion_mnist",
    "load_data_fashion_mnist",
    "get_fashion_mnist_labels",
    "show_images",
    "show_fashion_mnist",
    "resize_bilinear",
    "upsample_bilinear",
]

TEXT_LABELS = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DATA = "D2L_FASHION_MNIST"
ENV_CACHE = "D2L_CACHE"

# SHA-256 and size of the *decompressed* idx files. Debian re-gzipped the
# upstream archives, so the MD5 sums torchvision keeps for the .gz files no
# longer match; the decompressed bytes are what we can check.
FILES: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
    "train-labels-idx1-ubyte": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
    "t10k-images-idx3-ubyte": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
    "t10k-labels-idx1-ubyte": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
}
# torch.Generator.manual_seed takes at most 64 bits.
SEED_MAX = 2**64 - 1
_SPLIT_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def cache_dir() -> Path:
    """Where decompressed data lives: ``$D2L_CACHE``, else ``$XDG_CACHE_HOME/d2lutils``
    (if absolute), else ``~/.cache/d2lutils``.

    Raises:
        ArgumentError: ``$D2L_CACHE`` names a file, not a folder.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(xdg):   # the XDG spec: a relative value is invalid and is ignored
        xdg = os.path.expanduser("~/.cache")
    base = os.environ.get(ENV_CACHE) or os.path.join(xdg, "d2lutils")
    path = Path(base).expanduser()
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"${ENV_CACHE}={base!r} is a file, not a folder; point it at a folder "
                            "where d2lutils may keep the decompressed data (or unset it)")
    return path


# Verified files are remembered in a small JSON file in the cache, so that a normal load
# does not hash 47 MB: for each real file (links resolved), its stamp (size, modification
# time, inode) and the SHA-256 of what it holds. A file counts as verified for a *name*
# only if what it holds is what that name must hold, so a link `train-images-idx3-ubyte`
# pointing at the verified test images is not taken for the training images. Any change
# to a file changes its stamp, and the file is hashed again.
_STAMPS = "verified.json"
_STAMPS_MAX_BYTES = 1 << 20   # a few hundred entries at most; anything larger is not ours


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _read_stamps() -> dict[str, dict]:
    """The stamps file's entries; ``{}`` if it is missing, damaged, huge, or not a plain
    file (a planted link or fifo is never followed or read: a fifo would block forever)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(cache_dir() / _STAMPS, flags)
    except (OSError, ArgumentError):
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _STAMPS_MAX_BYTES:
            return {}
        stamps = json.loads(os.read(fd, _STAMPS_MAX_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError):   # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}
    finally:
        os.close(fd)
    return stamps if isinstance(stamps, dict) else {}


def _remember_verified(path: Path, sha: str) -> None:
    """Record that ``path`` holds content with SHA-256 ``sha`` (best effort: a read-only
    cache, or a link planted at the stamps file, only means hashing again next time)."""
    try:
        stamps = _read_stamps()
        stamps[str(path.resolve())] = {"stamp": _stamp(path), "sha256": sha}
        atomic_write_text(cache_dir() / _STAMPS, json.dumps(stamps), what="verification cache")
    except (OSError, ArgumentError):
        pass


def _known_good(path: Path, sha: str) -> bool:
    """Whether ``path`` was verified to hold content with SHA-256 ``sha`` and is unchanged since."""
    try:
        entry = _read_stamps().get(str(path.resolve()))
        return isinstance(entry, dict) and entry.get("sha256") == sha and entry.get("stamp") == _stamp(path)
    except (OSError, ArgumentError):
        return False


def _has_files(directory: Path) -> bool:
    return all((directory / n).is_file() or (directory / (n + ".gz")).is_file() for n in FILES)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_REINSTALL = "sudo apt-get install --reinstall dataset-fashion-mnist"


def _unwritable(dst_dir: Path, e: OSError) -> ArgumentError:
    return ArgumentError(f"cannot write the decompressed data into {dst_dir} ({e.strerror or e}); "
                         f"set ${ENV_CACHE} to a writable folder")


def _decompress_verified(src_dir: Path, dst_dir: Path) -> None:
    """Decompress the four files into ``dst_dir`` atomically, checking each SHA-256.

    A file already there is kept if it is known good (same stamp as when it was
    verified) or if its content hashes right; otherwise it is decompressed again.
    A symbolic link found there is replaced, never followed: the cache is ours.
    """
    try:
        dst_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArgumentError(f"cannot create the data cache {dst_dir} ({e.strerror or e}); set "
                            f"${ENV_CACHE} to a writable folder") from None
    for name, (sha, size) in FILES.items():
        dst = dst_dir / name
        if dst.is_symlink():
            pass                     # replaced below by os.replace, which does not follow it
        elif dst.is_dir():
            raise CorruptDatasetError(
                f"{dst} is a folder, not a file: this cache folder holds only decompressed copies. "
                "Remove that folder and load again.")
        elif dst.is_file() and dst.stat().st_size == size and (_known_good(dst, sha) or _sha256(dst) == sha):
            _remember_verified(dst, sha)
            continue
        _decompress_one(src_dir / (name + ".gz"), dst, sha)


def _decompress_one(src: Path, dst: Path, sha: str) -> None:
    """Decompress ``src`` into ``dst`` through a temporary file, which replaces ``dst``
    only once its SHA-256 is right: a killed run never leaves half a file behind."""
    try:
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name, suffix=".part")
    except OSError as e:
        raise _unwritable(dst.parent, e) from None
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
        got = _sha256(Path(tmp))
        if got != sha:
            raise CorruptDatasetError(
                f"{src}: decompressed SHA-256 is {got}, expected {sha}. The file is damaged; "
                f"reinstall it with `{_REINSTALL}`.")
        os.replace(tmp, dst)
        _remember_verified(dst, sha)
    except PermissionError as e:
        raise _unwritable(dst.parent, e) from None
    except (OSError, EOFError, zlib.error) as e:   # gzip.BadGzipFile is an OSError
        raise CorruptDatasetError(f"{src}: cannot decompress ({e}). Reinstall it with "
                                  f"`{_REINSTALL}`.") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _download(root: Path) -> Path:
    """torchvision's download into ``root``; one clear error if it fails."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
    except Exception as e:  # URLError, socket errors, HTTP errors, RuntimeError(md5) ...
        raise DatasetNotFoundError(
            "Fashion-MNIST was not found on this machine and the download failed "
            f"({type(e).__name__}: {e}).\n"
            "Do one of these:\n"
            "  * on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist\n"
            f"  * point ${ENV_DATA} at a folder holding the four *-ubyte(.gz) files\n"
            "  * connect to the internet and call again (torchvision downloads ~30 MB)"
        ) from None
    return root / "FashionMNIST" / "raw"


def _refuse_env_folder(folder: Path) -> None:
    """An explicit ``$D2L_FASHION_MNIST`` that lacks the files is an error, not a silent
    fall-back to another copy: the user asked for this one."""
    missing = [n for n in FILES if not (folder / n).is_file() and not (folder / (n + ".gz")).is_file()]
    where = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)} (or .gz)"
    raise DatasetNotFoundError(
        f"${ENV_DATA}={str(folder)!r} {where}. Point it at a folder holding the four "
        f"*-ubyte(.gz) files ({', '.join(FILES)}), or unset it to use the other places.")


def find_fashion_mnist(root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return a folder holding the four idx files, searching offline first.

    Args:
        root: a folder to look in (the files themselves, or torchvision's
            ``FashionMNIST/raw`` layout below it). ``~`` is expanded. The
            download, if needed, goes here (default: the cache folder).
        download: allow torchvision's download as the last resort.

    Raises:
        DatasetNotFoundError: nothing found and no download possible, or
            ``$D2L_FASHION_MNIST`` names a folder without the four files.
        CorruptDatasetError: Debian's files fail their checksum or cannot be decompressed,
            or a file in the cache's place is a folder.
        ArgumentError: a bad argument, or a cache folder that cannot be written.
    """
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ArgumentError(f"root must be a folder path (str or pathlib.Path) or None; got {root!r}")
    check_bool("download", download)
    root_path = Path(root).expanduser() if root is not None else None
    candidates: list[Path] = []
    if root_path is not None:
        candidates.append(root_path)
    if os.environ.get(ENV_DATA):
        candidates.append(Path(os.environ[ENV_DATA]).expanduser())
    if root_path is not None:
        candidates.append(root_path / "FashionMNIST" / "raw")
    for c in candidates:
        if _has_files(c):
            return c
    if os.environ.get(ENV_DATA):
        _refuse_env_folder(Path(os.environ[ENV_DATA]).expanduser())
    debian = Path(os.environ.get("D2L_DEBIAN_DIR") or DEBIAN_DIR)   # empty means unset, not "."
    if all((debian / (n + ".gz")).is_file() for n in FILES):
        dst = cache_dir() / "FashionMNIST" / "raw"
        _decompress_verified(debian, dst)
        return dst
    if not download:
        looked = ", ".join(str(c) for c in [*candidates, debian])
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found (looked in: {looked}) and download=False.\n"
            "Install it with `sudo apt-get install dataset-fashion-mnist`, point "
            f"${ENV_DATA} at the four *-ubyte(.gz) files, or pass download=True when online.")
    return _download(root_path if root_path is not None else cache_dir())


# How many examples each file must hold, to name a swap of splits in words.
_COUNTS = {name: 60_000 if name.startswith("train") else 10_000 for name in FILES}


def _read_raw(src: Path) -> bytes:
    try:
        if src.suffix == ".gz":
            with gzip.open(src, "rb") as f:
                return f.read()
        return src.read_bytes()
    except (OSError, EOFError, zlib.error) as e:   # zlib.error: a damaged deflate stream
        raise CorruptDatasetError(f"{src}: cannot read ({e}); delete it and load again.") from e


def _check_count(src: Path, name: str, count: int) -> None:
    """Refuse a file whose header holds another split's count than ``name`` must
    (the test set linked or copied under the training set's name, or the other way)."""
    want = _COUNTS.get(name)
    if want is None or count == want:
        return
    kind = "images" if "images" in name else "labels"
    via = f" (a link to {src.resolve()})" if src.is_symlink() else ""
    raise CorruptDatasetError(
        f"{src}{via}: holds {count:,} {kind} but {name} must hold {want:,}: is it the other split's "
        "file under this name? Point it at the right file, or delete it and load again.")


def _read_idx(path: Path, expected_dims: int) -> torch.Tensor:
    """Read an idx file (plain or .gz) into a uint8 tensor, checking its header and,
    unless its stamp says it was verified to hold what ``path.name`` must hold, its
    content's SHA-256."""
    gz = path.with_name(path.name + ".gz")
    src = path if path.is_file() else gz
    raw = _read_raw(src)
    if len(raw) < 4 + 4 * expected_dims or raw[:3] != b"\x00\x00\x08" or raw[3] != expected_dims:
        raise CorruptDatasetError(
            f"{src}: not an idx{expected_dims} uint8 file (bad header); delete it and load again.")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims)]
    offset = 4 + 4 * expected_dims
    n = 1
    for d in dims:
        n *= d
    if len(raw) - offset != n:
        raise CorruptDatasetError(
            f"{src}: truncated or padded: header promises {dims} = {n} bytes of data, "
            f"file holds {len(raw) - offset}. Delete it and load again.")
    _check_count(src, path.name, dims[0])
    known = FILES.get(path.name)
    if known is not None and not _known_good(src, known[0]):
        got = hashlib.sha256(raw).hexdigest()
        if got != known[0]:
            raise CorruptDatasetError(
                f"{src}: its content is not Fashion-MNIST's (SHA-256 {got[:12]}..., expected "
                f"{known[0][:12]}...): the file was changed or damaged. Delete it and load again.")
        _remember_verified(src, got)
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(dims)


def read_fashion_mnist(train: bool = True, root: str | os.PathLike | None = None,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    Raises:
        ArgumentError: a bad argument.
        DatasetNotFoundError: no data found (see :func:`find_fashion_mnist`).
        CorruptDatasetError: a file is damaged or altered, or a label lies outside 0-9.
    """
    check_bool("train", train)
    folder = find_fashion_mnist(root, download)
    img_name, lbl_name = _SPLIT_FILES[train]
    images = _read_idx(folder / img_name, 3)
    labels = _read_idx(folder / lbl_name, 1).long()
    if images.shape[0] != labels.shape[0]:
        raise CorruptDatasetError(
            f"{folder}: {img_name} holds {images.shape[0]} images but {lbl_name} "
            f"{labels.shape[0]} labels.")
    if labels.numel() and int(labels.max()) > 9:
        raise CorruptDatasetError(f"{folder / lbl_name}: labels must lie in 0-9, found {int(labels.max())}.")
    return images, labels


def _class_takes(counts: list[int], n: int) -> list[int]:
    """How many examples of each class make ``n`` in all, as evenly as the counts allow.

    Each class gets ``n // K``, the first ``n % K`` one more (as before); where a class
    has fewer, the others make up the difference, so the subset never silently holds
    fewer than ``n`` (``n`` is at most ``sum(counts)``).
    """
    take, left = [0] * len(counts), min(n, sum(counts))
    while left:
        open_ = [c for c in range(len(counts)) if take[c] < counts[c]]
        q, r = divmod(left, len(open_))
        for i, c in enumerate(open_):
            add = min(q + (1 if i < r else 0), counts[c] - take[c])
            take[c] += add
            left -= add
    return take


def _balanced_subset(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` examples with the classes as even as possible, in random order."""
    perm = torch.randperm(labels.numel(), generator=generator)
    order = torch.argsort(labels[perm], stable=True)  # shuffled within each class
    per_class = torch.bincount(labels, minlength=10).tolist()
    idx, start = [], 0
    for count, take in zip(per_class, _class_takes(per_class, n)):
        idx.append(perm[order[start:start + take]])
        start += count
    chosen = torch.cat(idx)
    return chosen[torch.randperm(chosen.numel(), generator=generator)]


class FashionMNISTIter:
    """A reusable batch iterator over a tensor-resident split.

    Each pass yields ``(X, y)``: ``X`` float32 in [0, 1] of shape
    ``[B, 1, H, W]`` (``H = W = resize`` if given), ``y`` int64 of shape ``[B]``.
    Shuffling is seeded and changes with the epoch (see :meth:`set_epoch`), so a
    resumed run sees exactly the batches an uninterrupted one would.

    Args:
        images: ``uint8 [N, 28, 28]``.
        labels: ``int64 [N]``.
        batch_size: examples per batch (the last batch may be smaller).
        resize: output side length, or ``None`` for 28.
        shuffle: reshuffle every epoch.
        seed: seed of the shuffle.
        device: where the data and the batches live (``"cuda"`` keeps it on the GPU).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 resize: int | Sequence[int] | None = None, shuffle: bool = False,
                 seed: int = 0, device: str | torch.device | None = None):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 3:
            got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                   else type(images).__name__)
            raise ArgumentError(f"images must be a uint8 tensor [N, H, W]; got {got}")
        if (not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point
                or labels.dtype == torch.bool or labels.numel() != images.shape[0]):
            got = (f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
                   else type(labels).__name__)
            raise ArgumentError(f"labels must be an integer tensor [N] with one label per image "
                                f"({images.shape[0]}); got {got}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise ArgumentError(f"labels must lie in 0-9 (the ten classes); got values from "
                                f"{int(labels.min())} to {int(labels.max())}")
        check_int("batch_size", batch_size, 1)
        check_bool("shuffle", shuffle)
        check_int("seed", seed, 0, SEED_MAX)
        self.size = check_resize(resize)
        device = as_device(device, default=torch.device("cpu"))
        self.images = images.to(device).unsqueeze(1)  # N x 1 x 28 x 28, still uint8 (4x smaller)
        self.labels = labels.to(device=device, dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> "FashionMNISTIter":
        """This data as process ``rank`` of ``world`` reads it in a multi-process run.

        Every pass has the same seeded order and the same global batches as the
        unsharded iterator; from each global batch this shard yields every
        ``world``-th example, starting at ``rank``. The shards are disjoint and
        together make up each batch, so ``len()`` (the number of steps) is unchanged.
        """
        check_int("world", world, 1)
        check_int("rank", rank, 0, world - 1)
        other = copy.copy(self)
        other.rank, other.world = rank, world
        return other

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of pass ``epoch`` (as ``DistributedSampler.set_epoch``)."""
        check_int("epoch", epoch, 0)
        self.epoch = epoch

    @property
    def num_examples(self) -> int:
        return self.labels.numel()

    def __len__(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_examples)
        # modulo 2**64: the same seeds as before for every seed that fitted, and no overflow
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**64)
        return torch.randperm(self.num_examples, generator=g)

    def transform(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> float batch in [0, 1], resized like torchvision's ``Resize`` + ``ToTensor``."""
        # one pass: the uint8 values divided straight into a float32 batch (no float copy first)
        x = torch.div(xb, 255, out=torch.empty(xb.shape, dtype=torch.float32, device=xb.device))
        return x if self.size is None else resize_bilinear(x, self.size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This pass's batches from batch number ``start`` on. A run resumed in the middle
        of an epoch skips the batches it has seen without making them."""
        check_int("start", start, 0, len(self))
        order = self._order().to(self.labels.device)
        self.epoch += 1  # a plain second pass reshuffles, as a DataLoader would
        for i in range(start * self.batch_size, self.num_examples, self.batch_size):
            idx = order[i:i + self.batch_size][self.rank::self.world]
            yield self.transform(self.images[idx]), self.labels[idx]

    def subset(self, n: int, seed: int = 0) -> "FashionMNISTIter":
        """A fixed, class-balanced subset of ``n`` of these images, in their order and not
        shuffled: a cheap test set to look at during training."""
        check_int("n", n, 1, self.num_examples)
        check_int("seed", seed, 0, SEED_MAX)
        keep = torch.sort(_balanced_subset(self.labels.cpu(), n, torch.Generator().manual_seed(seed))).values
        keep = keep.to(self.labels.device)
        return FashionMNISTIter(self.images[keep, 0], self.labels[keep], self.batch_size, self.size,
                                shuffle=False, seed=self.seed, device=self.labels.device)

    def __repr__(self) -> str:
        size = self.size or tuple(self.images.shape[-2:])
        return (f"FashionMNISTIter({self.num_examples} images, batch {self.batch_size}, "
                f"{size[0]}x{size[1]} px, shuffle={self.shuffle}, device={self.labels.device})")


def load_data_fashion_mnist(batch_size: int, resize: int | Sequence[int] | None = None,
                            root: str | os.PathLike | None = None, *,
                            n_train: int | None = None, n_test: int | None = None,
                            seed: int = 0, device: str | torch.device | None = None,
                            download: bool = True) -> tuple[FashionMNISTIter, FashionMNISTIter]:
    """Fashion-MNIST as ``(train_iter, test_iter)``, called as the seeds call it.

    ``d2l.load_data_fashion_mnist(128, resize=224, root='~/Datasets/FashionMNIST')``
    works unchanged. The keyword-only extras choose balanced random subsets
    (``n_train``/``n_test``), the shuffle seed, and the device the data lives on.

    Raises:
        ArgumentError: a bad argument (the message names it and what is allowed),
            checked before any file is read.
        DatasetNotFoundError, CorruptDatasetError: see :func:`read_fashion_mnist`.
    """
    check_int("batch_size", batch_size, 1)
    check_resize(resize)
    check_int("n_train", n_train, 1, 60_000, allow_none=True)
    check_int("n_test", n_test, 1, 10_000, allow_none=True)
    check_int("seed", seed, 0, SEED_MAX)
    as_device(device, default=torch.device("cpu"))
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ArgumentError(f"root must be a folder path (str or pathlib.Path) or None; got {root!r}")
    check_bool("download", download)
    tr_x, tr_y = read_fashion_mnist(True, root, download)
    te_x, te_y = read_fashion_mnist(False, root, download)
    g = torch.Generator().manual_seed(seed)
    if n_train is not None and n_train < tr_y.numel():
        idx = _balanced_subset(tr_y, n_train, g)
        tr_x, tr_y = tr_x[idx], tr_y[idx]
    if n_test is not None and n_test < te_y.numel():
        keep = torch.sort(_balanced_subset(te_y, n_test, g)).values  # test set stays in file order
        te_x, te_y = te_x[keep], te_y[keep]
    return (FashionMNISTIter(tr_x, tr_y, batch_size, resize, shuffle=True, seed=seed, device=device),
            FashionMNISTIter(te_x, te_y, batch_size, resize, shuffle=False, seed=seed, device=device))


_LABELS_ALLOWED = "class indices, whole numbers from 0 to 9"


def _label_values(labels) -> list:
    """``labels`` (one index, a sequence, a tensor or an array) as a flat list of scalars."""
    if isinstance(labels, (str, bytes)):
        raise ArgumentError(f"labels must be {_LABELS_ALLOWED} (an int, a list, a tensor or an array), "
                            f"not a string; got {labels!r}")
    if hasattr(labels, "tolist") and hasattr(labels, "ndim"):    # a tensor or a numpy array/scalar
        if labels.ndim > 1:
            raise ArgumentError(f"labels must be one class index or a 1-D sequence of them; got shape "
                                f"{tuple(labels.shape)}")
        values = labels.tolist()
        return values if isinstance(values, list) else [values]
    if isinstance(labels, (int, float)):
        return [labels]
    try:
        items = list(labels)
    except TypeError:
        raise ArgumentError(f"labels must be {_LABELS_ALLOWED} (an int, a list, a tensor or an array); "
                            f"got {type(labels).__name__}") from None
    return [v.item() if hasattr(v, "item") and getattr(v, "ndim", 0) == 0 else v for v in items]


def _label_index(value, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False          # True would silently be 'trouser'; a string is no index
    elif isinstance(value, float):
        ok = value.is_integer() and 0 <= value <= 9   # False for nan and inf
    else:
        ok = 0 <= value <= 9
    if not ok:
        raise ArgumentError(f"labels must be {_LABELS_ALLOWED}; got {value!r} at position {position}")
    return int(value)


def get_fashion_mnist_labels(labels) -> list[str]:
    """Class indices to names.

    Args:
        labels: one index, or a 1-D list, tuple, tensor or numpy array of them
            (whole-valued floats such as ``3.0`` count as indices).

    Returns:
        One name per index (a list even for a single index).

    Raises:
        ArgumentError: a value is not a whole number from 0 to 9 (``-1`` would silently
            name the last class, ``True`` the second), or ``labels`` is not one of the above.
    """
    return [TEXT_LABELS[_label_index(v, i)] for i, v in enumerate(_label_values(labels))]


def show_images(imgs, num_rows: int, num_cols: int, titles: Sequence[str] | None = None,
                scale: float = 1.5):
    """Plot a grid of images (tensors ``[H, W]``, ``[1, H, W]`` or ``[3, H, W]``); returns the axes."""
    import matplotlib.pyplot as plt

    check_int("num_rows", num_rows, 1)
    check_int("num_cols", num_cols, 1)
    check_number("scale", scale, positive=True)
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(num_cols * scale, num_rows * scale + 0.3),
                             squeeze=False)
    axes = axes.flatten()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= len(imgs):
            continue
        img = torch.as_tensor(imgs[i]).detach().cpu()
        if img.dim() == 3 and img.shape[0] in (1, 3):
            img = img.permute(1, 2, 0)
        img = img.squeeze(-1) if img.dim() == 3 and img.shape[-1] == 1 else img
        ax.imshow(img.float().numpy(), cmap="gray" if img.dim() == 2 else None)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return axes


def show_fashion_mnist(images, labels) -> None:
    """Seed-style helper: one row of images titled by their class names."""
    show_images(images, 1, len(images), get_fashion_mnist_labels(labels))
