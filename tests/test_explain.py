"""`explain`: every decoding strategy, checked against an independent teacher-forced pass.

The decoding loop runs the decoder one token at a time with the KV cache (beam search reorders it
between steps) and keeps, for every generated token, the attention row that produced it. The
reference is `teacher_forced`: one plain forward pass over the final sequence, no cache. Every map,
probability and score of the trace must agree with it, whatever the strategy.

Models (tests/conftest.py, make_tiny_captioner): untrained 64-px captioners with 2 decoder layers ×
4 heads, in modes "both", "prefix" and "cross", one with a ViT encoder, and one ("ending") whose
captions end with <eos>, so that scores that count the <eos> are covered too.
"""

from __future__ import annotations

import copy
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from vizcap.decoding import filter_logits
from vizcap.explain import explain, teacher_forced, teacher_forced_logprob
from vizcap.hooks import capture, install_hook_points
from vizcap.scenes import render_scene

MODELS = ("both", "prefix", "cross", "vit", "ending")
STRATEGIES = {
    "greedy": dict(strategy="greedy"),
    "beam3": dict(strategy="beam", beams=3),
    "beam3_lp0.6": dict(strategy="beam", beams=3, length_penalty=0.6),
    "sample": dict(strategy="sample", seed=11, temperature=1.3, top_k=6, top_p=0.9),
}
ATOL = 1e-5


@pytest.fixture(scope="module")
def images():
    """Eight ShapeScenes images of different sizes and aspect ratios."""
    return [render_scene(seed).image for seed in range(100, 108)]


class Traced:
    """One explanation and its teacher-forced reference over the same final sequence."""

    def __init__(self, cap, image, **params):
        self.cap, self.image, self.params = cap, image, params
        self.e = explain(cap, image, **params)
        cfg = cap.cfg
        self.P, self.T, self.L = cfg.n_prefix, len(self.e.tokens), cfg.decoder_layers
        self.seq = self.e.token_ids + ([cfg.eos_id] if self.e.ended else [])  # what was generated
        logits, cache = teacher_forced(cap, image, self.seq)
        self.tf_logp = torch.log_softmax(logits.float(), -1)  # [S', V]
        self.tf = {name: cache[name] for name in cache.names()}


@pytest.fixture(scope="module")
def traced(tiny_model, images):
    done: dict = {}

    def get(model: str, strategy: str, image: int = 0) -> Traced:
        key = (model, strategy, image)
        if key not in done:
            done[key] = Traced(tiny_model(model), images[image], **STRATEGIES[strategy])
        return done[key]

    return get


def _expected_hook_names(cap) -> set[str]:
    cfg = cap.cfg
    names = {f"decoder.h.{i}.attn" for i in range(cfg.decoder_layers)}
    if cfg.mode != "prefix":
        names |= {f"decoder.h.{i}.crossattention" for i in range(cfg.decoder_layers)}
    if cfg.mode != "cross":
        names |= {"mapper.attn"} | {f"mapper.blocks.{i}.attn" for i in range(cfg.mapper_layers)}
    if cfg.encoder == "test_vit":
        names |= {f"encoder.blocks.{i}.attn" for i in range(len(cap.model.encoder.model.blocks))}
    return names


