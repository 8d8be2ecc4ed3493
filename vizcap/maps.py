"""From captured attention to one heatmap per generated token.

Every method is declared once, as a `MapMethod` in the registry `METHODS` (its unit, colour range,
whether it takes a layer and head, the model modes that have it, the app's help, how it is computed);
`register()` adds one, and the API, the CLI, the app, links, exports and trust evaluation read it.

Methods (all return [tokens, N] over the N = gh·gw image cells):

cross_attention  the decoder's cross-attention from the position that produced the token to the
                 patches; mean over heads and layers, or one layer / head. Raw unit: a share of
                 that position's attention (each layer's and head's row sums to 1 over the cells).
prefix           the decoder's self-attention from that position to each prefix token (renormalised
                 over the prefix tokens, so <bos> and earlier words are left out), composed with each
                 prefix token's own map over the patches: Σ_p a(token→p) · m(p→patches), where m is
                 the resampler's attention carried through every mapper block (see `mapper_maps`).
                 Raw unit: a share (the map sums to 1). When the prefix tokens are the image's own
                 tokens (GIT: the CLIP ViT's class token and patches, projected), each prefix token is
                 one cell: the map is that position's self-attention to the patch tokens as it is, not
                 renormalised (the class token's share is Explanation.extra_share; the rest went to
                 the words), like a cross-attention row.
rollout          attention rollout (Abnar & Zuidema 2020): every attention layer becomes
                 Ã = ½A + ½I (half of each position's content stays on the residual stream), rows
                 renormalised, and the layers are multiplied. The value at a cell is the share of the
                 token's representation that flowed from that cell: at most 1 in total, the rest came
                 from the words and the prefix queries. Deviations from the paper, which covers only
                 self-attention: a cross-attention sublayer is treated the same way (half the stream
                 stays, half is replaced by what it read from the cells); a prefix token is half its
                 learned query (not image) and half the resampler's read of the cells, then mixed
                 by the mapper blocks as any self-attention layer; MLPs are ignored, as in the paper.
                 An image-token prefix (GIT) is all image: prefix token p is encoder token p.
                 With a ViT encoder the chain goes on through the ViT's blocks (`encoder_rollout`):
                 memory cell n counts as ViT output token n (its added position embedding and the
                 class token's input, which are not image, are left out).
relevancy        Chefer, Gur & Wolf 2021: every attention map replaced by Ā = E_heads[(∂y/∂A ⊙ A)⁺]
                 for the generated token's logit y (eq. 5) and propagated with the paper's rules:
                 self-attention R_tt += Ā·R_tt, R_ti += Ā·R_ti (eqs. 6-7); cross-attention
                 R_ti += R̄_ttᵀ·Ā·R̄_ii (eq. 11, transposed as in the paper and its official code;
                 R̄ = (R − I) with rows normalised, + I: eqs. 8-9), where R_ii is the vision
                 transformer's own self-relevance (R_ii = I + Σ Ā·R_ii over its blocks, the ViT run
                 with gradients for this method only). The mapper (vizcap's prefix tokens, not in the
                 paper) follows the same rules: its resampler is a cross-attention from the queries,
                 its blocks self-attention; a prefix token's row starts as its normalised map (an
                 image-token prefix, GIT: prefix token p is relevant to encoder token p alone, so the
                 decoder's rule is the paper's for one stream of image and text tokens).
                 With a convolutional encoder (no attention to follow) it equals decoder_relevancy.
                 Raw unit: relevance, a score with no fixed scale (compare within one map, not across
                 words or images). Computed on demand.
decoder_relevancy the same rules with the gradients stopped at the encoder's output (R̄_ii = I): what
                 the decoder read from each memory cell, leaving out how the encoder mixed the patches.
occlusion        model-agnostic: p_j(image) − p_j(image with cell n greyed), teacher-forced on the
                 caption, for every word j and cell n (one pass per batch of greyed images gives every
                 word). Raw unit: a drop in probability, −1…1 (negative: greying the cell helped).

Normalisation: "none" (the raw unit above; a weak map stays weak), "max" (each token's map divided
by its own maximum: the hottest cell becomes 1), "sum" (each token's map sums to 1), "global" (every
map divided by the one maximum over all tokens, so words stay comparable). A signed map (occlusion,
where greying a cell can raise the word's probability) is divided by its largest magnitude / the sum
of its magnitudes instead, so that a negative cell never explodes; for every other method this is
the same thing. Colour scales start at 0: a negative cell is drawn as 0.

Attention sinks: transformers park spare attention on a few positions that carry no meaning (the
first token; background patches in ViTs). Maps here are over image cells only, so the <bos> sink
never appears in them; a ViT's background-patch sinks can. With `discount_sinks=True`, each cell's
median over the caption's tokens is subtracted and the rest clipped at zero: what every word looks
at is removed, and what is specific to *this* word stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

NORMALIZATIONS = ("none", "max", "sum", "global")
MODES = ("cross", "prefix", "both")  # how a model's decoder sees the image (vizcap.model.CaptionerConfig.mode)
COLOUR_RANGES = ("share", "data")
SINKS_LABEL = ", minus each cell's median over the caption"  # added to a colour bar's unit when sinks are discounted


@dataclass(frozen=True)
class MapMethod:
    """Everything vizcap knows about one map method, declared once: the API (`Explanation.maps`),
    the CLI (`--maps`), the explorer, links, exports and the trust evaluation all read it.

    compute(explanation, layer, head) -> the raw maps [T, N] over the image cells, for a caption of
    T >= 1 tokens; layer and head are None unless `per_layer_head`. `explanation` is a
    vizcap.explain.Explanation: compute reads its captured arrays (and, for relevancy, asks it for
    the backward pass)."""

    name: str  # a word of a-z, 0-9, _: it goes in --maps lists and in links
    compute: Callable[..., np.ndarray]
    unit: str  # what a raw (normalize="none") value means: colour bars and exports
    colour_range: str = "data"  # raw values on a colour scale of "share": 0..1 (a weak map stays weak); "data": 0..largest
    per_layer_head: bool = False  # one decoder layer / head can be chosen (else it combines them all)
    modes: tuple[str, ...] = MODES  # the model modes that have it
    help: str = ""  # one line for the app's method picker
    on_demand: bool = False  # computed on first use at a real cost (relevancy: one backward pass)
    missing: str = ""  # what a model of another mode lacks, for the error message ("no cross-attention")

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", self.name) or self.name == "all":
            raise ValueError(f"a map method's name is a word of a-z, 0-9 and _ (not 'all'); got {self.name!r}")
        if not callable(self.compute):
            raise ValueError(f"map method {self.name!r}: compute must be callable")
        if self.colour_range not in COLOUR_RANGES:
            raise ValueError(f"map method {self.name!r}: colour_range must be one of {', '.join(COLOUR_RANGES)}")
        if not self.modes or set(self.modes) - set(MODES):
            raise ValueError(f"map method {self.name!r}: modes must be some of {', '.join(MODES)}; got {self.modes!r}")

    @property
    def label(self) -> str:
        """The name for people: "cross attention"."""
        return self.name.replace("_", " ")


# The registry, in the order the app and `--maps all` list the methods (filled at the end of this module).
METHODS: dict[str, MapMethod] = {}


def register(method: MapMethod) -> MapMethod:
    """Add `method` to the registry, or replace the one of the same name. From then on
    `Explanation.maps(method.name)`, `vizcap caption --maps NAME`, the explorer, links, exports and
    the trust evaluation offer it."""
    if not isinstance(method, MapMethod):
        raise TypeError(f"register() takes a MapMethod; got {type(method).__name__}")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method added by register() (tests' throwaway methods)."""
    METHODS.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered method's name, in registry order."""
    return tuple(METHODS)


