"""`Captioner`: the model, its tokenizer and its preprocessing, saved and loaded as one directory.

    checkpoint/
      config.json        CaptionerConfig (plus a format version)
      model.safetensors  the weights (safetensors: plain tensors, no executable code)
      tokenizer.json     a `tokenizers` tokenizer

`vizcap.load()` opens the shipped ShapeScenes checkpoint; `vizcap.load(path)` any directory that
`train/` wrote (through the family registry, vizcap/families/: this backend is the adapter of the
vizcap checkpoint family and declares its facts below).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from .backend import CheckpointError, ExplainAPI
from .decoding import DecodingParams, Hypothesis, search_batch, step_function
from .files import DEFAULT_CHECKPOINT, atomic_write, write_json
from .hooks import capture, install_hook_points
from .images import open_image, to_model_input
from .model import CaptionerConfig, CaptionModel
from .tokenizer import CaptionTokenizer

FORMAT_VERSION = 1


class Captioner(ExplainAPI):
    """A vizcap checkpoint, and one implementation of the backend interface (vizcap/backend.py)."""

    kind = "vizcap"
    family_label = "vizcap checkpoint"
    is_photo_model = False  # its pages assume ShapeScenes, whose truth vizcap knows
    decodes_text = False  # word-level: the caption is its tokens joined (Explanation.caption)
    decoder_module_prefixes = ("mapper.", "decoder.")  # what reads the image: re-initialised by photo_trust
    n_extra_keys = 0  # the decoder's cross-attention keys are patches only
    prefix_is_image = False  # its prefix tokens are the mapper's learned queries, each with its own map
    crop = None  # preprocessing never crops

    def __init__(self, model: CaptionModel, tokenizer: CaptionTokenizer, name: str = "vizcap model"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cfg = model.cfg
        self.name = name
        install_hook_points(self.model)  # stateless hooks; they record only inside capture()

    @property
    def grid(self) -> tuple[int, int]:
        return self.model.grid

    # -- the backend interface (vizcap/backend.py) ------------------------------------------------

    n_prefix = property(lambda self: self.cfg.n_prefix)
    decoder_layers = property(lambda self: self.cfg.decoder_layers)
    decoder_heads = property(lambda self: self.cfg.decoder_heads)
    mode = property(lambda self: self.cfg.mode)
    has_cross = property(lambda self: self.cfg.mode != "prefix")
    bos_id = property(lambda self: self.cfg.bos_id)
    eos_id = property(lambda self: self.cfg.eos_id)
    pad_id = property(lambda self: self.cfg.pad_id)
    vocab_size = property(lambda self: self.cfg.vocab_size)
    banned = property(lambda self: banned_tokens(self.cfg))
    token_limit = property(lambda self: longest_caption(self.cfg))
    max_tokens = property(lambda self: min(20, self.token_limit))

    image_mean = property(lambda self: list(self.cfg.image_mean))
    image_std = property(lambda self: list(self.cfg.image_std))

    def decoding_defaults(self) -> dict:
        return {}

    def with_model(self, model: CaptionModel, name: str) -> "Captioner":
        """The same captioner around another copy of its model (e.g. one with a re-initialised decoder)."""
        return Captioner(model, self.tokenizer, name=name)

    def view(self, image):
        return image  # the whole image: never cropped

    def session(self, pixels: torch.Tensor):
        """Encode once (encoder and mapper maps go to the active capture) and return the step
        function for vizcap.decoding.search: (tokens, parents) -> (logits [K, V], captured maps)."""
        return decoder_session(self.model, self.model.encode(pixels))

    @property
    def encoder_attends(self) -> bool:
        """The encoder is a vision transformer whose attention is captured (encoder.blocks.{i}.attn):
        relevancy can follow it back to the input patches. A CNN encoder has no attention to follow."""
        return any(n.startswith("encoder.blocks.") for n in self.model._vizcap_hook_names)

    def teacher_forced(self, pixels: torch.Tensor, token_ids: list[int], keep_grad: bool = False,
                       through_encoder: bool = True):
        """One pass over [prefix; <bos>; token_ids[:-1]] with every map captured (the oracle; with
        keep_grad the relevancy pass: maps stay in the autograd graph). Returns (logits [S, V] —
        [B, S, V] for a batch of B images pixels [B, 3, S, S] — , cache).
        With keep_grad, a ViT encoder and through_encoder, the encoder runs with gradients too (full
        relevancy follows its attention); otherwise it runs without them (a CNN's has no attention
        maps anyway) and the gradients stop at its output, the memory (decoder relevancy)."""
        model, cfg = self.model, self.cfg
        B = pixels.shape[0]
        ids = torch.tensor([[cfg.bos_id, *token_ids[:-1]]] * B, dtype=torch.long)
        grad = torch.enable_grad() if keep_grad else torch.inference_mode()
        with grad, capture(keep_grad=keep_grad) as cache:
            if keep_grad and not (through_encoder and self.encoder_attends):
                with torch.no_grad():
                    memory = model.encode(pixels)
                memory = memory.clone().requires_grad_(True)  # a leaf: the gradients stop here
            else:
                memory = model.encode(pixels)
            cache.memory = memory if keep_grad else None
            prefix, _ = model.prefix(memory)
            logits = model.decode(memory, prefix, ids, use_cache=False).logits
        return (logits[0] if B == 1 else logits), cache

    # -- io ------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"format_version": FORMAT_VERSION, **self.cfg.to_dict(), **(extra or {})}
        write_json(directory / "config.json", config)
        atomic_write(directory / "tokenizer.json", lambda p: self.tokenizer.save(p))
        atomic_write(directory / "model.safetensors", lambda p: save_model(self.model, p))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None) -> "Captioner":
        directory = Path(directory) if directory is not None else DEFAULT_CHECKPOINT
        if not directory.is_dir():
            raise CheckpointError(f"{directory}: not a checkpoint directory")
        files = {name: directory / name for name in ("config.json", "model.safetensors", "tokenizer.json")}
        for name, path in files.items():
            if not path.is_file():
                raise CheckpointError(f"{path}: missing ({name} is required in a checkpoint directory)")
        try:
            raw = json.loads(files["config.json"].read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object")
            raw.pop("format_version", None)
            for key in ("decoder_source",):  # informational keys written by train/
                raw.pop(key, None)
            _check_config(raw)
            cfg = CaptionerConfig.from_dict(raw)
            _check_token_ids(cfg)
        except OSError as e:
            raise CheckpointError(f"{files['config.json']}: cannot read ({e.strerror or e})") from None
        except Exception as e:  # bad JSON, unknown keys, values of the wrong type or range
            raise CheckpointError(_one_line(f"{files['config.json']}: {e}")) from None
        try:
            tokenizer = CaptionTokenizer.from_file(files["tokenizer.json"])
        except Exception as e:  # tokenizers raises its own Exception type
            raise CheckpointError(_one_line(f"{files['tokenizer.json']}: not a valid tokenizer ({e})")) from None
        if tokenizer.vocab_size != cfg.vocab_size:
            raise CheckpointError(
                f"{files['tokenizer.json']}: vocabulary of {tokenizer.vocab_size} tokens, "
                f"but config.json says vocab_size {cfg.vocab_size}"
            )
        _check_header(cfg, files["model.safetensors"])  # before building: a config that lies costs nothing
        try:
            model = CaptionModel(cfg)
        except Exception as e:  # e.g. an unknown timm encoder name or an impossible feature stage
            raise CheckpointError(_one_line(f"{files['config.json']}: cannot build the model ({type(e).__name__}: {e})")) from None
        try:
            state = load_file(files["model.safetensors"])
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(_one_line(f"{files['model.safetensors']}: unreadable ({e})")) from None
        _load_state(model, state, files["model.safetensors"])
        return cls(model, tokenizer, name=str(directory))

    # -- inference -----------------------------------------------------------------------------

    def pixels(self, images) -> torch.Tensor:
        """Images (paths, PIL, arrays) -> the model's input batch [B, 3, S, S]."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        arrays = [
            to_model_input(open_image(im), self.cfg.image_size, self.cfg.image_mean, self.cfg.image_std)
            for im in images
        ]
        return torch.from_numpy(np.stack(arrays))

    @torch.inference_mode()
    def generate_greedy(self, pixels: torch.Tensor, max_tokens: int = 20) -> tuple[list[list[int]], list[list[float]]]:
        """Greedy decoding of a batch (vizcap.decoding.search_batch): token ids and their probabilities."""
        found = greedy_search(self.model, self.model.encode(pixels), max_tokens)
        return [h.tokens for h in found], [np.exp(np.array(h.logps, dtype=np.float64)).tolist() for h in found]

    def caption_batch(self, images, max_tokens: int = 20) -> list[str]:
        tokens, _ = self.generate_greedy(self.pixels(images), max_tokens)
        return [self.tokenizer.decode(t) for t in tokens]

    def caption(self, image, max_tokens: int = 20) -> str:
        """The greedy caption of one image (a path, a PIL image or an H×W×3 uint8 array)."""
        return self.caption_batch([image], max_tokens)[0]

    def caption_details(self, image, max_tokens: int = 20) -> dict:
        """Caption plus its tokens and their probabilities (greedy)."""
        tokens, probs = self.generate_greedy(self.pixels([image]), max_tokens)
        ids, p = tokens[0], probs[0]
        shown = [i for i in ids if i != self.cfg.eos_id]
        return {
            "caption": self.tokenizer.decode(ids),
            "tokens": [self.tokenizer.token_text(i) for i in shown],
            "token_probs": [round(float(x), 6) for x, i in zip(p, ids) if i != self.cfg.eos_id],
            "grid": list(self.grid),
        }


