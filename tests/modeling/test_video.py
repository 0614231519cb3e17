"""The video segmentor: RCCA3d over clips, T=1 equals the 2D CCNet, trains and predicts on CPU."""
import pytest
import torch

from ccnet.engine.cli import build_config
from ccnet.layers import CrissCrossAttention3d
from detectron2.modeling import build_model

SIZE = 32
NUM_CLASSES = 4

# A tiny deep-stem ResNet trunk (res2 at stride 4, res3 at stride 8) and a 16-channel CCNet head.
TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.BACKBONE.NAME", "build_resnet_deeplab_backbone",
    "MODEL.BACKBONE.FREEZE_AT", 0,
    "MODEL.RESNETS.DEPTH", 50,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 4,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
    "MODEL.RESNETS.RES5_MULTI_GRID", [1, 1, 1],
    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3"],
    "MODEL.RESNETS.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.NORM", "BN",
    "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res3"],
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", NUM_CLASSES,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 16,
    "MODEL.SEM_SEG_HEAD.LOSS_TYPE", "cross_entropy",
    "MODEL.CONTEXT.REDUCTION", 2,  # res3: 32 -> 16 channels
    "MODEL.CONTEXT.NORM", "BN",
    "MODEL.CCNET.AUX_IN_FEATURE", "res2",
    "MODEL.CCNET.AUX_CONVS_DIM", 8,
    "MODEL.CCNET.CCL_ENABLED", True,
    "MODEL.CCNET.CCL_DIM", 4,
]  # fmt: skip


def _config(video: bool, *extra):
    names = ["CCNetVideoSegmentor", "CCNetVideoHead"] if video else ["CCNetSemanticSegmentor", "CCNetHead"]
    return build_config(opts=TINY + ["MODEL.META_ARCHITECTURE", names[0], "MODEL.SEM_SEG_HEAD.NAME", names[1], *extra])


def _clips(n, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (t, 3, SIZE, SIZE), generator=g, dtype=torch.uint8).float(),
            "sem_seg": torch.randint(0, NUM_CLASSES, (SIZE, SIZE), generator=g),
            "height": SIZE,
            "width": SIZE,
        }
        for _ in range(n)
    ]


def _with_attention(model, gamma=0.8):
    """A fresh CCA has gamma = 0 (identity); give the attention a say."""
    with torch.no_grad():
        model.sem_seg_head.context.attention.gamma.fill_(gamma)
    return model


@pytest.mark.parametrize("inference", [[], ["TEST.SLIDING_WINDOW.ENABLED", True, "TEST.SLIDING_WINDOW.SIZE", [24, 24]]])
def test_clip_length_one_is_the_2d_model(inference):
    torch.manual_seed(0)
    model_2d = _with_attention(build_model(_config(False, *inference)))
    model_3d = build_model(_config(True, *inference))
    model_3d.load_state_dict(model_2d.state_dict())  # strict: the same parameter names
    clips = _clips(2, 1)
    images = [dict(c, image=c["image"][0]) for c in clips]

    for model in (model_2d, model_3d):
        model.train()
    torch.manual_seed(1)  # the same dropout masks
    losses_2d = model_2d(images)
    torch.manual_seed(1)
    losses_3d = model_3d(clips)
    assert set(losses_2d) == set(losses_3d) == {"loss_sem_seg", "loss_sem_seg_aux", "loss_ccl"}
    for name in losses_2d:
        # float32 losses <= 6, the same ops: eps 1.2e-7 x 6 = 7e-7 (measured 0).
        torch.testing.assert_close(losses_3d[name], losses_2d[name], rtol=0, atol=1e-6)

    for model in (model_2d, model_3d):
        model.eval()
    with torch.no_grad():
        out_2d, out_3d = model_2d(images), model_3d(clips)
    for a, b in zip(out_2d, out_3d):
        assert b["sem_seg"].shape == (NUM_CLASSES, SIZE, SIZE)
        # float32 logits <= 0.06, the same ops: eps x |logit| x ~10 layers < 1e-7 (measured 0).
        torch.testing.assert_close(b["sem_seg"], a["sem_seg"], rtol=0, atol=1e-6)