# -- the trace equals the teacher-forced pass --------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_every_tokens_attention_equals_teacher_forced(traced, model, strategy):
    t = traced(model, strategy)
    e, P, T = t.e, t.P, t.T  # T may be 0 (beam search with a small length penalty may prefer "<eos>")
    S = P + T
    assert e.self_full.shape == (t.L, t.cap.cfg.decoder_heads, S, S)
    for layer in range(t.L):
        ref_self = t.tf[f"decoder.h.{layer}.attn"][0][0].numpy()  # [H, S', S'], S' = S (+1 if <eos>)
        assert ref_self.shape[-1] == S + e.ended
        np.testing.assert_allclose(e.self_full[layer], ref_self[:, :S, :S], atol=ATOL)
        for j in range(T):  # the row of the position that produced token j, token by token
            if P:
                np.testing.assert_allclose(e.self_prefix[j, layer], ref_self[:, P + j, :P], atol=ATOL)
            else:
                assert e.self_prefix is None
        if t.cap.cfg.mode == "prefix":
            assert e.cross is None and e.cross_full is None
            assert f"decoder.h.{layer}.crossattention" not in t.tf
            continue
        ref_cross = t.tf[f"decoder.h.{layer}.crossattention"][0][0].numpy()  # [H, S', N]
        np.testing.assert_allclose(e.cross_full[layer], ref_cross[:, :S], atol=ATOL)
        for j in range(T):
            np.testing.assert_allclose(e.cross[j, layer], ref_cross[:, P + j], atol=ATOL)
    if "mapper.attn" in t.tf:
        np.testing.assert_allclose(e.mapper, t.tf["mapper.attn"][0][0].numpy(), atol=ATOL)
    else:
        assert e.mapper is None
    enc = sorted((n for n in t.tf if n.startswith("encoder.")), key=lambda n: int(n.split(".")[2]))
    if enc:
        np.testing.assert_allclose(e.encoder, np.stack([t.tf[n][0][0].numpy() for n in enc]), atol=ATOL)
    else:
        assert e.encoder is None


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_score_is_teacher_forced_logprob_over_length_penalty(traced, model, strategy):
    t = traced(model, strategy)
    e = t.e
    lp = teacher_forced_logprob(t.cap, t.image, t.seq)
    n = len(t.seq)  # the <eos> counts when the caption ended
    length_penalty = STRATEGIES[strategy].get("length_penalty", 1.0)
    assert e.params.length_penalty == length_penalty
    assert e.logprob == pytest.approx(lp, abs=1e-4)
    assert e.score == pytest.approx(lp / n**length_penalty, abs=1e-4)
    assert e.ended == (n == len(e.tokens) + 1)
    if not e.ended:
        assert len(e.tokens) == e.params.max_tokens  # only max_tokens cuts a caption short


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_token_probs_and_alternatives(traced, model, strategy):
    t = traced(model, strategy)
    e, P, T, cfg = t.e, t.P, t.T, t.cap.cfg
    producing = t.tf_logp[P : P + T]  # [T, V]: the positions that produced the tokens
    chosen = producing[torch.arange(T), torch.tensor(e.token_ids, dtype=torch.long)]
    np.testing.assert_allclose(e.probs, chosen.exp().numpy(), rtol=1e-4, atol=1e-7)
    assert e.top_ids.shape == e.top_probs.shape == (T, 10)
    assert np.all(np.diff(e.top_probs, axis=1) <= 1e-12), "alternatives are sorted, likeliest first"
    ref_top = producing.exp().topk(10, dim=-1).values.numpy()
    np.testing.assert_allclose(e.top_probs, ref_top, atol=1e-6)
    gathered = producing.exp().gather(1, torch.from_numpy(e.top_ids)).numpy()
    np.testing.assert_allclose(e.top_probs, gathered, atol=1e-6)
    assert e.top_tokens == [[t.cap.tokenizer.token_text(int(i)) for i in row] for row in e.top_ids]
    banned = {cfg.pad_id, cfg.bos_id}
    for j, tok in enumerate(e.token_ids):
        assert tok not in banned
        if strategy == "greedy":  # the chosen word is the likeliest one that may be written
            assert tok in e.top_ids[j]
            above = e.top_ids[j][: list(e.top_ids[j]).index(tok)]
            assert set(above.tolist()) <= banned
    if strategy == "sample":  # every sampled word survives temperature, top-k and top-p
        p = e.params
        logits = torch.log_softmax(torch.tensor(producing.numpy()), -1)  # same ranking as the logits
        logits[:, sorted(banned)] = float("-inf")
        kept = filter_logits(logits, p.temperature, p.top_k, p.top_p)
        for j, tok in enumerate(e.token_ids):
            assert torch.isfinite(kept[j, tok]), (j, tok)
        if e.ended:
            logits_eos = torch.log_softmax(t.tf_logp[P + T].clone(), -1)
            logits_eos[sorted(banned)] = float("-inf")
            assert torch.isfinite(filter_logits(logits_eos[None], p.temperature, p.top_k, p.top_p)[0, cfg.eos_id])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", MODELS)
