"""`explain`: caption an image with any decoding strategy and keep every attention map behind
every generated word, captured from this one call (see hooks.py).

For each generated token j the maps are taken at the decoder position that *produced* it (the
position whose logits chose token j), which is where the model "looked" to write that word.

Any model that implements the small interface of vizcap/backend.py is explained the same way: vizcap's
own checkpoints and Hugging Face ViT+GPT-2 / BLIP / GIT captioners (vizcap/families/) share this code and the
one decoding loop (vizcap.decoding.search).
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import maps as mapping
from .decoding import DecodingParams, SearchResult, search
from .files import atomic_write, shipped_title
from .hooks import capture
from .images import open_image

TOP_K_ALTERNATIVES = 10


@dataclass
class Explanation:
    image: Image.Image  # the RGB input, before resizing
    tokens: list[str]
    token_ids: list[int]
    probs: np.ndarray  # [T] model probability of each chosen token
    top_ids: np.ndarray  # [T, 10] the ten most likely tokens at each step
    top_probs: np.ndarray  # [T, 10]
    top_tokens: list[list[str]]
    grid: tuple[int, int]
    n_prefix: int
    mode: str
    cross: np.ndarray | None  # [T, L, H, N] cross-attention of the producing position to the patches
    self_prefix: np.ndarray | None  # [T, L, H, P] self-attention of the producing position to the prefix
    self_full: np.ndarray  # [L, H, S, S] full causal self-attention of the final sequence, S = P + T
    cross_full: np.ndarray | None  # [L, H, S, X + N]: the X class tokens' keys first (X = n_extra)
    mapper: np.ndarray | None  # [heads, P, N] the resampler: each prefix query's attention over the patches
    mapper_blocks: np.ndarray | None  # [layers, heads, P, P] the mapper blocks' self-attention (None if none)
    encoder: np.ndarray | None  # [layers, heads, E + N, E + N] (ViT encoders only; E class/register tokens first)
    params: DecodingParams
    seed: int | None
    score: float  # the chosen sequence's score (beam: with length penalty)
    logprob: float  # its summed log-probability (its <eos> included when it ended)
    ended: bool  # it ended with <eos> (False: cut by max_tokens)
    beam_tree: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)  # ended and truncated sequences, best first
    hook_names: list[str] = field(default_factory=list)
    _captioner: object = field(default=None, repr=False)
    _relevancy: dict | None = field(default=None, repr=False)  # on-demand maps computed so far, by method (None: none)
    n_extra: int = 0  # encoder tokens that are not patches (class / distillation), first among the keys
    cross_extra: np.ndarray | None = None  # [T, L, H, X] cross-attention to those tokens (not in any map)
    text: str | None = None  # the tokenizer's own decoding of token_ids (sub-word models)
    crop: str | None = None  # the processor centre-crops: `image` is the cropped region (a sentence)
    prefix_is_image: bool = False  # the prefix tokens are the encoder's own tokens, class token(s) first (GIT)
    _pixels: torch.Tensor | None = field(default=None, repr=False)  # the model input, reused by relevancy
    precision: str = "float32"  # the model's: "int8" in fast mode (vizcap/fast.py)

    @property
    def caption(self) -> str:
        return self.text if self.text is not None else " ".join(self.tokens)

    @property
    def extra_attention(self) -> np.ndarray | None:
        """[T, L, H, X]: each word's attention to the encoder's class token(s) (X = n_extra), which no
        map shows: its cross-attention to them, or, when the prefix is the image's own tokens (GIT),
        its self-attention to them. None when the decoder reads the image through vizcap's mapper only."""
        if self.cross is not None:
            return self.cross_extra
        if self.prefix_is_image and self.self_prefix is not None:
            return self.self_prefix[..., : self.n_extra]
        return None

    @property
    def fast(self) -> bool:
        """The maps come from the fast mode (vizcap/fast.py), not the float32 model."""
        return self.precision != "float32"

    def extra_share(self, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """[T] the share of each word's attention (cross-attention, or self-attention to an image-token
        prefix) that went to the encoder's class token(s) rather than to a patch (the maps show the
        patches only; this is what they leave out). Zeros for a model without such tokens."""
        T = len(self.tokens)
        extra = self.extra_attention
        if extra is None:
            raise ValueError("this model has no cross-attention (mode 'prefix')")
        mapping.check_layer_head(layer, head, self.self_full.shape[0], self.self_full.shape[1])
        if not self.n_extra or not T:
            return np.zeros(T)
        return mapping.select(extra, layer, head).sum(-1)

    def __len__(self) -> int:
        return len(self.tokens)

    # -- maps ----------------------------------------------------------------------------------

    def maps(
        self,
        method: str = "cross_attention",
        layer: int | None = None,
        head: int | None = None,
        normalize: str = "none",
        discount_sinks: bool = False,
    ) -> np.ndarray:
        """One heatmap per token, [T, gh, gw], by any method of the registry vizcap.maps.METHODS."""
        mapping.check_normalize(normalize)  # before the method runs: relevancy costs a backward pass
        raw = self._raw_maps(method, layer, head)
        if discount_sinks:
            raw = mapping.discount_sinks(raw)
        return mapping.normalize(raw, normalize).reshape(len(self.tokens), *self.grid)

    def _raw_maps(self, method: str, layer: int | None, head: int | None) -> np.ndarray:
        # every argument is checked before the empty-caption shortcut, so a bad request fails the same
        # way whatever the caption (an empty caption has no cross/self_prefix arrays to look at)
        declared = mapping.check_available(method, self.mode)
        mapping.check_layer_head_allowed(method, layer, head)
        mapping.check_layer_head(layer, head, self.self_full.shape[0], self.self_full.shape[1])
        if len(self.tokens) == 0:
            return np.zeros((0, self.grid[0] * self.grid[1]))
        return declared.compute(self, layer, head)

    def relevancy_maps(self, through_encoder: bool = True, progress=None) -> np.ndarray:
        """Chefer et al.'s relevancy of every token, [T, N] (see `relevancy`): through the encoder's
        self-attention ("relevancy") or with the gradients stopped at its output
        ("decoder_relevancy"); computed on first use with the model that wrote the caption, then kept.
        progress(words_done, words) is called as the computation goes (see `relevancy`)."""
        key = "relevancy" if through_encoder else "decoder_relevancy"
        return self._kept(key, lambda cap: relevancy(cap, self, through_encoder=through_encoder, progress=progress))

    def is_kept(self, method: str) -> bool:
        """Whether the maps of an on-demand method (relevancy, decoder_relevancy, occlusion) are already
        computed for this caption, so that reading them costs nothing."""
        return method in (self._relevancy or {})

    def occlusion_maps(self) -> np.ndarray:
        """[T, N]: the drop of each word's teacher-forced probability when each cell is greyed (see
        `occlusion`); computed on first use (one pass per OCCLUSION_BATCH greyed images), then kept."""
        return self._kept("occlusion", lambda cap: occlusion(cap, self))

    def _kept(self, key, compute) -> np.ndarray:
        kept = self._relevancy or {}
        if key not in kept:
            if self._captioner is None:
                raise ValueError(f"{key[0] if isinstance(key, tuple) else key} needs the model: explain again with a loaded Captioner")
            # a new dict, never one shared with a dataclasses.replace() copy of this explanation
            self._relevancy = kept = {**kept, key: compute(self._captioner)}
        return kept[key]

    CONTRASTIVE_METHODS = ("relevancy", "decoder_relevancy", "occlusion")

    def contrastive(self, word: int, alternative, method: str = "relevancy") -> np.ndarray:
        """Why token `word` (an index into the caption) and not `alternative` (a token id, or its
        text as the tokenizer spells it), [gh, gw]. relevancy / decoder_relevancy: Chefer et al.'s
        relevancy of the logit difference (chosen − alternative) at that word's step; occlusion: the
        drop of the probability difference when each cell is greyed. An alternative equal to the
        chosen token gives a map of zeros."""
        if method not in self.CONTRASTIVE_METHODS:
            raise ValueError(f"contrastive maps are made by {', '.join(self.CONTRASTIVE_METHODS)}; got {method!r}"[:300])
        mapping.check_available(method, self.mode)
        T = len(self.tokens)
        if isinstance(word, (bool, np.bool_)) or not isinstance(word, (int, np.integer)) or not 0 <= word < T:
            raise ValueError(f"word must be a token index in 0..{T - 1}; got {word!r}"[:200] if T else
                             "the caption is empty: there is no word to explain")
        j, alt = int(word), self.token_id(alternative, int(word))

        def compute(cap):
            if method == "occlusion":
                return occlusion(cap, self, [j], [alt])[0]
            return relevancy(cap, self, through_encoder=method == "relevancy", words=[j], alternatives=[alt])[0]

        return self._kept((method, j, alt), compute).reshape(self.grid)

    def token_id(self, token, word: int | None = None) -> int:
        """The id of `token`: an id (checked against the vocabulary) or a token's text: first among the
        alternatives shown at `word` (exp.top_tokens[word]), else as the tokenizer writes it in one
        token. ValueError (one line) for a text that is not one token."""
        vocab = self._captioner.vocab_size if self._captioner is not None else None
        if isinstance(token, (int, np.integer)) and not isinstance(token, (bool, np.bool_)):
            if token < 0 or (vocab is not None and token >= vocab):
                raise ValueError(f"token id {token} is not in the vocabulary (0..{(vocab or 1) - 1})")
            return int(token)
        if not isinstance(token, str) or not token.strip():
            raise ValueError(f"alternative must be a token id or a token's text; got {token!r}"[:200])
        if word is not None:
            for i, text in zip(self.top_ids[word].tolist(), self.top_tokens[word]):
                if text == token or text == token.strip():
                    return int(i)
        ids = _encode_one(self._captioner, token)
        if ids is None:
            raise ValueError(f"{token!r} is not one token of this model's vocabulary"[:200])
        return ids

    # -- inside the vision transformer ---------------------------------------------------------------

    def encoder_maps(self, query="cls", layer: int | None = None, head: int | None = None,
                     method: str = "attention") -> np.ndarray:
        """Where one token of the ViT encoder looks among the patches, [gh, gw]: `query` is a grid
        cell (row, col) or "cls" (the class token); method "attention" (one layer/head, or the mean
        of those not chosen; not renormalised) or "rollout" (through the blocks up to `layer`).
        The class token's share is left out of the map: see `encoder_extra_share`."""
        return self._encoder(query, layer, head, method)[0].reshape(self.grid)

    def encoder_extra_share(self, query="cls", layer: int | None = None, head: int | None = None,
                            method: str = "attention") -> float:
        """The part of that row on the class/register tokens (what encoder_maps leaves out)."""
        return self._encoder(query, layer, head, method)[1]

    def _encoder(self, query, layer, head, method) -> tuple[np.ndarray, float]:
        if self.encoder is None:
            raise ValueError("this model's encoder is not a vision transformer: it has no self-attention to show")
        gh, gw = self.grid
        extra = self.encoder.shape[-1] - gh * gw
        if isinstance(query, str) and query == "cls":
            if extra < 1:
                raise ValueError("this encoder has no class token; choose a grid cell (row, col)")
            index = 0
        elif (isinstance(query, (tuple, list)) and len(query) == 2
              and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in query)
              and 0 <= query[0] < gh and 0 <= query[1] < gw):
            index = extra + int(query[0]) * gw + int(query[1])
        else:
            raise ValueError(f"query must be 'cls' or a grid cell (row, col) with row < {gh} and col < {gw}; got {query!r}"[:200])
        return mapping.encoder_map(self.encoder, gh * gw, index, method, layer, head)

    @property
    def prefix_maps(self) -> np.ndarray | None:
        """[P, N] each prefix token's map over the patches at the mapper's output: the resampler's
        attention (head mean) carried through every mapper block (vizcap.maps.mapper_maps)."""
        if self.mapper is None:
            return None
        return mapping.mapper_maps(self.mapper.mean(0), self._block_means())

    def _block_means(self) -> np.ndarray | None:
        return None if self.mapper_blocks is None else self.mapper_blocks.mean(1)

    # -- export --------------------------------------------------------------------------------

    def to_dict(self, methods: tuple[str, ...] = (), normalize: str = "none", layer: int | None = None,
                head: int | None = None, discount_sinks: bool = False, model: str | None = None,
                image: str | None = None) -> dict:
        """Everything needed to read the export later: the picture it explains (`image`: a file name or the
        app's label for it), the caption, its probabilities and alternatives, the decoding settings, the
        model, what vizcap says plainly about them (`notices`), and the maps with how they were made
        (`view`: method list, layer and head — they apply to the methods that take them,
        MapMethod.per_layer_head —, normalisation, sinks, units)."""
        from .notices import attention_notice, caption_notices, trained_maps

        per_head = {m: mapping.layer_head(m, layer, head) for m in methods}
        trained = trained_maps(self._captioner) if self._captioner is not None else None
        said = [attention_notice(self._captioner)] if self._captioner is not None else []
        return {
            "image": image,
            "size": list(self.image.size),
            "notices": caption_notices(self._captioner, self) + [s for s in said if s] if self._captioner is not None else [],
            "attention_trained": None if trained is None else bool(trained),
            "trained_maps": None if trained is None else list(trained),
            "caption": self.caption,
            "tokens": self.tokens,
            "token_ids": self.token_ids,
            "token_probs": [round(float(p), 6) for p in self.probs],
            "alternatives": [
                [{"token": t, "prob": round(float(p), 6)} for t, p in zip(toks, probs)]
                for toks, probs in zip(self.top_tokens, self.top_probs)
            ],
            "model": model if model is not None else _model_label(self._captioner),
            "precision": self.precision,
            "grid": list(self.grid),
            "class_token_share": np.round(self.extra_share(), 6).tolist() if self.extra_attention is not None else None,
            "cropped": self.crop,
            "strategy": self.params.strategy,
            "params": {k: getattr(self.params, k) for k in self.params.__dataclass_fields__},
            "seed": self.seed,
            "score": round(self.score, 6),
            "logprob": round(self.logprob, 6),
            "ended": self.ended,
            "beam_tree": self.beam_tree,
            "candidates": self.candidates,
            "view": {"methods": list(methods), "layer": layer, "head": head, "normalize": normalize,
                     "discount_sinks": discount_sinks, "units": {m: mapping.unit(m, normalize) for m in methods}},
            "maps": {m: np.round(self.maps(m, *per_head[m], normalize, discount_sinks), 6).tolist() for m in methods},
        }

    def to_json(self, methods: tuple[str, ...] | None = None, normalize: str = "none", **view) -> str:
        """to_dict as JSON; methods default to this model's first (cross_attention, or prefix for a prefix model)."""
        methods = mapping.available(self.mode)[:1] if methods is None else methods
        return json.dumps(self.to_dict(methods, normalize, **view))

    def to_html(self, path=None, methods: tuple[str, ...] | None = None, model: str | None = None,
                image: str | None = None, **view) -> str:
        """One self-contained interactive page (vizcap/html_page.py): the picture, the caption word by word,
        every map of `methods` (default: every method this model has; relevancy and occlusion are computed
        now if they were not yet) with its layer/head choices, normalisations and sink setting, each word's
        probability and alternatives, the beam tree, the model, the decoding settings and vizcap's notices.
        Nothing in it is fetched from the network. `view` sets where it starts: method, layer, head,
        normalize (default "max"), discount_sinks, word, cmap, opacity. Written to `path` when given."""
        from .html_page import page

        text = page(self, methods, model if model is not None else _model_label(self._captioner), image, view)
        if path is not None:
            atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
        return text

    def _repr_html_(self) -> str:
        """The same interactive view inline in Jupyter or Colab (no widget server needed): the page in an
        <iframe srcdoc>, so that several views in one notebook keep apart (vizcap.html_page.notebook_view)."""
        from .html_page import notebook_view

        return notebook_view(self, model=_model_label(self._captioner))