def test_clip_model_trains_a_step_and_predicts():
    torch.manual_seed(0)
    model = _with_attention(build_model(_config(True)))
    model.train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = model(_clips(2, 3))
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert model.sem_seg_head.context.attention.query.weight.grad.abs().sum() > 0
    optimizer.step()
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed) and any("context.attention" in k for k in changed)

    model.eval()
    clips = _clips(2, 3, seed=1)
    clips[1]["height"], clips[1]["width"] = 2 * SIZE, 3 * SIZE  # output resolution
    with torch.no_grad():
        outputs = model(clips)
    assert outputs[0]["sem_seg"].shape == (NUM_CLASSES, SIZE, SIZE)
    assert outputs[1]["sem_seg"].shape == (NUM_CLASSES, 2 * SIZE, 3 * SIZE)


def test_middle_frame_sees_the_other_frames_of_its_clip_only():
    torch.manual_seed(0)
    model = _with_attention(build_model(_config(True))).eval()
    clips = _clips(1, 3)
    with torch.no_grad():
        reference = model(clips)[0]["sem_seg"]
        changed = dict(clips[0], image=clips[0]["image"].clone())
        changed["image"][0] = 255 - changed["image"][0]  # another first frame
        # Another first frame moves the logits by 0.94 (measured); 1e-4 is 100x float32 noise.
        assert not torch.allclose(model([changed])[0]["sem_seg"], reference, atol=1e-4)

        # Batched clips do not see each other: the head's frames -> clips grouping.
        head = model.sem_seg_head
        channels = head.context.in_channels
        x = torch.randn(2 * 3, channels, 4, 4)  # two clips of 3 frames, res3 features
        expected = torch.stack([x[0:3], x[3:6]]).transpose(1, 2)  # (N, C, T, H, W) built by hand
        expected = head.context(expected).transpose(1, 2).reshape(6, -1, 4, 4)
        torch.testing.assert_close(head.clip_context(x, 3), expected)
        other = x.clone()
        other[3:] = torch.randn(3, channels, 4, 4)
        torch.testing.assert_close(head.clip_context(other, 3)[:3], expected[:3])


def test_bad_configs_and_inputs():
    context = build_model(_config(True)).sem_seg_head.context
    assert context.clips and isinstance(context.attention, CrissCrossAttention3d)
    with pytest.raises(ValueError, match="attention 'NL' has no form over clips"):
        build_model(_config(True, "MODEL.CONTEXT.NAME", "NL"))
    with pytest.raises(ValueError, match="needs MODEL.SEM_SEG_HEAD.NAME 'CCNetVideoHead'"):
        build_model(_config(True, "MODEL.SEM_SEG_HEAD.NAME", "CCNetHead"))
    model = build_model(_config(True))
    with pytest.raises(ValueError, match="odd number of frames"):
        model(_clips(1, 2))
    with pytest.raises(ValueError, match="one length per batch"):
        model(_clips(1, 3) + _clips(1, 1))


def test_the_video_model_is_built_as_the_2d_model():
    """Same seed, same initial values: the context module over clips is built where the 2D
    head builds its own (once, before the classifiers)."""
    torch.manual_seed(0)
    state_2d = build_model(_config(False)).state_dict()
    torch.manual_seed(0)
    state_3d = build_model(_config(True)).state_dict()
    assert state_3d.keys() == state_2d.keys()
    assert all(torch.equal(state_3d[k], state_2d[k]) for k in state_2d)


@pytest.mark.parametrize("inference", [[], ["TEST.SLIDING_WINDOW.ENABLED", True, "TEST.SLIDING_WINDOW.SIZE", [24, 24], "TEST.AUG.ENABLED", True, "TEST.AUG.MIN_SIZES", [28], "TEST.AUG.FLIP", True]])  # fmt: skip
def test_inference_classifies_the_middle_frames_only(inference):
    torch.manual_seed(0)
    model = _with_attention(build_model(_config(True, *inference))).eval()
    batches = []
    model.sem_seg_head.classifier.register_forward_hook(lambda module, inputs, output: batches.append(output.shape[0]))
    with torch.no_grad():
        outputs = model(_clips(2, 3))
    assert [o["sem_seg"].shape for o in outputs] == [(NUM_CLASSES, SIZE, SIZE)] * 2
    # One pass per clip (x 2 flips x 4 windows of 24 on the 28x28 scale), each on the middle
    # frame of the 3 only.
    assert set(batches) == {1} and len(batches) == 2 * (1 if not inference else 2 * 4)
