"""vizcap_vit_convstem: a timm VisionTransformer with a convolutional stem, created by name."""

from __future__ import annotations

import pytest
import timm
import torch

from vizcap.hooks import capture
from vizcap.model import CaptionerConfig, CaptionModel


def test_it_is_a_timm_vit_made_by_name_with_a_conv_stem():
    vit = timm.create_model("vizcap_vit_convstem", img_size=64, embed_dim=32, depth=2, num_heads=2,
                            stem_channels=(8, 8, 16, 16))
    assert type(vit).__name__ == "VisionTransformer" and tuple(vit.patch_embed.grid_size) == (4, 4)
    convs = [m for m in vit.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 4 + [(1, 1)] and convs[-1].out_channels == 32
    out = vit.forward_features(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 1 + 16, 32)  # class token + 4×4 patches


def test_a_captioner_on_it_records_the_vits_attention():
    cfg = CaptionerConfig(encoder="vizcap_vit_convstem", feature_index=None, image_size=64, d_model=32,
                          encoder_kwargs={"img_size": 64, "embed_dim": 32, "depth": 2, "num_heads": 2,
                                          "stem_channels": [8, 8, 16, 16]},
                          vocab_size=10, n_prefix=2)
    model = CaptionModel(cfg).eval()
    from vizcap.hooks import install_hook_points

    names = install_hook_points(model)
    assert {"encoder.blocks.0.attn", "encoder.blocks.1.attn"} <= set(names)
    with torch.no_grad(), capture() as cache:
        model.encode(torch.zeros(1, 3, 64, 64))
    w = cache["encoder.blocks.1.attn"][0]
    assert w.shape == (1, 2, 17, 17) and torch.allclose(w.sum(-1), torch.ones(1, 2, 17))


def test_bad_stems_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        timm.create_model("vizcap_vit_convstem", patch_size=12)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("vizcap_vit_convstem", pretrained=True)


def test_train_shapes_can_train_the_vit_default_with_hard_scenes(tmp_path):
    """The preset's ViT option end to end (4 steps): a loadable checkpoint whose encoder is the conv-stem
    ViT, hard scenes in the data, and metrics.json with the hard held-out scores and the CPU."""
    import json

    import vizcap
    from train.shapes import ShapesArgs, ShapeScenesData, run
    from vizcap.scenes import HARD, render_scene

    record = run(ShapesArgs(out=str(tmp_path), steps=4, batch_size=4, eval_n=8, workers=0, threads=1, save_every=2,
                            encoder="vit", hard_every=2))
    cap = vizcap.load(tmp_path)
    assert type(cap.model.encoder.model).__name__ == "VisionTransformer" and cap.grid == (8, 8)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["heldout_hard"]["n_scenes"] == 8 and record["heldout_hard"] == saved["heldout_hard"]
    assert saved["machine"]["cpu"] and saved["machine"]["cpu_capability"]
    data = ShapeScenesData(cap.cfg, cap.grid, cap.tokenizer, first_seed=0, hard_every=2)
    hard_scene = render_scene(1, HARD)
    assert data[1][1] == [cap.tokenizer.bos_id, *cap.tokenizer.encode(hard_scene.caption), cap.tokenizer.eos_id]
    assert data[0][1] == [cap.tokenizer.bos_id, *cap.tokenizer.encode(render_scene(0).caption), cap.tokenizer.eos_id]


def test_hard_scenes_are_what_issue_14_describes():
    from vizcap.scenes import HARD, render_scene

    for seed in range(20):
        s = render_scene(seed, HARD)
        assert 300 <= min(s.image.size) and max(s.image.size) <= 640
        assert all(0.12 - 1e-9 <= o.size <= 0.22 + 1e-9 for o in s.objects) and len(s.objects) >= 2