def available(mode: str) -> tuple[str, ...]:
    """The methods a model of `mode` ("cross" | "prefix" | "both") has, in registry order."""
    return tuple(name for name, m in METHODS.items() if mode in m.modes)


def lookup(name: str) -> MapMethod:
    """The registered method `name`; ValueError (one line) naming the choices if there is none."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {name!r}"[:300])
    return METHODS[name]


def check_available(name: str, mode: str) -> MapMethod:
    """The method `name` if a model of `mode` has it; ValueError (one line) otherwise."""
    method = lookup(name)
    if mode not in method.modes:
        lacks = method.missing or f"no {name!r} maps"
        raise ValueError(f"this model has {lacks} (mode {mode!r}): use one of {', '.join(available(mode))}")
    return method


def layer_head(name: str, layer: int | None, head: int | None) -> tuple[int | None, int | None]:
    """The layer and head a map of method `name` is drawn from: the chosen ones for a method that
    takes them, else (None, None): the method combines every layer and head."""
    return (layer, head) if lookup(name).per_layer_head else (None, None)


def check_layer_head_allowed(name: str, layer, head) -> None:
    """ValueError (one line) if a layer or head is chosen for a method that combines them all."""
    if not lookup(name).per_layer_head and (layer is not None or head is not None):
        takers = " and ".join(n for n, m in METHODS.items() if m.per_layer_head)
        raise ValueError(f"method {name!r} combines all layers and heads; layer/head apply to {takers}")


def check_normalize(how) -> None:
    """ValueError (one line) unless `how` is one of NORMALIZATIONS."""
    if not isinstance(how, str) or how not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {how!r}"[:300])


def raw_unit(method: str) -> str:
    """What a raw value of `method` means; "weight" for a name outside the registry (the ViT page's maps)."""
    return METHODS[method].unit if method in METHODS else "weight"


def unit(method: str, normalize: str) -> str:
    """The colour-bar label of a map: the raw unit, or what the normalisation made of it."""
    if normalize == "max":
        return "÷ this word's maximum (hottest cell = 1)"
    if normalize == "sum":
        return "share of this word's map (sums to 1)"
    if normalize == "global":
        return "÷ the maximum over all words"
    return METHODS[method].unit


def colour_range(maps: np.ndarray, method: str, normalize: str = "none", sinks: bool = False) -> tuple[float, str]:
    """(top of the colour scale, colour-bar label) for maps [..] of `method` under `normalize`.

    none: the raw unit's own range: 0..1 for methods whose raw values are shares (colour_range
          "share": a weak map stays weak); the others (relevancy) have no natural top, so theirs is
          the largest value of these maps. max, global: 0..1 (each map or the caption divided by its peak).
    sum:  0..the largest share any cell holds, so that words stay comparable.
    A name outside the registry (the ViT page's encoder maps) is drawn as "weight" on the data's range."""
    maps = np.asarray(maps, dtype=float)
    peak = float(np.nanmax(maps)) if maps.size else 0.0
    check_normalize(normalize)
    known = METHODS.get(method)
    label = unit(method, normalize) if known else "weight"
    if normalize == "none":
        top = max(1.0, peak) if known and known.colour_range == "share" else peak
    elif normalize == "sum":
        top = peak
    else:
        top = 1.0
    if sinks:
        label += SINKS_LABEL
    return (top if top > 0 else 1.0), label


def normalize(maps: np.ndarray, how: str) -> np.ndarray:
    """maps [T, ...] -> normalised copy."""
    check_normalize(how)
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1) if len(maps) else maps.reshape(0, 1)
    size = np.abs(flat)  # a signed map (occlusion: greying a cell may help) is scaled by its magnitudes
    if how == "max":
        flat = flat / np.maximum(size.max(axis=1, keepdims=True), 1e-12)
    elif how == "sum":
        flat = flat / np.maximum(size.sum(axis=1, keepdims=True), 1e-12)
    elif how == "global":
        flat = flat / max(float(size.max()) if size.size else 0.0, 1e-12)
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
    """Chefer et al. 2021's relevance of every decoder position to every key of the cross-attention
    (or patch the mapper reads), [S, N], before the encoder's own self-relevance R̄_ii.

    self_attn [L, S, S] and cross_attn [L, S, N] are gradient-weighted head means Ā; mapper [P, N]
    the prefix tokens' relevance to the patches (`relevancy_mapper`), rows renormalised here.
    Per layer: self-attention R_tt += Ā·R_tt, R_ti += Ā·R_ti (eqs. 6-7); cross-attention
    R_ti += R̄_ttᵀ·Ā (eq. 11; its R_tt update, eq. 10, is Ā·R_it = 0: the image never reads the text)."""
    n_layers, S, _ = self_attn.shape
    N = cross_attn.shape[-1] if cross_attn is not None else mapper.shape[-1]
    r_tt = np.eye(S)  # each position starts relevant to itself only
    r_ti = np.zeros((S, N))
    if mapper is not None and n_prefix:
        rows = mapper / np.maximum(mapper.sum(-1, keepdims=True), 1e-12)
        r_ti[:n_prefix] = rows  # prefix tokens are made of the patches their queries read
    for layer in range(n_layers):
        a = self_attn[layer]
        r_tt = r_tt + a @ r_tt
        r_ti = r_ti + a @ r_ti
        if cross_attn is not None:
            # eq. 11 with the normalised self-relevance of eqs. 8-9 (so deep layers don't dominate),
            # transposed as in the paper and its official code: R_ti += R̄_ttᵀ · Ā (the image side's
            # R̄_ii is applied by the caller: it multiplies every term from the right)
            r_ti = r_ti + normalised_self_relevance(r_tt).T @ cross_attn[layer]
    return r_ti


