"""The default model's vision transformer: a timm `VisionTransformer` whose 16×16 patchify is replaced
by a small convolutional stem (Xiao et al. 2021, "Early convolutions help transformers see
better"; the ViT paper's hybrid models do the same with a ResNet stem).

    image [3, 128, 128] ─► 4 × (3×3 conv, stride 2, BatchNorm, ReLU) ─► 1×1 conv ─► [128, 8, 8]
                       ─► 64 patch tokens + a class token ─► 4 transformer blocks (4 heads each)

Everything after the stem is timm's own ViT, so its self-attention is captured like any timm ViT's
(hook points `encoder.blocks.{i}.attn`) and each token is still one 16×16-pixel cell of the input.
On small data a convolutional stem trains faster and more stably than a linear patchify (measured
on ShapeScenes in ../shared/calibration.md).

The model is registered in timm's registry as `vizcap_vit_convstem`, so a checkpoint's config.json
names it like any other timm model (`"encoder": "vizcap_vit_convstem"`) and plain JSON keywords
(img_size, embed_dim, depth, num_heads, mlp_ratio, stem_channels) set its size."""

from __future__ import annotations

import math
from functools import partial

import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer


class ConvStemPatchEmbed(PatchEmbed):
    """PatchEmbed with `proj` a stack of stride-2 3×3 convolutions (one per halving of the patch
    size) and a 1×1 projection to the embedding width; grid_size and the rest stay timm's."""

    def __init__(self, img_size=128, patch_size=16, in_chans=3, embed_dim=128, stem_channels=(16, 32, 64, 128), **kwargs):
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
        halvings = int(math.log2(patch_size))
        if 2**halvings != patch_size or len(stem_channels) != halvings:
            raise ValueError(f"patch_size must be a power of two with one stem channel count per halving; "
                             f"got patch_size {patch_size}, stem_channels {tuple(stem_channels)}")
        layers, channels = [], in_chans
        for width in stem_channels:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        self.proj = nn.Sequential(*layers)


@register_model
def vizcap_vit_convstem(pretrained: bool = False, stem_channels=(16, 32, 64, 128), **kwargs) -> VisionTransformer:
    if pretrained:
        raise ValueError("vizcap_vit_convstem has no pretrained weights (it is trained by `python -m train shapes`)")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's factory passes these along
        kwargs.pop(key, None)
    args = dict(img_size=128, patch_size=16, embed_dim=128, depth=4, num_heads=4, mlp_ratio=2.0, num_classes=0)
    args.update(kwargs)
    return VisionTransformer(embed_layer=partial(ConvStemPatchEmbed, stem_channels=tuple(stem_channels)), **args)
