"""Relevancy (Chefer et al. 2021, through the encoder), decoder relevancy, occlusion and contrastive maps,
each checked against a computation written here from scratch: the model run with this file's own forward
hooks (or transformers' own output_attentions) and torch.autograd, the paper's rules written out layer by
layer in the paper's notation (R_ii, R_tt, R_ti), and occlusion by greying cells by hand, one at a time.
Each test says which planted bug it catches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_captioner
from vizcap import explain as ex
from vizcap.explain import explain
from vizcap.scenes import render_scene

RTOL, ATOL = 1e-5, 1e-8  # float32 models, every word's copy batched vs one word at a time here


@pytest.fixture(scope="module")
def image():
    return render_scene(321).image


@pytest.fixture(scope="module")
def vit_models():
    """ViT encoders (timm test_vit: a class token + a 4×4 grid) in the two modes that read the image differently."""
    return {"both": make_tiny_captioner("both", vit=True, mapper_layers=1), "cross": make_tiny_captioner("cross", vit=True)}


def _forced(cap, image, n: int = 5):
    """The explanation of a caption of n tokens the model is made to read (a random model may say nothing)."""
    text = "a red circle left of a blue star" if hasattr(cap, "cfg") else "a dog sitting on the grass near the water"
    ids = [i for i in (cap.tokenizer.encode(text) if hasattr(cap, "cfg") else cap.tokenizer.tok.encode(text))
           if i != cap.bos_id and i != cap.eos_id][:n]
    assert len(ids) == n
    return explain(cap, image, forced=ids)


# -- the oracle: the paper's rules written out ---------------------------------------------------------------


def _cam(a: torch.Tensor, g: torch.Tensor | None) -> np.ndarray:
    """Eq. 5: Ā = E_h[(∇A ⊙ A)+] of one attention [1, heads, q, k]."""
    if g is None:
        return np.zeros(a.shape[-2:])
    return (g * a).clamp(min=0).mean(1)[0].detach().double().numpy()


def _bar(r: np.ndarray) -> np.ndarray:
    """Eqs. 8-9: R̂ = R − I, rows of R̂ divided by their sums (a zero row stays zero), + I."""
    n = r.shape[0]
    out = r - np.eye(n)
    for i in range(n):
        s = out[i].sum()
        out[i] = out[i] / s if s > 0 else 0.0
    return out + np.eye(n)


def _paper_rules(enc: list[np.ndarray] | None, dec_self: list[np.ndarray], dec_cross: list[np.ndarray] | None,
                 n_tokens: int, first_patch: int, cell_tokens: int, resampler: np.ndarray | None = None,
                 blocks: list[np.ndarray] = ()) -> np.ndarray:
    """R_ti [S, M] over the encoder's M tokens (patch n is token first_patch + n), with R̄_ii applied in
    every cross-attention step (eq. 11: R_ti += R̄_ttᵀ · Ā · R̄_ii); enc None: R̄_ii = I. The
    cross-attention's keys are encoder tokens cell_tokens … M − 1 (vizcap drops the class token from
    its memory: keys start at the first patch; Hugging Face keeps it). vizcap's prefix tokens (not in
    the paper) follow the same rules inside the mapper, their rows normalised before the decoder."""
    M = n_tokens
    r_ii = np.eye(M)
    for a in enc or []:  # eqs. 6-7 inside the encoder
        r_ii = r_ii + a @ r_ii
    r_ii_bar = _bar(r_ii) if enc else np.eye(M)

    def widen(a: np.ndarray) -> np.ndarray:  # attention over the keys -> over all M encoder tokens
        out = np.zeros((a.shape[0], M))
        out[:, cell_tokens:] = a
        return out

    S = dec_self[0].shape[0]
    r_tt, r_ti = np.eye(S), np.zeros((S, M))
    if resampler is not None:  # the mapper: resampler = cross-attention from the queries, blocks = self-attention
        P = resampler.shape[0]
        r_pp, r_pi = np.eye(P), np.zeros((P, resampler.shape[1]))
        r_pi = r_pi + _bar(r_pp).T @ resampler  # over the memory cells (R̄_ii comes with the decoder's rows)
        for b in blocks:
            r_pp, r_pi = r_pp + b @ r_pp, r_pi + b @ r_pi
        for p in range(P):
            r_ti[p] = widen((r_pi[p] / r_pi[p].sum())[None])[0] @ r_ii_bar
    for layer in range(len(dec_self)):
        a = dec_self[layer]
        r_tt, r_ti = r_tt + a @ r_tt, r_ti + a @ r_ti  # eqs. 6-7
        if dec_cross is not None:
            r_ti = r_ti + _bar(r_tt).T @ widen(dec_cross[layer]) @ r_ii_bar  # eq. 11, transposed as the paper
    return r_ti


def _vizcap_oracle(cap, image, ids: list[int], j: int, through_encoder: bool, alternative: int | None = None):
    """Word j's relevancy map [N] for a vizcap model: its modules hooked here, one word at a time."""
    model, cfg = cap.model, cap.cfg
    store: dict[str, torch.Tensor] = {}
    mods = {f"enc{i}": (b.attn.attn_drop, None) for i, b in enumerate(model.encoder.model.blocks)}
    for i, block in enumerate(model.decoder.transformer.h):
        mods[f"self{i}"] = (block.attn, 1)
        if hasattr(block, "crossattention"):
            mods[f"cross{i}"] = (block.crossattention, 1)
    if model.mapper is not None:
        mods["res"] = (model.mapper.attn, 1)
        for i, b in enumerate(model.mapper.blocks):
            mods[f"block{i}"] = (b.attn, 1)
    handles = [m.register_forward_hook(lambda mod, inp, out, k=k, i=i: store.__setitem__(k, out if i is None else out[i]))
               for k, (m, i) in mods.items()]
    try:
        with torch.enable_grad():
            pixels = cap.pixels([image])
            memory = model.encode(pixels)
            if not through_encoder:
                memory = memory.detach().requires_grad_(True)
            prefix, _ = model.prefix(memory)
            logits = model.decode(memory, prefix, torch.tensor([[cfg.bos_id, *ids[:-1]]]), use_cache=False).logits[0]
            y = logits[cfg.n_prefix + j, ids[j]] - (logits[cfg.n_prefix + j, alternative] if alternative is not None else 0)
            keys = [k for k in store if store[k].requires_grad]
            grads = dict(zip(keys, torch.autograd.grad(y, [store[k] for k in keys], allow_unused=True)))
    finally:
        for h in handles:
            h.remove()
    cam = {k: _cam(store[k], grads.get(k)) for k in store}
    L, Le = cfg.decoder_layers, len(model.encoder.model.blocks)
    N = cap.grid[0] * cap.grid[1]
    M = store["enc0"].shape[-1]
    r = _paper_rules([cam[f"enc{i}"] for i in range(Le)] if through_encoder else None,
                     [cam[f"self{i}"] for i in range(L)],
                     [cam[f"cross{i}"] for i in range(L)] if cfg.mode != "prefix" else None,
                     M, M - N, M - N, cam.get("res"), [cam[f"block{i}"] for i in range(cfg.mapper_layers)])
    return r[cfg.n_prefix + j, M - N:]


