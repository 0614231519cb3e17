"""The synthetic datasets write the same data for the same spec as when the benchmarks were measured.

``synthetic_sha256.json`` holds, for every file the generators write for small versions of
the default splits (:data:`SMALL_SPECS`), the sha256 of its content: the decoded pixels (with
their shape and dtype) of a PNG, the bytes of any other file.  Pixels rather than PNG bytes,
so that a different zlib build compressing the same pixels differently is not a change.

Regenerate the record only after a deliberate change of the drawing code (which also bumps
the spec's ``version``)::

    python tests/data/test_synthetic_files_unchanged.py --record
"""
import dataclasses
import hashlib
import json
import os
import sys

import cv2
import numpy as np

RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_sha256.json")


def _generators():
    """{dataset folder: (generate(root, split, spec), default SPLITS, name of the count field)}."""
    from ccnet.data.datasets import long_range, shapes, temporal

    return {
        "shapes_instances": (shapes.generate_shapes, shapes.SPLITS, "num_images"),
        "long_range": (long_range.generate_long_range, long_range.SPLITS, "num_images"),
        "temporal": (temporal.generate_temporal, temporal.SPLITS, "num_clips"),
    }


SMALL_SIZES = {"shapes_instances": 4, "long_range": 4, "temporal": 3}
"""Images (clips) per split: both default splits (their seeds), every other spec field default."""


def _content_sha256(path: str) -> str:
    if path.endswith(".png"):
        pixels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise ValueError(f"cannot decode {path}")
        header = f"{pixels.shape} {pixels.dtype}".encode()
        return hashlib.sha256(header + np.ascontiguousarray(pixels).tobytes()).hexdigest()
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def generated_file_hashes(root: str) -> dict:
    """Generate the small splits of every synthetic dataset under ``root``; {folder: {file: sha256}}."""
    hashes = {}
    for folder, (generate, splits, count_field) in _generators().items():
        for split, spec in splits.items():
            generate(root, split, dataclasses.replace(spec, **{count_field: SMALL_SIZES[folder]}))
        base = os.path.join(root, folder)
        hashes[folder] = {
            os.path.relpath(os.path.join(directory, name), base): _content_sha256(os.path.join(directory, name))
            for directory, _, names in os.walk(base)
            for name in names
        }
        hashes[folder] = dict(sorted(hashes[folder].items()))
    return hashes


def test_generated_files_match_the_record(tmp_path):
    with open(RECORD) as f:
        recorded = json.load(f)
    generated = generated_file_hashes(str(tmp_path))
    assert sorted(generated) == sorted(recorded)
    for folder, files in recorded.items():
        assert sorted(generated[folder]) == sorted(files), f"{folder}: other files written"
        changed = [name for name, digest in files.items() if generated[folder][name] != digest]
        assert not changed, f"{folder}: content changed in {len(changed)} files, e.g. {changed[:5]}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(f"usage: {sys.argv[0]} --record   (rewrites {RECORD})")
    import tempfile

    import ccnet.data  # noqa: F401  (makes Detectron2 work with today's libraries, registers the datasets)

    with tempfile.TemporaryDirectory() as root:
        record = generated_file_hashes(root)
    with open(RECORD, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"wrote {RECORD}: {sum(len(files) for files in record.values())} files")