def test_maps_are_attention_distributions(traced, model, strategy):
    t = traced(model, strategy)
    e, cfg = t.e, t.cap.cfg
    assert e.self_full is not None
    assert (e.cross is not None) == (cfg.mode != "prefix")  # empty captions included: [0, L, H, N]
    assert (e.self_prefix is not None) == (cfg.mode != "cross")
    assert (e.mapper is not None) == (cfg.mode != "cross")
    assert (e.encoder is not None) == (model == "vit")
    S = e.self_full.shape[-1]
    np.testing.assert_allclose(e.self_full.sum(-1), 1.0, atol=1e-5)
    upper = np.triu(np.ones((S, S), dtype=bool), k=1)
    assert np.all(e.self_full[..., upper] == 0), "no position attends to a later one"
    assert np.all(e.self_full >= 0)
    if e.cross_full is not None:
        np.testing.assert_allclose(e.cross_full.sum(-1), 1.0, atol=1e-5)
        assert e.cross.shape == (len(e.tokens), cfg.decoder_layers, cfg.decoder_heads, e.grid[0] * e.grid[1])
    if e.mapper is not None:
        assert e.mapper.shape == (cfg.mapper_heads, cfg.n_prefix, e.grid[0] * e.grid[1])
        np.testing.assert_allclose(e.mapper.sum(-1), 1.0, atol=1e-5)
    if e.encoder is not None:
        blocks = t.cap.model.encoder.model.blocks
        n_tokens = e.grid[0] * e.grid[1] + t.cap.model.encoder.num_prefix_tokens
        assert e.encoder.shape == (len(blocks), blocks[0].attn.num_heads, n_tokens, n_tokens)
        np.testing.assert_allclose(e.encoder.sum(-1), 1.0, atol=1e-5)
    for method in ("cross_attention", "prefix", "rollout"):
        if (method, cfg.mode) in (("cross_attention", "prefix"), ("prefix", "cross")):
            continue
        m = e.maps(method)
        assert m.shape == (len(e.tokens), *e.grid) and np.all(np.isfinite(m)) and np.all(m >= 0)


@pytest.mark.parametrize("model", MODELS)
def test_every_expected_hook_point_is_captured(traced, model):
    t = traced(model, "greedy")
    expected = _expected_hook_names(t.cap)
    assert set(t.e.hook_names) == expected
    assert set(t.tf) == expected
    assert set(install_hook_points(t.cap.model)) == expected  # idempotent: same names, no second set of hooks
    assert all(len(v) == 1 for v in t.tf.values()), "one forward pass, one tensor per hook point"


def test_vit_encoder_maps_equal_a_manual_softmax(tiny_model, images):
    """encoder.blocks.0.attn holds softmax(q·kᵀ·scale) of block 0, computed here from its input."""
    cap = tiny_model("vit")
    vit = cap.model.encoder.model
    attn = vit.blocks[0].attn
    seen = {}
    def keep(module, args):
        seen.setdefault("x", args[0])

    handle = attn.register_forward_pre_hook(keep)
    try:
        e = explain(cap, images[1], max_tokens=2)
    finally:
        handle.remove()
    x = seen["x"]
    B, N, _ = x.shape
    with torch.inference_mode():
        q, k, _ = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(q), attn.k_norm(k)
        manual = torch.softmax(q @ k.transpose(-2, -1) * attn.head_dim**-0.5, dim=-1)[0]
    np.testing.assert_allclose(e.encoder[0], manual.numpy(), atol=1e-5)


# -- beam search ---------------------------------------------------------------------------------------


