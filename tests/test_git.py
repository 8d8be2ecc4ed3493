"""Hugging Face GIT captioners (GitForCausalLM) explained by vizcap (issue 28, items 3 and 4).

A tiny random GIT is built here from a config (tests/hub_fixtures.py: a CLIP vision tower of 4x4
patches + class token, a 2-layer text decoder, a GitProcessor whose CLIP image processor resizes the
short side and centre-crops) and saved with save_pretrained. transformers is the oracle: its processor
for preprocessing, its generate() for captions and for the attention of every generated word, its
output_attentions=True teacher-forced pass and autograd through it for maps. Nothing touches the network."""

from __future__ import annotations

import html
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hub_fixtures

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

N_IMAGE = 17  # the class token and 4x4 patches: the decoder's prefix


@pytest.fixture(scope="module")
def git_dir(tmp_path_factory):
    return hub_fixtures.git(tmp_path_factory.mktemp("git"))


@pytest.fixture(scope="module")
def cap(git_dir):
    import vizcap

    return vizcap.load(git_dir)


@pytest.fixture(scope="module")
def model(git_dir):
    return transformers.GitForCausalLM.from_pretrained(git_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Blocky random pictures of several aspect ratios (the processor crops the long side), as PNG files."""
    root = tmp_path_factory.mktemp("pictures")
    paths = []
    for seed, (h, w) in enumerate([(40, 60), (64, 64), (30, 90), (80, 50), (57, 41), (48, 48)]):
        rng = np.random.default_rng(seed)
        img = Image.fromarray(rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)).resize((w, h), Image.NEAREST)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-30, 30, (h, w, 3))
        paths.append(root / f"picture{seed}.png")
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def _generate(model, pixels, eos, **kwargs) -> list[int]:
    """generate()'s new tokens, up to and including the first end token."""
    with torch.inference_mode():
        out = model.generate(pixel_values=pixels, do_sample=False, **kwargs)[0, 1:].tolist()
    return out[: out.index(eos) + 1] if eos in out else out


def _read(exp, eos) -> list[int]:
    return exp.token_ids + ([eos] if exp.ended else [])


def _teacher_forced(model, pixels, bos, tokens, grad: bool = False):
    """The model's own pass over [image tokens; bos, tokens[:-1]] with output_attentions=True."""
    ids = torch.tensor([[bos, *tokens[:-1]]])
    with torch.enable_grad() if grad else torch.inference_mode():
        return model(input_ids=ids, pixel_values=pixels, output_attentions=True)


def test_a_git_folder_opens_as_a_prefix_captioner(cap):
    from vizcap.maps import available

    assert (cap.kind, cap.family_label, cap.mode, cap.has_cross) == ("git", "Hugging Face GIT", "prefix", False)
    assert cap.grid == (4, 4) and cap.n_extra_keys == 1 and cap.n_prefix == N_IMAGE and cap.prefix_is_image
    assert cap.decoder_layers == 2 and cap.decoder_heads == 2 and cap.banned == ()
    assert (cap.bos_id, cap.eos_id) == (cap.tokenizer.tok.cls_token_id, cap.tokenizer.tok.sep_token_id)
    assert set(cap.hook_names) == {"encoder.blocks.0.attn", "encoder.blocks.1.attn", "decoder.h.0.attn", "decoder.h.1.attn"}
    impls = {getattr(m.config, "_attn_implementation", "eager") for m in cap.model.modules() if hasattr(m, "config")}
    assert impls == {"eager"}
    assert "self-attention" in cap.describe() and "cross-attention" not in cap.describe()
    assert available(cap.mode) == ("prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion")


def test_preprocessing_is_the_processors_own_crop_included(cap, git_dir, pictures):
    """pixels() equals GitProcessor's image processor (resize the short side to 32, centre-crop 32x32);
    the crop is announced with its size and the overlays are drawn on the cropped region."""
    processor = transformers.AutoProcessor.from_pretrained(git_dir)
    assert type(processor).__name__ == "GitProcessor"
    assert cap.crop and "32x32" in cap.crop
    for path in pictures:
        img = Image.open(path).convert("RGB")
        theirs = processor(images=img, return_tensors="pt").pixel_values
        assert torch.allclose(cap.pixels(img), theirs, atol=1e-6, rtol=0)
    wide = cap.explain(pictures[2])  # 90 x 30: the middle 30 x 30 is what the model sees
    record = json.loads(wide.to_json())  # the model's own map by default: prefix
    assert wide.image.size == (30, 30) and record["cropped"] == cap.crop and list(record["maps"]) == ["prefix"]
    assert np.allclose(record["class_token_share"], wide.extra_share(), atol=1e-6)


@pytest.mark.parametrize("beams,length_penalty", [(1, 1.0), (2, 1.0), (3, 0.5), (4, 2.0)])
def test_captions_equal_generate(cap, model, pictures, beams, length_penalty):
    """Greedy and beam search through vizcap.explain give generate()'s tokens, token for token."""
    lengths = set()
    for path in pictures:
        knobs = dict(strategy="beam", beams=beams, length_penalty=length_penalty) if beams > 1 else {}
        exp = cap.explain(path, **knobs)
        expected = _generate(model, cap.pixels(Image.open(path).convert("RGB")), cap.eos_id, num_beams=beams,
                             length_penalty=length_penalty)
        assert _read(exp, cap.eos_id) == expected
        assert exp.caption == cap.tokenizer.tok.decode(expected, skip_special_tokens=True).strip()
        lengths.add(len(expected))
    if length_penalty <= 1:  # (a length penalty of 2 makes every beam run to the limit)
        assert len(lengths) > 1  # the captions end at different steps: the end token is really decided


def test_prefix_maps_are_generates_own_attention(cap, model, pictures):
    """For each greedy word, exp.maps("prefix", layer, head) is the row generate(output_attentions=True)
    computed at the step that wrote it, over the patch tokens (keys 1 … 16), to 1e-5; the class
    token's share (key 0) is extra_share; the rest of the row went to the words."""
    for path in pictures[:4]:
        exp = cap.explain(path)
        pixels = cap.pixels(Image.open(path).convert("RGB"))
        with torch.inference_mode():
            out = model.generate(pixel_values=pixels, do_sample=False, output_attentions=True,
                                 return_dict_in_generate=True)
        T = len(exp.tokens)
        assert out.sequences[0, 1 : T + 1].tolist() == exp.token_ids
        for layer in range(2):
            for head in range(2):
                rows = torch.stack([out.attentions[t][layer][0, head, -1, :N_IMAGE] for t in range(T)]).numpy()
                ours = exp.maps("prefix", layer=layer, head=head, normalize="none")
                assert ours.shape == (T, 4, 4)
                assert np.allclose(ours.reshape(T, 16), rows[:, 1:], atol=1e-5)
                assert np.allclose(exp.extra_share(layer, head), rows[:, 0], atol=1e-5)
                assert (ours.reshape(T, 16).sum(1) + exp.extra_share(layer, head) < 1 + 1e-6).all()


@pytest.mark.parametrize("strategy", [dict(strategy="beam", beams=3, length_penalty=0.7),
                                      dict(strategy="sample", top_k=20, temperature=1.5, seed=4)])
def test_prefix_maps_of_any_caption_equal_a_teacher_forced_pass(cap, model, pictures, strategy):
    """Beam and sampled captions: every word's prefix map per layer and head, and the ViT's attention
    (Inside the ViT), equal the model's own output_attentions over the final sequence (to 1e-5)."""
    exp = cap.explain(pictures[4], **strategy)
    pixels = cap.pixels(Image.open(pictures[4]).convert("RGB"))
    ref = _teacher_forced(model, pixels, cap.bos_id, _read(exp, cap.eos_id))
    T = len(exp.tokens)
    assert T > 1
    for layer in range(2):
        rows = ref.attentions[layer][0, :, N_IMAGE : N_IMAGE + T, :N_IMAGE].numpy()  # [heads, T, 17]
        for head in range(2):
            assert np.allclose(exp.maps("prefix", layer, head).reshape(T, 16), rows[head, :, 1:], atol=1e-5)
            assert np.allclose(exp.extra_share(layer, head), rows[head, :, 0], atol=1e-5)
        assert np.allclose(exp.maps("prefix", layer).reshape(T, 16), rows[:, :, 1:].mean(0), atol=1e-5)
    with torch.inference_mode():
        vit = model.git.image_encoder(pixel_values=pixels, output_attentions=True).attentions
    assert np.allclose(exp.encoder, torch.cat(vit).numpy(), atol=1e-5)
    assert np.allclose(exp.encoder_maps("cls", layer=1, head=0).ravel(), vit[1][0, 0, 0, 1:].numpy(), atol=1e-5)
    assert exp.encoder_extra_share((2, 3), layer=0) == pytest.approx(float(vit[0][0, :, 1 + 2 * 4 + 3, 0].mean()), abs=1e-5)


def test_teacher_forced_logits_equal_the_model(cap, model, pictures):
    pixels = cap.pixels(Image.open(pictures[0]).convert("RGB"))
    tokens = [7, 9, 11, cap.eos_id]
    logits, captured = cap.teacher_forced(pixels, tokens)
    with torch.inference_mode():
        ref = model(input_ids=torch.tensor([[cap.bos_id, 7, 9, 11]]), pixel_values=pixels).logits[0]
    assert logits.shape == ref.shape == (N_IMAGE + 4, cap.vocab_size)  # image positions first
    assert torch.allclose(logits, ref, atol=1e-5)
    assert captured["decoder.h.0.attn"][0].shape == (1, 2, N_IMAGE + 4, N_IMAGE + 4)


def _residual(a: np.ndarray) -> np.ndarray:
    r = 0.5 * a + 0.5 * np.eye(a.shape[-1])
    return r / r.sum(-1, keepdims=True)


def test_rollout_follows_the_decoder_and_the_vit(cap, model, pictures):
    """Rollout from the model's own attentions, written out here: ½A + ½I per layer (heads averaged),
    through the decoder over [image tokens; words], the image tokens' shares carried through the
    ViT's rollout to its input patches (the class token's input left out)."""
    exp = cap.explain(pictures[3])
    T = len(exp.tokens)
    pixels = cap.pixels(Image.open(pictures[3]).convert("RGB"))
    ref = _teacher_forced(model, pixels, cap.bos_id, _read(exp, cap.eos_id))
    with torch.inference_mode():
        vit = model.git.image_encoder(pixel_values=pixels, output_attentions=True).attentions
    flow = np.eye(N_IMAGE + T + exp.ended)
    for a in ref.attentions:
        flow = _residual(a[0].double().mean(0).numpy()) @ flow
    vit_flow = np.eye(N_IMAGE)
    for a in vit:
        vit_flow = _residual(a[0].double().mean(0).numpy()) @ vit_flow
    expected = (flow[N_IMAGE : N_IMAGE + T, :N_IMAGE] @ vit_flow)[:, 1:]
    assert np.allclose(exp.maps("rollout").reshape(T, 16), expected, atol=1e-6)


def _relevance(attentions, grads) -> np.ndarray:
    """R = I + Σ_layers Ā·R with Ā = mean_heads (∂y/∂A ⊙ A)⁺ (Chefer et al. 2021, eqs. 5-7)."""
    r = np.eye(attentions[0].shape[-1])
    for a, g in zip(attentions, grads):
        r = r + (g * a).clamp(min=0).mean(1)[0].detach().double().numpy() @ r
    return r


def test_relevancy_equals_an_independent_autograd_computation(cap, model, pictures):
    """Chefer's rule computed here, one word at a time, by autograd through transformers' own forward
    pass (the ViT's attention read by a hook on the oracle model, not vizcap's): decoder_relevancy is
    word j's row of R over the decoder's one stream of image tokens and words, at the patch tokens;
    relevancy carries that row through the ViT's normalised self-relevance (R − I rows to 1, + I)."""
    exp = cap.explain(pictures[3])
    T = len(exp.tokens)
    assert T > 2
    pixels = cap.pixels(Image.open(pictures[3]).convert("RGB"))
    tokens = _read(exp, cap.eos_id)
    decoder_rel, full_rel = [], []
    for j in range(T):
        vit = []
        layers = model.git.image_encoder.vision_model.encoder.layers
        handles = [layer.self_attn.register_forward_hook(lambda m, i, o: vit.append(o[1])) for layer in layers]
        try:
            out = _teacher_forced(model, pixels, cap.bos_id, tokens, grad=True)
        finally:
            for h in handles:
                h.remove()
        with torch.enable_grad():
            grads = torch.autograd.grad(out.logits[0, N_IMAGE + j, tokens[j]], [*out.attentions, *vit])
        row = _relevance(out.attentions, grads[: len(out.attentions)])[N_IMAGE + j, :N_IMAGE]
        extra = _relevance(vit, grads[len(out.attentions):]) - np.eye(N_IMAGE)
        vit_bar = extra / np.maximum(extra.sum(-1, keepdims=True), 1e-12) + np.eye(N_IMAGE)
        decoder_rel.append(row[1:])
        full_rel.append((row @ vit_bar)[1:])
    assert np.allclose(exp.maps("decoder_relevancy").reshape(T, 16), decoder_rel, atol=1e-6)
    assert np.allclose(exp.maps("relevancy").reshape(T, 16), full_rel, atol=1e-6)
    assert not np.allclose(decoder_rel, full_rel, atol=1e-4)  # the ViT's share is really there
    alternative = int(exp.top_ids[1][1])
    contrast = exp.contrastive(1, alternative)  # why this word and not the runner-up: the same rule, y = difference
    assert contrast.shape == (4, 4) and np.isfinite(contrast).all()
    assert not np.allclose(contrast.ravel(), full_rel[1], atol=1e-6)


def test_photo_trust_reads_the_prefix_map(cap, pictures):
    """The trust page's measurements on a photo: the prefix map in place of cross-attention, with the
    decoder (text decoder, its embeddings, the visual projection) re-initialised and the CLIP ViT kept."""
    from vizcap.photo_trust import photo_trust, randomized

    rand = randomized(cap)
    assert not torch.equal(rand.model.git.encoder.layer[0].attention.self.query.weight,
                           cap.model.git.encoder.layer[0].attention.self.query.weight)
    assert not torch.equal(rand.model.git.visual_projection.visual_projection[0].weight,
                           cap.model.git.visual_projection.visual_projection[0].weight)
    assert all(torch.equal(a, b) for a, b in zip(rand.vision.parameters(), cap.vision.parameters()))
    r = photo_trust(cap, pictures[3], max_words=2)
    assert list(r["methods"]) == ["prefix", "rollout"] and len(r["words"]) == 2
    for m in r["methods"].values():
        assert -1 <= m["sanity"] <= 1 and abs(m["curves"]["deletion_map"][-1] - m["curves"]["deletion_random"][-1]) < 1e-6


def test_the_interactive_page_carries_the_class_tokens_share(cap, pictures):
    from vizcap.html_page import layer_head_choices, payload

    exp = cap.explain(pictures[3])
    data = payload(exp)
    assert data["order"] == ["prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion"]
    choices = layer_head_choices(2, 2)
    assert len(data["share"]) == len(choices)
    layer, head = choices[-1]
    assert np.allclose(data["share"][-1], exp.extra_share(layer, head), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Loading rules and errors: as for the other Hugging Face families (issue 28, item 4)


def test_errors_are_one_line_as_for_the_other_families(git_dir, tmp_path, monkeypatch):
    import shutil

    import vizcap
    from vizcap import CheckpointError

    video = tmp_path / "video"
    shutil.copytree(git_dir, video)
    config = json.loads((video / "config.json").read_text())
    (video / "config.json").write_text(json.dumps({**config, "num_image_with_embedding": 6}))
    with pytest.raises(CheckpointError, match="a video GIT .6 frames per input.; vizcap explains GIT captioners of one image"):
        vizcap.load(video)
    (video / "config.json").write_text(json.dumps({**config, "architectures": ["GitModel"]}))
    with pytest.raises(CheckpointError, match="a GIT GitModel, not a GitForCausalLM captioner"):
        vizcap.load(video)
    monkeypatch.setenv("VIZCAP_MEMORY_LIMIT_MB", "0")
    with pytest.raises(CheckpointError, match="GiB of memory"):
        vizcap.load(git_dir)
    monkeypatch.delenv("VIZCAP_MEMORY_LIMIT_MB")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(CheckpointError) as info:
        vizcap.load("microsoft/git-base-coco")
    assert "\n" not in str(info.value) and "huggingface-cli download microsoft/git-base-coco" in str(info.value)


def _hf_cache(home, repo: str, folder) -> None:
    """`folder`'s files laid out as huggingface_hub's cache keeps a download of `repo`."""
    base = home / "hub" / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("0" * 40)
    (base / "snapshots" / ("0" * 40)).mkdir(parents=True)
    for path in folder.iterdir():
        (base / "snapshots" / ("0" * 40) / path.name).write_bytes(path.read_bytes())


def test_cli_opens_a_git_hub_id_from_the_cache(git_dir, cap, model, pictures, tmp_path):
    """`vizcap caption --checkpoint microsoft/git-base-coco` offline, from the Hugging Face cache (here
    holding the tiny GIT): generate()'s caption. (Not cached: test_errors_are_one_line_as_for_the_other_families,
    and tests/test_hub.py's CLI test, whose error comes before any family is asked.)"""
    from conftest import ROOT, subprocess_env

    home = tmp_path / "hf"
    _hf_cache(home, "microsoft/git-base-coco", git_dir)
    env = {**subprocess_env(), "HF_HUB_OFFLINE": "1", "HF_HOME": str(home)}
    argv = [sys.executable, "-m", "vizcap", "caption", str(pictures[3]), "--checkpoint", "microsoft/git-base-coco", "--json"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = _generate(model, cap.pixels(Image.open(pictures[3]).convert("RGB")), cap.eos_id)
    assert json.loads(proc.stdout)["caption"] == cap.tokenizer.decode(expected)


def test_cli_json_and_html_on_a_git_folder(git_dir, cap, model, pictures, tmp_path):
    """--json: the beam caption of generate(num_beams=3), a head's prefix maps equal to the model's own
    attention rows and class_token_share the class token's column; --html: one page per picture with
    the caption and the methods of --maps; --maps cross_attention: one line, exit 2."""
    from conftest import run_module

    paths = [str(p) for p in pictures[3:5]]
    proc = run_module("-m", "vizcap", "caption", *paths, "--checkpoint", str(git_dir), "--json", "--strategy", "beam",
                      "--beams", "3", "--maps", "prefix,rollout", "--layer", "1", "--head", "0",
                      "--html", str(tmp_path / "pages"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    for path, record in zip(paths, records):
        pixels = cap.pixels(Image.open(path).convert("RGB"))
        tokens = _generate(model, pixels, cap.eos_id, num_beams=3)
        T = len(record["tokens"])
        assert record["caption"] == cap.tokenizer.decode(tokens) and T == len(tokens) - (tokens[-1] == cap.eos_id)
        rows = _teacher_forced(model, pixels, cap.bos_id, tokens).attentions[1][0, 0, N_IMAGE : N_IMAGE + T, :N_IMAGE]
        assert np.allclose(np.array(record["maps"]["prefix"]).reshape(T, 16), rows[:, 1:].numpy(), atol=2e-6)
        assert np.allclose(record["class_token_share"], rows[:, 0].numpy(), atol=2e-6)
        assert np.array(record["maps"]["rollout"]).shape == (T, 4, 4)
        page = (tmp_path / "pages" / f"{path.rsplit('/', 1)[1][:-4]}.html").read_text(encoding="utf-8")
        assert html.escape(record["caption"]) in page and "Not in this page" not in page
        assert '<option value="prefix"' in page and '<option value="rollout"' in page  # those of --maps
        assert '<option value="cross_attention"' not in page
    bad = run_module("-m", "vizcap", "caption", paths[0], "--checkpoint", str(git_dir), "--maps", "cross_attention")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == ["vizcap: error: this checkpoint (mode 'prefix') has no 'cross_attention' maps"]
