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
