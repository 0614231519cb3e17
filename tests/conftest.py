"""Test-wide set-up: the project is imported first (``ccnet.config``: Detectron2 made to work with
today's libraries, the project's models and datasets registered, as every entry point does)."""
import os

# Before torch loads OpenMP: idle threads sleep instead of spinning, which otherwise slows
# training >10x whenever the two cores are shared (measured: 11.7 s/iter vs 0.75 s/iter).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

import ccnet.config  # noqa: F401,E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_python(code: str, timeout: float = 300):
    """Run ``code`` in a new interpreter (this environment, PYTHONPATH included; nothing imported)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def load_tool(name):
    """The module ``tools/<name>.py`` (tools/ is a folder of scripts, not a package)."""
    import importlib.util
    import sys

    tools = os.path.join(REPO_ROOT, "tools")
    if tools not in sys.path:  # a tool's own imports of its sibling modules
        sys.path.insert(0, tools)
    spec = importlib.util.spec_from_file_location(name, os.path.join(tools, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
