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
    import vizcap

    b = vizcap.load(hf_dir)
    assert b.grid == (4, 4) and b.n_extra_keys == 1 and b.n_prefix == 0
    assert b.decoder_layers == 2 and b.decoder_heads == 2 and b.banned == ()
    assert set(b.hook_names) >= {"encoder.blocks.0.attn", "decoder.h.1.attn", "decoder.h.1.crossattention"}
    # eager attention everywhere: SDPA would compute no weights
    impls = {getattr(m.config, "_attn_implementation", "eager") for m in b.model.modules() if hasattr(m, "config")}
    assert impls == {"eager"}


def test_preprocessing_equals_the_models_processor(hf_dir, photos):
    from transformers import AutoImageProcessor

    import vizcap
    from vizcap import open_image

    b = vizcap.load(hf_dir)
    processor = AutoImageProcessor.from_pretrained(hf_dir)
    assert b.crop is None  # ViT and BLIP processors squash, they never crop
    for path in photos:
        ours = b.pixels(open_image(path))
        theirs = processor(Image.open(path).convert("RGB"), return_tensors="pt").pixel_values
        assert ours.shape == theirs.shape == (1, 3, *b.input_size)
        assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


def test_greedy_steps_equal_generate(hf_dir, photos):
    """The HF step function driven by vizcap.decoding.search gives generate()'s greedy tokens."""
    import vizcap
    from vizcap import open_image
    from vizcap.decoding import DecodingParams, search
    from vizcap.hooks import capture

    b = vizcap.load(hf_dir)
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
    import vizcap
    from vizcap import open_image
    from vizcap.decoding import DecodingParams, search
    from vizcap.hooks import capture

    b = vizcap.load(hf_dir)
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
    import vizcap
    from vizcap import open_image

    b = vizcap.load(hf_dir)
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
    import vizcap

    d = hub_fixtures.vit_gpt2(tmp_path / "m")
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg.update(max_length=9, early_stopping=True, no_repeat_ngram_size=3)
    (d / "generation_config.json").write_text(json.dumps(cfg))
    b = vizcap.load(d)
    assert b.max_tokens == 8 and b.decoding_defaults()["early_stopping"] == "first_k"
    assert b.unsupported_settings == ["no_repeat_ngram_size=3"]


def test_hub_id_not_cached_offline_is_one_line(monkeypatch, tmp_path):
    import vizcap
    from vizcap.captioner import CheckpointError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        vizcap.load("someone/not-a-cached-captioner")
    message = str(info.value)
    assert time.perf_counter() - start < 10
    assert "\n" not in message and "huggingface-cli download someone/not-a-cached-captioner" in message


def test_refuses_other_architectures(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    import vizcap
    from vizcap.captioner import CheckpointError

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10, n_positions=8)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="'gpt2' model"):
        vizcap.load(tmp_path)


def test_memory_check_refuses_a_model_that_does_not_fit(monkeypatch, vit_gpt2_dir):
    import vizcap
    from vizcap.captioner import CheckpointError

    monkeypatch.setenv("VIZCAP_MEMORY_LIMIT_MB", "0")
    with pytest.raises(CheckpointError, match="GiB of memory"):
        vizcap.load(vit_gpt2_dir)


def test_vizcap_load_dispatches_every_kind(vit_gpt2_dir, blip_dir, tiny_checkpoint, tmp_path):
    import vizcap
    from vizcap.captioner import Captioner, CheckpointError
    from vizcap.hub import HFCaptioner

    assert isinstance(vizcap.load(tiny_checkpoint), Captioner)
    assert isinstance(vizcap.load(str(vit_gpt2_dir)), HFCaptioner) and vizcap.load(vit_gpt2_dir).kind == "vision-encoder-decoder"
    assert vizcap.load(blip_dir).kind == "blip"
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        vizcap.load(tmp_path / "missing")


