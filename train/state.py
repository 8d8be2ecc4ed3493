"""Resume state in one safetensors file (tensors and JSON metadata only): model and optimizer tensors, RNG states, and
the step (which is also the data position and the learning-rate schedule's position).

Written to a temporary file and moved into place with os.replace, so a kill during a save leaves
the previous state intact."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vizcap.files import atomic_write

TIED = "decoder.lm_head.weight"  # GPT-2's output layer shares the word-embedding tensor


def save_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, extra: dict) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if name != TIED:
            tensors[f"model.{name}"] = t.detach().contiguous().clone()
    opt = optimizer.state_dict()
    for idx, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).contiguous().clone()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    metadata = {"step": str(step), "param_groups": json.dumps(opt["param_groups"]), "extra": json.dumps(extra)}
    atomic_write(path, lambda p: save_file(tensors, p, metadata=metadata))


def load_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
    """Restore model, optimizer and RNG from `path`; returns (step, extra)."""
    from safetensors import safe_open

    try:
        tensors = load_file(path)
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata()
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: unreadable resume state ({e})") from None
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    own = model.state_dict()
    if TIED in own:
        model_state[TIED] = model_state["decoder.transformer.wte.weight"]
    model.load_state_dict(model_state, strict=True)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    return int(metadata["step"]), json.loads(metadata.get("extra", "{}"))
