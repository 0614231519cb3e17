#!/usr/bin/env python
"""Mutation testing of the core modules with mutmut 3, one group of modules at a time.

For each group (below) the tree is staged in ``.cache/mutation/<group>/``: ``projects/ccnet``
becomes ``src/ccnet`` (mutmut derives module names from paths and only strips ``src/``), and
``pyproject.toml`` gets the common ``[tool.mutmut]`` settings plus the group's ``only_mutate``
and its fast test selection.  mutmut then copies that stage to ``mutants/`` and runs, for each
mutant, only the selected tests that reach the mutated function.  The shared virtual
environment and the working tree are never modified.

Prints, and writes to ``.cache/mutation/scores.json``, the number of mutants per status and
the score (killed or timed out / all) per group, and lists the survivors.  Examples::

    python tools/mutation.py                 # every group (hours on 2 cores)
    python tools/mutation.py layers losses   # some groups
    python tools/mutation.py --list          # the groups, their modules and tests
"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE = os.path.join(ROOT, ".cache", "mutation")

# group -> (modules to mutate, relative to src/; fast tests that exercise them)
GROUPS = {
    "layers": (
        ["ccnet/layers/criss_cross.py", "ccnet/layers/modules.py", "ccnet/layers/context.py", "ccnet/layers/conv.py", "ccnet/layers/projections.py"],
        [
            "tests/layers/test_criss_cross.py",
            "tests/layers/test_modules.py",
            "tests/layers/test_error_paths.py",
            "tests/layers/test_layer_contracts.py",
        ],
    ),
    "line_layout": (
        ["ccnet/layers/line_layout.py"],
        [
            "tests/layers/test_line_packing.py",
            "tests/layers/test_line_layout.py",
            "tests/layers/test_criss_cross.py",
            "tests/layers/test_memory_orders.py",
        ],
    ),
    "losses": (
        ["ccnet/modeling/losses.py"],
        [
            "tests/modeling/test_losses.py",
            "tests/modeling/test_loss_defaults_and_edges.py",
            "tests/modeling/test_loss_gradients_and_wiring.py",
            "tests/modeling/test_head_resizing.py",
        ],
    ),
    "heads": (
        ["ccnet/modeling/heads/*"],
        ["tests/modeling/test_head.py", "tests/modeling/test_head_resizing.py", "tests/modeling/test_head_contracts.py"],
    ),
    "segmentors": (
        ["ccnet/modeling/meta_arch/*"],
        [
            "tests/modeling/test_semantic_inference.py",
            "tests/modeling/test_video.py",
            "tests/modeling/test_video_middle_frame.py",
            "tests/modeling/test_loss_gradients_and_wiring.py",
            "tests/modeling/test_segmentor_contracts.py",
        ],
    ),
    "trainer": (
        ["ccnet/engine/trainer.py", "ccnet/engine/checkpoint.py"],
        [
            "tests/engine/test_resume_state.py",
            "tests/engine/test_trainer_parts.py",
            "tests/engine/test_attention_stats.py",
            "tests/engine/test_checkpoint.py",
            "tests/engine/test_coco_evaluation.py",
            "tests/engine/test_bad_input.py",
        ],
    ),
    "clip_mapper": (
        ["ccnet/data/clip_mapper.py"],
        ["tests/data/test_clip_mapper.py", "tests/modeling/test_video_middle_frame.py"],
    ),
}
KILLED = ("killed", "timeout", "segfault", "caught by type check")


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # strings, numbers and lists of them are valid TOML as JSON


def stage(group: str) -> str:
    """Lay out .cache/mutation/<group>/ and return its path."""
    modules, tests = GROUPS[group]
    path = os.path.join(STAGE, group)
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "projects", "ccnet"), os.path.join(path, "src", "ccnet"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)["tool"]["mutmut"]
    for name in config["also_copy"]:
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(path, name), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, os.path.join(path, name))
    config = dict(config, only_mutate=[f"src/{m}" for m in modules], pytest_add_cli_args_test_selection=tests)
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    section = "\n".join(["[tool.mutmut]"] + [f"{k} = {_toml_value(v)}" for k, v in config.items()]) + "\n"
    text = re.sub(r"\[tool\.mutmut\]\n(?:[^\[].*\n?)*", section, text)
    with open(os.path.join(path, "pyproject.toml"), "w") as f:
        f.write(text)
    return path


def _mutmut(path: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("PYTHONPATH", None)  # mutmut puts mutants/src first on sys.path itself
    command = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())", *args]
    return subprocess.run(command, cwd=path, env=env, text=True, **kwargs)


def run_group(group: str, max_children: int) -> dict:
    path = stage(group)
    with open(os.path.join(path, "mutmut-run.log"), "w") as log:
        _mutmut(path, "run", "--max-children", str(max_children), stdout=log, stderr=subprocess.STDOUT)
    results = _mutmut(path, "results", "--all", "true", capture_output=True).stdout
    statuses = dict(re.findall(r"^\s+(\S+): (.+)$", results, flags=re.M))
    counts = collections.Counter(statuses.values())
    total = sum(counts.values())
    killed = sum(counts[s] for s in KILLED)
    return {
        "modules": GROUPS[group][0],
        "tests": GROUPS[group][1],
        "counts": dict(counts),
        "score": killed / total if total else None,
        "survived": sorted(name for name, status in statuses.items() if status not in KILLED),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="*", help=f"some of {list(GROUPS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}: {' '.join(modules)}\n    tests: {' '.join(tests)}")
        return 0
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {list(GROUPS)}")
    os.makedirs(STAGE, exist_ok=True)
    scores_file = os.path.join(STAGE, "scores.json")
    scores = json.load(open(scores_file)) if os.path.exists(scores_file) else {}
    for group in args.groups or list(GROUPS):
        print(f"mutating {group} ...", flush=True)
        scores[group] = run_group(group, args.max_children)
        with open(scores_file, "w") as f:
            json.dump(scores, f, indent=2)
        s = scores[group]
        score = "n/a" if s["score"] is None else f"{100 * s['score']:.1f}%"
        print(f"  {group}: {score} killed, {s['counts']}", flush=True)
        for name in s["survived"]:
            print(f"    survived: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