def _trace_back(tree: list[dict], step: int, row: int) -> list[int]:
    """Tokens of live row `row` after `step`, following the parent pointers to the root."""
    tokens = []
    for s in range(step, -1, -1):
        tokens.append(tree[s]["token_ids"][row])
        row = tree[s]["parents"][row]
    return tokens[::-1]


@pytest.mark.parametrize("strategy", ["beam3", "beam3_lp0.6"])
@pytest.mark.parametrize("model", ["both", "ending", "cross"])
def test_beam_tree_is_consistent_and_leads_to_the_caption(traced, model, strategy):
    t = traced(model, strategy)
    e, cfg = t.e, t.cap.cfg
    tree = e.beam_tree
    K = e.params.beams
    assert len(tree) >= len(t.seq)  # other beams may go on after the chosen one ended
    previous_rows = 1  # the root: <bos> after the prefix
    for s, step in enumerate(tree):
        n = len(step["token_ids"])
        assert 1 <= n <= K
        assert len(step["parents"]) == len(step["scores"]) == len(step["tokens"]) == n
        assert all(0 <= p < previous_rows for p in step["parents"]), (s, step["parents"])
        assert cfg.eos_id not in step["token_ids"], "ended hypotheses leave the live beams"
        for f in step["finished"]:
            assert f["token"] == cfg.eos_id and 0 <= f["parent"] < previous_rows
        # every live score is the cumulative log-probability of its traced prefix
        for row in range(n):
            prefix = _trace_back(tree, s, row)
            logits, _ = teacher_forced(t.cap, t.image, prefix)
            logp = torch.log_softmax(logits[t.P : t.P + len(prefix)].float(), -1)
            assert step["scores"][row] == pytest.approx(float(logp[torch.arange(len(prefix)), torch.tensor(prefix)].sum()), abs=1e-4)
        assert step["scores"] == sorted(step["scores"], reverse=True), "live beams are kept best first"
        previous_rows = n
    # the chosen caption can be followed back through the parents
    if e.ended:
        step = tree[len(t.seq) - 1]
        ends = [f for f in step["finished"] if f["logp"] == pytest.approx(e.logprob, abs=1e-4)]
        assert ends, "the chosen caption ended at its last step"
        paths = [([] if len(t.seq) == 1 else _trace_back(tree, len(t.seq) - 2, f["parent"])) + [cfg.eos_id] for f in ends]
    else:
        step = len(t.seq) - 1
        paths = [_trace_back(tree, step, row) for row in range(len(tree[step]["token_ids"]))]
    assert t.seq in paths
    # candidates: best first, the chosen caption on top
    scores = [c["score"] for c in e.candidates]
    assert scores == sorted(scores, reverse=True)
    assert e.candidates[0]["caption"] == e.caption
    assert e.candidates[0]["score"] == pytest.approx(e.score, abs=1e-5)
    assert e.candidates[0]["ended"] == e.ended


def _reference_beam_search(cap, image, beams: int, length_penalty: float, max_tokens: int) -> list[int]:
    """Beam search written out with full teacher-forced passes (no KV cache, no reordering, no early
    stop): at each step the 2·K best continuations by summed log-probability; an <eos> among the K
    best ends its hypothesis; at max_tokens the K best are cut and compete. Since the "exact" rule
    stops only when no live beam can win, explain() must return the same caption.
    (tests/test_beam_search.py checks the rules themselves against exhaustive search.)"""
    cfg = cap.cfg
    banned = {cfg.pad_id, cfg.bos_id} - {cfg.eos_id}

    def score(h):
        return h[1] / len(h[0]) ** length_penalty

    live, ended = [([], 0.0)], []
    for step in range(max_tokens):
        candidates = []
        for tokens, total in live:
            logits, _ = teacher_forced(cap, image, tokens + [cfg.eos_id])
            logp = torch.log_softmax(logits[cfg.n_prefix + len(tokens)].float(), -1)
            candidates += [(total + float(logp[v]), tokens + [v]) for v in range(cfg.vocab_size) if v not in banned]
        candidates.sort(key=lambda c: -c[0])
        nxt = []
        for rank, (total, tokens) in enumerate(candidates[: 2 * beams]):
            if tokens[-1] == cfg.eos_id:
                if rank < beams:
                    ended.append((tokens, total))
            elif len(nxt) < beams and (step < max_tokens - 1 or rank < beams):
                nxt.append((tokens, total))
        live = nxt
        if not live:
            break
    return max(ended + live, key=score)[0]


