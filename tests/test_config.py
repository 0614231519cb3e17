"""add_ccnet_config: safe to call twice, and keys of earlier versions are refused by name."""
import pytest

from ccnet.config import RENAMED_KEYS, add_ccnet_config
from ccnet.engine.cli import build_config
from detectron2.config import get_cfg


def test_adding_twice_keeps_merged_values():
    cfg = get_cfg()
    add_ccnet_config(cfg)
    cfg.merge_from_list(["MODEL.CONTEXT.NAME", "NL", "MODEL.CCNET.DROPOUT", "0.5", "INPUT.DATASET_MAPPER_NAME", "X"])
    add_ccnet_config(cfg)
    assert (cfg.MODEL.CONTEXT.NAME, cfg.MODEL.CCNET.DROPOUT, cfg.INPUT.DATASET_MAPPER_NAME) == ("NL", 0.5, "X")


def test_keys_are_added_to_a_config_that_another_project_extended():
    """Another project's INPUT.DATASET_MAPPER_NAME (e.g. Mask2Former's) is not ours."""
    cfg = get_cfg()
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
    add_ccnet_config(cfg)
    assert cfg.MODEL.CONTEXT.RECURRENCE == 2 and cfg.MODEL.CCNET.AUX_IN_FEATURE == "res4"


EXPECTED_RENAMES = {
    "MODEL.CCNET.CONTEXT": "MODEL.CONTEXT.NAME",
    "MODEL.CCNET.RECURRENCE": "MODEL.CONTEXT.RECURRENCE",
    "MODEL.CCNET.INTER_CHANNELS": "MODEL.CONTEXT.REDUCTION",
    "MODEL.CCNET.GAMMA_INIT": "MODEL.CONTEXT.GAMMA_INIT",
}


def test_every_removed_key_is_renamed_to_an_existing_key():
    assert {old: new for old, (new, _) in RENAMED_KEYS.items()} == EXPECTED_RENAMES
    cfg = build_config()
    for old, new in EXPECTED_RENAMES.items():
        assert new.split(".")[-1] in cfg.MODEL.CONTEXT and old.split(".")[-1] not in cfg.MODEL.CCNET, old


@pytest.mark.parametrize("old, value", [("MODEL.CCNET.CONTEXT", "NL"), ("MODEL.CCNET.RECURRENCE", "1"),
                                        ("MODEL.CCNET.INTER_CHANNELS", "512"), ("MODEL.CCNET.GAMMA_INIT", "1.0")])  # fmt: skip
def test_old_keys_name_their_new_key(old, value, tmp_path):
    new = EXPECTED_RENAMES[old]
    message = f"Key {old} was renamed to {new}"
    with pytest.raises(KeyError, match=message):
        build_config(opts=[old, value])
    section, key = old.split(".")[1:]
    yaml_file = tmp_path / "old.yaml"
    yaml_file.write_text(f"MODEL:\n  {section}:\n    {key}: {value}\n")
    with pytest.raises(KeyError, match=message):
        build_config(str(yaml_file))