def test_cli_captions_equal_generate(hf_dir, photos):
    """`vizcap caption --checkpoint FOLDER` (greedy and beam) writes generate()'s captions."""
    from conftest import run_module

    import vizcap
    from vizcap import open_image

    b = vizcap.load(hf_dir)
    model, _ = _oracle(hf_dir)
    paths = [str(p) for p in photos[:3]]
    for extra, kwargs in (([], dict(num_beams=1)), (["--strategy", "beam", "--beams", "3", "--length-penalty", "0.6"],
                                                     dict(num_beams=3, length_penalty=0.6))):
        proc = run_module("-m", "vizcap", "caption", *paths, "--checkpoint", str(hf_dir), "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        records = [json.loads(line) for line in proc.stdout.splitlines()]
        for path, record in zip(paths, records):
            expected = _generated(model, b.pixels(open_image(path)), b.eos_id, do_sample=False, **kwargs)
            ids = expected[:-1] if expected and expected[-1] == b.eos_id else expected
            assert record["caption"] == b.tokenizer.decode(ids)
            assert len(record["tokens"]) == len(ids)


def test_cli_hub_id_not_cached_exits_2_with_one_line(tmp_path, photos):
    import os
    import subprocess
    import sys

    from conftest import ROOT, subprocess_env

    env = {**subprocess_env(), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "vizcap", "caption", str(photos[0]), "--checkpoint",
                           "nlpconnect/vit-gpt2-image-captioning"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "huggingface-cli download nlpconnect/vit-gpt2-image-captioning" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    del os


# ------------------------------------------------------------------------------------------------
# Through the public API: vizcap.load(folder).explain(...)


def _reference_attentions(model, kind, pixels, tokens, bos):
    """The model's own teacher-forced pass over [start; tokens[:-1]] with output_attentions=True."""
    ids = torch.tensor([[bos, *tokens[:-1]]])
    with torch.inference_mode():
        if kind == "blip":
            vis = model.vision_model(pixel_values=pixels, output_attentions=True)
            out = model.text_decoder(input_ids=ids, encoder_hidden_states=vis[0], output_attentions=True)
            return out.cross_attentions, out.attentions, vis.attentions
        out = model(pixel_values=pixels, decoder_input_ids=ids, output_attentions=True)
        return out.cross_attentions, out.decoder_attentions, out.encoder_attentions


@pytest.mark.parametrize("strategy", [dict(strategy="greedy"), dict(strategy="beam", beams=3, length_penalty=0.7),
                                      dict(strategy="sample", top_k=20, temperature=1.5, seed=4)])
def test_api_maps_are_the_models_own_attention(hf_dir, photos, strategy):
    """exp.maps('cross_attention', layer, head, 'none') for token t equals that layer's and head's
    cross-attention row in a teacher-forced output_attentions pass over the final sequence, patch
    keys only, on the grid (to 1e-5); the class token's share is reported apart and is the rest."""
    import vizcap

    cap = vizcap.load(hf_dir)
    model, _ = _oracle(hf_dir)
    exp = cap.explain(photos[2], **strategy)
    assert len(exp.tokens) > 0
    tokens = exp.token_ids + ([cap.eos_id] if exp.ended else [])
    cross, _, enc = _reference_attentions(model, cap.kind, cap.pixels(vizcap.open_image(photos[2])), tokens, cap.bos_id)
    T = len(exp.tokens)
    for layer in range(cap.decoder_layers):
        for head in range(cap.decoder_heads):
            ours = exp.maps("cross_attention", layer=layer, head=head, normalize="none")
            ref = cross[layer][0, head, :T]  # [T, 1 + N]
            assert ours.shape == (T, 4, 4)
            assert np.allclose(ours, ref[:, 1:].reshape(T, 4, 4).numpy(), atol=1e-5)
            assert np.allclose(exp.extra_share(layer, head), ref[:, 0].numpy(), atol=1e-5)
            assert np.allclose(ours.reshape(T, -1).sum(1) + exp.extra_share(layer, head), 1, atol=1e-5)
    assert np.allclose(exp.encoder, torch.cat([e for e in enc]).numpy(), atol=1e-5)


@pytest.mark.parametrize("beams,length_penalty", [(2, 1.0), (3, 0.5), (4, 2.0), (3, -1.0)])
def test_api_beam_captions_equal_generate(hf_dir, photos, beams, length_penalty):
    import vizcap

    cap = vizcap.load(hf_dir)
    model, _ = _oracle(hf_dir)
    for path in photos:
        exp = cap.explain(path, strategy="beam", beams=beams, length_penalty=length_penalty)
        expected = _generated(model, cap.pixels(vizcap.open_image(path)), cap.eos_id, do_sample=False,
                              num_beams=beams, length_penalty=length_penalty)
        assert exp.token_ids + ([cap.eos_id] if exp.ended else []) == expected


def test_beam_follows_the_checkpoints_early_stopping(tmp_path):
    """The generation config's early_stopping (False = HF's heuristic, True, "never") is the rule
    vizcap's beam search uses: generate(num_beams, length_penalty) with the checkpoint's own settings
    agrees token for token under each, and the three rules do give different captions here."""
    import vizcap

    d = hub_fixtures.vit_gpt2(tmp_path / "m", eos_bias=7.0)
    images = [Image.fromarray(np.random.default_rng(s).integers(0, 255, (40, 60, 3), dtype=np.uint8)) for s in range(6)]
    outputs = {}
    for early_stopping in (False, True, "never"):
        cfg = json.loads((d / "generation_config.json").read_text())
        cfg.update(early_stopping=early_stopping, max_length=12)
        (d / "generation_config.json").write_text(json.dumps(cfg))
        cap = vizcap.load(d)
        model, _ = _oracle(d)
        assert model.generation_config.early_stopping == early_stopping
        for k, img in enumerate(images):
            for lp in (0.5, 2.0):
                exp = cap.explain(img, strategy="beam", beams=3, length_penalty=lp)
                expected = _generated(model, cap.pixels(img), cap.eos_id, num_beams=3, length_penalty=lp)
                assert exp.token_ids + ([cap.eos_id] if exp.ended else []) == expected
                outputs.setdefault((k, lp), set()).add(tuple(expected))
    assert any(len(v) > 1 for v in outputs.values())  # the rules matter for these captions


def test_each_early_stopping_rule_equals_generate(blip_dir):
    """vizcap's three beam stopping rules against generate(early_stopping=False / True / "never") on
    captions where they disagree (BLIP reads no generation settings from its checkpoint, so the rule
    is passed explicitly here)."""
    import vizcap

    rules = {False: "heuristic", True: "first_k", "never": "exact"}
    cap = vizcap.load(blip_dir)
    model, _ = _oracle(blip_dir)
    outputs = {}
    for seed in (3, 4, 8):
        img = Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8))
        for lp in (1.0, 2.0):
            for hf_rule, ours in rules.items():
                exp = cap.explain(img, strategy="beam", beams=3, length_penalty=lp, max_tokens=11, early_stopping=ours)
                expected = _generated(model, cap.pixels(img), cap.eos_id, num_beams=3, length_penalty=lp,
                                      early_stopping=hf_rule, max_length=12)
                assert exp.token_ids + ([cap.eos_id] if exp.ended else []) == expected, (seed, lp, hf_rule)
                outputs.setdefault((seed, lp, hf_rule == True), set()).add(tuple(expected))  # noqa: E712
    assert any(len(v) > 1 for (_, _, first_k), v in outputs.items() if not first_k)  # heuristic vs exact differ