# ------------------------------------------------------------------------------------------------


def _encode_one(captioner, text: str) -> int | None:
    """The one token id the captioner's tokenizer gives `text` (as written, then with a leading
    space, as BPE spells a word inside a sentence), or None."""
    tok = getattr(captioner, "tokenizer", None)
    for form in dict.fromkeys((text, " " + text.strip(), text.strip())):
        if hasattr(tok, "encode"):  # vizcap's CaptionTokenizer
            ids = tok.encode(form)
        elif hasattr(tok, "tok"):  # vizcap.hub.HFTokenizer around a transformers tokenizer
            ids = tok.tok.encode(form, add_special_tokens=False)
        else:
            return None
        if len(ids) == 1 and tok.token_text(ids[0]).strip() == text.strip():
            return int(ids[0])
    return None


def _model_label(captioner) -> str | None:
    """The model named for an export: the shipped one by what it is, never by a path on this machine."""
    name = getattr(captioner, "name", None)
    title = shipped_title(name) if name is not None else None
    if title is not None:
        return f"the shipped model “{title}” (vizcap/checkpoints/{Path(name).name})"
    return None if name is None else str(name)


def explain(captioner, image, params: DecodingParams | None = None, forced: list[int] | None = None, **kwargs) -> Explanation:
    """Caption `image` with `params` (or keyword arguments of DecodingParams) and capture every map.
    `captioner` is any backend (vizcap/backend.py). With `forced` token ids, the model reads that
    caption instead of choosing its own."""
    params = params or DecodingParams(**kwargs)
    if forced is not None:
        if not forced:
            raise ValueError("forced caption is empty")
        params = DecodingParams(strategy="greedy", max_tokens=len(forced))
    limit = getattr(captioner, "token_limit", params.max_tokens)
    if params.max_tokens > limit:  # the decoder's position table
        params = dataclasses.replace(params, max_tokens=limit)
    img = open_image(image)
    pixels = captioner.pixels(img)
    with torch.inference_mode(), capture() as cache:
        step = captioner.session(pixels)  # encodes once: encoder (and mapper) maps go to the capture
        front = cache.pop_all()
        result = search(step, params, captioner.eos_id, captioner.vocab_size, tuple(captioner.banned), forced)
    view = captioner.view(img) if captioner.crop else img
    exp = _assemble(captioner, view, params, result, front)
    exp._pixels = pixels
    return exp


