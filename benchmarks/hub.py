"""6. A real Hugging Face captioner's shape: ViT-B/16 + GPT-2 small (random weights) saved as a
folder and opened with vizcap.load, vizcap explain against that model's own generate()."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.children import CHILD_PRELUDE, child_env
from benchmarks.models import HELDOUT, PEER_TOKENS, ROOT, scene_images
from benchmarks.timing import interleaved, med, paired_ratio


def save_hf_vit_gpt2(directory: Path, tiny: bool = False) -> Path:
    """A VisionEncoderDecoderModel with nlpconnect/vit-gpt2-image-captioning's shapes (ViT-B/16 at 224,
    GPT-2 small with cross-attention, 50257 tokens, start = eos = pad = <|endoftext|>, no crop,
    mean/std 0.5), random weights, saved as a hub folder: config, safetensors, processor, tokenizer.
    tiny: the same folder and vocabulary around 2 layers 32 wide on 64-px pictures (checks a benchmark's code)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (GPT2Config, GPT2TokenizerFast, ViTConfig, ViTImageProcessor, VisionEncoderDecoderConfig,
                              VisionEncoderDecoderModel)

    eot = "<|endoftext|>"
    vocab = {f"w{i}": i for i in range(50256)}
    vocab[eot] = 50256
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token=eot))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = GPT2TokenizerFast(tokenizer_object=word_level, bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot)
    width, layers, heads, image = (32, 2, 2, 64) if tiny else (768, 12, 12, 224)
    enc = ViTConfig(image_size=image, patch_size=16, hidden_size=width, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=4 * width)
    dec = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=width, n_layer=layers, n_head=heads,
                     add_cross_attention=True, is_decoder=True, bos_token_id=50256, eos_token_id=50256, pad_token_id=50256)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id = cfg.pad_token_id = cfg.eos_token_id = 50256
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        torch.manual_seed(0)
        model = VisionEncoderDecoderModel(cfg)
        model.save_pretrained(directory)
    finally:
        transformers.logging.set_verbosity(verbosity)
    ViTImageProcessor(size={"height": image, "width": image}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


HUB_CHILD = CHILD_PRELUDE + r"""
base = hwm()
import vizcap
from vizcap.scenes import render_scene
cap = vizcap.load({folder!r})
e = cap.explain(render_scene({seed}).image, max_tokens={T})
e.maps("cross_attention"); e.maps("rollout")
print(json.dumps({{"imports_mb": base, "peak_mb": hwm(), "tokens": len(e.tokens)}}))
"""


def bench_hub(args, tmp: Path, T: int = PEER_TOKENS) -> dict:
    """vizcap on a Hugging Face model against that model's own generate(), same image, same T tokens."""
    import vizcap

    folder = save_hf_vit_gpt2(tmp / "vit-gpt2-base")
    cap = vizcap.load(folder)
    hf = cap.model
    img = scene_images(1)[0]
    pixels = cap.pixels(img)

    def explain_all():
        e = cap.explain(img, max_tokens=T)
        e.maps("cross_attention")
        e.maps("rollout")
        return e

    def generate(attentions: bool):
        with torch.inference_mode():
            return hf.generate(pixel_values=pixels, max_new_tokens=T, min_new_tokens=T, do_sample=False, num_beams=1,
                               output_attentions=attentions, return_dict_in_generate=True)

    e, plain, full = explain_all(), generate(False), generate(True)
    assert len(e.tokens) == T and plain.sequences.shape[1] == T + 1, (len(e.tokens), plain.sequences.shape)
    assert e.token_ids == plain.sequences[0, 1:].tolist()  # the very caption the model's own generate() writes
    assert full.cross_attentions is not None and len(full.cross_attentions) == T
    repeats = 3 if args.quick else 7
    s = interleaved({"vizcap": explain_all, "hf": lambda: generate(False), "hf_attn": lambda: generate(True)},
                    repeats, warmup=1)
    child = HUB_CHILD.format(root=str(ROOT), folder=str(folder), seed=HELDOUT, T=T)
    r = subprocess.run([sys.executable, "-c", child], env=child_env(), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"hub memory child failed: {r.stderr.strip()[-800:]}")
    memory = json.loads(r.stdout.strip().splitlines()[-1])
    return {"tokens": T, "vizcap_s": med(s["vizcap"]), "hf_s": med(s["hf"]), "hf_attn_s": med(s["hf_attn"]),
            "ratio_vs_generate": paired_ratio(s["vizcap"], s["hf"]),
            "ratio_vs_generate_attentions": paired_ratio(s["vizcap"], s["hf_attn"]),
            "params": sum(p.numel() for p in hf.parameters()), "memory": memory, "samples": s}
