"""From captured attention to one heatmap per generated token.

Methods (all return [tokens, N] over the N = gh·gw image cells):

cross_attention  the decoder's cross-attention from the position that produced the token to the
                 patches; mean over heads and layers, or one layer / head. Raw unit: a share of
                 that position's attention (each layer's and head's row sums to 1 over the cells).
prefix           the decoder's self-attention from that position to each prefix token (renormalised
                 over the prefix tokens, so <bos> and earlier words are left out), composed with each
                 prefix token's own map over the patches: Σ_p a(token→p) · m(p→patches), where m is
                 the resampler's attention carried through every mapper block (see `mapper_maps`).
                 Raw unit: a share (the map sums to 1).
rollout          attention rollout (Abnar & Zuidema 2020): every attention layer becomes
                 Ã = ½A + ½I (half of each position's content stays on the residual stream), rows
                 renormalised, and the layers are multiplied. The value at a cell is the share of the
                 token's representation that flowed from that cell: at most 1 in total, the rest came
                 from the words and the prefix queries. Deviations from the paper, which covers only
                 self-attention: a cross-attention sublayer is treated the same way (half the stream
                 stays, half is replaced by what it read from the cells); a prefix token is half its
                 learned query (not image) and half the resampler's read of the cells, then mixed
                 by the mapper blocks as any self-attention layer; MLPs are ignored, as in the paper.
                 With a ViT encoder the chain goes on through the ViT's blocks (`encoder_rollout`):
                 memory cell n counts as ViT output token n (its added position embedding and the
                 class token's input, which are not image, are left out).
relevancy        Chefer, Gur & Wolf 2021: every attention map replaced by E_heads[(∂logit/∂A ⊙ A)⁺]
                 for the generated token's logit and propagated with the paper's rules (R += Ā·R for
                 self-attention, R_ti += R̄_tt·Ā for cross-attention, eq. 10's row normalisation),
                 through the mapper blocks too. Raw unit: relevance, a score with no fixed scale
                 (compare within one map, not across words or images). Computed on demand.

Normalisation: "none" (the raw unit above; a weak map stays weak), "max" (each token's map divided
by its own maximum: the hottest cell becomes 1), "sum" (each token's map sums to 1), "global" (every
map divided by the one maximum over all tokens, so words stay comparable).

Attention sinks: transformers park spare attention on a few positions that carry no meaning (the
first token; background patches in ViTs). Maps here are over image cells only, so the <bos> sink
never appears in them; a ViT's background-patch sinks can. With `discount_sinks=True`, each cell's
median over the caption's tokens is subtracted and the rest clipped at zero: what every word looks
at is removed, and what is specific to *this* word stays.
"""

from __future__ import annotations

import numpy as np

METHODS = ("cross_attention", "prefix", "rollout", "relevancy")
NORMALIZATIONS = ("none", "max", "sum", "global")
# What a raw (normalize="none") value of each method means: for colour bars and exports.
UNITS = {
    "cross_attention": "attention weight (share of the word's attention, 0–1)",
    "prefix": "attention weight via the prefix tokens (share, 0–1)",
    "rollout": "share of attention flow from the cell (0–1)",
    "relevancy": "relevance (no fixed scale)",
}


def unit(method: str, normalize: str) -> str:
    """The colour-bar label of a map: the raw unit, or what the normalisation made of it."""
    if normalize == "max":
        return "÷ this word's maximum (hottest cell = 1)"
    if normalize == "sum":
        return "share of this word's map (sums to 1)"
    if normalize == "global":
        return "÷ the maximum over all words"
    return UNITS[method]


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


def mapper_maps(resampler: np.ndarray, blocks: np.ndarray | None, image_share: float = 1.0) -> np.ndarray:
    """Each prefix token's map over the patches at the mapper's output, [P, N].

    resampler [P, N] is the learned queries' attention over the patches (rows sum to 1); blocks
    [layers, P, P] the mapper blocks' self-attention (head means). Each block is rolled out as
    Ã = ½A + ½I (its residual stream keeps half). image_share is the part of a prefix token that the
    resampler's read of the patches makes up: 1 for the `prefix` method (a map over patches),
    ½ for rollout (the other half is the learned query, which is not image)."""
    m = image_share * np.asarray(resampler, dtype=np.float64)
    for a in blocks if blocks is not None else []:
        m = _residual(a) @ m
    return m


def _residual(a: np.ndarray) -> np.ndarray:
    """Ã = ½A + ½I with rows renormalised (Abnar & Zuidema 2020)."""
    r = 0.5 * np.asarray(a, dtype=np.float64) + 0.5 * np.eye(a.shape[-1])
    return r / r.sum(-1, keepdims=True)