def _assemble(captioner, img, params: DecodingParams, result: SearchResult, front: dict) -> Explanation:
    tok = captioner.tokenizer
    P = captioner.n_prefix
    X = captioner.n_extra_keys
    n_layers = captioner.decoder_layers
    best = result.best
    ended = bool(best.tokens) and best.tokens[-1] == captioner.eos_id and best.finished
    T = len(best.tokens) - (1 if ended else 0)
    ids = best.tokens[:T]
    rows = best.rows[:T]
    cross_on = captioner.has_cross
    cross = self_prefix = cross_full = cross_extra = None
    S = P + T
    H = captioner.decoder_heads
    N = captioner.grid[0] * captioner.grid[1]
    self_full = np.zeros((n_layers, H, S, S), dtype=np.float32)
    if cross_on:
        cross_full = np.zeros((n_layers, H, S, X + N), dtype=np.float32)
    if result.steps:  # step 0 saw the prefix and <bos> at once; an empty caption (S = P) keeps the prefix rows
        n0 = min(P + 1, S)
        first = result.steps[0]["captured"]
        # position P + j produced token j (j >= 1); its row was computed at step t = j, in row r
        later = [(result.steps[t]["captured"], r) for t, r in rows[1:]]
        # self-attention rows grow by one key per step: row j fills columns 0 … P + j
        causal = np.arange(S)[None, :] <= np.arange(P + 1, P + T)[:, None]  # [T - 1, S]
        for layer in range(n_layers):
            name = f"decoder.h.{layer}.attn"
            self_full[layer, :, :n0, :n0] = first[name][0][0, :, :n0, :n0].numpy()
            if later:
                flat = torch.cat([c[name][0][r, :, -1] for c, r in later], dim=-1)  # [H, Σ row lengths]
                block = self_full[layer, :, P + 1 : P + T]  # a view: [H, T - 1, S]
                block[:, causal] = flat.numpy()
            if cross_on:
                name = f"decoder.h.{layer}.crossattention"
                cross_full[layer, :, :n0] = first[name][0][0, :, :n0].numpy()
                if later:
                    rows_x = torch.stack([c[name][0][r, :, -1] for c, r in later], dim=1)  # [H, T - 1, X + N]
                    cross_full[layer, :, P + 1 : P + T] = rows_x.numpy()
    producing = np.arange(P, P + T)  # empty caption: [0, L, H, ...] arrays, still None only where the mode has none
    if cross_on:
        cross = cross_full[:, :, producing, X:].transpose(2, 0, 1, 3)  # T, L, H, N: the patches only
        cross_extra = cross_full[:, :, producing, :X].transpose(2, 0, 1, 3)  # T, L, H, X
    if P:
        self_prefix = self_full[:, :, producing, :P].transpose(2, 0, 1, 3)  # T, L, H, P
    top_ids = np.zeros((T, TOP_K_ALTERNATIVES), dtype=np.int64)
    top_probs = np.zeros((T, TOP_K_ALTERNATIVES), dtype=np.float64)
    if T:
        p = torch.stack([result.steps[t]["logp"][r].exp() for t, r in rows])  # [T, V]
        values, indices = p.topk(min(TOP_K_ALTERNATIVES, p.shape[-1]), dim=-1)
        top_ids[:, : indices.shape[1]], top_probs[:, : values.shape[1]] = indices.numpy(), values.numpy()
    names: dict[int, str] = {}

    def text(i: int) -> str:  # each distinct token's text once
        if i not in names:
            names[i] = tok.token_text(i)
        return names[i]

    mapper = front["mapper.attn"][0][0].numpy() if "mapper.attn" in front else None
    block_names = sorted((n for n in front if n.startswith("mapper.blocks.")), key=lambda n: int(n.split(".")[2]))
    mapper_blocks = np.stack([front[n][0][0].numpy() for n in block_names]) if mapper is not None and block_names else None
    enc_names = sorted((n for n in front if n.startswith("encoder.blocks.")), key=lambda n: int(n.split(".")[2]))
    encoder = np.stack([front[n][0][0].numpy() for n in enc_names]) if enc_names else None
    tree = [
        {
            "tokens": [text(i) for i in s.tokens],
            "token_ids": s.tokens,
            "parents": s.parents,
            "scores": [round(x, 6) for x in s.scores],
            "finished": s.finished,
            "truncated": s.truncated,
        }
        for s in result.tree
    ]
    candidates = [
        {"caption": tok.decode(h.tokens), "score": round(score, 6), "logprob": round(h.logp, 6), "ended": h.finished,
         "truncated": h.truncated}
        for h, score in result.candidates[:10]
    ]
    return Explanation(
        image=img,
        tokens=[text(i) for i in ids],
        token_ids=list(ids),
        probs=np.exp(np.array(best.logps[:T], dtype=np.float64)),
        top_ids=top_ids,
        top_probs=top_probs,
        top_tokens=[[text(i) for i in row] for row in top_ids.tolist()],
        grid=tuple(captioner.grid),
        n_prefix=P,
        mode=getattr(captioner, "mode", "cross" if cross_on else "prefix"),
        cross=cross,
        self_prefix=self_prefix,
        self_full=self_full,
        cross_full=cross_full,
        mapper=mapper,
        mapper_blocks=mapper_blocks,
        encoder=encoder,
        params=params,
        seed=result.seed,
        score=float(best.score(params.length_penalty)),
        logprob=best.logp,
        ended=ended,
        beam_tree=tree,
        candidates=candidates,
        hook_names=sorted(set(front) | set(result.steps[0]["captured"])) if result.steps else sorted(front),
        _captioner=captioner,
        n_extra=X,
        cross_extra=cross_extra,
        text=tok.decode(ids) if captioner.decodes_text else None,  # sub-word tokens: the tokenizer joins them
        crop=captioner.crop,
        prefix_is_image=bool(getattr(captioner, "prefix_is_image", False)),
        precision=getattr(captioner, "precision", "float32"),
    )


