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

METHODS = ("cross_attention", "prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion")
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


SIGNED = ("occlusion",)  # a drop in probability: greying a cell may also raise it


def test_every_method_gives_one_non_negative_map_per_token(exp):
    T, (gh, gw) = len(exp.tokens), exp.grid
    for method in METHODS:
        for how in NORMALIZATIONS:
            m = exp.maps(method, normalize=how)
            assert m.shape == (T, gh, gw), (method, how)
            assert np.all(np.isfinite(m)) and (method in SIGNED or np.all(m >= 0)), (method, how)
            assert m.any(), f"{method} maps are all zero"
            if how != "none":  # every normalisation keeps magnitudes at most 1, signed maps too
                assert np.abs(m).max() <= 1 + 1e-9, (method, how)


@pytest.mark.parametrize("method", METHODS)
def test_normalizations(exp, method):
    raw = exp.maps(method, normalize="none")
    T = len(raw)
    flat = raw.reshape(T, -1)
    size = np.abs(flat)  # = flat for every method but the signed ones
    by_max = exp.maps(method, normalize="max").reshape(T, -1)
    np.testing.assert_allclose(np.abs(by_max).max(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(by_max, flat / size.max(1, keepdims=True), atol=1e-9)
    by_sum = exp.maps(method, normalize="sum").reshape(T, -1)
    np.testing.assert_allclose(np.abs(by_sum).sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(by_sum, flat / size.sum(1, keepdims=True), atol=1e-9)
    glob = exp.maps(method, normalize="global")
    assert np.abs(glob).max() == pytest.approx(1.0)
    np.testing.assert_allclose(glob, raw / np.abs(raw).max(), atol=1e-9)


def _cross_attention_by_transformers(captioner, image, token_ids) -> np.ndarray:
    """[T, L, H, N]: GPT-2's own cross-attention weights for the words `token_ids`, gathered without vizcap's
    hooks or explain(): one teacher-forced pass of the model with transformers' output_attentions=True over
    <bos> + the words before the last, and for word j the row of the position that produced it (prefix + j)."""
    model, cfg = captioner.model, captioner.cfg
    ids = torch.tensor([[cfg.bos_id, *token_ids[:-1]]])
    with torch.no_grad():
        out = model(captioner.pixels([image]), ids, attentions=True)
    cross = out["cross_attention"][:, 0]  # [L, H, P + T, N], transformers' tuple stacked over layers
    return cross[:, :, cfg.n_prefix:cfg.n_prefix + len(token_ids)].permute(2, 0, 1, 3).numpy()


def test_cross_attention_maps_are_gpt2s_own_weights(tiny_model, exp, image):
    """The unnormalised cross_attention map of word j, for every layer/head choice, equals a mean written out
    here over transformers' own attention weights (an independent capture: output_attentions, not vizcap's
    hooks), reshaped row by row onto the grid."""
    oracle = _cross_attention_by_transformers(tiny_model("both"), image, exp.token_ids)
    T, (gh, gw) = len(exp.tokens), exp.grid
    L, H = oracle.shape[1], oracle.shape[2]
    assert oracle.shape == (T, 2, 4, gh * gw)
    np.testing.assert_allclose(oracle.sum(-1), 1.0, atol=1e-5)  # no class token: every row is over the patches
    by_hand = np.zeros((T, gh, gw))
    for j in range(T):
        for n in range(gh * gw):
            by_hand[j, n // gw, n % gw] = sum(oracle[j, layer, head, n] for layer in range(L) for head in range(H)) / (L * H)
    np.testing.assert_allclose(exp.maps("cross_attention", normalize="none"), by_hand, atol=1e-6)
    for layer in range(L):
        np.testing.assert_allclose(exp.maps("cross_attention", layer=layer, normalize="none"),
                                   oracle[:, layer].mean(1).reshape(T, gh, gw), atol=1e-6)
        for head in range(H):
            np.testing.assert_allclose(exp.maps("cross_attention", layer=layer, head=head, normalize="none"),
                                       oracle[:, layer, head].reshape(T, gh, gw), atol=1e-6)
    for head in range(H):
        np.testing.assert_allclose(exp.maps("cross_attention", head=head, normalize="none"),
                                   oracle[:, :, head].mean(1).reshape(T, gh, gw), atol=1e-6)
    assert np.ptp(by_hand) > 1e-3 and not np.allclose(oracle[:, 0], oracle[:, 1], atol=1e-3)  # choices differ


def test_normalize_keeps_zero_maps_zero():
    maps = np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    for how in NORMALIZATIONS:
        out = mapping.normalize(maps, how)
        assert np.all(np.isfinite(out)) and np.all(out[0] == 0)
    np.testing.assert_allclose(mapping.normalize(maps, "sum")[1], [0.25, 0.75, 0])
    # a signed map (occlusion) is scaled by its magnitudes: a negative cell never explodes
    signed = np.array([[-0.2, -0.1, 0.0], [0.4, -0.8, 0.4]])
    np.testing.assert_allclose(mapping.normalize(signed, "max"), [[-1.0, -0.5, 0.0], [0.5, -1.0, 0.5]])
    np.testing.assert_allclose(mapping.normalize(signed, "sum"), [[-2 / 3, -1 / 3, 0.0], [0.25, -0.5, 0.25]])
    np.testing.assert_allclose(mapping.normalize(signed, "global"), signed / 0.8)
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


def _prefix_maps_by_hand(exp) -> np.ndarray:
    """Each prefix token's map at the mapper's output, with loops: the resampler's head-mean map,
    then for every mapper block m_p <- ½·m_p + ½·Σ_q a(p→q)·m_q (the block's head-mean attention;
    half of the residual stream stays)."""
    P = exp.n_prefix
    m = [exp.mapper[:, p].mean(0) for p in range(P)]
    for block in exp.mapper_blocks if exp.mapper_blocks is not None else []:
        a = block.mean(0)
        m = [0.5 * m[p] + 0.5 * sum(a[p, q] * m[q] for q in range(P)) for p in range(P)]
    return np.array(m)


@pytest.mark.parametrize("model", ["both", "mapper1", "mapper2"])
def test_prefix_maps_compose_self_attention_with_the_mapper(tiny_model, image, model):
    """Σ_p a(token→p) · m(p→patches), a renormalised over the prefix (no <bos>, no words), m each
    prefix token's map carried through every mapper block, all computed here by hand."""
    exp = explain(tiny_model(model), image, max_tokens=6)
    T, P = len(exp.tokens), exp.n_prefix
    assert (exp.mapper_blocks is None) == (model == "both")
    if exp.mapper_blocks is not None:
        assert exp.mapper_blocks.shape == (int(model[-1]), 2, P, P)
    m = _prefix_maps_by_hand(exp)
    np.testing.assert_allclose(exp.prefix_maps, m, atol=1e-6)
    expected = np.zeros((T, m.shape[-1]))
    for j in range(T):
        row = exp.self_full[:, :, P + j, :P].mean(axis=(0, 1))  # from the position that produced word j
        row = row / row.sum()
        for p in range(P):
            expected[j] += row[p] * m[p]
    np.testing.assert_allclose(exp.maps("prefix").reshape(T, -1), expected, atol=1e-6)
    np.testing.assert_allclose(exp.maps("prefix").reshape(T, -1).sum(1), 1.0, atol=1e-5)  # a distribution over patches


def _rollout_by_hand(exp) -> np.ndarray:
    """Abnar & Zuidema's rollout written as flows, one position at a time: every decoder position
    holds a distribution over sources (each decoder input position, each image cell); a
    self-attention layer gives position i ½ of its own distribution plus ½ Σ_k a(i→k) of position
    k's; a cross-attention sublayer keeps ½ and adds ½ of its attention over the cells. At the end
    a prefix input counts as the image it is made of: ½ its resampler read (the other half is its
    learned query), carried through the mapper blocks. Returns [T, N] for the generated words."""
    P, T = exp.n_prefix, len(exp.tokens)
    L, H, S, _ = exp.self_full.shape
    N = exp.grid[0] * exp.grid[1]
    flows = [{("pos", i): 1.0} for i in range(S)]
    for layer in range(L):
        a = exp.self_full[layer].mean(0)
        new = []
        for i in range(S):
            d: dict = {}
            for src, w in flows[i].items():
                d[src] = d.get(src, 0.0) + 0.5 * w
            for k in range(S):
                for src, w in flows[k].items():
                    d[src] = d.get(src, 0.0) + 0.5 * a[i, k] * w
            new.append(d)
        flows = new
        if exp.cross_full is not None:
            c = exp.cross_full[layer].mean(0)
            for i in range(S):
                d = {src: 0.5 * w for src, w in flows[i].items()}
                for n in range(N):
                    d[("cell", n)] = d.get(("cell", n), 0.0) + 0.5 * c[i, n]
                flows[i] = d
    prefix_image = 0.5 * _prefix_maps_by_hand(exp) if exp.mapper is not None else None
    out = np.zeros((T, N))
    for j in range(T):
        for (kind, idx), w in flows[P + j].items():
            if kind == "cell":
                out[j, idx] += w
            elif idx < P:
                out[j] += w * prefix_image[idx]
    if exp.encoder is not None:  # on through the ViT: each block keeps ½ and mixes ½ by its head-mean attention
        X = exp.encoder.shape[-1] - N
        flow = np.eye(X + N)  # row q: the shares of ViT input tokens in output token q
        for block in exp.encoder:
            a = block.mean(0)
            flow = np.array([[0.5 * flow[q, s] + 0.5 * sum(a[q, k] * flow[k, s] for k in range(X + N))
                              for s in range(X + N)] for q in range(X + N)])
        out = out @ flow[X:, X:]
    return out


@pytest.mark.parametrize("model", ["both", "mapper1", "mapper2", "cross", "prefix", "vit"])
def test_rollout_equals_the_flow_written_out_by_hand(tiny_model, image, model):
    exp = explain(tiny_model(model), image, max_tokens=5)
    T = len(exp.tokens)
    r = exp.maps("rollout").reshape(T, -1)
    np.testing.assert_allclose(r, _rollout_by_hand(exp), atol=1e-7)
    assert np.all(r >= 0) and np.all(r.sum(1) <= 1 + 1e-9)  # shares of the word's representation


def test_rollout_stays_a_share_however_deep():
    """Identical layers must not grow the raw scale (the old r <- r + A·r reached ~8,190 at twelve)."""
    S, N = 4, 3
    rng = np.random.default_rng(0)
    a = np.tril(rng.random((S, S)))
    a /= a.sum(-1, keepdims=True)
    c = rng.random((S, N))
    c /= c.sum(-1, keepdims=True)
    for depth in (1, 2, 12, 48):
        r = mapping.rollout(np.stack([a] * depth), np.stack([c] * depth), None, 0)
        assert np.all(r >= 0) and np.all(r.sum(1) <= 1 + 1e-12) and r.sum(1).max() > 0.4, depth
    # self-attention only, identity attention: nothing flows from the image, whatever the depth
    np.testing.assert_allclose(mapping.rollout(np.stack([np.eye(S)] * 12), None, np.ones((1, N)) / N, 1)[1:], 0.0)


def test_rollout_one_layer_on_paper():
    """S = 2 (a prefix token, <bos>), N = 2; A = [[1, 0], [.5, .5]], C = [[.9, .1], [.2, .8]];
    the prefix token is ½ image, read as [.5, .5] -> [.25, .25]."""
    A1 = np.array([[1.0, 0.0], [0.5, 0.5]])
    C1 = np.array([[0.9, 0.1], [0.2, 0.8]])
    # Ã = ½A + ½I = [[1, 0], [.25, .75]]; after cross: R_tt = ½Ã, R_ti = ½C
    # position 1: R_tt = [.125, .375], R_ti = [.1, .4]; + R_tt[:, :1] @ prefix = .125 * [.25, .25]
    expected_1 = np.array([0.1 + 0.03125, 0.4 + 0.03125])
    r = mapping.rollout(A1[None], C1[None], np.array([[0.25, 0.25]]), 1)
    np.testing.assert_allclose(r[1], expected_1, atol=1e-12)


def test_mapper_maps_on_paper():
    res = np.array([[1.0, 0.0], [0.0, 1.0]])  # query 0 reads cell 0, query 1 reads cell 1
    block = np.array([[0.0, 1.0], [0.0, 1.0]])  # both prefix tokens attend to token 1
    # Ã = [[.5, .5], [0, 1]] -> m = [[.5, .5], [0, 1]]
    np.testing.assert_allclose(mapping.mapper_maps(res, block[None]), [[0.5, 0.5], [0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(mapping.mapper_maps(res, block[None], 0.5), [[0.25, 0.25], [0.0, 0.5]], atol=1e-12)
    np.testing.assert_allclose(mapping.mapper_maps(res, None), res)
    # relevancy's rules: R_pi = res; R += Ā R with Ā = block -> [[1, 1], [0, 2]]
    np.testing.assert_allclose(mapping.relevancy_mapper(res, block[None]), [[1.0, 1.0], [0.0, 2.0]], atol=1e-12)


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
    """Chefer et al. 2021's rules on paper, eq. 11 transposed as in the paper and its official code.
    Catches the rule without the transpose (the audit's finding: it gives [[3.3, .7], [1.425, 1.075],
    [.825, 1.375]] here) and a prefix row that is not renormalised."""
    # R_ti starts as the prefix token's normalised map: [[.75, .25], 0, 0]
    # self-attention (eqs. 6-7): R_tt = I + A;  R_ti += A @ R_ti   -> [[1.5, .5], [.375, .125], [.15, .05]]
    # cross (eq. 11): R_bar = (R_tt - I) / rowsum + I = A + I = [[2, 0, 0], [.5, 1.5, 0], [.2, .3, 1.5]]
    #   R_barᵀ @ C = [[2·.9 + .5·.4 + .2·.25, 2·.1 + .5·.6 + .2·.75], [1.5·.4 + .3·.25, 1.5·.6 + .3·.75], 1.5·[.25, .75]]
    #              = [[2.05, .65], [.675, 1.125], [.375, 1.125]]
    expected = np.array([[3.55, 1.15], [1.05, 1.25], [0.525, 1.175]])
    np.testing.assert_allclose(mapping.propagate(A[None], C[None], M, 1), expected, atol=1e-12)
    # no cross-attention (mode "prefix"): only what the prefix carries
    np.testing.assert_allclose(mapping.propagate(A[None], None, M, 1), [[1.5, 0.5], [0.375, 0.125], [0.15, 0.05]], atol=1e-12)


def test_propagate_normalises_self_relevance_rows():
    """Gradient-weighted maps (relevancy) do not sum to 1: R_bar divides the rows of R_tt - I (eqs. 8-9).
    Catches R_bar = R_tt (no normalisation) and a normalisation over columns."""
    Aw = np.array([[0.5, 0.0, 0.0], [0.2, 0.2, 0.0], [0.1, 0.1, 0.2]])
    # R_ti after self: [[1.125, .375], [.15, .05], [.075, .025]]
    # R_bar = [[2, 0, 0], [.5, 1.5, 0], [.25, .25, 1.5]]
    # R_barᵀ @ C = [[1.8 + .2 + .0625, .2 + .3 + .1875], [.6 + .0625, .9 + .1875], [.375, 1.125]]
    expected = np.array([[3.1875, 1.0625], [0.8125, 1.1375], [0.45, 1.15]])
    np.testing.assert_allclose(mapping.propagate(Aw[None], C[None], M, 1), expected, atol=1e-12)


def test_propagate_without_prefix():
    """Mode "cross": no mapper, relevance comes only from cross-attention (R_barᵀ: a position's relevance
    also collects what later positions that read it took from the image)."""
    a = np.array([[1.0, 0.0], [0.4, 0.6]])
    c = np.array([[0.5, 0.5], [0.1, 0.9]])
    # R_bar = A + I = [[2, 0], [.4, 1.6]];  R_ti = R_barᵀ @ c = [[2·.5 + .4·.1, 2·.5 + .4·.9], [.16, 1.44]]
    np.testing.assert_allclose(mapping.propagate(a[None], c[None], None, 0), [[1.04, 1.36], [0.16, 1.44]], atol=1e-12)


def test_normalised_self_relevance_on_paper():
    r = np.array([[1.0, 0.0], [3.0, 2.0]])  # R - I = [[0, 0], [3, 1]] -> rows / sums: [[0, 0], [.75, .25]] + I
    np.testing.assert_allclose(mapping.normalised_self_relevance(r), [[1.0, 0.0], [0.75, 1.25]], atol=1e-12)


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


@pytest.mark.parametrize("model", ["both", "mapper1", "mapper2"])
def test_relevancy_of_one_word_does_not_depend_on_later_words(tiny_model, image, model):
    """All tokens go back-propagated in one batch; token j's map must equal the map of the same
    word when the caption stops right after it (forced replay of the first j + 1 words)."""
    cap = tiny_model(model)
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
            assert m.shape == (len(e.tokens), *e.grid) and (method in SIGNED or np.all(m >= 0)) and m.any(), method


# -- a model whose attention is known by construction --------------------------------------------------

GRID_CELLS = 16  # 64 px through the MobileNetV3 stage of stride 16: a 4×4 grid


def cross_target(layer: int, head: int) -> int:
    """The cell that cross-attention head `head` of decoder layer `layer` is built to look at."""
    return (5 * layer + 3 * head + 1) % GRID_CELLS


def resampler_target(p: int, g: int) -> int:
    """The cell that prefix query p reads in resampler head g."""
    return (7 * p + 4 * g + 2) % GRID_CELLS


def block_target(b: int, g: int, P: int) -> int:
    """The prefix token that every prefix token attends to in head g of mapper block b."""
    return (b + g) % P


def make_pinned_captioner():
    """A captioner whose attention is set by its weights (the rest random):

    * memory cell n is LayerNorm(10·e_n): large in dimension n only (position embeddings one-hot,
      projection zero), so a key can be made to pick out one cell;
    * decoder cross-attention, layer l, head h: a constant query (bias only) along one dimension whose
      key reads memory dimension cross_target(l, h): the head looks at that cell whatever the word;
    * resampler: learned query p is 10·e_p; head g's query/key map it onto cell resampler_target(p, g);
    * mapper block b, head g: every prefix token attends to prefix token block_target(b, g); the
      resampler's and blocks' outputs are zeroed so the prefix tokens stay one-hot for the next block.
    """
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionerConfig, CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tok = CaptionTokenizer.word_level(VOCABULARY)
    cfg = CaptionerConfig(image_size=64, d_model=32, n_prefix=3, mapper_heads=2, mapper_layers=2, decoder_layers=2,
                          decoder_heads=4, vocab_size=tok.vocab_size, bos_id=tok.bos_id, eos_id=tok.eos_id,
                          pad_id=tok.pad_id, mode="both")
    torch.manual_seed(11)
    model = CaptionModel(cfg)
    assert model.grid == (4, 4)
    d, big = 32, 10.0
    with torch.no_grad():
        model.project.weight.zero_()
        model.project.bias.zero_()
        model.pos.zero_()
        for n in range(GRID_CELLS):
            model.pos[0, n, n] = big
        for layer, block in enumerate(model.decoder.transformer.h):
            cross, hd = block.crossattention, d // cfg.decoder_heads
            cross.q_attn.weight.zero_()
            cross.q_attn.bias.zero_()
            cross.c_attn.weight[:, :d].zero_()  # keys (Conv1D: [in, out]); values stay random
            cross.c_attn.bias[:d].zero_()
            for h in range(cfg.decoder_heads):
                cross.q_attn.bias[h * hd] = 1.0
                cross.c_attn.weight[cross_target(layer, h), h * hd] = big
        mapper, hm, P = model.mapper, d // cfg.mapper_heads, cfg.n_prefix
        mapper.queries.zero_()
        for p in range(P):
            mapper.queries[p, p] = big
        mapper.attn.q.weight.zero_()
        mapper.attn.q.bias.zero_()
        mapper.attn.kv.weight[:d].zero_()  # keys (nn.Linear: [out, in])
        mapper.attn.kv.bias[:d].zero_()
        for g in range(cfg.mapper_heads):
            for j in range(GRID_CELLS):
                mapper.attn.kv.weight[g * hm + j, j] = 2.0
            for p in range(P):
                mapper.attn.q.weight[g * hm + resampler_target(p, g), p] = 2.0
        for module in (mapper.attn.out, mapper.mlp.proj):  # the prefix tokens stay the queries
            module.weight.zero_()
            module.bias.zero_()
        for b, block in enumerate(mapper.blocks):
            block.attn.q.weight.zero_()
            block.attn.q.bias.zero_()
            block.attn.kv.weight[:d].zero_()
            block.attn.kv.bias[:d].zero_()
            for g in range(cfg.mapper_heads):
                block.attn.q.bias[g * hm + block_target(b, g, P)] = 3.0
                for p in range(P):
                    block.attn.kv.weight[g * hm + p, p] = 3.0
            for module in (block.attn.out, block.mlp.proj):
                module.weight.zero_()
                module.bias.zero_()
    return Captioner(model, tok)


@pytest.fixture(scope="module")
def pinned(image):
    cap = make_pinned_captioner()
    ids = cap.tokenizer.encode("a red circle left of a blue star")
    ids = [i for i in ids if i not in (cap.cfg.bos_id, cap.cfg.eos_id)]
    assert len(ids) == 8
    return explain(cap, image, forced=ids)


def _one_hot(cell: int) -> np.ndarray:
    out = np.zeros(GRID_CELLS)
    out[cell] = 1.0
    return out


def test_each_cross_attention_head_shows_the_cell_it_was_built_to_look_at(pinned):
    T = len(pinned.tokens)
    for layer in range(2):
        for head in range(4):
            m = pinned.maps("cross_attention", layer=layer, head=head)
            assert m.shape == (T, 4, 4)
            row, col = divmod(cross_target(layer, head), 4)  # row-major over the 4×4 grid
            np.testing.assert_allclose(m[:, row, col], 1.0, atol=1e-4)
    mean = pinned.maps("cross_attention").reshape(T, -1)
    expected = np.mean([_one_hot(cross_target(l, h)) for l in range(2) for h in range(4)], axis=0)
    np.testing.assert_allclose(mean, np.broadcast_to(expected, mean.shape), atol=1e-4)
    per_layer = pinned.maps("cross_attention", layer=1).reshape(T, -1)
    np.testing.assert_allclose(per_layer[0], np.mean([_one_hot(cross_target(1, h)) for h in range(4)], 0), atol=1e-4)


def test_prefix_token_maps_are_the_resampler_reads_carried_through_the_blocks(pinned):
    P = pinned.n_prefix
    # resampler: query p reads resampler_target(p, g) in head g; head mean
    m = np.array([np.mean([_one_hot(resampler_target(p, g)) for g in range(2)], 0) for p in range(P)])
    for b in range(2):
        a = np.array([np.mean([np.eye(P)[block_target(b, g, P)] for g in range(2)], 0) for _ in range(P)])
        m = 0.5 * m + 0.5 * a @ m
    np.testing.assert_allclose(pinned.prefix_maps, m, atol=1e-4)
    # the prefix method: each word's attention over the prefix (renormalised) times these maps
    T = len(pinned.tokens)
    to_prefix = pinned.self_full[:, :, P : P + T, :P].mean(axis=(0, 1))
    to_prefix /= to_prefix.sum(-1, keepdims=True)
    np.testing.assert_allclose(pinned.maps("prefix").reshape(T, -1), to_prefix @ m, atol=1e-4)


def test_rollout_of_the_pinned_model_is_made_of_the_pinned_cells(pinned):
    """Every cell that rollout lights up is a cross-attention target or a prefix read (within 1e-4),
    and the total is the share the flow computation gives."""
    T = len(pinned.tokens)
    r = pinned.maps("rollout").reshape(T, -1)
    targets = {cross_target(l, h) for l in range(2) for h in range(4)}
    targets |= {resampler_target(p, g) for p in range(3) for g in range(2)}
    others = [c for c in range(GRID_CELLS) if c not in targets]
    assert np.all(r[:, others] < 1e-4)
    np.testing.assert_allclose(r, _rollout_by_hand(pinned), atol=1e-7)
    assert np.all(r.sum(1) <= 1 + 1e-9) and np.all(r.sum(1) > 0.5)


def test_relevancy_goes_through_the_mapper_blocks(tiny_model, image):
    """With mapper blocks, relevancy's prefix path must use them: zeroing the blocks' captured
    gradients' effect (propagating the resampler alone) changes the map of a prefix-reading model."""
    cap = tiny_model("mapper2")
    e = explain(cap, image, max_tokens=4)
    full = e.maps("relevancy")
    original = mapping.relevancy_mapper
    try:
        mapping.relevancy_mapper = lambda resampler, blocks: original(resampler, None)
        e2 = explain(cap, image, max_tokens=4)
        without = e2.maps("relevancy")
    finally:
        mapping.relevancy_mapper = original
    assert e2.token_ids == e.token_ids
    assert not np.allclose(full, without, atol=1e-6)


# -- inside the ViT encoder ---------------------------------------------------------------------------


def _vit_attention_by_hand(cap, image) -> np.ndarray:
    """[layers, heads, X + N, X + N]: timm's ViT blocks run one by one, each block's attention
    weights recomputed from its own qkv projection (no hooks involved)."""
    vit = cap.model.encoder.model
    with torch.no_grad():
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(cap.pixels([image])))))
        out = []
        for blk in vit.blocks:
            a, h = blk.attn, blk.norm1(x)
            B, n, C = h.shape
            q, k, _ = a.qkv(h).reshape(B, n, 3, a.num_heads, C // a.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
            q, k = a.q_norm(q), a.k_norm(k)
            out.append(((q * a.scale) @ k.transpose(-2, -1)).softmax(-1)[0].numpy())
            x = blk(x)
    return np.stack(out)


def test_encoder_maps_are_the_vits_own_attention(tiny_model, image):
    cap = tiny_model("vit")
    e = explain(cap, image, max_tokens=3)
    ref = _vit_attention_by_hand(cap, image)
    L, H, S, _ = ref.shape
    gh, gw = e.grid
    X = S - gh * gw
    assert X == 1 and (L, H) == (6, 2)
    for (r, c) in [(0, 0), (1, 2), (3, 3)]:
        q = X + r * gw + c
        for layer, head in [(0, 0), (2, 1), (5, 0)]:
            np.testing.assert_allclose(e.encoder_maps((r, c), layer, head), ref[layer, head, q, X:].reshape(gh, gw), atol=1e-5)
            assert e.encoder_extra_share((r, c), layer, head) == pytest.approx(ref[layer, head, q, :X].sum(), abs=1e-5)
        np.testing.assert_allclose(e.encoder_maps((r, c)), ref[:, :, q, X:].mean((0, 1)).reshape(gh, gw), atol=1e-5)
        np.testing.assert_allclose(e.encoder_maps((r, c), layer=3), ref[3, :, q, X:].mean(0).reshape(gh, gw), atol=1e-5)
    np.testing.assert_allclose(e.encoder_maps("cls", head=1), ref[:, 1, 0, X:].mean(0).reshape(gh, gw), atol=1e-5)
    # rollout up to a layer: (½A + ½I) products of head means, by hand
    roll = np.eye(S)
    for layer in range(3):
        roll = (0.5 * ref[layer].mean(0) + 0.5 * np.eye(S)) @ roll
    np.testing.assert_allclose(e.encoder_maps((1, 1), layer=2, method="rollout"),
                               roll[X + gw + 1, X:].reshape(gh, gw), atol=1e-5)
    total = e.encoder_maps("cls", method="rollout").sum() + e.encoder_extra_share("cls", method="rollout")
    assert total == pytest.approx(1.0, abs=1e-5)  # shares


@pytest.mark.parametrize("kwargs,message", [
    (dict(query=(4, 0)), "query must be"), (dict(query="CLS"), "query must be"), (dict(query=(True, 0)), "query must be"),
    (dict(query=(0, 0), layer=6), "layer must be"), (dict(query=(0, 0), head=2), "head must be"),
    (dict(query=(0, 0), method="relevancy"), "method must be"), (dict(query=(0, 0), method="rollout", head=0), "averages"),
])
def test_encoder_maps_refuse_bad_requests_in_one_line(tiny_model, image, kwargs, message):
    e = explain(tiny_model("vit"), image, max_tokens=2)
    with pytest.raises(ValueError, match=message) as info:
        e.encoder_maps(**kwargs)
    assert "\n" not in str(info.value)


def test_encoder_maps_need_a_vision_transformer(exp):
    with pytest.raises(ValueError, match="not a vision transformer"):
        exp.encoder_maps("cls")
