"""From captured attention to heatmaps: Explanation.maps() and vizcap.maps, checked against arrays
indexed by hand and against small cases computed on paper."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vizcap import maps as mapping
from vizcap.explain import explain
from vizcap.scenes import render_scene

METHODS = ("cross_attention", "prefix", "rollout", "relevancy")
NORMALIZATIONS = ("none", "max", "sum", "global")


@pytest.fixture(scope="module")
def image():
    return render_scene(321).image


@pytest.fixture(scope="module")
def exp(tiny_model, image):
    """Mode "both", 2 layers × 4 heads, 8 words."""
    e = explain(tiny_model("both"), image, max_tokens=8)
    assert len(e.tokens) == 8
    return e


def test_every_method_gives_one_non_negative_map_per_token(exp):
    T, (gh, gw) = len(exp.tokens), exp.grid
    for method in METHODS:
        for how in NORMALIZATIONS:
            m = exp.maps(method, normalize=how)
            assert m.shape == (T, gh, gw), (method, how)
            assert np.all(np.isfinite(m)) and np.all(m >= 0), (method, how)
            assert m.any(), f"{method} maps are all zero"


@pytest.mark.parametrize("method", METHODS)
def test_normalizations(exp, method):
    raw = exp.maps(method, normalize="none")
    T = len(raw)
    flat = raw.reshape(T, -1)
    by_max = exp.maps(method, normalize="max").reshape(T, -1)
    np.testing.assert_allclose(by_max.max(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(by_max, flat / flat.max(1, keepdims=True), atol=1e-9)
    by_sum = exp.maps(method, normalize="sum").reshape(T, -1)
    np.testing.assert_allclose(by_sum.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(by_sum, flat / flat.sum(1, keepdims=True), atol=1e-9)
    glob = exp.maps(method, normalize="global")
    assert glob.max() == pytest.approx(1.0)
    np.testing.assert_allclose(glob, raw / raw.max(), atol=1e-9)
    if method != "cross_attention":
        return
    # "none" is the raw mean over layers and heads, as indexed by hand
    np.testing.assert_allclose(raw, exp.cross.mean(axis=(1, 2)).reshape(raw.shape), atol=1e-7)
    np.testing.assert_allclose(raw.reshape(T, -1), mapping.select(exp.cross, None, None), atol=1e-7)


def test_normalize_keeps_zero_maps_zero():
    maps = np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    for how in NORMALIZATIONS:
        out = mapping.normalize(maps, how)
        assert np.all(np.isfinite(out)) and np.all(out[0] == 0)
    np.testing.assert_allclose(mapping.normalize(maps, "sum")[1], [0.25, 0.75, 0])
    assert mapping.normalize(np.zeros((0, 4)), "max").shape == (0, 4)


def test_layer_and_head_selection_is_plain_indexing(exp):
    T, grid = len(exp.tokens), exp.grid
    L, H = exp.cross.shape[1], exp.cross.shape[2]
    assert (L, H) == (2, 4)
    for layer in range(L):
        np.testing.assert_allclose(exp.maps("cross_attention", layer=layer), exp.cross[:, layer].mean(1).reshape(T, *grid), atol=1e-7)
        for head in range(H):
            np.testing.assert_allclose(exp.maps("cross_attention", layer=layer, head=head),
                                       exp.cross[:, layer, head].reshape(T, *grid), atol=1e-7)
    for head in range(H):
        np.testing.assert_allclose(exp.maps("cross_attention", head=head), exp.cross[:, :, head].mean(1).reshape(T, *grid), atol=1e-7)
    # negative indices count from the end; numpy integers are whole numbers too
    np.testing.assert_array_equal(exp.maps("cross_attention", layer=-1, head=-2), exp.maps("cross_attention", layer=L - 1, head=H - 2))
    np.testing.assert_array_equal(exp.maps("cross_attention", layer=np.int64(1), head=np.int32(3)), exp.maps("cross_attention", layer=1, head=3))
    # prefix: the same selection of the decoder's attention to the prefix
    mapper = exp.mapper.mean(0)
    for layer, head in ((0, 1), (1, 3), (None, 2), (1, None)):
        a = exp.self_prefix
        a = a[:, [layer]] if layer is not None else a
        a = a[:, :, [head]] if head is not None else a
        to_prefix = a.mean(axis=(1, 2))
        expected = (to_prefix / to_prefix.sum(1, keepdims=True)) @ mapper
        np.testing.assert_allclose(exp.maps("prefix", layer=layer, head=head), expected.reshape(T, *grid), atol=1e-7)


def test_prefix_maps_compose_self_attention_with_the_mapper(exp):
    """Σ_p a(token→p) · m(p→patches), a renormalised over the prefix (no <bos>, no words), m the
    mapper's attention averaged over its heads, all computed here by hand."""
    T, P = len(exp.tokens), exp.n_prefix
    L, H, S, _ = exp.self_full.shape
    expected = np.zeros((T, exp.mapper.shape[-1]))
    for j in range(T):
        row = exp.self_full[:, :, P + j, :P].mean(axis=(0, 1))  # from the position that produced word j
        row = row / row.sum()
        for p in range(P):
            expected[j] += row[p] * exp.mapper[:, p].mean(0)
    np.testing.assert_allclose(exp.maps("prefix").reshape(T, -1), expected, atol=1e-6)
    np.testing.assert_allclose(exp.maps("prefix").reshape(T, -1).sum(1), 1.0, atol=1e-5)  # a distribution over patches


