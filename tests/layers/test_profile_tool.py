"""tools/profile_attention.py: ops are sorted into the kinds it names, the shares cover the whole
profile, and the command runs end to end on a tiny setting."""
import json

import pytest

from tests.conftest import load_tool

profile_tool = load_tool("profile_attention")


@pytest.mark.parametrize(
    "name, shapes, kind",
    [
        ("aten::bmm", [[12, 10, 12], [12, 12, 10]], "bmm C"),  # value channels 10
        ("aten::bmm", [[12, 12, 6], [12, 6, 12]], "bmm Cq"),  # energies: q/k channels 6
        ("aten::baddbmm", [[12, 12, 10], [12, 10, 12], [12, 12, 12]], "bmm C"),
        ("aten::copy_", [[12, 120], [12, 120], []], "layout copies"),
        ("aten::add_", [[1, 10, 12, 12], [1, 10, 12, 12], []], "adds"),
        ("aten::exp_", [[12, 12, 12]], "softmax"),
        ("aten::empty", [[]], "other"),
    ],
)
def test_op_kinds(name, shapes, kind):
    assert profile_tool.op_kind(name, shapes, channels=10) == kind


@pytest.mark.parametrize("channels_last", [False, True])
def test_profile_covers_the_whole_op(tmp_path, capsys, channels_last):
    out = tmp_path / "profile.json"
    argv = ["--size", "12", "--channels", "10", "--qk-channels", "6", "--runs", "1", "--json", str(out)]
    assert profile_tool.main(argv + (["--channels-last"] if channels_last else [])) == 0
    result = json.loads(out.read_text())
    for mode in ("train", "inference"):
        r = result["modes"][mode]
        assert set(r["shares"]) == set(profile_tool.KINDS)
        assert abs(sum(r["shares"].values()) - 1) < 1e-9  # fractions of one total
        assert r["shares"]["bmm C"] > 0 and r["shares"]["bmm Cq"] > 0 and r["ms_per_run"] > 0
    # Per axis (2 here), by hand: inference runs the energies (Cq) and the weighted sum (C);
    # train adds d value and d weights (C), the recomputed energies, d query and d key (Cq).
    calls = {m: result["modes"][m]["calls_per_run"] for m in ("train", "inference")}
    assert (calls["inference"]["bmm C"], calls["inference"]["bmm Cq"]) == (2, 2)
    assert (calls["train"]["bmm C"], calls["train"]["bmm Cq"]) == (2 + 4, 2 + 6)
    printed = capsys.readouterr().out
    assert "| bmm C |" in printed and "1-thread matmul" in printed


def test_sizes_that_cannot_be_told_apart_are_refused(capsys):
    with pytest.raises(SystemExit):
        profile_tool.main(["--size", "16", "--channels", "16"])
    assert "must differ" in capsys.readouterr().err
