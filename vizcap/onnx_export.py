"""A vizcap checkpoint as two ONNX graphs, for the browser (`vizcap web`, vizcap/web.py).

    encoder.onnx   pixels [1, 3, S, S]  ->  memory [1, N, d], prefix [1, P, d],
                                            mapper [heads, P, N]          the resampler's attention
                                            mapper_blocks [layers, heads, P, P]   (only if the mapper has blocks)
                                            encoder [layers, heads, E+N, E+N]     (ViT encoders only)
    decoder.onnx   memory [K, N, d], prefix [K, P, d], input_ids [K, T]
                                        ->  logits [K, P+T, V],
                                            self_attention [L, K, H, P+T, P+T],
                                            cross_attention [L, K, H, P+T, N]

Both graphs are traced from the model's own forward code (CaptionModel.encode / prefix / decode) with
the maps that vizcap's hook points capture made graph outputs, so the browser runs what PyTorch runs:
nothing of the model is written twice. The decoder graph re-reads the whole caption at every step (no
key/value cache): the ShapeScenes decoder is so small that a full pass costs about as much as the
call, and the last pass's attentions are the whole explanation (self- and cross-attention of every
position, as `Explanation.self_full` / `cross_full`). K rows decode K beams at once.

Exporting needs `onnx` and `onnxscript` (torch's dynamo exporter); the tests use `onnxruntime` as
the oracle of the exported graphs (tests/test_web_export.py).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .files import atomic_write
from .hooks import capture

OPSET = 18  # ONNX Runtime Web 1.31's WebAssembly backend runs it; newer opsets add nothing these graphs need


class EncoderGraph(nn.Module):
    """pixels -> memory, prefix and every map the encoder side makes (see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor):
        with capture() as cache:  # the hook points' tensors: traced like any other
            memory = self.model.encode(pixels)
            prefix, _ = self.model.prefix(memory)
        out = {"memory": memory, "prefix": prefix}
        blocks = sorted(n for n in cache.names() if n.startswith("mapper.blocks."))
        enc = sorted((n for n in cache.names() if n.startswith("encoder.blocks.")), key=lambda n: int(n.split(".")[2]))
        out["mapper"] = cache["mapper.attn"][0][0]
        if blocks:
            out["mapper_blocks"] = torch.stack([cache[n][0][0] for n in sorted(blocks, key=lambda n: int(n.split(".")[2]))])
        if enc:
            out["encoder"] = torch.stack([cache[n][0][0] for n in enc])
        return out


class DecoderGraph(nn.Module):
    """[prefix; embed(input_ids)] through the decoder: logits and attentions of every position."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, memory: torch.Tensor, prefix: torch.Tensor, input_ids: torch.Tensor):
        out = self.model.decode(memory, prefix, input_ids, use_cache=False, output_attentions=True)
        return out.logits, torch.stack(out.attentions), torch.stack(out.cross_attentions)


def check_exportable(captioner) -> None:
    """ValueError (one line) for a model the browser site cannot run yet."""
    if getattr(captioner, "is_photo_model", True):  # ask the model, not which family it is
        raise ValueError("vizcap web runs vizcap's own checkpoints (ShapeScenes); this model is a "
                         f"{getattr(captioner, 'family_label', 'another kind of model')}")
    if captioner.mode != "both":
        raise ValueError(f"vizcap web needs a model of mode 'both' (prefix tokens and cross-attention); this one is {captioner.mode!r}")


def output_names(captioner) -> list[str]:
    """The encoder graph's outputs, in order, for this model."""
    names = ["memory", "prefix", "mapper"]
    if captioner.cfg.mapper_layers:
        names.append("mapper_blocks")
    if captioner.encoder_attends:
        names.append("encoder")
    return names


def export(captioner, out_dir: str | Path) -> dict:
    """Write encoder.onnx and decoder.onnx of `captioner` into out_dir; returns their file names."""
    check_exportable(captioner)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, cfg = captioner.model.eval(), captioner.cfg
    size = cfg.image_size
    pixels = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        memory = model.encode(pixels)
        prefix, _ = model.prefix(memory)
    rows, words = torch.export.Dim("rows", min=1, max=64), torch.export.Dim("words", min=1, max=cfg.max_positions - cfg.n_prefix)
    names = output_names(captioner)
    quiet = [logging.getLogger(n) for n in ("onnxscript", "torch.onnx", "torch.export")]
    levels = [q.level for q in quiet]
    for q in quiet:  # the exporter's notes on its own internals are not the user's business
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            _onnx(EncoderGraph(model), (pixels,), out_dir / "encoder.onnx", ["pixels"], names, None)
            two = 2  # a traced example of more than one row and word, so that neither is taken as a constant
            _onnx(DecoderGraph(model), (memory.repeat(two, 1, 1), prefix.repeat(two, 1, 1),
                                        torch.full((two, 3), cfg.bos_id, dtype=torch.long)),
                  out_dir / "decoder.onnx", ["memory", "prefix", "input_ids"], ["logits", "self_attention", "cross_attention"],
                  {"memory": {0: rows}, "prefix": {0: rows}, "input_ids": {0: rows, 1: words}})
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "encoder_outputs": names}


def _onnx(module, args, path: Path, inputs: list[str], outputs: list[str], dynamic) -> None:
    program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                dynamic_shapes=dynamic, opset_version=OPSET, optimize=True, verbose=False,
                                external_data=False)
    atomic_write(path, lambda tmp: program.save(str(tmp), external_data=False))