@pytest.mark.parametrize("model,beams,length_penalty,max_tokens", [
    ("both", 3, 1.0, 6), ("both", 2, 0.6, 5), ("ending", 3, 1.0, 20), ("ending", 3, 0.6, 20),
])
def test_beam_search_equals_a_cache_free_reference(tiny_model, images, model, beams, length_penalty, max_tokens):
    cap = tiny_model(model)
    e = explain(cap, images[2], strategy="beam", beams=beams, length_penalty=length_penalty, max_tokens=max_tokens)
    ref = _reference_beam_search(cap, images[2], beams, length_penalty, max_tokens)
    assert e.token_ids + ([cap.cfg.eos_id] if e.ended else []) == ref


@pytest.mark.parametrize("model", MODELS)
def test_one_beam_is_greedy(tiny_model, images, model):
    cap = tiny_model(model)
    g = explain(cap, images[3])
    for length_penalty in (1.0, 0.6):
        b = explain(cap, images[3], strategy="beam", beams=1, length_penalty=length_penalty)
        assert b.token_ids == g.token_ids and b.ended == g.ended
        assert b.logprob == pytest.approx(g.logprob, abs=1e-5)
        np.testing.assert_allclose(b.probs, g.probs, rtol=1e-6)
        for name in ("self_full", "cross_full", "mapper", "encoder"):
            a, c = getattr(g, name), getattr(b, name)
            assert (a is None) == (c is None)
            if a is not None:
                np.testing.assert_allclose(c, a, atol=1e-6)


# -- sampling ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["both", "ending", "prefix"])
def test_top_k_1_sampling_is_greedy(tiny_model, images, model):
    cap = tiny_model(model)
    g = explain(cap, images[4])
    for seed, temperature in ((0, 1.0), (9, 3.0)):
        s = explain(cap, images[4], strategy="sample", top_k=1, seed=seed, temperature=temperature)
        assert s.token_ids == g.token_ids and s.ended == g.ended
        np.testing.assert_allclose(s.self_full, g.self_full, atol=1e-6)
        if g.cross_full is not None:
            np.testing.assert_allclose(s.cross_full, g.cross_full, atol=1e-6)


def test_sampling_seeds(tiny_model, images, chatty_checkpoint):
    from vizcap.captioner import Captioner

    chatty = Captioner.from_pretrained(chatty_checkpoint)
    image = images[5]
    a = explain(chatty, image, strategy="sample", seed=5)
    b = explain(chatty, image, strategy="sample", seed=5)
    assert a.seed == b.seed == 5
    assert a.token_ids == b.token_ids
    np.testing.assert_array_equal(a.self_full, b.self_full)
    np.testing.assert_array_equal(a.cross_full, b.cross_full)
    captions = {tuple(explain(chatty, image, strategy="sample", seed=s).token_ids) for s in range(6)}
    assert len(captions) > 1, "different seeds draw different captions"
    # no seed: one is drawn and reported, and it replays the caption
    free = explain(tiny_model("ending"), image, strategy="sample", temperature=1.5)
    assert isinstance(free.seed, int)
    again = explain(tiny_model("ending"), image, strategy="sample", temperature=1.5, seed=free.seed)
    assert again.token_ids == free.token_ids


