#!/usr/bin/env python
"""Install Detectron2 into the current Python environment.

Two sources, chosen by the environment variable ``CCNET_DETECTRON2``:

* ``pypi`` (default, works offline except for the package registry):
  the ``pb1-detectron2==0.6`` sdist from PyPI, whose ``detectron2/`` package is
  byte-identical to the official v0.6 tag but lacks the C++/CUDA sources.  The
  tarball's sha256 is verified, the extension build is removed from its
  ``setup.py``, its model-zoo configs are put where ``setup.py`` looks for them,
  and the tree is installed with ``pip --no-build-isolation --no-deps``.
  The compiled ops are replaced at import time by ``ccnet.compat``.
* ``upstream``: official Detectron2 built from source with its compiled ops
  (needs a C++ toolchain, and CUDA for the GPU ops).  ``CCNET_DETECTRON2_URL``
  names the source (default: the v0.6 tag on GitHub):

  - a pip requirement such as ``git+https://github.com/facebookresearch/detectron2.git``
    (needs internet);
  - a local source archive (``.tar.gz``/``.zip``) or an unpacked source folder, e.g. the
    snapshot ``detectron2-main-02b5c4e2.tar.gz``.  Archives listed in ``KNOWN_ARCHIVES``
    are refused when their sha256 differs.

  What was built is recorded in ``<environment>/.ccnet-detectron2-source``.

Running it again is a no-op when the requested Detectron2 is already installed
(for ``upstream``: the same source, recorded in the stamp, with its compiled ops).
"""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/60/26/"
    "48f5bbb7ee492696a21da23303daeecdfe3942c498a70d34108acf63b2bd/" + SDIST_NAME
)
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
UPSTREAM_URL = "git+https://github.com/facebookresearch/detectron2.git@v0.6"
CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache"
# Source snapshots of upstream Detectron2 whose content is known: name -> sha256.
KNOWN_ARCHIVES = {
    "detectron2-main-02b5c4e2.tar.gz": "a42c29a2376e7bcc0b704a173612dd6f75960d837ccf4d340a0d714ac92e36f0",
    # Detectron2 v0.6's tests/ only (for tools/run_detectron2_tests.py)
    "detectron2-v0.6-tests.tar.gz": "000ce00087d0f85b965721953403c26dd5d52c8c5623f56610b3165746f71827",
}
UPSTREAM_STAMP = Path(sys.prefix) / ".ccnet-detectron2-source"


def installed_detectron2():
    """Return the installed detectron2 package folder, or None."""
    spec = importlib.util.find_spec("detectron2")
    return None if spec is None else Path(spec.origin).parent


def has_compiled_ops(package_dir: Path) -> bool:
    return any(package_dir.glob("_C*.so")) or any(package_dir.glob("_C*.pyd"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist() -> Path:
    """Download the sdist once into .cache/ and verify its sha256."""
    CACHE_DIR.mkdir(exist_ok=True)
    target = CACHE_DIR / SDIST_NAME
    if not target.exists():
        print(f"downloading {SDIST_URL}", flush=True)
        partial = target.with_suffix(".part")
        with urllib.request.urlopen(SDIST_URL, timeout=120) as response, open(partial, "wb") as f:
            shutil.copyfileobj(response, f)
        partial.replace(target)
    actual = sha256_of(target)
    if actual != SDIST_SHA256:
        target.unlink()
        sys.exit(f"sha256 mismatch for {SDIST_NAME}: expected {SDIST_SHA256}, got {actual}")
    return target


def prepare_source_tree(sdist: Path, workdir: Path) -> Path:
    """Unpack the sdist and make it buildable without the C++ sources."""
    with tarfile.open(sdist) as tar:
        tar.extractall(workdir, filter="data")
    source = workdir / "pb1-detectron2-0.6"
    setup_py = source / "setup.py"
    text = setup_py.read_text()
    marker = "ext_modules=get_extensions(),"
    if marker not in text:
        sys.exit(f"unexpected setup.py in {SDIST_NAME}: cannot find '{marker}'")
    setup_py.write_text(text.replace(marker, "ext_modules=[],"))
    # setup.py symlinks detectron2/model_zoo/configs -> ./configs and packages
    # files matching configs/**; the sdist ships them only inside the package.
    packaged = source / "detectron2" / "model_zoo" / "configs"
    shutil.copytree(packaged, source / "configs")
    return source


def upstream_source_id(source: str) -> str:
    """What identifies a build source: the sha256 of a local archive, else the path or URL.

    Exits with an error for a missing local file, or a known archive whose sha256 differs.
    """
    path = Path(source).expanduser()
    looks_local = path.suffix in (".gz", ".zip", ".tgz") or os.sep in source and "://" not in source
    if path.is_dir():
        return f"dir:{path.resolve()}"
    if not path.is_file():
        if looks_local:
            sys.exit(f"Detectron2 source {source!r} does not exist")
        return f"pip:{source}"
    actual = sha256_of(path)
    expected = KNOWN_ARCHIVES.get(path.name)
    if expected is not None and actual != expected:
        sys.exit(f"sha256 mismatch for {path}: expected {expected}, got {actual}")
    return f"archive:{path.name}:sha256={actual}"


def install_upstream(source: str, package_dir) -> None:
    """Build Detectron2 with its compiled ops from ``source`` unless that build is installed."""
    source_id = upstream_source_id(source)
    built = UPSTREAM_STAMP.read_text().strip() if UPSTREAM_STAMP.exists() else None
    if package_dir is not None and has_compiled_ops(package_dir) and built in (None, source_id):
        print(f"detectron2 with compiled ops already installed at {package_dir} ({built or 'source not recorded'})")
        return
    target = str(Path(source).expanduser().resolve()) if not source_id.startswith("pip:") else source
    pip_install("--force-reinstall", "--no-deps", target)
    UPSTREAM_STAMP.write_text(source_id + "\n")


def pip_install(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-build-isolation", *args])


def main() -> None:
    source = os.environ.get("CCNET_DETECTRON2", "pypi")
    package_dir = installed_detectron2()
    if source == "pypi":
        if package_dir is not None:
            print(f"detectron2 already installed at {package_dir}")
            return
        with tempfile.TemporaryDirectory() as tmp:
            tree = prepare_source_tree(fetch_sdist(), Path(tmp))
            pip_install("--no-deps", str(tree))
    elif source == "upstream":
        install_upstream(os.environ.get("CCNET_DETECTRON2_URL") or UPSTREAM_URL, package_dir)
    else:
        sys.exit(f"CCNET_DETECTRON2 must be 'pypi' or 'upstream', got {source!r}")


if __name__ == "__main__":
    main()