def banned_tokens(cfg: CaptionerConfig) -> tuple[int, ...]:
    """Token ids a caption never contains (<pad>, <bos>), unless they double as <eos>."""
    return tuple(sorted({cfg.pad_id, cfg.bos_id} - {cfg.eos_id}))


def longest_caption(cfg: CaptionerConfig) -> int:
    """The longest caption the decoder's position table leaves room for (at most 256 tokens)."""
    return max(1, min(256, cfg.max_positions - cfg.n_prefix - 1))


def decoder_session(model: CaptionModel, memory: torch.Tensor):
    """The step function of vizcap.decoding.search for a CaptionModel reading `memory` [B, N, d]
    (from CaptionModel.encode, or cached encoder features): each row's prompt is its prefix and
    <bos>. With B > 1 the rows are the images of a batch (vizcap.decoding.search_batch)."""
    cfg = model.cfg
    prefix, _ = model.prefix(memory)
    bos = model.decoder.transformer.wte(
        torch.full((memory.shape[0], 1), cfg.bos_id, dtype=torch.long, device=memory.device))
    embeds = bos if prefix is None else torch.cat([prefix, bos], dim=1)
    return step_function(model.decoder, embeds, memory if cfg.mode != "prefix" else None)


def greedy_search(model: CaptionModel, memory: torch.Tensor, max_tokens: int) -> list[Hypothesis]:
    """Greedy captions of a batch from its memory [B, N, d], one Hypothesis (tokens, log-probabilities)
    per image: Captioner.caption and the evaluation during training (train/) both decode here."""
    B = memory.shape[0]
    max_tokens = min(max_tokens, longest_caption(model.cfg))
    if max_tokens < 1:
        return [Hypothesis() for _ in range(B)]
    cfg = model.cfg
    results = search_batch(decoder_session(model, memory), DecodingParams(max_tokens=max_tokens), cfg.eos_id,
                           cfg.vocab_size, banned_tokens(cfg), rows=B)
    return [r.best for r in results]


