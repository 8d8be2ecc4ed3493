"""The models and inputs the benchmarks run on: the shipped (or default-config) captioner, vizcap models
with a ViT encoder of a given size, their Hugging Face peers, held-out scenes, forced captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


ROOT = Path(__file__).resolve().parents[1]
HELDOUT = 2_000_000_000  # train/shapes.py HELDOUT_FIRST_SEED: scenes the shipped model never saw
PEER_TOKENS = 20


def shipped_or_random():
    """The shipped checkpoint, or (while it is not trained yet) the default config, random weights."""
    import vizcap
    from vizcap.captioner import DEFAULT_CHECKPOINT

    if (DEFAULT_CHECKPOINT / "model.safetensors").is_file():
        return vizcap.load(), "shipped checkpoint"
    from train.shapes import default_config
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tok = CaptionTokenizer.word_level(VOCABULARY)
    torch.manual_seed(0)
    return Captioner(CaptionModel(default_config(tok)).eval(), tok), "default config, RANDOM weights (no shipped model)"


def vit_kwargs(img: int, width: int, depth: int, heads: int, patch: int = 16) -> dict:
    return dict(img_size=img, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads)


# The default model's encoder is MobileNetV3-small (timm mobilenetv3_small_100, feature stage 3) at
# 128 px: an 8×8 grid of 48 channels, 36.5 MFLOPs per image (torch.utils.flop_counter). The ViT that
# stands in for it on both sides of the peer comparison has the same 8×8 grid (128 px, patch 16) and
# about the same FLOPs: width 96, depth 2, 4 heads, MLP 384 -> 38.2 MFLOPs.
SMALL = dict(name="default size", image=128, vit=dict(width=96, depth=2, heads=4), d=128, layers=2, heads=4,
             vocab=None, positions=64, n_prefix=6, mapper_layers=0)


# ViT-B/16 at 224 px (14×14 grid, 768 wide, 12 layers, 12 heads) + GPT-2 small (768 wide, 12 layers, 12 heads,
# 50257 tokens, 1024 positions); vizcap's mapper as the photo presets make it (10 prefix tokens, 2 layers).
BASE = dict(name="ViT-B/16 + GPT-2 small", image=224, vit=dict(width=768, depth=12, heads=12), d=768, layers=12,
            heads=12, vocab=50257, positions=1024, n_prefix=10, mapper_layers=2)


def word_tokenizer(vocab: int | None):
    """The ShapeScenes word tokenizer (vocab None), or a stand-in word-level tokenizer of `vocab` ids
    whose last id is GPT-2's <|endoftext|> (bos = eos = pad), for a GPT-2-sized vocabulary."""
    from tokenizers import Tokenizer, models

    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    if vocab is None:
        return CaptionTokenizer.word_level(VOCABULARY)
    eot = "<|endoftext|>"
    words = {f"w{i}": i for i in range(vocab - 1)}
    words[eot] = vocab - 1
    return CaptionTokenizer(Tokenizer(models.WordLevel(vocab=words, unk_token=eot)), pad=eot, bos=eot, eos=eot)


def vizcap_vit(size: dict, image: int | None = None, seed: int = 0):
    """A vizcap Captioner with a timm ViT encoder of `size` (random weights)."""
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionerConfig, CaptionModel

    tok = word_tokenizer(size["vocab"])
    image = image or size["image"]
    v = size["vit"]
    cfg = CaptionerConfig(
        encoder="vit_base_patch16_224", encoder_kwargs=vit_kwargs(image, v["width"], v["depth"], v["heads"]),
        feature_index=None, image_size=image, d_model=size["d"], n_prefix=size["n_prefix"],
        mapper_heads=size["heads"], mapper_layers=size["mapper_layers"], decoder_layers=size["layers"],
        decoder_heads=size["heads"], max_positions=size["positions"], vocab_size=tok.vocab_size,
        bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, mode="both")
    torch.manual_seed(seed)
    return Captioner(CaptionModel(cfg).eval(), tok)


def hf_peer(size: dict, vocab: int, ids: dict):
    """transformers VisionEncoderDecoderModel (ViTModel + GPT2LMHeadModel with cross-attention) of
    `size`, random weights, eager attention everywhere (so that attention weights exist)."""
    import transformers
    from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    v = size["vit"]
    enc = ViTConfig(image_size=size["image"], patch_size=16, hidden_size=v["width"], num_hidden_layers=v["depth"],
                    num_attention_heads=v["heads"], intermediate_size=4 * v["width"], layer_norm_eps=1e-6)
    dec = GPT2Config(vocab_size=vocab, n_positions=size["positions"], n_embd=size["d"], n_layer=size["layers"],
                     n_head=size["heads"], add_cross_attention=True, is_decoder=True, bos_token_id=ids["bos"],
                     eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = ids["bos"], ids["pad"], ids["eos"]
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        torch.manual_seed(0)
        model = VisionEncoderDecoderModel._from_config(cfg, attn_implementation="eager").eval()
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model


def scene_images(n: int, seed0: int = HELDOUT):
    from vizcap.scenes import render_scene

    return [render_scene(seed0 + k).image for k in range(n)]


def forced_ids(captioner, T: int, seed: int = 0) -> list[int]:
    """T token ids that are never a special token: the model is made to read a T-word caption."""
    cfg = captioner.cfg
    specials = {cfg.bos_id, cfg.eos_id, cfg.pad_id}
    pool = [i for i in range(cfg.vocab_size) if i not in specials]
    g = np.random.default_rng(seed)
    return [int(x) for x in g.choice(pool, size=T)]
