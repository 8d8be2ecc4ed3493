"""The one small interface between a captioning model and vizcap's decoding loop and explanations.

vizcap explains several families of model — its own checkpoints (`vizcap.captioner.Captioner`), Hugging
Face `VisionEncoderDecoderModel`s (ViT/DeiT/BEiT + GPT-2 with cross-attention), Hugging Face
`BlipForConditionalGeneration` and Hugging Face `GitForCausalLM` (`vizcap.hub.HFCaptioner` with a
family adapter; the registry that loads each is vizcap/families/) — through the same few members:

    kind, name        the family's key ("vizcap" | "vision-encoder-decoder" | "blip" | "git"); this model's name
    family_label      the family in a few words for people ("Hugging Face BLIP", ...)
    is_photo_model    a captioner of photos (True), or a ShapeScenes model whose truth vizcap knows
    decodes_text      sub-word tokens: the caption is tokenizer.decode(ids), not the tokens joined
    decoder_module_prefixes  parameter-name prefixes of what reads the image (decoder, vizcap's mapper)
    image_mean, image_std    the normalisation pixels() applies (to show what the model saw)
    grid              (gh, gw) patch grid of the encoder
    n_prefix          decoder positions before the start token that carry the image (vizcap's
                      prefix tokens; GIT's image tokens, class token first; 0 for cross-attention
                      Hugging Face models)
    prefix_is_image   the prefix tokens are the encoder's own tokens (GIT): each stands for one
                      patch (or the class token) itself; False: vizcap's mapper made them
    n_extra_keys      encoder tokens that are not patches (class / distillation tokens) and come
                      first among the cross-attention keys (GIT: among the prefix tokens): 1 for
                      ViT, BLIP and GIT, 2 for distilled DeiT, 0 for vizcap. Their share of
                      attention is reported separately.
    decoder_layers, decoder_heads, has_cross
    bos_id            the token the decoder starts from (<bos>, GPT-2's <|endoftext|>, BLIP's [DEC], GIT's [CLS])
    eos_id, pad_id, vocab_size
    banned            token ids never chosen (vizcap bans <pad>/<bos>; Hugging Face bans nothing)
    max_tokens        the model's own longest caption (new tokens) when none is asked for
    token_limit       the longest caption its position table allows
    mode              "cross" | "prefix" | "both": how the decoder sees the image (GIT: "prefix")
    tokenizer         token_text(id) -> str, decode(ids) -> str
    crop              None, or a sentence saying that the processor centre-crops (overlays are then
                      drawn on the cropped region: `view(image)` returns it)
    precision, fast   "float32", or "int8" in fast mode (vizcap/fast.py: a Hugging Face captioner's
                      linear layers in int8); fast is precision != "float32"

    pixels(image)                 a PIL image -> the model's input [1, 3, H, W]
    view(image)                   the part of the image the model sees (the image, or its crop)
    session(pixels)               encode once (inside the active vizcap.hooks.capture(), so the
                                  encoder's maps are recorded) and return step_fn(tokens, parents)
                                  -> (logits [K, V], captured {hook name: [tensors]}) for
                                  vizcap.decoding.search: one decoder step with a KV cache whose rows
                                  are reordered by `parents` for beams
    teacher_forced(pixels, ids, keep_grad=False, through_encoder=True)
                                  one forward pass over [prefix; start; ids[:-1]] with every map
                                  captured: (logits [P + S, V] — [B, P + S, V] for a batch of B
                                  images — , cache), P = n_prefix; with keep_grad the maps stay in
                                  the autograd graph, the encoder's too only with through_encoder,
                                  and cache.memory is the encoder output the decoder read
    encoder_attends               the encoder is a vision transformer whose attention is captured
                                  (relevancy can follow it to the input patches)
    decoding_defaults()           DecodingParams fields the model's own settings fix (Hugging Face:
                                  its generation config's early_stopping; max_tokens)
    with_model(model, name)       the same captioner around another copy of its model

Canonical hook names every backend records into the active capture:
    encoder.blocks.{i}.attn        ViT self-attention [1, heads, n_extra + N, n_extra + N]
    decoder.h.{l}.attn             decoder self-attention [K, heads, q, keys]
    decoder.h.{l}.crossattention   decoder cross-attention [K, heads, q, n_extra + N]
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch

from . import hooks

StepFn = Callable[[torch.Tensor | None, torch.Tensor | None], tuple[torch.Tensor, dict]]


class Tokenizer(Protocol):
    def token_text(self, token_id: int) -> str: ...

    def decode(self, ids: list[int]) -> str: ...


@runtime_checkable
class Backend(Protocol):
    kind: str
    name: str
    family_label: str
    is_photo_model: bool
    decodes_text: bool
    decoder_module_prefixes: tuple[str, ...]
    image_mean: list[float]
    image_std: list[float]
    grid: tuple[int, int]
    n_prefix: int
    prefix_is_image: bool
    n_extra_keys: int
    decoder_layers: int
    decoder_heads: int
    has_cross: bool
    bos_id: int
    eos_id: int
    pad_id: int
    vocab_size: int
    banned: tuple[int, ...]
    max_tokens: int
    tokenizer: Tokenizer
    crop: str | None

    def pixels(self, image) -> torch.Tensor: ...

    def session(self, pixels: torch.Tensor) -> StepFn: ...

    def teacher_forced(self, pixels: torch.Tensor, token_ids: list[int], keep_grad: bool = False,
                       through_encoder: bool = True): ...

    def with_model(self, model: torch.nn.Module, name: str) -> "Backend": ...


class ExplainAPI:
    """caption / explain / caption_details for any backend, with the model's own decoding defaults
    (Hugging Face: its generation config) filling every knob left as None."""

    precision = "float32"  # fast mode (vizcap/fast.py) sets "int8" on a Hugging Face captioner

    @property
    def fast(self) -> bool:
        return self.precision != "float32"

    def decoding_params(self, strategy: str | None = None, beams: int | None = None, top_k: int | None = None,
                        top_p: float | None = None, temperature: float | None = None,
                        length_penalty: float | None = None, seed: int | None = None, max_tokens: int | None = None,
                        early_stopping: str | None = None):
        """The DecodingParams of one request (vizcap.decoding.params_for): knobs left as None take this
        model's own defaults, then DecodingParams' (a beam search's width: the model's num_beams, else 1)."""
        from .strategies import params_for

        own = self.decoding_defaults()
        defaults = {"beams": max(1, int(own.get("num_beams", 1))), "length_penalty": own.get("length_penalty"),
                    "early_stopping": own.get("early_stopping"), "max_tokens": self.max_tokens}
        return params_for(strategy or "greedy", defaults, beams=beams, top_k=top_k, top_p=top_p,
                          temperature=temperature, length_penalty=length_penalty, seed=seed, max_tokens=max_tokens,
                          early_stopping=early_stopping)

    def explain(self, image, strategy: str | None = None, beams: int | None = None, top_k: int | None = None,
                top_p: float | None = None, temperature: float | None = None, length_penalty: float | None = None,
                seed: int | None = None, max_tokens: int | None = None, early_stopping: str | None = None,
                params=None):
        """Caption `image` and capture every attention map behind every word (see vizcap.explain).
        Either `params` (a vizcap.decoding.DecodingParams, used as it is) or keyword knobs; knobs left
        as None take the model's own defaults (decoding_defaults())."""
        from .explain import explain

        knobs = dict(strategy=strategy, beams=beams, top_k=top_k, top_p=top_p, temperature=temperature,
                     length_penalty=length_penalty, seed=seed, max_tokens=max_tokens, early_stopping=early_stopping)
        if params is None:
            params = self.decoding_params(**knobs)
        elif any(v is not None for v in knobs.values()):
            raise ValueError("explain() takes params or decoding knobs, not both")
        return explain(self, image, params)


class CheckpointError(ValueError):
    """A checkpoint directory (or Hugging Face model) that cannot be loaded; the message names the file
    and the problem. Every backend's loader raises it."""


take_captured = hooks.take_captured  # one decoding step's maps, from the active capture()


def install_points(model: torch.nn.Module, points: dict[str, tuple[torch.nn.Module, int | None]],
                   gradient_pass_points: dict[str, tuple[torch.nn.Module, int | None]] | None = None) -> list[str]:
    """Attach vizcap's stateless capture hooks to `points` (hook name -> (module, output index)),
    once per model; they record only inside vizcap.hooks.capture(). `gradient_pass_points` record only
    in a keep_grad capture (what relevancy's shortcuts read; no explanation lists them). Returns the
    names of `points`."""
    if getattr(model, "_vizcap_hook_names", None) is not None:
        return model._vizcap_hook_names
    for name, (module, index) in points.items():
        module.register_forward_hook(hooks._make_hook(name, index))
    for name, (module, index) in (gradient_pass_points or {}).items():
        module.register_forward_hook(hooks._make_hook(name, index, gradient_pass_only=True))
    model._vizcap_hook_names = list(points)
    return model._vizcap_hook_names
