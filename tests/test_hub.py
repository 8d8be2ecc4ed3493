"""Hugging Face captioners (VisionEncoderDecoder ViT + GPT-2, BLIP) explained by vizcap.

Tiny random models of both classes are built here from configs (tests/hub_fixtures.py) and saved
with save_pretrained, with a tokenizer and a processor config. The transformers model itself is the
oracle: its processor for preprocessing, its generate() for captions, its output_attentions=True
teacher-forced pass for maps. Nothing touches the network."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

import hub_fixtures

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="session")
def vit_gpt2_dir(tmp_path_factory):
    return hub_fixtures.vit_gpt2(tmp_path_factory.mktemp("vit_gpt2"))


@pytest.fixture(scope="session")
def blip_dir(tmp_path_factory):
    return hub_fixtures.blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="session", params=["vit_gpt2", "blip"])
def hf_dir(request, vit_gpt2_dir, blip_dir):
    return {"vit_gpt2": vit_gpt2_dir, "blip": blip_dir}[request.param]


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """Random pictures of several shapes and aspect ratios, as PNG files."""
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for seed, (h, w) in enumerate([(40, 60), (64, 64), (30, 90), (80, 50), (57, 41), (48, 48)]):
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)  # blocks, not only noise
        img = Image.fromarray(base).resize((w, h), Image.NEAREST)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-30, 30, (h, w, 3))
        path = root / f"photo{seed}.png"
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _oracle(directory):
    from transformers import AutoConfig, AutoImageProcessor, BlipForConditionalGeneration, VisionEncoderDecoderModel

    cls = BlipForConditionalGeneration if AutoConfig.from_pretrained(directory).model_type == "blip" else VisionEncoderDecoderModel
    return cls.from_pretrained(directory, attn_implementation="eager").eval(), AutoImageProcessor.from_pretrained(directory)


def _generated(model, pixels, eos, **kwargs) -> list[int]:
    """generate()'s new tokens, up to and including the first end token."""
    with torch.inference_mode():
        out = model.generate(pixels, **kwargs)[0, 1:].tolist()
    return out[: out.index(eos) + 1] if eos in out else out


def test_loader_reads_both_classes(hf_dir):
    from vizcap.hub import HFCaptioner

    b = HFCaptioner.from_pretrained(hf_dir)
    assert b.grid == (4, 4) and b.n_extra_keys == 1 and b.n_prefix == 0
    assert b.decoder_layers == 2 and b.decoder_heads == 2 and b.banned == ()
    assert set(b.hook_names) >= {"encoder.blocks.0.attn", "decoder.h.1.attn", "decoder.h.1.crossattention"}
    # eager attention everywhere: SDPA would compute no weights
    impls = {getattr(m.config, "_attn_implementation", "eager") for m in b.model.modules() if hasattr(m, "config")}
    assert impls == {"eager"}


def test_preprocessing_equals_the_models_processor(hf_dir, photos):
    from transformers import AutoImageProcessor

    from vizcap import open_image
    from vizcap.hub import HFCaptioner

    b = HFCaptioner.from_pretrained(hf_dir)
    processor = AutoImageProcessor.from_pretrained(hf_dir)
    assert b.crop is None  # ViT and BLIP processors squash, they never crop
    for path in photos:
        ours = b.pixels(open_image(path))
        theirs = processor(Image.open(path).convert("RGB"), return_tensors="pt").pixel_values
        assert ours.shape == theirs.shape == (1, 3, *b.input_size)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


def test_greedy_steps_equal_generate(hf_dir, photos):
    """The HF step function driven by vizcap.decoding.search gives generate()'s greedy tokens."""
    from vizcap import open_image
    from vizcap.decoding import DecodingParams, search
    from vizcap.hooks import capture
    from vizcap.hub import HFCaptioner

    b = HFCaptioner.from_pretrained(hf_dir)
    model, _ = _oracle(hf_dir)
    lengths = set()
    for path in photos:
        pixels = b.pixels(open_image(path))
        with torch.inference_mode(), capture():
            result = search(b.session(pixels), DecodingParams(max_tokens=b.max_tokens), b.eos_id, b.vocab_size, b.banned)
        expected = _generated(model, pixels, b.eos_id, do_sample=False, num_beams=1)
        assert result.best.tokens == expected
        lengths.add(len(expected))
    assert len(lengths) > 1  # the fixtures end captions at different steps