def normalised_self_relevance(r: np.ndarray) -> np.ndarray:
    """R̄ = (R − I) with each row divided by its sum, + I (Chefer et al. 2021, eqs. 8-9); a row of
    R − I that is all zero stays zero."""
    eye = np.eye(r.shape[-1])
    extra = r - eye
    return extra / np.maximum(extra.sum(-1, keepdims=True), 1e-12) + eye


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


# ------------------------------------------------------------------------------------------------
# The built-in methods: how each reads an explanation's captured arrays, and its declaration


def _cross_attention(exp, layer: int | None, head: int | None) -> np.ndarray:
    return select(exp.cross, layer, head)


def _prefix(exp, layer: int | None, head: int | None) -> np.ndarray:
    if exp.prefix_is_image:  # each prefix token is a cell (after the class token(s)): the attention as it is
        return select(exp.self_prefix[..., exp.n_extra :], layer, head)
    to_prefix = select(exp.self_prefix, layer, head)  # [T, P]
    to_prefix = to_prefix / np.maximum(to_prefix.sum(-1, keepdims=True), 1e-12)  # <bos>/words excluded
    return to_prefix @ exp.prefix_maps


def _rollout(exp, layer: None, head: None) -> np.ndarray:
    T, N, P = len(exp.tokens), exp.grid[0] * exp.grid[1], exp.n_prefix
    blocks = None if exp.mapper_blocks is None else exp.mapper_blocks.mean(1)
    if exp.prefix_is_image:  # prefix token p is encoder token p, all image
        prefix_to_image = np.eye(P)
    else:
        prefix_to_image = None if exp.mapper is None else mapper_maps(exp.mapper.mean(0), blocks, 0.5)
    relevance = rollout(
        exp.self_full.mean(1),
        None if exp.cross_full is None else exp.cross_full.mean(1),
        prefix_to_image,
        P,
    )[P : P + T]  # [T, X + N] over the encoder's tokens (the cross-attention keys, or GIT's prefix)
    if exp.encoder is not None:  # the full chain: key k is ViT output token k, rolled out to the input patches
        extra = exp.encoder.shape[-1] - N  # the encoder's class/register tokens
        dropped = extra - exp.n_extra  # those not among the keys (vizcap drops them from its memory)
        return (relevance @ encoder_rollout(exp.encoder)[dropped:])[:, extra:]
    return relevance[:, exp.n_extra :]


