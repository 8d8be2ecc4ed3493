"""What every Hugging Face captioner family shares (the families themselves: vizcap/families/).

    load_pretrained(X, family)   X: a local folder or a hub id of a model of `family` (e.g.
                                 vizcap.families.blip.Blip()); `vizcap.load(X)` picks the family.
    HFCaptioner                  the vizcap backend (see vizcap/backend.py) of any Hugging Face
                                 captioner whose decoder reads a vision transformer's tokens, by
                                 cross-attention (ViT+GPT-2, BLIP) or as a prefix before the words
                                 (GIT); what differs by family (where the encoder, decoder and
                                 attention modules are, how they are called) its family adapter says.

Loading rules:
* Hub ids resolve through the ordinary Hugging Face cache. Not cached and no way to reach the hub:
  one-line `CheckpointError` saying how to download the model. Never `trust_remote_code`.
* Weights: transformers prefers `model.safetensors`; a legacy PyTorch `.bin` weights file goes only
  through transformers' own loader, which reads it in torch's weights-only mode (vizcap itself never
  deserialises one).
* Attention is really computed: the model is loaded with `attn_implementation="eager"` (SDPA
  computes no weights; transformers 5 then silently returns none), checked after loading.
* Preprocessing is the checkpoint's own image processor (`AutoImageProcessor.from_pretrained`),
  so `pixels(image)` equals `processor(image)` exactly. ViT and BLIP processors squash the image
  without cropping; if a processor centre-crops, `crop` says so and `view(image)` is the cropped
  region that overlays are drawn on.
* Decoding: the model's generation config fixes the end token, the longest caption and beam
  search's `early_stopping`; vizcap's greedy and beam search then give `generate`'s tokens.
  Settings that would need logits processors vizcap does not run (repetition penalty, n-gram
  blocking, minimum length, ...) are listed in `unsupported_settings`.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from . import fast as fast_mode
from .backend import CheckpointError, ExplainAPI, install_points, take_captured
from .hooks import capture

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNSUPPORTED = {  # generation settings that need a logits processor: (name, value that means "off")
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None, "min_new_tokens": None, "num_beam_groups": 1,
    "diversity_penalty": 0.0, "renormalize_logits": False, "remove_invalid_values": False,
}


def checkpoint_error(message: str) -> CheckpointError:
    """A CheckpointError with `message` on one line (at most 500 characters)."""
    return CheckpointError(" ".join(str(message).split())[:500])


def download_hint(repo_id: str) -> str:
    return f"download it first with `huggingface-cli download {repo_id}` (or `hf download {repo_id}`) on a machine that is online"


# ------------------------------------------------------------------------------------------------
# Where a model lives


def hf_model_type(directory: Path) -> str | None:
    """The `model_type` of a Hugging Face folder (None when config.json is absent or not one)."""
    path = Path(directory) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # not readable as JSON: vizcap's loader names the problem
        return None
    if not isinstance(raw, dict) or "format_version" in raw:
        return None  # a vizcap checkpoint
    value = raw.get("model_type")
    return value if isinstance(value, str) else None


def is_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not Path(source).exists()


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ).strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve(source: str) -> str:
    """A local folder stays as it is; a hub id is checked against the cache (and the network)."""
    if not is_hub_id(source):
        return source
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):
        return source  # transformers finds it in the cache (and refreshes it when online)
    if not _hub_reachable():
        raise checkpoint_error(f"{source}: no such folder, and not a Hugging Face model in the cache (the hub cannot be reached); "
                     f"{download_hint(source)}")
    return source


def read_config(source: str):
    """The transformers config of a local folder or a hub id (resolved first); CheckpointError, one
    line, when it cannot be read."""
    from transformers import AutoConfig

    target = resolve(source)
    try:
        return AutoConfig.from_pretrained(target, trust_remote_code=False)
    except Exception as e:  # OSError (missing / not cached), ValueError (unknown model type)
        hint = f"; {download_hint(source)}" if is_hub_id(source) else ""
        raise checkpoint_error(f"{source}: cannot read its config ({type(e).__name__}: {_first_line(e)}){hint}") from None


def model_type(source: str) -> str | None:
    """The Hugging Face `model_type` a source names: a local folder's config.json, or a hub id's config
    (through the cache; CheckpointError when it is neither cached nor reachable). None for anything
    else (a vizcap checkpoint, a path that does not exist): no Hugging Face family loads it."""
    directory = Path(source)
    if directory.is_dir():
        return hf_model_type(directory)
    if is_hub_id(source):
        return getattr(read_config(source), "model_type", None)
    return None


# ------------------------------------------------------------------------------------------------
# Tokenizer


class HFTokenizer:
    """token_text / decode over a transformers tokenizer (special tokens left out of captions)."""

    def __init__(self, tok):
        self.tok = tok

    def token_text(self, token_id: int) -> str:
        text = self.tok.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False).strip()
        if not text or "\ufffd" in text:  # a byte fragment of a longer character: show the raw token
            raw = self.tok.convert_ids_to_tokens(int(token_id))
            text = raw if isinstance(raw, str) and raw else f"<{int(token_id)}>"
        return text

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    @property
    def vocab_size(self) -> int:
        return len(self.tok)


# ------------------------------------------------------------------------------------------------
# The backend


@dataclass
class HFParts:
    """Where a family's model keeps what vizcap reads (its adapter's `parts(model)` finds them)."""

    vision: torch.nn.Module  # the image encoder: vision(pixel_values=...) -> hidden states first
    decoder: torch.nn.Module  # the text decoder (its output embeddings give the vocabulary)
    vision_config: object  # image_size, patch_size
    encoder_attention: list  # per encoder layer, the module whose output[1] is its attention weights
    decoder_self_attention: list  # per decoder layer, likewise
    decoder_cross_attention: list  # per decoder layer, likewise; empty for a prefix decoder (GIT)
    decoder_heads: int
    bos_id: int
    eos_id: int | list[int]
    pad_id: int
    generation_model: torch.nn.Module  # whose generation_config generate() reads
    max_positions: int
    # per decoder layer, (query, key, value) nn.Linear of a cross-attention that scores softmax(QKᵀ/√d)
    # with keys and values read from the memory itself: relevancy then takes the memory's gradient
    # by its low-rank shortcut (vizcap.explain._memory_gradient); None: autograd's own way
    cross_projections: list | None = None


class HFCaptioner(ExplainAPI):
    """A Hugging Face captioner (vizcap Backend); `family` is its family's adapter (vizcap/families/):
    the parts of the model, how the encoder and decoder are called, its label, and how the decoder
    sees the image (`family.mode`): "cross" (cross-attention to the encoder's tokens) or "prefix" (the
    encoder's tokens, class token first, are the decoder's prefix: n_prefix of them, read through
    self-attention)."""

    relevancy_group: int | None = None  # words per relevancy backward pass; None: sized to the encoder (below)
    RELEVANCY_BUDGET = 1 << 29  # bytes of the words' encoder attention gradients per backward pass
    RELEVANCY_ALONE = 1 << 27  # a word with this many bytes of them goes alone (batching it buys no speed)

    def __init__(self, model, image_processor, tokenizer, name: str, family):
        self.model = model.eval()
        self.image_processor = image_processor
        self.tokenizer = HFTokenizer(tokenizer)
        self.name = name
        self.family = family
        self.kind = family.key
        family.prepare(model)
        parts = family.parts(model)
        self.vision, self.decoder = parts.vision, parts.decoder
        self.bos_id, self.pad_id = parts.bos_id, parts.pad_id
        self.decoder_heads = parts.decoder_heads
        self.decoder_layers = len(parts.decoder_self_attention)
        self.encoder_layers = len(parts.encoder_attention)
        self.mode = family.mode
        self.has_cross = bool(parts.decoder_cross_attention)
        self.prefix_is_image = self.mode == "prefix"  # the prefix tokens are the encoder's own tokens (no mapper)
        self.banned: tuple[int, ...] = ()  # generate() bans nothing
        vc = parts.vision_config
        size = vc.image_size if isinstance(vc.image_size, (list, tuple)) else (vc.image_size, vc.image_size)
        patch = vc.patch_size if isinstance(vc.patch_size, (list, tuple)) else (vc.patch_size, vc.patch_size)
        self.grid = (int(size[0]) // int(patch[0]), int(size[1]) // int(patch[1]))
        self.input_size = (int(size[0]), int(size[1]))
        self.vocab_size = int(self.decoder.get_output_embeddings().out_features)  # nn.Linear or fast's Int8Linear
        self.settings, self.unsupported_settings = _generation_settings(parts.generation_model, 1, parts.max_positions)
        eos = parts.eos_id
        if isinstance(eos, (list, tuple)):
            if len(eos) > 1:
                self.unsupported_settings.append(f"several end tokens {list(eos)} (vizcap stops at {eos[0]} only)")
            eos = eos[0]
        self.eos_id = int(eos)
        self.token_limit = max(1, min(256, int(parts.max_positions) - 1))
        self.max_tokens = min(self.settings["max_tokens"], self.token_limit)
        self.crop = _crop_note(image_processor)
        points = {f"encoder.blocks.{i}.attn": (m, 1) for i, m in enumerate(parts.encoder_attention)}
        for i, m in enumerate(parts.decoder_self_attention):
            points[f"decoder.h.{i}.attn"] = (m, 1)
        for i, m in enumerate(parts.decoder_cross_attention):
            points[f"decoder.h.{i}.crossattention"] = (m, 1)
        gradient_points = {}
        for i, (query, _, _) in enumerate(parts.cross_projections or []):
            gradient_points[f"decoder.h.{i}.crossattention.query"] = (query, None)
            gradient_points[f"decoder.h.{i}.crossattention.context"] = (parts.decoder_cross_attention[i], 0)
        self.hook_names = install_points(model, points, gradient_points)
        self.precision = fast_mode.precision_of(model)  # "int8" for a fast model's copy (with_model) too
        self._cache_kw = "cache" if "cache" in inspect.signature(self.decoder.forward).parameters else "past_key_values"
        image_tokens = self._probe()
        self.n_extra_keys = image_tokens - self.grid[0] * self.grid[1]
        self.n_prefix = image_tokens if self.prefix_is_image else 0

    # what the family says (vizcap/backend.py: the same names on every backend)
    family_label = property(lambda self: self.family.label)
    is_photo_model = property(lambda self: self.family.is_photo_model)
    decodes_text = property(lambda self: self.family.decodes_text)
    decoder_module_prefixes = property(lambda self: self.family.decoder_module_prefixes)

    @property
    def image_mean(self) -> list[float]:
        return list(getattr(self.image_processor, "image_mean", None) or [0.0] * 3)

    @property
    def image_std(self) -> list[float]:
        return list(getattr(self.image_processor, "image_std", None) or [1.0] * 3)

    def with_model(self, model, name: str) -> "HFCaptioner":
        """The same captioner around another copy of its model (e.g. one with a re-initialised decoder)."""
        return HFCaptioner(model, self.image_processor, self.tokenizer.tok, name=name, family=self.family)

    @property
    def cross_projections(self) -> list | None:
        """The family's cross_projections (HFParts) as the model has them now, or None when relevancy
        must take autograd's way to the memory: none declared, or not plain float nn.Linear layers
        (fast mode replaces them in place, and its int8 layers' weights are not these)."""
        projections = self.family.parts(self.model).cross_projections
        if projections and all(type(m) is torch.nn.Linear for qkv in projections for m in qkv):
            return projections
        return None

    def make_fast(self) -> "HFCaptioner":
        """Fast mode, in place: every linear layer in int8 (vizcap/fast.py)."""
        try:
            fast_mode.to_int8(self.model)
        except (RuntimeError, AttributeError) as e:  # a torch without the int8 kernels or quantised tensors
            raise checkpoint_error(f"{self.name}: fast mode needs torch's int8 linear kernels, which this torch "
                                   f"lacks ({_first_line(e)}); load without fast") from None
        self.precision = fast_mode.precision_of(self.model)
        return self

    def _probe(self) -> int:
        """One encoder pass on a blank image: the hooks see real weights, and the number of image tokens
        the decoder reads (patches and class / distillation tokens) is known."""
        # no_grad, not inference_mode: tensors some encoders cache on their first call (BEiT's relative
        # position index) must stay usable by the relevancy pass, which needs autograd
        with torch.no_grad(), capture() as cache:
            memory = self._encode(torch.zeros(1, 3, *self.input_size))
        n_tokens = memory.shape[1]
        n_patches = self.grid[0] * self.grid[1]
        names = [f"encoder.blocks.{i}.attn" for i in range(self.encoder_layers)]
        if any(name not in cache or cache[name][0] is None for name in names):
            raise checkpoint_error(f"{self.name}: the encoder computed no attention weights (is eager attention available?)")
        if n_tokens < n_patches:
            raise checkpoint_error(f"{self.name}: {n_tokens} encoder tokens for a {self.grid[0]}x{self.grid[1]} patch grid")
        return n_tokens

    def relevancy_batch(self) -> int:
        """How many words' gradients full relevancy computes in one batched backward pass. The forward
        pass is shared by every word (it is paid once, whatever the group); what a group adds is each
        word's own gradient of every encoder attention map, held together until its maps are made, and
        the backward pass's working tensors of that shape: about 4 x (layers + 3) x heads x tokens²
        bytes a word. So a 197-token ViT's words go all at once (up to 16), and a 577-token BLIP
        encoder's one at a time: its products are big enough that batching them buys nothing (12 words
        of BLIP-base: 17.1–18.1 s one at a time, 18.9–19.1 s two at a time; ViT+GPT-2's in one group
        4.5–4.9 s, in groups of 9 and 3 4.6–5.2 s; 2 threads, 3 December 2026)."""
        if self.relevancy_group:
            return int(self.relevancy_group)
        heads = getattr(self.vision.config, "num_attention_heads", 12)
        tokens = self.n_extra_keys + self.grid[0] * self.grid[1]
        per_word = 4 * (self.encoder_layers + 3) * heads * tokens * tokens
        if per_word >= self.RELEVANCY_ALONE:
            return 1
        return max(1, min(16, self.RELEVANCY_BUDGET // per_word))

    # -- captions -----------------------------------------------------------------------------------

    def caption(self, image, max_tokens: int | None = None) -> str:
        """The greedy caption of one image, as `generate(do_sample=False, num_beams=1)` writes it."""
        return self.explain(image, max_tokens=max_tokens).caption

    def caption_batch(self, images, max_tokens: int | None = None) -> list[str]:
        return [self.caption(im, max_tokens) for im in images]

    def caption_details(self, image, max_tokens: int | None = None) -> dict:
        exp = self.explain(image, max_tokens=max_tokens)
        return {"caption": exp.caption, "tokens": exp.tokens, "token_probs": [round(float(p), 6) for p in exp.probs],
                "grid": list(self.grid)}

    def describe(self) -> str:
        """One line for people: what this model is."""
        enc, dec = self.family.encoder_name(self), self.family.decoder_name
        shown = Path(self.name).name if Path(str(self.name)).exists() else self.name  # a folder by its name, never its path
        how = "by cross-attention" if self.has_cross else "through self-attention, its tokens placed before the words"
        return (f"{self.family_label} “{shown}”: a {enc} encoder ({self.grid[0]}×{self.grid[1]} patches + "
                f"{self.n_extra_keys} class token{'s' if self.n_extra_keys != 1 else ''}) and "
                f"a {self.decoder_layers}-layer {dec} with {self.decoder_heads} heads reading it {how}")

    # -- the Backend interface ----------------------------------------------------------------------

    def decoding_defaults(self) -> dict:
        return dict(self.settings)

    def view(self, image):
        """The part of `image` the model sees: the whole image, or the processor's centre crop."""
        if self.crop is None:
            return image
        return image.crop(_crop_box(self.image_processor, image.size))

    def pixels(self, image) -> torch.Tensor:
        """An image (a PIL image, a path, an H×W×3 array; a list of them for a batch) -> [B, 3, H, W],
        exactly the processor's output for the RGB picture vizcap.open_image reads."""
        from PIL import Image

        from .images import open_image

        images = list(image) if isinstance(image, (list, tuple)) else [image]
        images = [im if isinstance(im, Image.Image) and im.mode == "RGB" else open_image(im) for im in images]
        out = self.image_processor(images=images, return_tensors="pt")
        return out["pixel_values"].to(torch.float32)

    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.family.encode(self, pixels)

    def _decode(self, ids: torch.Tensor, memory: torch.Tensor, cache=None, use_cache: bool = True):
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        if cache is None:  # a whole sequence, nothing padded: say so (transformers warns when a pad id appears)
            kwargs["attention_mask"] = torch.ones_like(ids)
        return self.family.decode(self, ids, memory, use_cache=use_cache, **kwargs)

    def session(self, pixels: torch.Tensor):
        """Encode once (the encoder's maps go to the active capture) and return the step function."""
        return self.family.session(self, self._encode(pixels))

    def cache_steps(self, memory: torch.Tensor):
        """The step function over transformers' own KV cache (for decoders vizcap's CachedSteps does not
        cover): the first call runs the start token, later ones one token per row, rows reordered by
        `parents` for beams."""
        state: dict = {}

        def step(tokens, parents):
            if tokens is None:
                out = self._decode(torch.full((1, 1), self.bos_id, dtype=torch.long), memory)
            else:
                cache = state["cache"]
                if parents.tolist() != list(range(state["rows"])):  # beams: each row continues its parent
                    cache.reorder_cache(parents)
                out = self._decode(tokens[:, None], memory.expand(len(tokens), -1, -1), cache)
            state["cache"] = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            logits = out.logits[:, -1]
            state["rows"] = logits.shape[0]
            return logits, take_captured()

        return step

    encoder_attends = True  # a ViT / BLIP vision encoder: relevancy follows its attention to the patches

    def teacher_forced(self, pixels: torch.Tensor, token_ids: list[int], keep_grad: bool = False,
                       through_encoder: bool = True):
        """One pass over [start; token_ids[:-1]] with every map captured (the oracle, and the relevancy
        pass with keep_grad=True: then the maps stay in the autograd graph). Returns (logits, cache):
        logits [P + S, V] (P = n_prefix: a prefix decoder's image positions come first), or
        [B, P + S, V] for a batch of B images (pixels [B, 3, H, W]: the same tokens read on each).
        With keep_grad and through_encoder the encoder runs with gradients (full relevancy); with
        keep_grad alone it runs without them and the gradients stop at its output (decoder relevancy)."""
        ids = torch.tensor([[self.bos_id, *token_ids[:-1]]] * len(pixels), dtype=torch.long)
        grad = torch.enable_grad() if keep_grad else torch.inference_mode()
        with grad, capture(keep_grad=keep_grad) as cache:
            if keep_grad and not through_encoder:
                with torch.no_grad():
                    memory = self._encode(pixels)
                memory = memory.clone().requires_grad_(True)  # a leaf: the gradients stop here
            else:
                memory = self._encode(pixels)
            cache.memory = memory if keep_grad else None
            logits = self._decode(ids, memory, use_cache=False).logits
        return (logits[0] if len(pixels) == 1 else logits), cache


# ------------------------------------------------------------------------------------------------
# Loading


def load_pretrained(source: str | Path, family, progress=None) -> HFCaptioner:
    """Load a local folder or a hub id of a model of `family` (see the module docstring): its config is
    checked by the family (`family.model_class(config, source)`), then the weights with eager attention,
    the image processor and the tokenizer. CheckpointError, one line, on any problem."""
    from transformers import AutoImageProcessor, AutoTokenizer

    source = str(source)
    say = progress or (lambda message: None)
    say(f"resolving {source}")
    target = resolve(source)
    config = read_config(source)
    model_cls = family.model_class(config, source)
    _check_memory(source, target)
    say(f"loading the {config.model_type} weights of {source}")
    try:
        with _quiet_transformers(show_progress=progress is not None):
            model = model_cls.from_pretrained(target, attn_implementation="eager", trust_remote_code=False)
    except Exception as e:
        raise checkpoint_error(f"{source}: cannot load the model ({type(e).__name__}: {_first_line(e)})") from None
    _require_eager(model, source)
    say("loading the image processor and tokenizer")
    try:
        image_processor = AutoImageProcessor.from_pretrained(target, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(target, trust_remote_code=False)
    except Exception as e:
        raise checkpoint_error(f"{source}: cannot load its processor or tokenizer ({type(e).__name__}: {_first_line(e)})") from None
    try:
        return HFCaptioner(model, image_processor, tokenizer, name=source, family=family)
    except Exception as e:
        if isinstance(e, CheckpointError):
            raise
        raise checkpoint_error(f"{source}: cannot be explained ({type(e).__name__}: {_first_line(e)})") from None


def unsupported_model(source: str, families) -> CheckpointError:
    """The error for a Hugging Face model no registered family reads (its config read first, so that an
    unreadable one says so), naming what `families` (those with a model_type) explain."""
    kind = getattr(read_config(source), "model_type", None)
    names = [f.summary for f in families]
    known = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
    return checkpoint_error(f"{source}: a {kind!r} model; vizcap explains {known} captioners")


# ------------------------------------------------------------------------------------------------
# helpers


class _quiet_transformers:
    """transformers' own progress bars ("Loading weights") only where vizcap shows progress (a terminal),
    and its warnings held back while a model loads: stderr stays clean on a normal run."""

    def __init__(self, show_progress: bool):
        self.show_progress = show_progress

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.verbosity = hf_logging.get_verbosity()
        self.bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        if not self.show_progress:
            hf_logging.disable_progress_bar()

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.verbosity)
        if self.bars:
            hf_logging.enable_progress_bar()
        return False


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(e).__name__


def vision_layers(vision) -> list:
    """The transformer layers of a vision encoder, wherever this transformers version keeps them."""
    for owner in (vision, getattr(vision, "encoder", None)):
        for name in ("layers", "layer"):
            found = getattr(owner, name, None) if owner is not None else None
            if isinstance(found, torch.nn.ModuleList):
                return list(found)
    raise ValueError(f"cannot find the layers of {type(vision).__name__}")


def _require_eager(model, source: str) -> None:
    configs = [model.config] + [getattr(model.config, n) for n in ("encoder", "decoder", "vision_config", "text_config")
                                if hasattr(model.config, n)]
    for sub in list(model.modules()):
        cfg = getattr(sub, "config", None)
        if cfg is not None:
            configs.append(cfg)
    for cfg in configs:
        impl = getattr(cfg, "_attn_implementation", None)
        if impl not in (None, "eager"):
            try:
                model.set_attn_implementation("eager")
            except Exception:
                raise checkpoint_error(f"{source}: attention implementation {impl!r} cannot be switched to eager") from None
            return


def _generation_settings(gen_model, prompt_len: int, max_positions: int | None) -> tuple[dict, list[str]]:
    """The decoding settings `generate()` would use by default, and the ones vizcap cannot follow."""
    gc = gen_model.generation_config
    try:
        defaults = gc._get_default_generation_params()
    except AttributeError:
        defaults = {"max_length": 20, "early_stopping": False, "length_penalty": 1.0, "num_beams": 1}

    def get(name):
        value = getattr(gc, name, None)
        return defaults.get(name) if value is None else value

    if getattr(gc, "max_new_tokens", None):
        max_new = int(gc.max_new_tokens)
    elif getattr(gc, "max_length", None) is not None:
        max_new = int(gc.max_length) - prompt_len
    else:  # transformers' default: 20 new tokens, within the position table
        max_new = 20
        limit = getattr(gen_model.config, "max_position_embeddings", None)
        if limit:
            max_new = min(max_new + prompt_len, int(limit)) - prompt_len
    max_new = max(1, min(max_new, 256, (max_positions or 10**9) - prompt_len))
    early = get("early_stopping")
    # Hugging Face's early_stopping in vizcap.decoding's terms: False -> its heuristic, True -> stop at
    # the first K ended beams, "never" -> the exact bound
    early = {False: "heuristic", True: "first_k", "never": "exact"}.get(early, "heuristic")
    settings = {"max_tokens": max_new, "early_stopping": early,
                "length_penalty": float(get("length_penalty") or 1.0), "num_beams": int(get("num_beams") or 1)}
    unsupported = []
    for name, off in _UNSUPPORTED.items():
        value = getattr(gc, name, None)
        if value is not None and value != off and not (isinstance(value, (list, tuple)) and not value):
            unsupported.append(f"{name}={value!r}")
    min_length = getattr(gc, "min_length", None)
    if min_length and min_length > prompt_len:
        unsupported.append(f"min_length={min_length!r}")
    return settings, unsupported


def _crop_note(processor) -> str | None:
    if not getattr(processor, "do_center_crop", False):
        return None
    crop = getattr(processor, "crop_size", None) or {}
    # a dict, or transformers 5's SizeDict (CLIP's processor, GIT's): both answer .get
    h, w = (crop.get("height"), crop.get("width")) if hasattr(crop, "get") else (None, None)
    shown = f" to {w}x{h}" if h and w else ""
    return f"this model's processor centre-crops the resized image{shown}: maps cover the cropped region only"


def _crop_box(processor, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in original pixels of the region a resize + centre crop keeps."""
    W, H = size
    resize = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) or {}
    if "shortest_edge" in resize:
        s = resize["shortest_edge"]
        scale = s / min(W, H)
        Wr, Hr = (s, int(s * H / W)) if W <= H else (int(s * W / H), s)
    elif "height" in resize and "width" in resize:
        Wr, Hr = resize["width"], resize["height"]
    else:
        Wr, Hr = W, H
    scale_x, scale_y = W / Wr, H / Hr
    cw, ch = min(crop.get("width", Wr), Wr), min(crop.get("height", Hr), Hr)
    left, top = (Wr - cw) // 2, (Hr - ch) // 2
    box = (left * scale_x, top * scale_y, (left + cw) * scale_x, (top + ch) * scale_y)
    return tuple(int(round(v)) for v in box)


def _weights_bytes(directory: Path) -> int | None:
    """fp32 bytes of the weights in a local folder (safetensors headers; .bin: its file size)."""
    total = 0
    for path in directory.glob("*.safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    n = 1
                    for d in f.get_slice(key).get_shape():
                        n *= d
                    total += 4 * n
        except Exception:
            total += path.stat().st_size
    if not total:
        total = sum(p.stat().st_size for p in directory.glob("*.bin"))
    return total or None


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(source: str, target: str) -> None:
    """Refuse, with one line, a model whose weights would not fit in the memory left."""
    directory = Path(target)
    if not directory.is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(target, "config.json")
            directory = Path(cached).parent if isinstance(cached, str) else None
        except Exception:
            directory = None
    need = _weights_bytes(directory) if directory is not None else None
    have = _available_bytes()
    limit = os.environ.get("VIZCAP_MEMORY_LIMIT_MB")
    if limit and limit.isdigit():
        have = min(have or 1 << 62, int(limit) << 20)
    if need and have is not None and need * 1.3 > have:
        raise checkpoint_error(f"{source}: needs about {need * 1.3 / 2**30:.1f} GiB of memory for its weights, "
                     f"but only {have / 2**30:.1f} GiB is available")