def test_rollout_is_propagate_on_head_means(exp):
    P, T = exp.n_prefix, len(exp.tokens)
    r = mapping.propagate(exp.self_full.mean(1), exp.cross_full.mean(1), exp.mapper.mean(0), P)
    np.testing.assert_allclose(exp.maps("rollout").reshape(T, -1), r[P : P + T], atol=1e-9)


@pytest.mark.parametrize("kwargs", [
    dict(method="bogus"),
    dict(method="Cross_Attention"),
    dict(method="cross_attention", layer=2),
    dict(method="cross_attention", layer=-3),
    dict(method="cross_attention", layer=1.5),
    dict(method="cross_attention", layer=0.0),
    dict(method="cross_attention", layer="0"),
    dict(method="cross_attention", layer=True),
    dict(method="prefix", head=4),
    dict(method="prefix", head=-5),
    dict(method="prefix", head=0.5),
    dict(method="cross_attention", normalize="bogus"),
    dict(method="cross_attention", normalize="MAX"),
    dict(method="rollout", layer=0),
    dict(method="relevancy", head=1),
], ids=[
    "method='bogus'",
    "method='Cross_Attention'",
    "method='cross_attention'-layer=2",
    "method='cross_attention'-layer=-3",
    "method='cross_attention'-layer=1.5",
    "method='cross_attention'-layer=0.0",
    "method='cross_attention'-layer='0'",
    "method='cross_attention'-layer=True",
    "method='prefix'-head=4",
    "method='prefix'-head=-5",
    "method='prefix'-head=0.5",
    "method='cross_attention'-normalize='bogus'",
    "method='cross_attention'-normalize='MAX'",
    "method='rollout'-layer=0",
    "method='relevancy'-head=1",
])
def test_invalid_arguments_raise_one_line_value_errors(exp, kwargs):
    with pytest.raises(ValueError) as info:
        exp.maps(**kwargs)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 200
    name = next(k for k in ("layer", "head", "normalize") if k in kwargs) if len(kwargs) > 1 else "method"
    assert name in message, message


def test_discount_sinks_removes_what_every_token_looks_at():
    """Cell 0 is a sink: hot for every token. Token t also looks at its own cell t + 1."""
    T, N = 4, 6
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 0.02, (T, N))
    raw[:, 0] += 0.5
    for t in range(T):
        raw[t, t + 1] += 0.3
    assert np.all(raw.argmax(1) == 0), "without discounting, every token points at the sink"
    out = mapping.discount_sinks(raw)
    assert out.shape == raw.shape and np.all(out >= 0)
    assert np.all(out[:, 0] <= 0.03), "the sink is gone"
    np.testing.assert_array_equal(out.argmax(1), np.arange(T) + 1)
    np.testing.assert_allclose(out, np.clip(raw - np.median(raw, axis=0), 0, None))
    single = raw[:1]
    np.testing.assert_array_equal(mapping.discount_sinks(single), single)  # one token: nothing to compare with


def test_discount_sinks_through_explanation_maps(exp):
    T, N = 4, 6
    cross = np.full((T, 1, 1, N), 0.02)
    cross[:, 0, 0, 0] = 0.5
    for t in range(T):
        cross[t, 0, 0, t + 1] = 0.3
    synthetic = dataclasses.replace(exp, tokens=["w"] * T, token_ids=[5] * T, grid=(2, 3), cross=cross)
    plain = synthetic.maps("cross_attention", normalize="max")
    assert np.all(plain.reshape(T, -1).argmax(1) == 0)
    discounted = synthetic.maps("cross_attention", normalize="max", discount_sinks=True).reshape(T, -1)
    np.testing.assert_array_equal(discounted.argmax(1), np.arange(T) + 1)
    assert np.all(discounted[:, 0] == 0)
    np.testing.assert_allclose(discounted.max(1), 1.0)


# -- propagate on paper ---------------------------------------------------------------------------------

