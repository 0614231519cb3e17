#!/usr/bin/env python
"""Run Detectron2's own unit tests against this environment, with ``import ccnet.config`` first.

They check ``ccnet.compat``: with the project imported (``ccnet.config`` applies ``ccnet.compat`` and
registers the project's models and datasets), Detectron2 must still pass its own tests.
Every failure that remains is listed, with its reason, in docs/detectron2-tests.md (one table per
Detectron2 revision); this tool reads that table and fails on any failure not listed there.

    python tools/run_detectron2_tests.py --tests SOURCE --expected v0.6 [-- PYTEST_ARGS]

SOURCE holds Detectron2's ``tests/`` folder: a local archive (``.tar.gz``/``.zip``; the ones in
tools/install_detectron2.py's KNOWN_ARCHIVES are sha256-checked), a source folder, or a git URL
(``git+https://...[@REV]``, cloned once).  It is unpacked under ``.cache/detectron2-tests/``.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see tests/conftest.py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from install_detectron2 import CACHE_DIR, upstream_source_id  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPECTED_FILE = REPO_ROOT / "docs" / "detectron2-tests.md"
# A table row of docs/detectron2-tests.md: | `test id` | reason |
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*$")


def read_expected(section: str, path: Path = EXPECTED_FILE) -> dict:
    """The expected failures listed under the heading ``## ... `section` ...``: {test id: reason}."""
    expected, inside, found = {}, False, False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            inside = f"`{section}`" in line
            found |= inside
            continue
        match = ROW.match(line) if inside else None
        if match:
            test_id, reason = match.groups()
            if not reason:
                raise SystemExit(f"{path}: expected failure {test_id!r} has no reason")
            expected[test_id] = reason
    if not found:
        raise SystemExit(f"{path} has no section '## ... `{section}` ...'")
    return expected


def tests_folder(source: str) -> Path:
    """Unpack (or clone) ``source`` once under .cache/ and return its ``tests`` folder."""
    source_id = upstream_source_id(source)  # also checks the sha256 of known archives
    if source_id.startswith("dir:"):
        root = Path(source)
    else:
        name = re.sub(r"[^\w.-]+", "_", source_id.split(":", 1)[1])[:120]
        root = CACHE_DIR / "detectron2-tests" / name
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            if source_id.startswith("pip:"):
                url, _, rev = source.removeprefix("git+").partition("@")
                branch = ["--branch", rev] if rev else []
                subprocess.check_call(["git", "clone", "--quiet", "--depth", "1", *branch, url, str(root / "src")])
            elif source.endswith(".zip"):
                with zipfile.ZipFile(source) as archive:
                    archive.extractall(root)
            else:
                with tarfile.open(source) as archive:
                    archive.extractall(root, filter="data")
            (root / ".complete").touch()
    candidates = sorted(p for p in root.glob("**/tests") if (p / "__init__.py").exists())
    if not candidates:
        raise SystemExit(f"no tests/ folder (with __init__.py) in {source}")
    return min(candidates, key=lambda p: len(p.parts))


class Recorder:
    """pytest plugin: the outcome of every test and every module that failed to collect."""

    def __init__(self):
        self.failed, self.passed, self.skipped = set(), set(), 0

    def pytest_collectreport(self, report):
        if report.failed:
            self.failed.add(report.nodeid)

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.skipped and report.when in ("setup", "call"):
            self.skipped += 1
        elif report.passed and report.when == "call" and not hasattr(report, "context"):
            self.passed.add(report.nodeid)  # (a passing unittest subTest has a context: not a test)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", required=True, help="archive, folder or git URL holding Detectron2's tests/")
    parser.add_argument("--expected", required=True, help="section of docs/detectron2-tests.md, e.g. v0.6 or main")
    parser.add_argument("--expected-file", type=Path, default=EXPECTED_FILE, help="default: %(default)s")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    expected = read_expected(args.expected, args.expected_file)
    tests = tests_folder(args.tests)
    import ccnet.config  # noqa: F401  (first, as a user of the project does)
    import pytest

    # Run from the tests' parent so test ids read tests/...; an empty ini keeps this project's
    # pytest settings out.
    ini = tests.parent / ".pytest-detectron2.ini"
    ini.write_text("[pytest]\n")
    os.chdir(tests.parent)
    recorder = Recorder()
    pytest.main(["-q", "-c", str(ini), "--rootdir", str(tests.parent), "-p", "no:cacheprovider",
                 "--continue-on-collection-errors", "tests", *args.pytest_args], plugins=[recorder])

    new = sorted(recorder.failed - set(expected))
    fixed = sorted(set(expected) & (recorder.passed - recorder.failed))
    print(f"\nDetectron2's tests ({args.expected}): {len(recorder.passed - recorder.failed)} passed, {len(recorder.failed)} failed "
          f"(test or collection), {recorder.skipped} skipped; {len(recorder.failed) - len(new)} failures "
          f"expected in {args.expected_file}")
    for test_id in fixed:
        print(f"  listed as expected but passed here: {test_id}")
    for test_id in new:
        print(f"  NEW FAILURE: {test_id}")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