# -- forced captions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["both", "cross", "prefix"])
def test_forced_caption_replays_the_explanation(traced, model):
    t = traced(model, "beam3")
    forced = explain(t.cap, t.image, forced=t.seq)
    assert forced.token_ids == t.e.token_ids and forced.ended == t.e.ended
    assert forced.logprob == pytest.approx(t.e.logprob, abs=1e-4)
    np.testing.assert_allclose(forced.self_full, t.e.self_full, atol=ATOL)
    for method in ("cross_attention", "prefix", "rollout"):
        if (method, model) in (("cross_attention", "prefix"), ("prefix", "cross")):
            continue
        np.testing.assert_allclose(forced.maps(method), t.e.maps(method), atol=ATOL)


@pytest.mark.parametrize("model", ["both", "prefix", "cross"])
def test_empty_caption(tiny_model, images, model):
    """A caption that is just <eos>: no words, no maps, but a score and the same argument checks."""
    cap = tiny_model(model)
    cfg, eos = cap.cfg, cap.cfg.eos_id
    e = explain(cap, images[0], forced=[eos])
    assert e.tokens == [] and e.caption == "" and e.ended
    assert e.logprob == pytest.approx(teacher_forced_logprob(cap, images[0], [eos]), abs=1e-5)
    # the arrays keep their layout with zero tokens; the prefix still attended among itself
    P, L, H, N = cfg.n_prefix, cfg.decoder_layers, cfg.decoder_heads, e.grid[0] * e.grid[1]
    assert e.self_full.shape == (L, H, P, P)
    _, cache = teacher_forced(cap, images[0], [eos])
    for layer in range(L):
        np.testing.assert_allclose(e.self_full[layer], cache[f"decoder.h.{layer}.attn"][0][0, :, :P, :P].numpy(), atol=ATOL)
    assert e.cross is None if model == "prefix" else e.cross.shape == (0, L, H, N)
    assert e.self_prefix is None if model == "cross" else e.self_prefix.shape == (0, L, H, P)
    supported = [m for m in ("cross_attention", "prefix", "rollout", "relevancy")
                 if (m, model) not in (("cross_attention", "prefix"), ("prefix", "cross"))]
    for method in supported:
        assert e.maps(method).shape == (0, *e.grid)
    unsupported = {"prefix": "cross_attention", "cross": "prefix"}.get(model)
    if unsupported:
        with pytest.raises(ValueError):
            e.maps(unsupported)
    with pytest.raises(ValueError):
        e.maps(supported[0], layer=7)
    with pytest.raises(ValueError):
        e.maps("rollout", head=0)


# -- the decoder's attention implementation ----------------------------------------------------------------


def test_eager_attention_matches_sdpa_and_a_manual_computation(tiny_model, images):
    """The captured weights come from GPT-2's eager attention; it must compute what SDPA computes
    (same logits) and what the textbook formula gives (same weights)."""
    from transformers import GPT2LMHeadModel

    cap = tiny_model("both")
    model = cap.model
    assert model.decoder.config._attn_implementation == "eager"
    config = copy.deepcopy(model.decoder.config)
    config._attn_implementation = "sdpa"
    sdpa = GPT2LMHeadModel(config).eval()
    sdpa.load_state_dict(model.decoder.state_dict(), strict=True)
    assert sdpa.config._attn_implementation == "sdpa"

    ids = torch.tensor([[cap.cfg.bos_id, 7, 12, 20, 9, 30]])
    block = model.decoder.transformer.h[1]
    seen = {}

    def keep(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, args[0] if args else kwargs["hidden_states"])

        return hook

    handles = [block.attn.register_forward_pre_hook(keep("self"), with_kwargs=True),
               block.crossattention.register_forward_pre_hook(keep("cross"), with_kwargs=True)]
    try:
        with torch.no_grad(), capture() as cache:
            memory = model.encode(cap.pixels([images[6]]))
            prefix, _ = model.prefix(memory)
            embeds = torch.cat([prefix, model.decoder.transformer.wte(ids)], 1)
            eager = model.decoder(inputs_embeds=embeds, encoder_hidden_states=memory, use_cache=False).logits
            with capture() as inner:  # the SDPA copy has no hook points: it records nothing
                fused = sdpa(inputs_embeds=embeds, encoder_hidden_states=memory, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    assert inner.names() == []
    np.testing.assert_allclose(eager.numpy(), fused.numpy(), atol=1e-5)

    H, d = cap.cfg.decoder_heads, cap.cfg.d_model
    hd = d // H

    def heads(x):
        return x.view(1, -1, H, hd).transpose(1, 2)

    with torch.no_grad():
        q, k, _ = block.attn.c_attn(seen["self"]).split(d, dim=2)
        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(hd)
        S = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(S, S, dtype=torch.bool).triu(1), float("-inf"))
        manual_self = scores.softmax(-1)[0]
        cq = block.crossattention.q_attn(seen["cross"])
        ck, _ = block.crossattention.c_attn(memory).split(d, dim=2)
        manual_cross = (heads(cq) @ heads(ck).transpose(-1, -2) / math.sqrt(hd)).softmax(-1)[0]
    np.testing.assert_allclose(cache["decoder.h.1.attn"][0][0].numpy(), manual_self.numpy(), atol=1e-6)
    np.testing.assert_allclose(cache["decoder.h.1.crossattention"][0][0].numpy(), manual_cross.numpy(), atol=1e-6)


