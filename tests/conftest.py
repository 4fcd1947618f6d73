"""Shared fixtures. Tests use the real Fashion-MNIST from Debian's package
``dataset-fashion-mnist`` and never touch the network."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # no screen here, and no window should ever open in a test

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def debian_dir() -> Path:
    if not all((DEBIAN / f"{n}.gz").is_file() for n in (
            "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        pytest.fail(f"{DEBIAN} is missing: `sudo apt-get install dataset-fashion-mnist` "
                    "(.ci/run does this). The tests use the real data on purpose.")
    return DEBIAN


@pytest.fixture(scope="session")
def raw_dir(debian_dir, tmp_path_factory) -> Path:
    """The four decompressed idx files, made once per session by d2lutils itself."""
    import d2lutils as d2l

    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("D2L_CACHE", str(cache))
    mp.delenv("D2L_FASHION_MNIST", raising=False)
    try:
        folder = d2l.find_fashion_mnist(download=False)
    finally:
        mp.undo()
    return folder


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No env var, an empty cache, and Debian's folder moved to an empty place."""
    monkeypatch.delenv("D2L_FASHION_MNIST", raising=False)
    monkeypatch.setenv("D2L_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(empty))
    return tmp_path


def copy_raw(raw_dir: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in raw_dir.iterdir():
        if f.name.endswith("ubyte"):
            shutil.copy(f, dst / f.name)
    return dst


def fake_debian(debian_dir: Path, isolated: Path, monkeypatch) -> Path:
    """A copy of Debian's folder that a test may damage, used instead of the real one."""
    fake = isolated / "debian"
    fake.mkdir()
    for f in debian_dir.iterdir():
        shutil.copy(f, fake / f.name)
    monkeypatch.setenv("D2L_DEBIAN_DIR", str(fake))
    return fake


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium (Debian's), a fresh profile, no network beyond what the page asks."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `sudo apt-get install chromium` (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, viewport={"width": 1280, "height": 900},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield ctx
        ctx.close()