@pytest.mark.parametrize("mode", ["both", "cross"])
def test_relevancy_equals_the_papers_rules_computed_here(vit_models, image, mode):
    """Catches: the cross-attention rule without the transpose of eq. 11 (the audit's finding), the encoder's
    self-relevance left out or applied to decoder_relevancy, gradients that do not reach the ViT, R̄
    without eqs. 8-9's row normalisation, the class token's column kept (an off-by-one over the patches),
    one word's copy back-propagating another word's logit, and the mapper's rules changed."""
    cap = vit_models[mode]
    e = _forced(cap, image)
    full, decoder = e.maps("relevancy").reshape(5, -1), e.maps("decoder_relevancy").reshape(5, -1)
    for j in range(5):
        np.testing.assert_allclose(full[j], _vizcap_oracle(cap, image, e.token_ids, j, True), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(decoder[j], _vizcap_oracle(cap, image, e.token_ids, j, False), rtol=RTOL, atol=ATOL)
    assert not np.allclose(full, decoder, rtol=1e-3)  # the encoder's self-relevance changes the map


def test_relevancy_without_the_transpose_would_differ(vit_models, image):
    """The oracle above is sharp enough to see eq. 11's transpose: the same rules without it give other maps
    (so a propagate() that dropped the transpose would fail the test above)."""
    from vizcap import maps as mapping

    cap = vit_models["both"]
    e = _forced(cap, image)
    paper = e.maps("relevancy")
    original = mapping.normalised_self_relevance
    try:  # R̄ᵀ of the un-transposed rule: hand propagate() R̄ᵀ so that its .T gives R̄ back
        mapping.normalised_self_relevance = lambda r: original(r).T if r.shape[0] == len(e.tokens) + cap.n_prefix else original(r)
        e._relevancy = None
        plain = e.maps("relevancy")
    finally:
        mapping.normalised_self_relevance = original
    assert not np.allclose(paper, plain, rtol=1e-3)


def test_relevancy_of_a_convolutional_encoder_is_decoder_relevancy(tiny_model, image):
    """Documented choice: a CNN encoder has no attention to follow, so relevancy stops at its output.
    Catches a CNN model whose relevancy silently differs from what the help says (e.g. a stale R̄_ii)."""
    e = _forced(tiny_model("both"), image)
    assert e.encoder is None
    np.testing.assert_array_equal(e.maps("relevancy"), e.maps("decoder_relevancy"))
    assert "convolutional encoder" in ex.mapping.METHODS["relevancy"].help


# -- Hugging Face: transformers itself is the oracle ----------------------------------------------------------


@pytest.fixture(scope="module")
def vit_gpt2(tmp_path_factory):
    pytest.importorskip("transformers")
    import hub_fixtures

    import vizcap

    return vizcap.load(hub_fixtures.vit_gpt2(tmp_path_factory.mktemp("vit_gpt2_relevancy")))


def _hf_oracle(cap, pixels, ids: list[int], j: int, through_encoder: bool, alternative: int | None = None):
    """Word j's relevancy [N] from transformers' own output_attentions (tensors in the autograd graph)."""
    model = cap.model
    with torch.enable_grad():
        out = model(pixel_values=pixels, decoder_input_ids=torch.tensor([[cap.bos_id, *ids[:-1]]]), output_attentions=True)
        y = out.logits[0, j, ids[j]] - (out.logits[0, j, alternative] if alternative is not None else 0)
        tensors = [*out.encoder_attentions, *out.decoder_attentions, *out.cross_attentions]
        grads = torch.autograd.grad(y, tensors, allow_unused=True)
    Le, L = len(out.encoder_attentions), len(out.decoder_attentions)
    cams = [_cam(a, g) for a, g in zip(tensors, grads)]
    M = out.encoder_attentions[0].shape[-1]
    r = _paper_rules(cams[:Le] if through_encoder else None, cams[Le:Le + L], cams[Le + L:], M, cap.n_extra_keys, 0)
    return r[j, cap.n_extra_keys:]


def test_hugging_face_relevancy_equals_the_papers_rules_on_transformers_attentions(vit_gpt2, image):
    """Catches, for the Hugging Face family: the class token's key mistaken for a patch, R̄_ii applied with
    the wrong offset, the encoder's gradients missing (full) or leaking into decoder_relevancy."""
    cap = vit_gpt2
    e = _forced(cap, image, 4)
    T = len(e.tokens)
    assert T >= 2
    pixels = cap.pixels(image)
    full, decoder = e.maps("relevancy").reshape(T, -1), e.maps("decoder_relevancy").reshape(T, -1)
    for j in range(T):
        np.testing.assert_allclose(full[j], _hf_oracle(cap, pixels, e.token_ids, j, True), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(decoder[j], _hf_oracle(cap, pixels, e.token_ids, j, False), rtol=RTOL, atol=ATOL)
    assert not np.allclose(full, decoder, rtol=1e-3)
    j, alt = 1, int(e.top_ids[1][1])
    np.testing.assert_allclose(e.contrastive(j, alt).ravel(), _hf_oracle(cap, pixels, e.token_ids, j, True, alt),
                               rtol=RTOL, atol=ATOL)


# -- a model whose attention is known by construction ------------------------------------------------------


def test_relevancy_of_the_pinned_model_lights_only_the_pinned_cells(image):
    """make_pinned_captioner (test_maps.py): cross-attention heads and the resampler read fixed cells and
    nothing else, so Ā is zero elsewhere and relevance can come from those cells only. Catches maps
    shifted or transposed over the grid, and relevance taken from the wrong keys."""
    from test_maps import cross_target, make_pinned_captioner, resampler_target

    cap = make_pinned_captioner()
    ids = [i for i in cap.tokenizer.encode("a red circle left of a blue star") if i not in (cap.cfg.bos_id, cap.cfg.eos_id)]
    e = explain(cap, image, forced=ids)
    targets = {cross_target(l, h) for l in range(2) for h in range(4)} | {resampler_target(p, g) for p in range(3) for g in range(2)}
    others = [c for c in range(16) if c not in targets]
    for method in ("relevancy", "decoder_relevancy"):
        r = e.maps(method).reshape(len(ids), -1)
        assert (r.max(1) > 0).all()
        assert np.all(r[:, others] <= 1e-3 * r.max(1, keepdims=True)), method


def test_occlusion_of_a_model_blind_to_the_image_is_zero(image):
    """The pinned model's memory does not depend on the pixels (its projection is zero): greying any cell
    changes nothing, so every drop is exactly 0. Catches a baseline taken from another pass than the
    greyed ones (decoding's probabilities, another token order) and drops of the wrong word."""
    from test_maps import make_pinned_captioner

    cap = make_pinned_captioner()
    e = _forced(cap, image)
    np.testing.assert_allclose(e.maps("occlusion"), 0.0, atol=1e-7)


# -- occlusion against greying by hand ------------------------------------------------------------------------


def _occlusion_by_hand(cap, image, ids: list[int], alternative: dict[int, int] | None = None) -> np.ndarray:
    """[T, N]: for each cell, the input pixels of that cell set to 0 (the normalisation's mean) by slicing,
    one teacher-forced pass per cell, p(word) (− p(alternative)) before minus after."""
    pixels = cap.pixels(image)
    gh, gw = cap.grid
    H, W = pixels.shape[-2:]
    P, T = cap.n_prefix, len(ids)

    def score(px):
        logits, _ = cap.teacher_forced(px, ids)
        p = torch.softmax(logits.double(), -1)
        return np.array([float(p[P + j, ids[j]]) - (float(p[P + j, alternative[j]]) if alternative and j in alternative else 0.0)
                         for j in range(T)])

    base = score(pixels)
    out = np.zeros((T, gh * gw))
    for r in range(gh):
        for c in range(gw):
            px = pixels.clone()
            px[..., r * H // gh:(r + 1) * H // gh, c * W // gw:(c + 1) * W // gw] = 0.0
            out[:, r * gw + c] = base - score(px)
    return out


@pytest.mark.parametrize("which", ["vizcap", "vit_gpt2"])
def test_occlusion_equals_greying_each_cell_by_hand(tiny_model, vit_gpt2, image, which, monkeypatch):
    """Catches: the wrong cell greyed (grid transposed, a cell's pixels off by one row), drops of the wrong
    word (position off by the prefix), the batch mixing images, and a last partial batch dropped
    (OCCLUSION_BATCH = 5 does not divide the 16 cells)."""
    cap = tiny_model("both") if which == "vizcap" else vit_gpt2
    e = _forced(cap, image)
    monkeypatch.setattr(ex, "OCCLUSION_BATCH", 5)
    occ = e.maps("occlusion").reshape(len(e.tokens), -1)
    np.testing.assert_allclose(occ, _occlusion_by_hand(cap, image, e.token_ids), atol=1e-6)
    assert np.abs(occ).max() > 1e-4  # the check saw real drops


# -- contrastive maps ---------------------------------------------------------------------------------------


def test_contrastive_relevancy_is_the_relevancy_of_the_logit_difference(vit_models, image):
    """Catches a contrastive map that back-propagates the chosen logit alone (or the alternative's alone),
    and the alternative given as text resolving to another token."""
    cap = vit_models["both"]
    e = _forced(cap, image)
    j = 2
    alt_id, alt_text = int(e.top_ids[j][1]), e.top_tokens[j][1]
    want = _vizcap_oracle(cap, image, e.token_ids, j, True, alt_id)
    np.testing.assert_allclose(e.contrastive(j, alt_id).ravel(), want, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(e.contrastive(j, alt_text), e.contrastive(j, alt_id))
    np.testing.assert_allclose(e.contrastive(j, alt_id, "decoder_relevancy").ravel(),
                               _vizcap_oracle(cap, image, e.token_ids, j, False, alt_id), rtol=RTOL, atol=ATOL)
    assert not np.allclose(e.contrastive(j, alt_id), e.maps("relevancy")[j], rtol=1e-3)


@pytest.mark.parametrize("method", ["relevancy", "decoder_relevancy", "occlusion"])
def test_contrastive_with_the_chosen_word_itself_is_zero(vit_models, image, method):
    """"Why red and not red?": nothing. Catches a contrastive map that forgets to subtract."""
    e = _forced(vit_models["cross"], image, 4)
    m = e.contrastive(1, e.token_ids[1], method)
    assert m.shape == e.grid and np.all(m == 0)


def test_contrastive_occlusion_is_the_drop_of_the_probability_difference(tiny_model, image):
    """occlusion(chosen) minus the drop of the alternative's probability, greyed by hand. Catches the sign
    of the alternative's term and an alternative read at another word's step."""
    cap = tiny_model("both")
    e = _forced(cap, image)
    j, alt = 3, int(e.top_ids[3][2])
    by_hand = _occlusion_by_hand(cap, image, e.token_ids, {j: alt})[j]
    np.testing.assert_allclose(e.contrastive(j, alt, "occlusion").ravel(), by_hand, atol=1e-6)
    alt_drop = e.maps("occlusion").reshape(len(e.tokens), -1)[j] - by_hand  # the alternative's own drop
    assert np.abs(alt_drop).max() > 0


@pytest.mark.parametrize("args,message", [
    ((0, "no-such-word"), "not one token"), ((0, 10**9), "not in the vocabulary"), ((99, 3), "token index"),
    ((0, 3, "rollout"), "contrastive maps are made by"), ((0, None), "token id or a token's text"),
])
def test_contrastive_refuses_bad_requests_in_one_line(tiny_model, image, args, message):
    e = _forced(tiny_model("both"), image, 3)
    with pytest.raises(ValueError, match=message) as info:
        e.contrastive(*args)
    assert "\n" not in str(info.value)


# -- one shared forward pass, one batched backward pass (issue 28, item 1a) -----------------------------------
#
# relevancy() runs the caption through the model once and back-propagates every word's target in one backward
# pass batched over the words (torch.func.vmap over autograd.grad). The reference below is the plain way,
# written here: for each word alone, a fresh forward pass, one autograd.grad of that word's own scalar target,
# and the same rules (vizcap.maps.propagate and relevancy_mapper, checked against the paper's rules written out
# above; R̄_ii by this file's _bar). Every family: vizcap's own (a ViT with mapper blocks; a CNN with a mapper),
# Hugging Face ViT+GPT-2, BLIP (cross-attention) and GIT (a prefix of image tokens: P > 0).


@pytest.fixture(scope="module")
def shared_models(vit_models, vit_gpt2, tmp_path_factory):
    import hub_fixtures

    import vizcap

    root = tmp_path_factory.mktemp("shared_forward")
    return {"vizcap_vit": vit_models["both"], "vizcap_cnn": make_tiny_captioner("prefix", mapper_layers=1),
            "vit_gpt2": vit_gpt2, "blip": vizcap.load(hub_fixtures.blip(root / "blip")),
            "git": vizcap.load(hub_fixtures.git(root / "git"))}


def _one_word(cap, image, ids: list[int], j: int, through_encoder: bool, alternative: int | None = None) -> np.ndarray:
    """Word j's relevancy [N] the plain way: its own forward pass, one backward pass of its own target."""
    from vizcap import maps as mapping

    P, X, N = cap.n_prefix, cap.n_extra_keys, cap.grid[0] * cap.grid[1]
    with torch.enable_grad():
        logits, cache = cap.teacher_forced(cap.pixels(image), ids, keep_grad=True, through_encoder=through_encoder)
        y = logits[P + j, ids[j]] - (logits[P + j, alternative] if alternative is not None else 0)
        names = [n for n in cache.names() if cache[n][0].requires_grad]
        grads = torch.autograd.grad(y, [cache[n][0] for n in names], allow_unused=True)
    cam = {n: _cam(cache[n][0], g) for n, g in zip(names, grads)}
    L = cap.decoder_layers
    self_w = np.stack([cam[f"decoder.h.{l}.attn"] for l in range(L)])
    cross_w = np.stack([cam[f"decoder.h.{l}.crossattention"] for l in range(L)]) if cap.has_cross else None
    mapper = None
    if cap.prefix_is_image:
        mapper = np.eye(P)
    elif "mapper.attn" in cam:
        blocks = [cam[n] for n in sorted((n for n in cam if n.startswith("mapper.blocks.")), key=lambda n: int(n.split(".")[2]))]
        mapper = mapping.relevancy_mapper(cam["mapper.attn"], np.stack(blocks) if blocks else None)
    r = mapping.propagate(self_w, cross_w, mapper, P)
    enc = sorted((n for n in cam if n.startswith("encoder.blocks.")), key=lambda n: int(n.split(".")[2]))
    if enc:
        r_ii = np.eye(cam[enc[0]].shape[-1])
        for n in enc:  # eqs. 6-7 over the whole matrix, then 8-9
            r_ii = r_ii + cam[n] @ r_ii
        E = r_ii.shape[0] - N
        r = (r @ _bar(r_ii)[E - X:])[:, E - X:]
    return r[P + j, X:]


@pytest.mark.parametrize("through_encoder", [True, False], ids=["relevancy", "decoder_relevancy"])
@pytest.mark.parametrize("which", ["vizcap_vit", "vizcap_cnn", "vit_gpt2", "blip", "git"])
def test_one_shared_forward_pass_equals_each_word_on_its_own(shared_models, image, which, through_encoder,
                                                               monkeypatch):
    """Catches: a word's logit read at another position (off by one, or by the prefix: GIT and vizcap's models
    have P > 0), one word's gradients given to another, the alternative left out or added, groups of words
    (two at a time here, for the Hugging Face models) that do not share the one graph, and a second forward
    pass. The backward pass must also run without PyTorch's slow vmap fallback (its "performance drop"
    warning, shown when torch._C._debug_only_display_vmap_fallback_warnings is on)."""
    import warnings

    cap = shared_models[which]
    e = _forced(cap, image)
    ids, T = e.token_ids, len(e.tokens)
    alternatives = [None, int(e.top_ids[1][1]), None, ids[3], int(e.top_ids[4][2])]  # word 3: itself
    if hasattr(cap, "relevancy_group"):
        monkeypatch.setattr(cap, "relevancy_group", 2, raising=False)
    forwards = []
    original = cap.teacher_forced
    monkeypatch.setattr(cap, "teacher_forced", lambda *a, **k: forwards.append(1) or original(*a, **k))
    shown = torch._C._debug_only_are_vmap_fallback_warnings_enabled()
    torch._C._debug_only_display_vmap_fallback_warnings(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain = ex.relevancy(cap, e, through_encoder=through_encoder)
            contrast = ex.relevancy(cap, e, through_encoder=through_encoder, words=list(range(T)),
                                    alternatives=alternatives)
    finally:
        torch._C._debug_only_display_vmap_fallback_warnings(shown)
    monkeypatch.undo()
    assert len(forwards) == 2  # one forward pass per call, whatever the groups
    assert not [str(w.message) for w in caught if "performance drop" in str(w.message)]
    for j in range(T):
        np.testing.assert_allclose(plain[j], _one_word(cap, image, ids, j, through_encoder), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(contrast[j], _one_word(cap, image, ids, j, through_encoder, alternatives[j]),
                                   rtol=RTOL, atol=ATOL)
    assert np.all(contrast[3] == 0)  # why this word and not itself: nothing
    assert not np.allclose(contrast[1], plain[1], rtol=1e-3)  # the alternative counts
    assert all(not np.allclose(plain[j], plain[j + 1], rtol=1e-3) for j in range(T - 1))  # each word its own map


def test_one_row_through_the_encoder_equals_the_whole_matrix():
    """explain._through_encoder computes row · R̄_ii with vectors only; here R_ii is built whole (eqs. 6-7) and
    normalised by _bar (eqs. 8-9). Attention weights of very different sizes (down to 1e-9, where 1 + x − 1
    would lose digits), a zero row, class-token columns. Catches the layers taken in the wrong order on either
    side, the row sums taken over columns, and a zero row divided into NaN."""
    rng = np.random.default_rng(0)
    M = 9
    for scale in (1.0, 1e-3, 1e-9):
        w = rng.random((4, M, M)) * scale * (rng.random((4, M, M)) < 0.6)
        w[:, 2] = 0.0  # token 2 attends to nothing: its row of R − I is zero
        extra = np.zeros((M, M))
        for a in w:  # R − I of eqs. 6-7, built up without subtracting I (exact to rounding at every scale)
            extra = extra + a @ (np.eye(M) + extra)
        sums = extra.sum(1, keepdims=True)
        r_bar = np.divide(extra, sums, out=np.zeros_like(extra), where=sums > 0) + np.eye(M)  # eqs. 8-9
        if scale == 1.0:
            np.testing.assert_allclose(r_bar, _bar(extra + np.eye(M)), rtol=1e-12)
        for row in (rng.random(M), np.r_[0.0, rng.random(M - 1)]):
            np.testing.assert_allclose(ex._through_encoder(row, w), row @ r_bar, rtol=1e-10, atol=0)


@pytest.mark.parametrize("outside", [False, True])
def test_relevancy_runs_with_denormals_flushed_and_leaves_the_setting_as_it_was(vit_models, image, monkeypatch, outside):
    """The backward passes run with denormals flushed to zero (a gradient shrunk into them made BLIP-base's
    backward ~10× slower), in a thread of their own (torch's worker threads copy the setting only when
    they start), and the caller's setting comes back afterwards, whichever it was; progress is reported
    in the caller's thread (a Streamlit progress bar belongs to it); an error inside is raised here."""
    import threading

    seen, reported = [], []
    batched_grad = ex._batched_grad

    def spy(*args, **kwargs):
        seen.append((ex.flushes_denormals(), threading.current_thread()))
        return batched_grad(*args, **kwargs)

    monkeypatch.setattr(ex, "_batched_grad", spy)
    e = _forced(vit_models["cross"], image)
    torch.set_flush_denormal(outside)
    try:
        ex.relevancy(vit_models["cross"], e, progress=lambda done, n: reported.append(threading.current_thread()))
        assert seen and all(flushed and thread is not threading.current_thread() for flushed, thread in seen)
        assert ex.flushes_denormals() == outside
        assert reported and set(reported) == {threading.current_thread()}
        monkeypatch.setattr(ex, "_batched_grad", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            ex.relevancy(vit_models["cross"], e)
        assert ex.flushes_denormals() == outside
    finally:
        torch.set_flush_denormal(False)


def test_blips_memory_gradient_by_its_low_rank_shortcut_equals_autograds(shared_models, image):
    """Full relevancy takes each word's gradient of BLIP's memory from its gradients of every cross-attention
    map and context (explain._memory_gradient: Σ_heads dSᵀ(Q W_k/√d) + Aᵀ(dC W_v)), not through autograd's
    dense key and value gradients. Here it equals autograd's own gradient of the memory, word by word. Catches
    a missing 1/√d, the softmax's backward left out, keys and values swapped, heads split the wrong way, a
    layer skipped, or the pass recording no queries (then the shortcut could not run)."""
    cap = shared_models["blip"]
    assert cap.cross_projections and len(cap.cross_projections) == cap.decoder_layers
    e = _forced(cap, image)
    logits, cache = cap.teacher_forced(cap.pixels(image), e.token_ids, keep_grad=True)
    rows, vectors = ex._targets(cap, logits, e.token_ids, list(range(len(e.tokens))), [None] * len(e.tokens))
    maps = [f"decoder.h.{l}.crossattention" for l in range(cap.decoder_layers)]
    contexts = [cache[f"{n}.context"][0] for n in maps]
    *map_grads, autograds = ex._batched_grad(rows, vectors, [cache[n][0] for n in maps] + [cache.memory])
    context_grads = ex._batched_grad(rows, vectors, contexts)
    shortcut = ex._memory_gradient(cap.cross_projections, cache, dict(zip(maps, map_grads)), context_grads)
    assert autograds.abs().max() > 0
    torch.testing.assert_close(shortcut, autograds, rtol=1e-4, atol=1e-6 * float(autograds.abs().max()))
    # an explanation's own capture (no gradients kept) records none of what the shortcut reads
    _, plain = cap.teacher_forced(cap.pixels(image), e.token_ids)
    assert not [n for n in plain.names() if n.endswith(ex._SHORTCUT_POINTS)] and plain.memory is None


def test_a_fast_blip_takes_autograds_way_to_the_memory(tmp_path, image):
    """The shortcut reads nn.Linear weights; fast mode's int8 layers are not, so relevancy falls back to
    autograd (and still runs) instead of reading weights that are not the ones the model used."""
    import hub_fixtures

    import vizcap

    fast = vizcap.load(hub_fixtures.blip(tmp_path / "blip"), fast=True)
    assert fast.cross_projections is None
    e = _forced(fast, image)
    r = ex.relevancy(fast, e)
    assert r.shape == (len(e.tokens), fast.grid[0] * fast.grid[1]) and np.isfinite(r).all() and r.any()


@pytest.mark.parametrize("width, heads", [(128, 2), (24, 2)])  # 1/√d = 1/8, a power of two; and 1/√12
def test_blips_lean_vision_attention_gives_transformers_numbers_bit_for_bit(shared_models, width, heads):
    """vizcap runs BLIP's vision attention by its own forward (families.blip.lean_vision_attention: one
    unbind, the scale on the queries when it is a power of two), for cheaper backward passes. Its output,
    attention probabilities and the gradients of the input equal transformers' BlipAttention's exactly,
    in both ways of scaling; and a loaded BLIP captioner runs it in every encoder layer."""
    from transformers.models.blip.configuration_blip import BlipVisionConfig
    from transformers.models.blip.modeling_blip import BlipAttention

    from vizcap.families.blip import lean_vision_attention

    torch.manual_seed(0)
    attention = BlipAttention(BlipVisionConfig(hidden_size=width, num_attention_heads=heads)).eval()
    x = torch.randn(2, 17, width, requires_grad=True)
    vectors = torch.randn(2, 17, width), torch.randn(2, heads, 17, 17)
    results = []
    for forward in (attention.forward, lambda h: lean_vision_attention(attention, h)):
        out, probs = forward(x)
        results.append((out, probs, *torch.autograd.grad((out, probs), x, vectors)))
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
    layers = shared_models["blip"].model.vision_model.encoder.layers
    assert all(layer.self_attn.forward.__func__ is lean_vision_attention for layer in layers)