# ------------------------------------------------------------------------------------------------


def teacher_forced(captioner, image, token_ids: list[int], keep_grad: bool = False):
    """One forward pass over [prefix; <bos>; token_ids[:-1]] with every map captured: the
    independent reference that decoding traces are tested against. Returns (logits [S, V], cache)."""
    return captioner.teacher_forced(captioner.pixels(open_image(image)), token_ids, keep_grad=keep_grad)


def teacher_forced_logprob(captioner, image, token_ids: list[int]) -> float:
    """Summed log-probability of `token_ids` (include the <eos> if the sequence ended)."""
    logits, _ = teacher_forced(captioner, image, token_ids)
    P = captioner.n_prefix
    logp = torch.log_softmax(logits[P : P + len(token_ids)].float(), -1)
    return float(logp[torch.arange(len(token_ids)), torch.tensor(token_ids)].sum())


def relevancy(captioner, exp: Explanation, through_encoder: bool = True, words: list[int] | None = None,
              alternatives: list[int | None] | None = None, progress=None) -> np.ndarray:
    """Gradient-weighted relevancy (Chefer et al. 2021) of the tokens `words` (default: every token),
    [len(words), N].

    The final sequence is run once, teacher-forced: the decoder is causal, so that one pass holds the
    logit that chose every token (token j's at position P + j). Word k's target is the logit of token
    words[k] there (minus the logit of alternatives[k] when given: the contrastive "why this token
    and not that one"); batched backward passes (`_batched_grad`) give each word its own
    gradients of every captured attention map: in the decoder (self- and cross-attention), the
    mapper and, with `through_encoder` and a vision-transformer encoder, the encoder's
    self-attention (every word through the decoder at once, then the encoder in groups). The rules
    are the paper's (see vizcap.maps.propagate); the cross-attention's keys are carried back to the
    input patches by the encoder's normalised self-relevance R̄_ii (eqs. 6-9 over the encoder's
    blocks). Without `through_encoder` (or with a convolutional encoder, which has no attention to
    follow) the gradients stop at the encoder's output: R̄_ii = I, memory cell n stands for patch n.
    `progress`, if given, is called as progress(words_done, len(words)): with 0 before the shared
    forward pass, then after each group of words (what a progress bar can show)."""
    T, N = len(exp.tokens), captioner.grid[0] * captioner.grid[1]
    words = list(range(T)) if words is None else list(words)
    alternatives = [None] * len(words) if alternatives is None else list(alternatives)
    if not words:
        return np.zeros((0, N))
    if progress is not None:
        progress(0, len(words))
    pixels = exp._pixels if exp._pixels is not None else captioner.pixels(exp.image)
    # every word's gradients of a big encoder's attention held at once take memory in proportion to
    # the words: its backward passes go in groups (the forward pass is shared by all of them)
    batch = getattr(captioner, "relevancy_batch", None) if through_encoder else None
    group = max(1, int(batch() if callable(batch) else len(words)))

    def compute(report) -> np.ndarray:
        logits, cache = captioner.teacher_forced(pixels, exp.token_ids, keep_grad=True, through_encoder=through_encoder)
        targets = _targets(captioner, logits, exp.token_ids, words, alternatives)
        names = [n for n in cache.names() if n.startswith(("decoder.", "mapper.", "encoder.blocks."))
                 and not n.endswith(_SHORTCUT_POINTS)  # what the memory's shortcut reads, not maps
                 and cache[n][0].requires_grad]  # without through_encoder the encoder runs without gradients
        encoder = [n for n in names if n.startswith("encoder.blocks.")]
        if not encoder or cache.memory is None:  # nothing to follow into the encoder: one pass for every word
            grads = dict(zip(names, _batched_grad(*targets, [cache[n][0] for n in names])))
            report(len(words))
            return _relevancy_from_gradients(captioner, cache, grads, words, through_encoder)
        # Split at the encoder's output: every word's backward pass through the decoder at once (it is
        # small), which also gives each word's gradient of the memory; then, group by group, the
        # encoder's backward passes start from those (the chain rule: the decoder reads the encoder
        # only through the memory). The decoder's cost is batched across all words, not paid per group.
        decoder = [n for n in names if n not in encoder]
        cross = getattr(captioner, "cross_projections", None)
        if cross:  # autograd stops at each cross-attention's map and context; the memory's gradient follows
            contexts = [cache[f"decoder.h.{l}.crossattention.context"][0] for l in range(len(cross))]
            grads = _batched_grad(*targets, [cache[n][0] for n in decoder] + contexts)
            decoder_grads = grads[:len(decoder)]
            memory_grads = _memory_gradient(cross, cache, dict(zip(decoder, decoder_grads)), grads[len(decoder):])
        else:
            *decoder_grads, memory_grads = _batched_grad(*targets, [cache[n][0] for n in decoder] + [cache.memory])
        rows = []
        for a in range(0, len(words), group):
            grads = {n: g[a:a + group] for n, g in zip(decoder, decoder_grads)}
            grads.update(zip(encoder, _batched_grad(cache.memory, memory_grads[a:a + group], [cache[n][0] for n in encoder])))
            rows.append(_relevancy_from_gradients(captioner, cache, grads, words[a:a + group], through_encoder))
            report(min(a + group, len(words)))
        return np.concatenate(rows)

    return in_flushed_thread(compute, None if progress is None else lambda done: progress(done, len(words)))


