"""Put the lab page's runtime and files into the built site, after ``jupyter-book build``.

* onnxruntime-web, at the pinned version below, from the npm registry (``npm pack``; the
  tarball is checked against its published SHA-512 and cached in ``_build/npm/``): only the
  WebAssembly build's three files go into ``_build/html/_static/lab/ort/``, so the page runs
  the nets with no CDN and works offline. No copy of the runtime is kept in git.
* ``book/_static/lab/`` (the page's script and style, the exported models, the test images)
  into ``_build/html/_static/lab/``.
* The same into the Chinese edition's site, ``_build/html/zh/_static/lab/``, when it is built
  (``book/_ext/i18n.py``): its lab page loads them from its own root.

    python book/_ext/lab_build.py            # after `jupyter-book build .` (`make book` runs it)
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
CACHE = ROOT / "_build" / "npm"
SRC = ROOT / "book" / "_static" / "lab"
DEST = SITE / "_static" / "lab"

ORT_VERSION = "1.30.0"
ORT_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
# The plain WebAssembly build (no WebGPU/WebGL): the loader, its module and the binary.
ORT_FILES = ["ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def ort_tarball() -> Path:
    """The pinned onnxruntime-web tarball: from the cache, else ``npm pack`` (checked)."""
    tgz = CACHE / f"onnxruntime-web-{ORT_VERSION}.tgz"
    if tgz.is_file() and _integrity(tgz) == ORT_INTEGRITY:
        return tgz
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is missing (the lab page's runtime comes from the npm registry): "
                         "`sudo apt-get install nodejs npm` (make system-deps does it)")
    CACHE.mkdir(parents=True, exist_ok=True)
    tgz.unlink(missing_ok=True)
    subprocess.run([npm, "pack", f"onnxruntime-web@{ORT_VERSION}", "--silent", "--pack-destination",
                    str(CACHE)], check=True, cwd=CACHE, stdout=subprocess.DEVNULL)
    if not tgz.is_file():
        raise SystemExit(f"npm pack did not write {tgz}")
    if (got := _integrity(tgz)) != ORT_INTEGRITY:
        tgz.unlink()
        raise SystemExit(f"onnxruntime-web {ORT_VERSION}: the tarball's SHA-512 is {got}, not the "
                         f"pinned {ORT_INTEGRITY}")
    return tgz


def main() -> int:
    if not (SITE / "index.html").exists():
        raise SystemExit(f"{SITE} is not built: run `jupyter-book build .` first")
    if not (SRC / "models" / "manifest.json").is_file():
        raise SystemExit(f"{SRC}/models is missing: PYTHONPATH=. python book/_ext/lab_export.py")
    tgz = ort_tarball()
    zh = SITE / "zh" / "_static" / "lab"
    for dest in [DEST, *([zh] if (SITE / "zh" / "index.html").exists() else [])]:
        install(dest, tgz)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        print(f"wrote {dest.relative_to(ROOT)} (onnxruntime-web {ORT_VERSION}, {size / 2**20:.1f} MiB)")
    return 0


def install(dest: Path, tgz: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(SRC, dest)
    ort = dest / "ort"
    ort.mkdir()
    with tarfile.open(tgz) as tar:
        for name in ORT_FILES + ["package.json"]:
            member = tar.getmember(f"package/dist/{name}" if name != "package.json" else "package/package.json")
            data = tar.extractfile(member).read()
            (ort / name).write_bytes(data)
    (ort / "VERSION").write_text(f"onnxruntime-web {ORT_VERSION} (MIT), from the npm registry\n")


if __name__ == "__main__":
    raise SystemExit(main())
