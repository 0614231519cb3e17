"""tools/run_detectron2_tests.py: failures listed in the docs pass, any other failure fails."""
import importlib.util
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

TOOL = os.path.join(REPO_ROOT, "tools", "run_detectron2_tests.py")
spec = importlib.util.spec_from_file_location("run_detectron2_tests", TOOL)
run_detectron2_tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_detectron2_tests)

FAKE_TESTS = {
    "__init__.py": "",
    "test_a.py": "def test_ok():\n    pass\n\ndef test_known():\n    assert False\n\ndef test_new():\n    assert False\n",
    "test_b.py": "import module_that_does_not_exist\n",
}


def _fake_detectron2_tests(tmp_path):
    tests = tmp_path / "src" / "tests"
    tests.mkdir(parents=True)
    for name, text in FAKE_TESTS.items():
        (tests / name).write_text(text)
    return tmp_path / "src"


def _expected_file(tmp_path, rows):
    path = tmp_path / "expected.md"
    path.write_text("# x\n\n## Expected failures, `fake`\n\n| test | reason |\n|---|---|\n" + "".join(
        f"| `{test}` | {reason} |\n" for test, reason in rows
    ) + "\n## Expected failures, `other`\n\n| `tests/test_a.py::test_ok` | elsewhere |\n")
    return path


def _run(source, expected_file):
    return subprocess.run(
        [sys.executable, TOOL, "--tests", str(source), "--expected", "fake", "--expected-file", str(expected_file)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )


def test_read_expected_takes_one_section(tmp_path):
    path = _expected_file(tmp_path, [("tests/test_a.py::test_known", "stubbed op")])
    assert run_detectron2_tests.read_expected("fake", path) == {"tests/test_a.py::test_known": "stubbed op"}
    assert run_detectron2_tests.read_expected("other", path) == {"tests/test_a.py::test_ok": "elsewhere"}


def test_unlisted_failures_fail_and_listed_ones_do_not(tmp_path):
    source = _fake_detectron2_tests(tmp_path)
    known = [("tests/test_a.py::test_known", "stubbed op"), ("tests/test_b.py", "optional package absent")]
    result = _run(source, _expected_file(tmp_path, known))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NEW FAILURE: tests/test_a.py::test_new" in result.stdout
    assert "1 passed, 3 failed" in result.stdout and "test_known" not in result.stdout.split("failed (test")[1]

    result = _run(source, _expected_file(tmp_path, known + [("tests/test_a.py::test_new", "no network")]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_expected_failure_in_the_docs_has_a_known_kind_of_reason():
    kinds = ("stubbed op", "needs `caffe2`", "no network", "no COCO files", "optional package absent", "test artefact")
    for section in ("v0.6", "main"):
        for test, reason in run_detectron2_tests.read_expected(section).items():
            assert reason.startswith(kinds), (section, test, reason)