# S = 3 positions: one prefix token, <bos>, one word; N = 2 patches.
A = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])  # self-attention, rows sum to 1
C = np.array([[0.9, 0.1], [0.4, 0.6], [0.25, 0.75]])  # cross-attention
M = np.array([[3.0, 1.0]])  # the prefix token's map over the patches (normalised to 0.75, 0.25)


def test_propagate_one_layer_by_hand():
    # R_ti starts as the prefix token's normalised map: [[.75, .25], 0, 0]
    # self-attention: R_ti += A @ R_ti   -> [[1.5, .5], [.375, .125], [.15, .05]]
    # cross: R_bar = (R_tt - I) / rowsum + I = A + I; R_ti += R_bar @ C
    #   (A + I) @ C = [[1.8, .2], [1.05, .95], [.675, 1.325]]
    expected = np.array([[3.3, 0.7], [1.425, 1.075], [0.825, 1.375]])
    np.testing.assert_allclose(mapping.propagate(A[None], C[None], M, 1), expected, atol=1e-12)
    # no cross-attention (mode "prefix"): only what the prefix carries
    np.testing.assert_allclose(mapping.propagate(A[None], None, M, 1), [[1.5, 0.5], [0.375, 0.125], [0.15, 0.05]], atol=1e-12)


def test_propagate_normalises_self_relevance_rows():
    """Gradient-weighted maps (relevancy) do not sum to 1: R_bar divides the rows of R_tt - I."""
    Aw = np.array([[0.5, 0.0, 0.0], [0.2, 0.2, 0.0], [0.1, 0.1, 0.2]])
    # R_ti after self: [[1.125, .375], [.15, .05], [.075, .025]]
    # R_bar = [[2, 0, 0], [.5, 1.5, 0], [.25, .25, 1.5]];  R_bar @ C = [[1.8, .2], [1.05, .95], [.7, 1.3]]
    expected = np.array([[2.925, 0.575], [1.2, 1.0], [0.775, 1.325]])
    np.testing.assert_allclose(mapping.propagate(Aw[None], C[None], M, 1), expected, atol=1e-12)


def test_propagate_without_prefix():
    """Mode "cross": no mapper, relevance comes only from cross-attention."""
    a = np.array([[1.0, 0.0], [0.4, 0.6]])
    c = np.array([[0.5, 0.5], [0.1, 0.9]])
    # R_bar = A + I = [[2, 0], [.4, 1.6]];  R_ti = R_bar @ c
    np.testing.assert_allclose(mapping.propagate(a[None], c[None], None, 0), [[1.0, 1.0], [0.36, 1.64]], atol=1e-12)


# -- relevancy -----------------------------------------------------------------------------------------


def test_relevancy_leaves_the_model_alone(tiny_model, image):
    cap = tiny_model("both")
    e = explain(cap, image, max_tokens=6)
    params = dict(cap.model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    flags = {n: p.requires_grad for n, p in params.items()}
    assert all(p.grad is None for p in params.values())
    grad_mode = torch.is_grad_enabled()
    r = e.maps("relevancy")
    assert r.shape == (6, *e.grid) and np.all(r >= 0) and r.any()
    assert all(p.grad is None for p in params.values()), "relevancy must not write .grad of the shared model"
    assert {n: p.requires_grad for n, p in params.items()} == flags
    assert all(torch.equal(p, before[n]) for n, p in params.items())
    assert torch.is_grad_enabled() == grad_mode
    assert e.maps("relevancy") is not r and np.array_equal(e.maps("relevancy"), r)  # computed once, served again


def test_relevancy_of_one_word_does_not_depend_on_later_words(tiny_model, image):
    """All tokens go back-propagated in one batch; token j's map must equal the map of the same
    word when the caption stops right after it (forced replay of the first j + 1 words)."""
    cap = tiny_model("both")
    e = explain(cap, image, max_tokens=6)
    full = e.maps("relevancy")
    for j in (0, 3):
        short = explain(cap, image, forced=e.token_ids[: j + 1])
        assert short.token_ids == e.token_ids[: j + 1]
        np.testing.assert_allclose(short.maps("relevancy")[j], full[j], rtol=1e-4, atol=1e-7)


# -- what each mode has ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model,missing", [("prefix", "cross_attention"), ("cross", "prefix")])
def test_modes_without_a_map(tiny_model, image, model, missing):
    e = explain(tiny_model(model), image, max_tokens=5)
    with pytest.raises(ValueError) as info:
        e.maps(missing)
    assert "\n" not in str(info.value) and "mode" in str(info.value)
    for method in METHODS:
        if method != missing:
            m = e.maps(method)
            assert m.shape == (len(e.tokens), *e.grid) and np.all(m >= 0) and m.any(), method
