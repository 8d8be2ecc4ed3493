"""The training loop shared by every preset: AdamW, warm-up + cosine schedule, gradient clipping,
tqdm, a jsonl log, periodic resumable state, and the final checkpoint directory.

The learning rate is a pure function of the step, and every batch is a pure function of the step
(the data loaders index samples by step × batch size), so resuming at step k continues exactly the
run that was interrupted."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from .state import load_state, save_state


@dataclass
class LoopConfig:
    steps: int
    lr: float
    warmup: int
    weight_decay: float
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    log_every: int = 25
    save_every: int = 500
    device: str = "cpu"


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (not on biases, norms, positions or queries)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and not name.endswith(("pos", "queries", "wpe.weight")) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def train(
    model: torch.nn.Module,
    batches: Callable[[int], Iterable],
    loss_fn: Callable[[torch.nn.Module, object], tuple[torch.Tensor, dict]],
    cfg: LoopConfig,
    out: Path,
    resume: bool,
    batch_size: int,
    describe: str = "train",
) -> dict:
    """Run cfg.steps optimizer steps. `batches(start_step)` yields the batches from that step on;
    `loss_fn(model, batch)` returns the loss and a dict of floats to log. Returns a summary."""
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "resume.safetensors"
    log_path = out / "train_log.jsonl"
    optimizer = make_optimizer(model, cfg)
    start, extra = 0, {"train_seconds": 0.0}
    if resume and state_path.exists():
        start, extra = load_state(state_path, model, optimizer)
        _truncate_log(log_path, start)
        print(f"resuming from step {start} ({state_path})")
    elif log_path.exists():
        log_path.unlink()
    model.train()
    seconds = float(extra.get("train_seconds", 0.0))
    t_window, n_window = time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, initial=start, desc=describe, unit="step", dynamic_ncols=True, mininterval=1.0)
    step = start
    with open(log_path, "a") as log:
        for step, batch in zip(range(start, cfg.steps), batches(start)):
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, parts = loss_fn(model, batch)
            loss_value = float(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            n_window += batch_size
            bar.update(1)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                now = time.perf_counter()
                seconds += now - t_window
                rate = n_window / max(now - t_window, 1e-9)
                t_window, n_window = now, 0
                record = {"step": step + 1, "loss": round(loss_value, 5), "lr": lr, "samples_per_s": round(rate, 1)}
                record.update({k: round(float(v), 5) for k, v in parts.items()})
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{loss_value:.3f}", sps=f"{rate:.0f}")
            if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save_state(state_path, model, optimizer, step + 1, {"train_seconds": seconds})
    bar.close()
    model.eval()
    return {"steps": cfg.steps, "train_seconds": round(seconds, 1), "state_path": state_path}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the resumed step, so the log matches an uninterrupted run."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
