"""From captured attention to one heatmap per generated token.

Methods (all return [tokens, N] over the N = gh·gw image cells):

cross_attention  the decoder's cross-attention from the position that produced the token to the
                 patches; mean over heads and layers, or one layer / head.
prefix           the decoder's self-attention from that position to each prefix token, composed with
                 each prefix token's own map over the patches (the mapper's attention):
                 Σ_p a(token→p) · m(p→patches).
rollout          attention flow through every path at once (Abnar & Zuidema 2020, extended to
                 self + cross attention as in Chefer et al. 2021 but with plain head-averaged
                 attention instead of gradient-weighted attention). Prefix tokens start out carrying
                 the mapper's maps; each decoder layer mixes them through self-attention and adds
                 what cross-attention reads from the patches.
relevancy        Chefer, Gur & Wolf 2021: the same propagation with every attention map replaced by
                 E_heads[(∂logit/∂A ⊙ A)⁺] for the generated token's logit, so heads and positions
                 that did not matter for *this* word are discounted. Needs a backward pass per token
                 (computed on demand).

Normalisation: "none" (raw scale; a weak map stays weak), "max" (each token's map divided by its
maximum), "sum" (each token's map sums to 1), "global" (divided by the maximum over all tokens).

Attention sinks: transformers park spare attention on a few positions that carry no meaning (the
first token; background patches in ViTs). With `discount_sinks=True`, each cell's median over the
caption's tokens is subtracted and the rest clipped at zero: what every word looks at is removed, and
what is specific to *this* word stays. The self-attention to the <bos> token is never part of a map:
`prefix` renormalises over the prefix tokens only.
"""

from __future__ import annotations

import numpy as np

METHODS = ("cross_attention", "prefix", "rollout", "relevancy")
NORMALIZATIONS = ("none", "max", "sum", "global")


def normalize(maps: np.ndarray, how: str) -> np.ndarray:
    """maps [T, ...] -> normalised copy."""
    if how not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {how!r}")
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1) if len(maps) else maps.reshape(0, 1)
    if how == "max":
        flat = flat / np.maximum(flat.max(axis=1, keepdims=True), 1e-12)
    elif how == "sum":
        flat = flat / np.maximum(flat.sum(axis=1, keepdims=True), 1e-12)
    elif how == "global":
        flat = flat / max(float(flat.max()) if flat.size else 0.0, 1e-12)
    return flat.reshape(maps.shape)


def discount_sinks(maps: np.ndarray) -> np.ndarray:
    """Subtract each cell's median over tokens, clip at 0 (see module docstring)."""
    if len(maps) < 2:
        return maps
    return np.clip(maps - np.median(maps, axis=0, keepdims=True), 0, None)


def check_layer_head(layer, head, n_layers: int, n_heads: int) -> None:
    """ValueError (one line) unless layer / head are None or whole numbers in range (negative = from the end)."""
    for what, value, n in (("layer", layer, n_layers), ("head", head, n_heads)):
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not -n <= value < n:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise ValueError(f"{what} must be a whole number in 0..{n - 1}; got {shown}")


def select(attn: np.ndarray, layer: int | None, head: int | None) -> np.ndarray:
    """[T, L, H, X] -> [T, X]: one layer/head, or the mean over the ones not chosen."""
    n_layers, n_heads = attn.shape[1], attn.shape[2]
    check_layer_head(layer, head, n_layers, n_heads)
    layer = None if layer is None else int(layer)
    head = None if head is None else int(head)
    a = attn[:, layer : layer + 1 if layer != -1 else None] if layer is not None else attn
    a = a[:, :, head : head + 1 if head != -1 else None] if head is not None else a
    return a.mean(axis=(1, 2))


def propagate(
    self_attn: np.ndarray,
    cross_attn: np.ndarray | None,
    mapper: np.ndarray | None,
    n_prefix: int,
) -> np.ndarray:
    """Relevance of every decoder position to every patch, [S, N].

    self_attn [L, S, S] and cross_attn [L, S, N] are already reduced over heads (plain means for
    rollout, gradient-weighted for relevancy); mapper [P, N] is the prefix tokens' map."""
    n_layers, S, _ = self_attn.shape
    N = cross_attn.shape[-1] if cross_attn is not None else mapper.shape[-1]
    eye = np.eye(S)
    r_tt = eye.copy()  # each position starts relevant to itself only
    r_ti = np.zeros((S, N))
    if mapper is not None and n_prefix:
        rows = mapper / np.maximum(mapper.sum(-1, keepdims=True), 1e-12)
        r_ti[:n_prefix] = rows  # prefix tokens are made of the patches their queries read
    for layer in range(n_layers):
        a = self_attn[layer]
        r_tt = r_tt + a @ r_tt
        r_ti = r_ti + a @ r_ti
        if cross_attn is not None:
            # normalised self-relevance (Chefer et al. 2021, eq. 10), so deep layers don't dominate
            extra = r_tt - eye
            r_bar = extra / np.maximum(extra.sum(-1, keepdims=True), 1e-12) + eye
            r_ti = r_ti + r_bar @ cross_attn[layer]
    return r_ti