def test_rollout_relevancy_and_export_work_for_hf_models(hf_dir, photos, tmp_path):
    import vizcap
    from conftest import run_module

    cap = vizcap.load(hf_dir)
    exp = cap.explain(photos[3], strategy="beam", beams=2)
    T = len(exp.tokens)
    for method in ("rollout", "relevancy"):
        m = exp.maps(method)
        assert m.shape == (T, 4, 4) and np.isfinite(m).all() and (m >= -1e-9).all() and (m.reshape(T, -1).sum(1) > 0).all()
    with pytest.raises(ValueError, match="no prefix tokens"):
        exp.maps("prefix")
    data = json.loads(exp.to_json(methods=("cross_attention", "rollout", "relevancy")))
    assert data["caption"] == exp.caption and len(data["class_token_share"]) == T
    proc = run_module("-m", "vizcap", "caption", str(photos[3]), "--checkpoint", str(hf_dir), "--maps",
                      "cross_attention,rollout,relevancy", "--export", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert any(f.endswith(".gif") for f in files) and any(f.endswith(".json") for f in files)
    assert sum(f.endswith(".png") for f in files) == len(json.loads(proc.stdout)["tokens"])


def test_relevancy_reaches_the_patches_through_the_encoder(vit_gpt2_dir, photos):
    """For a Hugging Face model the relevancy pass keeps the ViT's attention in the graph: removing
    the encoder's contribution (R̄_ii = I) changes the map, i.e. relevance flows back through it."""
    import vizcap
    from vizcap import explain as ex

    cap = vizcap.load(vit_gpt2_dir)
    exp = cap.explain(photos[0])
    full = exp.maps("relevancy")
    original = ex._through_encoder
    try:
        ex._through_encoder = lambda row, w: row  # R̄_ii = I
        exp._relevancy = None
        decoder_only = exp.maps("relevancy")
    finally:
        ex._through_encoder = original
    assert not np.allclose(full, decoder_only, atol=1e-6)


def test_centre_cropping_processor_draws_on_the_crop(tmp_path, photos):
    from transformers import AutoImageProcessor, BeitImageProcessor

    import vizcap

    d = hub_fixtures.vit_gpt2(tmp_path / "m")
    BeitImageProcessor(size={"height": 40, "width": 40}, crop_size={"height": 32, "width": 32}, do_center_crop=True,
                       image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(d)
    cap = vizcap.load(d)
    assert cap.crop and "crop" in cap.crop
    img = vizcap.open_image(photos[2])  # 90 x 30
    processor = AutoImageProcessor.from_pretrained(d)
    assert torch.allclose(cap.pixels(img), processor(img, return_tensors="pt").pixel_values, atol=1e-6)
    exp = cap.explain(photos[2])
    assert exp.crop == cap.crop and exp.image.size == (72, 24)  # 32/40 of each side, centred
    assert json.loads(exp.to_json())["cropped"] == cap.crop


def test_relevancy_in_groups_equals_relevancy_in_one_batch(vit_gpt2_dir, photos):
    import vizcap

    cap = vizcap.load(vit_gpt2_dir)
    exp = cap.explain(photos[4])
    assert len(exp.tokens) > 3
    cap.relevancy_group = 2
    grouped = exp.maps("relevancy")
    cap.relevancy_group = len(exp.tokens)  # every word's copy in one batch
    exp._relevancy = None
    assert np.allclose(grouped, exp.maps("relevancy"), atol=1e-6)


def test_relevancy_reports_its_progress_by_groups_of_words(vit_gpt2_dir, photos):
    """What the explorer's progress bar reads (issue 28): 0 before the shared forward pass, then after each
    group of words how many are done, ending at every word; the maps are those of a call without it, and
    they are kept, so the explorer draws them without a second computation."""
    import vizcap

    cap = vizcap.load(vit_gpt2_dir)
    exp = cap.explain(photos[4])
    T = len(exp.tokens)
    assert T > 4
    cap.relevancy_group = 2
    calls = []
    assert not exp.is_kept("relevancy")
    maps = exp.relevancy_maps(True, progress=lambda done, words: calls.append((done, words)))
    assert calls == [(0, T), *[(min(k, T), T) for k in range(2, T + 2, 2)]]
    assert exp.is_kept("relevancy") and not exp.is_kept("decoder_relevancy")
    assert np.array_equal(exp.maps("relevancy").reshape(T, -1), maps)
    again = cap.explain(photos[4])
    np.testing.assert_allclose(again.relevancy_maps(True), maps, atol=1e-7)


def test_photo_trust_without_ground_truth(hf_dir, photos):
    """Randomisation sanity check and deletion/insertion on a photo model: the curves start (deletion)
    and end (insertion) at the word's own probability in the explanation, map and random orders
    agree at the ends, and the randomised copy really has another decoder."""
    import vizcap
    from vizcap.photo_trust import photo_trust, randomized

    cap = vizcap.load(hf_dir)
    rand = randomized(cap)
    name = "text_decoder" if cap.kind == "blip" else "decoder"
    assert not torch.equal(next(getattr(rand.model, name).parameters()), next(getattr(cap.model, name).parameters()))
    assert torch.equal(next(rand.vision.parameters()), next(cap.vision.parameters()))  # encoder kept
    r = photo_trust(cap, photos[1], max_words=3)
    exp = cap.explain(photos[1])
    assert r["caption"] == exp.caption and len(r["words"]) == min(3, len(exp.tokens))
    for method, m in r["methods"].items():
        c = m["curves"]
        full = float(np.mean(exp.probs[: len(r["words"])]))
        assert abs(c["deletion_map"][0] - full) < 1e-5 and abs(c["insertion_map"][-1] - full) < 1e-5, method
        assert abs(c["deletion_map"][-1] - c["deletion_random"][-1]) < 1e-6  # all grey either way
        assert abs(c["insertion_map"][0] - c["insertion_random"][0]) < 1e-6
        assert -1 <= m["sanity"] <= 1 and all(np.isfinite(v) for k, v in m.items() if k.endswith("_auc"))


@pytest.mark.parametrize("encoder,extra", [("deit", 2), ("beit", 1)])
def test_deit_and_beit_encoders(tmp_path, photos, encoder, extra):
    """DeiT (class + distillation token: two non-patch keys) and BEiT (relative position bias)
    encoders: beam captions = generate, per-head maps = output_attentions past the extra keys, and
    relevancy runs (BEiT caches a position index on its first call: it must not be an inference
    tensor, or the gradient pass fails)."""
    import vizcap

    d = hub_fixtures.vit_gpt2(tmp_path / encoder, encoder=encoder)
    cap = vizcap.load(d)
    assert cap.n_extra_keys == extra and cap.grid == (4, 4)
    model, _ = _oracle(d)
    for path in photos[:3]:
        exp = cap.explain(path, strategy="beam", beams=3)
        tokens = exp.token_ids + ([cap.eos_id] if exp.ended else [])
        pixels = cap.pixels(vizcap.open_image(path))
        assert tokens == _generated(model, pixels, cap.eos_id, num_beams=3)
        cross, _, _ = _reference_attentions(model, cap.kind, pixels, tokens, cap.bos_id)
        T = len(exp.tokens)
        for layer in range(2):
            for head in range(2):
                ref = cross[layer][0, head, :T].numpy()
                assert np.allclose(exp.maps("cross_attention", layer=layer, head=head), ref[:, extra:].reshape(T, 4, 4), atol=1e-5)
                assert np.allclose(exp.extra_share(layer, head), ref[:, :extra].sum(-1), atol=1e-5)
    assert np.isfinite(exp.maps("relevancy")).all()


def test_cli_per_layer_and_head_maps_are_the_models_own(vit_gpt2_dir, photos):
    """`vizcap caption --maps cross_attention --layer L --head H --json` gives that head's weights on the
    patches, and class_token_share the rest, as in the model's output_attentions."""
    from conftest import run_module

    import vizcap

    cap = vizcap.load(vit_gpt2_dir)
    model, _ = _oracle(vit_gpt2_dir)
    proc = run_module("-m", "vizcap", "caption", str(photos[5]), "--checkpoint", str(vit_gpt2_dir), "--json",
                      "--maps", "cross_attention,rollout", "--layer", "1", "--head", "0")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    exp = cap.explain(photos[5])
    tokens = exp.token_ids + ([cap.eos_id] if exp.ended else [])
    cross, _, _ = _reference_attentions(model, cap.kind, cap.pixels(vizcap.open_image(photos[5])), tokens, cap.bos_id)
    T = len(exp.tokens)
    ref = cross[1][0, 0, :T].numpy()
    assert np.allclose(np.array(record["maps"]["cross_attention"]), ref[:, 1:].reshape(T, 4, 4), atol=2e-6)
    assert np.allclose(record["class_token_share"], ref[:, 0], atol=2e-6)
    bad = run_module("-m", "vizcap", "caption", str(photos[5]), "--checkpoint", str(vit_gpt2_dir), "--layer", "7")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["vizcap: error: layer must be a whole number in 0..1; got 7"]


def test_unsupported_generation_settings_are_announced(tmp_path, photos):
    from conftest import run_module

    d = hub_fixtures.vit_gpt2(tmp_path / "m")
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg.update(repetition_penalty=1.3)
    (d / "generation_config.json").write_text(json.dumps(cfg))
    proc = run_module("-m", "vizcap", "caption", str(photos[0]), "--checkpoint", str(d))
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == ["vizcap: note: this model's generation settings repetition_penalty=1.3 "
                                                "are not applied here, so its captions may differ from its generate()"]