# timm.create_model keywords that would read weights from a file or the network: a config.json must
# never make loading a checkpoint open anything but its own model.safetensors.
_LOADING_KWARGS = ("checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
MAX_IMAGE_SIZE = 2048  # the model's square input side; images are kept at most this large anyway


def _one_line(message: str) -> str:
    return " ".join(message.split("\n")).strip()[:500]


def _check_config(raw: dict) -> None:
    """Values that train/ never writes, refused before anything is built: a ValueError naming the key."""
    if "encoder" in raw and (not isinstance(raw["encoder"], str) or not raw["encoder"]):
        raise ValueError(f"encoder must be a timm model name; got {raw['encoder']!r}")
    kwargs = raw.get("encoder_kwargs", {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"encoder_kwargs must be an object; got {type(kwargs).__name__}")
    loading = sorted(k for k in kwargs if k in _LOADING_KWARGS)
    if loading:
        raise ValueError(f"encoder_kwargs {loading[0]!r} is not allowed (weights come only from model.safetensors)")
    sizes = {"image_size": (1, MAX_IMAGE_SIZE), "d_model": (1, 1 << 16), "decoder_layers": (1, 1024),
             "decoder_heads": (1, 1024), "mapper_heads": (1, 1024), "mapper_layers": (0, 1024),
             "max_positions": (1, 1 << 20), "vocab_size": (1, 1 << 24), "n_prefix": (0, 1 << 12)}
    for name, (lo, hi) in sizes.items():
        value = raw.get(name, lo)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValueError(f"{name} must be a whole number from {lo} to {hi}; got {value!r}"[:300])


def _check_token_ids(cfg: CaptionerConfig) -> None:
    for name in ("bos_id", "eos_id", "pad_id"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < cfg.vocab_size:
            raise ValueError(f"{name} must be a token id below vocab_size {cfg.vocab_size}; got {value!r}"[:300])


def _check_header(cfg: CaptionerConfig, path: Path) -> None:
    """The decoder's size read from the safetensors header (no tensor data) must match config.json,
    so that a config describing a giant model is refused before that model is built."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(_one_line(f"{path}: unreadable ({e})")) from None
    expected = {"decoder.transformer.wte.weight": (cfg.vocab_size, cfg.d_model),
                "decoder.lm_head.weight": (cfg.vocab_size, cfg.d_model),
                "decoder.transformer.wpe.weight": (cfg.max_positions, cfg.d_model)}
    for name, shape in expected.items():
        if name in shapes and shapes[name] != shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {shapes[name]}, config.json implies {shape}")
    layers = {k.split(".")[3] for k in shapes if k.startswith("decoder.transformer.h.")}
    if layers and len(layers) != cfg.decoder_layers:
        raise CheckpointError(f"{path}: {len(layers)} decoder layers, config.json says decoder_layers {cfg.decoder_layers}")


def _load_state(model: CaptionModel, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    # GPT-2 ties lm_head to the word embeddings; safetensors stores the shared tensor under one name
    tied = ("decoder.lm_head.weight", "decoder.transformer.wte.weight")
    for a, b in (tied, tied[::-1]):
        if a in own and a not in state and b in state:
            state = {**state, a: state[b]}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise CheckpointError(f"{path}: does not match config.json: " + "; ".join(detail))
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies {tuple(own[name].shape)}"
            )
    model.load_state_dict(state, strict=True)
