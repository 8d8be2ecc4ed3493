"""Fast mode for big Hugging Face captioners on a CPU: every linear layer in int8.

    vizcap.load(source, fast=True)    vizcap caption --fast    the app's "Fast mode" switch

A ViT-B/16 + GPT-2 decoder step reads every weight of the decoder once (551 MB in float32), so a step
is bound by memory; the encoder's pass is bound by arithmetic. Int8 weights (one scale per output
row) are a quarter of the bytes, and int8 products with the activations quantised on the fly
("dynamic" quantisation, torch's fbgemm/x86 kernels, VNNI where the CPU has it) are faster sums too.

Why int8 and not bfloat16: both were measured side by side (benchmarks/fast_mode.py, figures in
vizcap/fast_cost.json) on a 2-core Xeon with AVX-512 BF16, VNNI and AMX, torch 2.14, one thread: a
ViT-B/16 + GPT-2 explain took 0.52× the float32 time in int8 and 0.90× with bfloat16 weights (a
one-row bfloat16 product, a decoder step's, was no faster than float32's there).

What ships with torch is used, not torchao: the quantised linear operators (`quantized::linear_prepack`,
`quantized::linear_dynamic`). torch marks its quantisation module API (torch.ao.quantization) and
quantised tensors deprecated, and those int8 layers have no backward pass: autograd would skip them
silently and relevancy (a gradient through the decoder and the encoder) would be wrong without an
error. So Int8Linear is vizcap's own small layer over those operators, with a backward pass through
the dequantised weight: every map method works on a fast model.

What stays float32: the activations between layers, biases, layer norms, embeddings, and all of
attention's arithmetic after the projections — the maps are computed in float32 from int8 products.
The measured cost (caption agreement with float32, per-word top-cell agreement and mean absolute error
of each map method) is read from vizcap/fast_cost.json, which `python -m benchmarks.fast_mode` writes.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

FULL_PRECISION = "float32"
FAST_PRECISION = "int8"
COST_FILE = Path(__file__).with_name("fast_cost.json")
COST_COMMAND = "python -m benchmarks.fast_mode"


class Int8Linear(torch.nn.Module):
    """x·Wᵀ + b with W in int8, one scale per output row (symmetric); x is quantised per call by the
    kernel. The float32 bias is added after the product. Differentiable in x (through the
    dequantised W), so gradient maps work; the weights themselves take no gradient."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        self.set_weight(weight)

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> "Int8Linear":
        """From an `nn.Linear` (weight [out, in]) or a transformers `Conv1D` (weight [in, out])."""
        if isinstance(module, torch.nn.Linear):
            return cls(module.weight, module.bias)
        return cls(module.weight.t(), module.bias)

    def set_weight(self, weight: torch.Tensor) -> None:
        """Quantise `weight` [out, in] (float) into this layer (also: re-initialising a fast model)."""
        weight = weight.detach().float()
        scale = (weight.abs().amax(1).clamp(min=1e-12) / 127).double()
        with warnings.catch_warnings():  # torch's note that quantised tensors are deprecated (module docstring)
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(weight, scale, torch.zeros(len(scale), dtype=torch.long), 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(q, None)

    def dequantized_weight(self) -> torch.Tensor:
        """W as the int8 product sees it, in float32 [out, in]."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q, _ = torch.ops.quantized.linear_unpack(self._packed)
            return q.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _Int8Product.apply(x, self)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Int8Product(torch.autograd.Function):
    """x·Wᵀ by the int8 kernel; the gradient in x by the dequantised W (the kernel itself has none)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: Int8Linear) -> torch.Tensor:
        ctx.layer = layer
        # reduce_range: 7-bit activations, torch's default for x86, safe from overflow without VNNI
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), layer._packed, True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.layer.dequantized_weight(), None


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (torch.nn.Linear, Conv1D)


def to_int8(model: torch.nn.Module) -> int:
    """Replace every linear layer of `model` (in place) by an Int8Linear; the number replaced. Layers
    that nn.MultiheadAttention reads by their weight (its out_proj) stay as they are."""
    kinds = _linear_types()
    swapped = 0
    for parent in list(model.modules()):
        if isinstance(parent, torch.nn.MultiheadAttention):
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, kinds):
                setattr(parent, name, Int8Linear.from_module(child))
                swapped += 1
    return swapped


def precision_of(model: torch.nn.Module) -> str:
    """"int8" when the model's linear layers were converted (to_int8), else "float32"."""
    return FAST_PRECISION if any(isinstance(m, Int8Linear) for m in model.modules()) else FULL_PRECISION


def measured_cost(path: Path | None = None) -> dict | None:
    """The figures `python -m benchmarks.fast_mode` wrote to COST_FILE (None when never measured)."""
    try:
        data = json.loads(Path(path or COST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