def in_flushed_thread(compute, progress=None):
    """compute(report) run in a fresh thread with denormals flushed (flushed_denormals), its result
    returned (its exception raised) here; each report(x) it makes calls progress(x) in this thread,
    so a progress bar is drawn by the thread that owns it. Why a thread: the setting is per thread,
    and torch's worker threads, started by the thread that first runs a parallel operation, copy
    it only when they start; the ones this thread already has would keep computing with denormals
    (BLIP-base's shapes: one backward pass 14–15 s flushed in this thread alone, 2.0–2.6 s in a fresh one)."""
    events: queue.Queue = queue.Queue()
    threads = torch.get_num_threads()

    def run():
        try:
            torch.set_num_threads(threads)  # the caller's count: a new thread starts from the default
            events.put(("done", compute(lambda x: events.put(("progress", x)))))
        except BaseException as error:  # noqa: BLE001 (raised again in the caller's thread)
            events.put(("error", error))

    with flushed_denormals():  # a thread started here inherits the setting; this one gets its own back
        worker = threading.Thread(target=run, name="vizcap-flushed", daemon=True)
        worker.start()
    while True:
        kind, value = events.get()
        if kind == "progress":
            if progress is not None:
                progress(value)
            continue
        worker.join()
        if kind == "error":
            raise value
        return value


