"""Named hook points for attention weights, captured per call.

Every attention module of the captioner gets a stable, readable name that mirrors its module path
(TransformerLens style):

    encoder.blocks.{i}.attn             timm ViT self-attention   [B, heads, 1+N, 1+N]  (ViT encoders only)
    mapper.attn                         prefix queries -> patches [B, heads, P, N]
    mapper.blocks.{i}.attn              self-attention over the prefix
    decoder.h.{i}.attn                  GPT-2 causal self-attention [B, heads, q, k]
    decoder.h.{i}.crossattention        GPT-2 cross-attention to the patches [B, heads, q, N]

A Hugging Face family may add points that record only in a relevancy pass (a keep_grad capture), never
in an explanation: decoder.h.{i}.crossattention.query and .context (BLIP's cross-attention queries and
contexts, which relevancy's shortcut to the memory's gradient reads; vizcap.explain._memory_gradient).

`install_hook_points(model)` attaches one forward hook per module, once, when a model is loaded
(switching a ViT encoder's fused attention off first: `unfuse_encoder_attention`).
The hooks hold no data: they write into the cache of the innermost active `capture()` context,
which lives in a `contextvars.ContextVar`. Each thread (and each asyncio task) has its own context,
so two Streamlit sessions explaining different images at the same moment never see each other's
maps, and outside a `capture()` block the hooks do nothing.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch


class ActivationCache:
    """What one call captured: hook name -> list of tensors (one per forward pass, in call order)."""

    def __init__(self, keep_grad: bool = False):
        self.keep_grad = keep_grad
        self.store: dict[str, list[torch.Tensor]] = defaultdict(list)
        # the encoder's output the decoder read, set by a teacher-forced pass with keep_grad: relevancy
        # splits its backward passes there (every word through the small decoder at once, then the encoder)
        self.memory: torch.Tensor | None = None

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if self.keep_grad:  # kept in the graph, for torch.autograd.grad
            self.store[name].append(tensor)
        else:
            self.store[name].append(tensor.detach())

    def __getitem__(self, name: str) -> list[torch.Tensor]:
        return self.store[name]

    def __contains__(self, name: str) -> bool:
        return name in self.store

    def names(self) -> list[str]:
        return list(self.store)

    def pop_all(self) -> dict[str, list[torch.Tensor]]:
        """Take everything captured so far and start empty (one decoding step at a time)."""
        out, self.store = dict(self.store), defaultdict(list)
        return out


_ACTIVE: ContextVar[ActivationCache | None] = ContextVar("vizcap_capture", default=None)


@contextmanager
def capture(keep_grad: bool = False) -> Iterator[ActivationCache]:
    """Capture every named attention map computed inside the block, in this context only."""
    cache = ActivationCache(keep_grad)
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def take_captured() -> dict[str, list[torch.Tensor]]:
    """Everything the active capture() holds so far, leaving it empty (one decoding step's maps)."""
    cache = _ACTIVE.get()
    return cache.pop_all() if cache is not None else {}


def record(name: str, weights: torch.Tensor) -> None:
    """Store `weights` under hook point `name` in the active capture (if any), exactly as that hook
    point's hook would: for code that computes an attention module's weights without calling the
    module (vizcap.decoding.CachedSteps)."""
    cache = _ACTIVE.get()
    if cache is not None:
        cache.add(name, weights)


def _make_hook(name: str, index: int | None, gradient_pass_only: bool = False):
    """The hook of point `name`: records output[index] (the output itself when index is None) into the
    active capture; with gradient_pass_only, only into a keep_grad capture (the relevancy pass)."""
    def hook(module, inputs, output):
        cache = _ACTIVE.get()
        if cache is None or (gradient_pass_only and not cache.keep_grad):
            return
        weights = output if index is None else output[index]
        if weights is not None:
            cache.add(name, weights)

    hook._vizcap_hook_point = name  # marks vizcap's own hooks (CachedSteps checks that no other hook is bypassed)
    return hook


def _encoder_attentions(model: torch.nn.Module) -> list[tuple[int, torch.nn.Module]]:
    """(block index, attention module) of a timm ViT encoder whose weights a hook can read."""
    blocks = getattr(model.encoder.model, "blocks", []) or []
    return [(i, b.attn) for i, b in enumerate(blocks)
            if getattr(b, "attn", None) is not None and hasattr(b.attn, "attn_drop") and hasattr(b.attn, "fused_attn")]


def unfuse_encoder_attention(model: torch.nn.Module) -> None:
    """Switch a timm ViT encoder's attention to its unfused path: the fused SDPA path computes no
    weights a hook could read. install_hook_points calls it, so every loaded Captioner's encoder runs
    unfused, for captions and maps alike."""
    for _, attn in _encoder_attentions(model):
        attn.fused_attn = False


def hook_point_modules(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, int | None]]:
    """Hook name -> (module, which output holds the weights) for a CaptionModel. Changes nothing."""
    points: dict[str, tuple[torch.nn.Module, int | None]] = {}
    for i, attn in _encoder_attentions(model):
        points[f"encoder.blocks.{i}.attn"] = (attn.attn_drop, None)  # sees the post-softmax weights
    if model.mapper is not None:
        points["mapper.attn"] = (model.mapper.attn, 1)
        for i, block in enumerate(model.mapper.blocks):
            points[f"mapper.blocks.{i}.attn"] = (block.attn, 1)
    for i, block in enumerate(model.decoder.transformer.h):
        points[f"decoder.h.{i}.attn"] = (block.attn, 1)
        if hasattr(block, "crossattention"):
            points[f"decoder.h.{i}.crossattention"] = (block.crossattention, 1)
    return points


def install_hook_points(model: torch.nn.Module) -> list[str]:
    """Attach the capture hooks (idempotent); returns the hook names."""
    if getattr(model, "_vizcap_hook_names", None) is not None:
        return model._vizcap_hook_names
    unfuse_encoder_attention(model)  # so that the encoder's hooks see its attention weights
    points = hook_point_modules(model)
    for name, (module, index) in points.items():
        module.register_forward_hook(_make_hook(name, index))
    model._vizcap_hook_names = list(points)
    return model._vizcap_hook_names