def test_step_maps_equal_output_attentions(hf_dir, photos):
    """Every captured row (encoder self-attention, decoder cross-attention per layer and head) equals
    the model's own output_attentions in a teacher-forced pass over the final sequence."""
    from vizcap import open_image
    from vizcap.decoding import DecodingParams, search
    from vizcap.hooks import capture
    from vizcap.hub import HFCaptioner

    b = HFCaptioner.from_pretrained(hf_dir)
    model, _ = _oracle(hf_dir)
    pixels = b.pixels(open_image(photos[1]))
    with torch.inference_mode(), capture() as cache:
        step = b.session(pixels)
        front = cache.pop_all()
        result = search(step, DecodingParams(max_tokens=b.max_tokens), b.eos_id, b.vocab_size, b.banned)
    tokens = result.best.tokens
    ids = torch.tensor([[b.bos_id, *tokens[:-1]]])
    with torch.inference_mode():
        if b.kind == "blip":
            vis = model.vision_model(pixel_values=pixels, output_attentions=True)
            out = model.text_decoder(input_ids=ids, encoder_hidden_states=vis[0], output_attentions=True)
            cross, self_attn, enc = out.cross_attentions, out.attentions, vis.attentions
        else:
            out = model(pixel_values=pixels, decoder_input_ids=ids, output_attentions=True)
            cross, self_attn, enc = out.cross_attentions, out.decoder_attentions, out.encoder_attentions
    assert cross and cross[0] is not None and cross[0].shape[-1] == 17  # CLS + 16 patches
    for t, (s, row) in enumerate(result.best.rows):
        for layer in range(b.decoder_layers):
            got = result.steps[s]["captured"][f"decoder.h.{layer}.crossattention"][0][row, :, -1]
            assert torch.allclose(got, cross[layer][0, :, t], atol=1e-5, rtol=0)
            got = result.steps[s]["captured"][f"decoder.h.{layer}.attn"][0][row, :, -1]
            assert torch.allclose(got, self_attn[layer][0, :, t, : t + 1], atol=1e-5, rtol=0)
    for i in range(b.encoder_layers):
        assert torch.allclose(front[f"encoder.blocks.{i}.attn"][0], enc[i], atol=1e-5, rtol=0)


def test_teacher_forced_matches_the_model(hf_dir, photos):
    from vizcap import open_image
    from vizcap.hub import HFCaptioner

    b = HFCaptioner.from_pretrained(hf_dir)
    model, _ = _oracle(hf_dir)
    pixels = b.pixels(open_image(photos[0]))
    tokens = [7, 9, 11, b.eos_id]
    logits, cache = b.teacher_forced(pixels, tokens)
    ids = torch.tensor([[b.bos_id, *tokens[:-1]]])
    with torch.inference_mode():
        if b.kind == "blip":
            ref = model(pixel_values=pixels, input_ids=ids).logits[0]
        else:
            ref = model(pixel_values=pixels, decoder_input_ids=ids).logits[0]
    assert torch.allclose(logits, ref, atol=1e-5)
    assert cache["decoder.h.0.crossattention"][0].shape == (1, 2, 4, 17)


def test_generation_settings_come_from_the_checkpoint(tmp_path):
    from vizcap.hub import HFCaptioner

    d = hub_fixtures.vit_gpt2(tmp_path / "m")
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg.update(max_length=9, early_stopping=True, no_repeat_ngram_size=3)
    (d / "generation_config.json").write_text(json.dumps(cfg))
    b = HFCaptioner.from_pretrained(d)
    assert b.max_tokens == 8 and b.decoding_defaults()["early_stopping"] == "first_k"
    assert b.unsupported_settings == ["no_repeat_ngram_size=3"]


def test_hub_id_not_cached_offline_is_one_line(monkeypatch, tmp_path):
    from vizcap.captioner import CheckpointError
    from vizcap.hub import HFCaptioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        HFCaptioner.from_pretrained("someone/not-a-cached-captioner")
    message = str(info.value)
    assert time.perf_counter() - start < 10
    assert "\n" not in message and "huggingface-cli download someone/not-a-cached-captioner" in message


def test_refuses_other_architectures(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from vizcap.captioner import CheckpointError
    from vizcap.hub import HFCaptioner

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, n_positions=8)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="'gpt2' model"):
        HFCaptioner.from_pretrained(tmp_path)


def test_memory_check_refuses_a_model_that_does_not_fit(monkeypatch, vit_gpt2_dir):
    from vizcap.captioner import CheckpointError
    from vizcap.hub import HFCaptioner

    monkeypatch.setenv("VIZCAP_MEMORY_LIMIT_MB", "0")
    with pytest.raises(CheckpointError, match="GiB of memory"):
        HFCaptioner.from_pretrained(vit_gpt2_dir)


def test_vizcap_load_dispatches_every_kind(vit_gpt2_dir, blip_dir, tiny_checkpoint, tmp_path):
    import vizcap
    from vizcap.captioner import Captioner, CheckpointError
    from vizcap.hub import HFCaptioner

    assert isinstance(vizcap.load(tiny_checkpoint), Captioner)
    assert isinstance(vizcap.load(str(vit_gpt2_dir)), HFCaptioner) and vizcap.load(vit_gpt2_dir).kind == "vision-encoder-decoder"
    assert vizcap.load(blip_dir).kind == "blip"
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        vizcap.load(tmp_path / "missing")