def _relevancy(exp, layer: None, head: None) -> np.ndarray:
    return exp.relevancy_maps()  # needs the model (a backward pass); the explanation computes and keeps it


def _decoder_relevancy(exp, layer: None, head: None) -> np.ndarray:
    return exp.relevancy_maps(through_encoder=False)


def _occlusion(exp, layer: None, head: None) -> np.ndarray:
    return exp.occlusion_maps()  # needs the model (one pass per batch of greyed images); kept once computed


for _method in (
    MapMethod("cross_attention", _cross_attention, "attention weight (share of the word's attention, 0–1)", "share",
              per_layer_head=True, modes=("cross", "both"), missing="no cross-attention",
              help="the decoder's cross-attention from the word's position to the image cells"),
    MapMethod("prefix", _prefix, "attention weight via the prefix tokens (share, 0–1)", "share",
              per_layer_head=True, modes=("prefix", "both"), missing="no prefix tokens",
              help="attention to the prefix tokens, each carrying its own map of the image (GIT: the prefix "
                   "tokens are the image's own patch tokens, so the map is the word's attention to them)"),
    MapMethod("rollout", _rollout, "share of attention flow from the cell (0–1)", "share",
              help="attention flow through all layers at once (heads averaged)"),
    MapMethod("relevancy", _relevancy, "relevance (no fixed scale)", "data", on_demand=True,
              help="gradient-weighted attention flow for this word through the decoder and the vision transformer "
                   "to the input patches (Chefer et al. 2021; one backward pass per group of words, computed on "
                   "request). With a convolutional encoder, which has no attention to follow, it equals decoder "
                   "relevancy"),
    MapMethod("decoder_relevancy", _decoder_relevancy, "relevance (no fixed scale)", "data",
              help="relevancy with the gradients stopped at the encoder's output: what the decoder (and mapper) "
                   "read from each memory cell. It leaves out how the encoder mixed the patches, so cell n "
                   "stands for the encoder's output token n, not for the input patch n (one cheap backward pass)"),
    MapMethod("occlusion", _occlusion, "drop in the word's probability when the cell is greyed (−1…1)", "data",
              on_demand=True,
              help="grey one cell at a time and measure how much the word's probability falls (teacher-forced on "
                   "the caption): model-agnostic, nothing trains it; one pass per batch of greyed images, computed "
                   "on request"),
):
    register(_method)
del _method