# -- concurrency -------------------------------------------------------------------------------------------

CONCURRENT_PARAMS = [
    dict(strategy="greedy"),
    dict(strategy="beam", beams=3),
    dict(strategy="sample", seed=7, top_p=0.9),
    dict(strategy="beam", beams=2, length_penalty=0.6),
    dict(strategy="sample", seed=3, temperature=2.0, top_k=8),
]


def _fingerprint(e) -> tuple:
    return (e.token_ids, e.ended, e.score, e.self_full, e.cross_full, e.mapper, e.probs, e.maps("rollout"))


def _same(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(a, b))


def test_threads_explaining_at_once_get_their_own_maps(tiny_model, images):
    """8 threads × 10 calls, different images and strategies: each result equals the one computed
    alone (captions, scores and every map), i.e. no call sees another call's attention."""
    caps = [tiny_model("both"), tiny_model("ending")]
    jobs = [(i % 8, i % len(CONCURRENT_PARAMS), i % 2) for i in range(80)]

    def run(job):
        image, params, model = job
        return _fingerprint(explain(caps[model], images[image], max_tokens=8, **CONCURRENT_PARAMS[params]))

    alone = {job: run(job) for job in set(jobs)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(run, jobs))
    mismatched = [job for job, got in zip(jobs, together) if not _same(got, alone[job])]
    assert not mismatched, f"{len(mismatched)} of {len(jobs)} concurrent results differ from sequential ones"


def test_capture_sees_only_its_own_thread(tiny_model, images):
    cap = tiny_model("both")
    model = cap.model
    # 1. a capture() open here sees nothing of what other threads explain meanwhile
    with capture() as outer:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda i: explain(cap, images[i], max_tokens=4), range(4)))
        assert outer.names() == []
    assert all(r.hook_names for r in results)
    # 2. a capture() open in another thread sees nothing of what this thread computes, even while
    #    both are inside their blocks at the same time
    opened, computed = threading.Barrier(2, timeout=600), threading.Barrier(2, timeout=600)
    seen = {}

    def other():
        with capture() as cache:
            opened.wait()
            computed.wait()
            seen["names"] = cache.names()

    thread = threading.Thread(target=other)
    thread.start()
    opened.wait()
    with torch.no_grad():
        memory = model.encode(cap.pixels([images[1]]))
        prefix, _ = model.prefix(memory)
        model.decode(memory, prefix, torch.tensor([[cap.cfg.bos_id, 5]]))
    computed.wait()
    thread.join()
    assert seen["names"] == []
    # 3. and outside any capture() the hooks record nothing at all
    with capture() as mine:
        pass
    assert mine.names() == []