def flushes_denormals() -> bool:
    """Whether the CPU now reads and writes floats below 1.2e-38 (denormals) as zero. torch can set
    this (torch.set_flush_denormal) but not tell it, so a denormal is multiplied: 0 means flushed."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0)) == 0.0


@contextmanager
def flushed_denormals():
    """Denormals flushed to zero in this thread inside, as they were after. The gradient of one logit
    reaches the denormal range in a deep encoder, where x86 arithmetic is many times slower: on
    BLIP-base's shapes (random weights) one word's backward pass took 22.6 s, and 2.0–2.6 s flushed in
    every torch thread (in_flushed_thread). Flushing changes a value by less than 1.2e-38."""
    before = flushes_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _targets(captioner, logits: torch.Tensor, token_ids: list[int], js: list[int],
             alternatives: list[int | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, vectors): the logits that chose the tokens `js` ([C, V], row k from position P + js[k] of
    the one teacher-forced pass) and each word's vector of the vector-Jacobian product [C, C, V]: 1 on
    row k's logit of token js[k], −1 on its alternative's (an alternative equal to the chosen token
    cancels it: a map of zeros)."""
    with torch.enable_grad():  # part of the graph
        rows = logits[torch.tensor(js) + captioner.n_prefix]
    vectors = torch.zeros(len(js), *rows.shape, dtype=rows.dtype)
    for k, (j, alt) in enumerate(zip(js, alternatives)):
        vectors[k, k, token_ids[j]] += 1
        if alt is not None:
            vectors[k, k, alt] -= 1
    return rows, vectors