def rollout(
    self_attn: np.ndarray,
    cross_attn: np.ndarray | None,
    prefix_to_image: np.ndarray | None,
    n_prefix: int,
) -> np.ndarray:
    """Attention rollout: the share of every decoder position's representation that flowed from
    each patch, [S, N] (rows sum to at most 1).

    self_attn [L, S, S] and cross_attn [L, S, N] are head means; prefix_to_image [P, N] is each
    prefix token's share of image (`mapper_maps(..., image_share=0.5)`). The state is a row-
    stochastic matrix over the sources [decoder inputs | image cells]; a self-attention layer mixes
    it by Ã, a cross-attention sublayer keeps half and replaces half by what it read from the cells.
    At the end the prefix inputs' shares are converted into the image shares they are made of."""
    n_layers, S, _ = self_attn.shape
    N = cross_attn.shape[-1] if cross_attn is not None else prefix_to_image.shape[-1]
    r_tt = np.eye(S)  # shares of each decoder input position
    r_ti = np.zeros((S, N))  # shares of each image cell
    for layer in range(n_layers):
        a = _residual(self_attn[layer])
        r_tt, r_ti = a @ r_tt, a @ r_ti
        if cross_attn is not None:
            r_tt, r_ti = 0.5 * r_tt, 0.5 * r_ti + 0.5 * cross_attn[layer]
    if prefix_to_image is not None and n_prefix:
        r_ti = r_ti + r_tt[:, :n_prefix] @ prefix_to_image
    return r_ti


def relevancy_mapper(resampler: np.ndarray, blocks: np.ndarray | None) -> np.ndarray:
    """Chefer et al.'s rules inside the mapper, [P, N]: the resampler is a cross-attention from the
    queries (R_pi = Ā_res, as R_pp starts as I), each block a self-attention (R += Ā·R)."""
    r_pi = np.asarray(resampler, dtype=np.float64)
    r_pp = np.eye(r_pi.shape[0])
    for a in blocks if blocks is not None else []:
        r_pp, r_pi = r_pp + a @ r_pp, r_pi + a @ r_pi
    return r_pi


# propagate() takes the same four arguments as rollout() on purpose (both walk one capture); the
# duplicate finder sees the two signatures as a shape match.
def propagate(
    self_attn: np.ndarray,
    cross_attn: np.ndarray | None,
    mapper: np.ndarray | None,
    n_prefix: int,
) -> np.ndarray:
    """Chefer et al. 2021's relevance of every decoder position to every patch, [S, N].

    self_attn [L, S, S] and cross_attn [L, S, N] are gradient-weighted head means; mapper [P, N]
    the prefix tokens' relevance to the patches (`relevancy_mapper`), rows renormalised here."""
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


# ------------------------------------------------------------------------------------------------
# Inside the vision transformer: its own self-attention between patches

ENCODER_METHODS = ("attention", "rollout")


def encoder_rollout(encoder: np.ndarray, upto_layer: int | None = None) -> np.ndarray:
    """Attention rollout through a ViT's blocks (Abnar & Zuidema 2020): Ã = ½·mean_heads(A) + ½I,
    multiplied from the first block to `upto_layer` (default: the last). encoder is
    [layers, heads, X + N, X + N] (X class/register tokens first); returns [X + N, X + N] whose row q
    is the share of token q's output that flowed from each input token."""
    layers = encoder.shape[0] if upto_layer is None else upto_layer + 1
    r = np.eye(encoder.shape[-1])
    for layer in range(layers):
        r = _residual(encoder[layer].mean(0)) @ r
    return r


def encoder_map(encoder: np.ndarray, n_cells: int, query: int, method: str = "attention",
                layer: int | None = None, head: int | None = None) -> tuple[np.ndarray, float]:
    """Where token `query` (an index among the X + N encoder tokens) looks, over the N patch cells,
    and the share left on the X class/register tokens, reported apart (never renormalised away).

    attention: the self-attention row of `query`, one layer/head or the mean of those not chosen.
    rollout:   the rollout row of `query` through the blocks up to `layer` (all heads averaged)."""
    if method not in ENCODER_METHODS:
        raise ValueError(f"method must be one of {', '.join(ENCODER_METHODS)}; got {method!r}")
    n_layers, n_heads, n_tokens, _ = encoder.shape
    check_layer_head(layer, head, n_layers, n_heads)
    extra = n_tokens - n_cells
    if method == "rollout":
        if head is not None:
            raise ValueError("encoder rollout averages the heads of every layer; choose head=None")
        row = encoder_rollout(encoder, None if layer is None else int(layer) % n_layers)[query]
    else:
        a = encoder if layer is None else encoder[int(layer) : int(layer) + 1 if layer != -1 else None]
        a = a if head is None else a[:, int(head) : int(head) + 1 if head != -1 else None]
        row = a[:, :, query].mean(axis=(0, 1))
    return np.asarray(row[extra:], dtype=np.float64), float(row[:extra].sum())