def _batched_grad(output: torch.Tensor, vectors: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each of the C `vectors`' vector-Jacobian product of `output` with respect to every tensor of `inputs`
    (zeros where one does not count), as one backward pass batched over the vectors: each result gains a
    leading dimension C. torch.func.vmap runs autograd.grad over the vectors. Not
    autograd.grad(is_grads_batched=True): that runs on the legacy vmap prototype, which has no batching rule
    for the backward of softmax, layer norm, GELU or tanh and falls back to a loop over the vectors for
    each of them ("There is a performance drop", with torch._C._debug_only_display_vmap_fallback_warnings
    (True)); torch.func.vmap batches them all (tests/test_relevancy.py checks), and measured a little
    faster than both that and a loop of one backward per vector. retain_graph: the next group of words
    reads the same graph. autograd.grad, not backward(): the shared model's .grad fields are never touched."""
    def one(vector):
        return torch.autograd.grad(output, inputs, vector, retain_graph=True, materialize_grads=True)

    return list(torch.func.vmap(one)(vectors))


_SHORTCUT_POINTS = (".crossattention.query", ".crossattention.context")  # recorded only in a gradient pass


def _memory_gradient(cross_projections, cache, grads: dict[str, torch.Tensor],
                     context_grads: list[torch.Tensor]) -> torch.Tensor:
    """Each word's gradient of the memory [C, *memory.shape], from its gradients of every cross-attention
    layer's map (grads) and context (context_grads: [C, 1, S, heads·d]), for cross-attentions that score
    softmax(Q Kᵀ/√d) with K = memory W_kᵀ + b_k and V = memory W_vᵀ + b_v (cross_projections: per layer,
    the query, key and value nn.Linear; the queries are the ones the pass recorded).

    Autograd would form each word's dense gradient of K and V (M × heads·d) and multiply it by W_k and
    W_v: 24 products of 577 × 768 × 768 a word on BLIP-base, 16 GFLOP, more than a tenth of a backward
    pass through its encoder. Per head, that gradient is dSᵀQ/√d (and AᵀdC), of rank at most S (the
    caption's length), so the memory's gradient is Σ_heads dS_hᵀ (Q_h W_k,h/√d) + A_hᵀ (dC_h W_v,h):
    products with S·heads inside instead of 768, about 5× fewer operations. Equal to autograd's to
    rounding (tests/test_relevancy.py)."""
    memory = cache.memory
    out = torch.zeros(context_grads[0].shape[0], *memory.shape, dtype=memory.dtype)
    for l, (query, key, value) in enumerate(cross_projections):
        a = cache[f"decoder.h.{l}.crossattention"][0].detach()[0]  # [heads, S, M]
        heads = a.shape[0]
        da = grads[f"decoder.h.{l}.crossattention"][:, 0]  # [C, heads, S, M]
        ds = a * (da - (da * a).sum(-1, keepdim=True))  # through the softmax: the scores' gradient
        q = cache[f"decoder.h.{l}.crossattention.query"][0].detach()[0]  # [S, heads·d]
        d = q.shape[-1] // heads
        qk = q.view(-1, heads, d).transpose(0, 1) @ key.weight.detach().view(heads, d, -1) / math.sqrt(d)  # [heads, S, Dm]
        dc = context_grads[l][:, 0].view(len(da), -1, heads, d).transpose(1, 2)  # [C, heads, S, d]
        cv = dc @ value.weight.detach().view(heads, d, -1)  # [C, heads, S, Dm]
        out[:, 0] += torch.einsum("chsm,hsd->cmd", ds, qk) + torch.einsum("hsm,chsd->cmd", a, cv)
    return out


def _relevancy_from_gradients(captioner, cache, grads: dict[str, torch.Tensor], js: list[int],
                              through_encoder: bool) -> np.ndarray:
    """relevancy()'s rows for the tokens `js` [C, N], from the one teacher-forced pass's captured maps
    (`cache`) and each word's gradient of every one that counts (grads[name]: [C, 1, heads, q, k])."""
    P, X, C = captioner.n_prefix, captioner.n_extra_keys, len(js)
    N = captioner.grid[0] * captioner.grid[1]
    names = list(grads)

    def weighted(name: str) -> np.ndarray:  # E_heads[(grad ⊙ A)+] of each word (eq. 5), [C, q, k]
        a = cache[name][0][0].detach()  # [heads, q, k]: the one pass's map, shared by every word
        g = grads.pop(name)[:, 0]  # [C, heads, q, k]: each word's own gradient of it, used once
        # in place: a big encoder's gradients are C × 12 × 577² floats a layer (BLIP-base)
        return g.mul_(a).clamp_(min=0).mean(1).double().numpy()

    L = captioner.decoder_layers
    self_w = np.stack([weighted(f"decoder.h.{l}.attn") for l in range(L)], 1)  # C, L, S, S
    cross_w = np.stack([weighted(f"decoder.h.{l}.crossattention") for l in range(L)], 1) if captioner.has_cross else None
    mapper_w = None
    if captioner.prefix_is_image:  # each prefix token is one encoder token: its own relevance, nothing mixed yet
        mapper_w = np.broadcast_to(np.eye(P), (C, P, P))
    elif "mapper.attn" in cache:  # C, P, N: Chefer's rules through the resampler and every mapper block
        resampler = weighted("mapper.attn")
        block_names = sorted((n for n in names if n.startswith("mapper.blocks.")), key=lambda n: int(n.split(".")[2]))
        blocks = [weighted(n) for n in block_names]
        mapper_w = np.stack([mapping.relevancy_mapper(resampler[k], np.stack([b[k] for b in blocks]) if blocks else None)
                             for k in range(C)])
    enc_names = sorted((n for n in names if n.startswith("encoder.blocks.")),
                       key=lambda n: int(n.split(".")[2])) if through_encoder else []
    enc_w = np.stack([weighted(n) for n in enc_names], 1) if enc_names else None  # C, Le, E+N, E+N
    out = np.zeros((C, N))
    for k, j in enumerate(js):
        r = mapping.propagate(self_w[k], None if cross_w is None else cross_w[k], None if mapper_w is None else mapper_w[k], P)
        row = r[P + j]  # the word's relevance to the keys
        if enc_w is not None:  # keys are encoder output tokens: carry their relevance back to the input patches
            E = enc_w.shape[-1] - N  # the encoder's class/register tokens (vizcap's memory drops them: X = 0)
            row = _through_encoder(np.concatenate([np.zeros(E - X), row]), enc_w[k])[E - X:]
        out[k] = row[X:]
    return out


def _through_encoder(row: np.ndarray, encoder_w: np.ndarray) -> np.ndarray:
    """row · R̄_ii (Chefer et al. 2021) for a ViT encoder's gradient-weighted self-attention Ā
    [layers, M, M]: relevance to its output tokens carried back to its input tokens. R_ii = I + Σ_layers
    Ā·R_ii (eqs. 6-7) is the product (I + Ā_last)…(I + Ā_first), and R̄_ii = (R_ii − I) with each row
    divided by its sum, + I (eqs. 8-9). Only one row of the product is needed, so it is computed with
    vectors, one matrix-vector product a layer (M² each), never the M×M matrix (M³ a layer: for BLIP's
    577 tokens 4.6 GFLOP a word): first the row sums of R_ii − I, then row · (R_ii − I)."""
    sums = np.zeros_like(row)  # (R − I)·1, built up from the first layer (no 1 + small − 1 rounding)
    for a in encoder_w:
        sums = sums + a @ (1.0 + sums)
    u = row / np.maximum(sums, 1e-12)  # row · D⁻¹, D the row sums (as in maps.normalised_self_relevance)
    extra = np.zeros_like(row)  # u · (R − I), built up from the last layer
    for a in encoder_w[::-1]:
        extra = extra + (u + extra) @ a
    return extra + row  # row · (D⁻¹(R − I) + I)


# ------------------------------------------------------------------------------------------------
# Occlusion: what the word's probability loses when one cell is greyed

OCCLUSION_BATCH = 16  # greyed images per teacher-forced pass


def occlusion(captioner, exp: Explanation, words: list[int] | None = None,
              alternatives: list[int | None] | None = None) -> np.ndarray:
    """For each word j of `words` (default: every word) and each grid cell n, [len(words), N]:
    p_j(image) − p_j(image with cell n greyed), teacher-forced on the explanation's own tokens. With
    alternatives[k] = a, the drop of p_j − p(a) at that word's step instead (contrastive). Grey is
    what the deletion test uses (vizcap.images.grey_cells: 0 after normalisation, the model's mean
    colour). Every word comes from the same pass: N greyed images, OCCLUSION_BATCH per pass."""
    T, (gh, gw) = len(exp.tokens), captioner.grid
    N = gh * gw
    words = list(range(T)) if words is None else list(words)
    alternatives = [None] * len(words) if alternatives is None else list(alternatives)
    if not words:
        return np.zeros((0, N))
    from .images import grey_cells

    pixels = exp._pixels if exp._pixels is not None else captioner.pixels(exp.image)
    positions = torch.tensor(words) + captioner.n_prefix
    chosen = torch.tensor([exp.token_ids[j] for j in words])
    other = torch.tensor([-1 if a is None else int(a) for a in alternatives])

    def scores(batch: torch.Tensor) -> np.ndarray:  # [B, len(words)]: p(chosen) − p(alternative)
        logits, _ = captioner.teacher_forced(batch, exp.token_ids)
        if logits.dim() == 2:
            logits = logits[None]
        p = torch.softmax(logits[:, positions].double(), -1)  # [B, W, V]
        k = torch.arange(len(words))
        out = p[:, k, chosen]
        return (out - torch.where(other >= 0, p[:, k, other.clamp(min=0)], torch.zeros_like(out))).numpy()

    full = scores(pixels)[0]
    hidden = np.eye(N, dtype=bool)  # image n greys cell n
    greyed = np.concatenate([scores(grey_cells(pixels, hidden[a:a + OCCLUSION_BATCH], (gh, gw)))
                             for a in range(0, N, OCCLUSION_BATCH)])  # [N, W]
    return (full[None] - greyed).T


@torch.inference_mode()
def word_after_greying(captioner, exp: Explanation, word: int, hidden) -> list[tuple[str, float, float]]:
    """What the model writes at `word` when cells are greyed, teacher-forced on the caption before it:
    for each row of hidden [K, N] (bools, row by row over the grid), (its likeliest token, that token's
    probability, the probability of the caption's own word). Greying is the occlusion map's and the
    deletion test's (vizcap.images.grey_cells)."""
    from .images import grey_cells

    pixels = exp._pixels if exp._pixels is not None else captioner.pixels(exp.image)
    batch = grey_cells(pixels, np.asarray(hidden, dtype=bool), captioner.grid)
    logits, _ = captioner.teacher_forced(batch, exp.token_ids)
    if logits.dim() == 2:
        logits = logits[None]
    p = torch.softmax(logits[:, word + captioner.n_prefix].double(), -1)  # [K, V]
    best = p.argmax(-1)
    own = exp.token_ids[word]
    return [(captioner.tokenizer.token_text(int(b)).strip(), float(p[k, b]), float(p[k, own]))
            for k, b in enumerate(best)]

