"""The training loop shared by every preset: AdamW, warm-up + cosine schedule, gradient clipping,
tqdm, a jsonl log, periodic resumable state, and the final checkpoint directory.

The learning rate is a pure function of the step, and every batch is a pure function of the step
(the data loaders index samples by step × batch size), so resuming at step k continues exactly the
run that was interrupted.

Optional features, all off by default (the default path is the original single-batch fp32 step,
bit for bit): gradient accumulation (`grad_accum`: each item of `batches()` is then a list of
micro-batches), mixed precision (`amp`: autocast, plus a GradScaler for fp16 on CUDA),
DistributedDataParallel (when torch.distributed is initialised, rank 0 alone logs and saves),
periodic evaluation (`evaluate`, every `eval_every` steps and at the last) and the best checkpoint by
a metric (`best_metric`, `on_best`)."""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
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
    # optional features; the defaults leave the original path untouched
    grad_accum: int | None = None  # K: every item of batches() is a list of K micro-batches
    amp: str = "no"  # "bf16" | "fp16" | "no": autocast (and a GradScaler for fp16 on CUDA)
    eval_every: int = 0  # steps between evaluate() calls (also called after the last step)
    best_metric: str | None = None  # evaluate()'s metric whose best (highest) value calls on_best


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
    *,
    state_model: torch.nn.Module | None = None,
    train_mode: Callable[[bool], None] | None = None,
    no_sync: Callable[[], object] | None = None,
    evaluate: Callable[[int], dict] | None = None,
    on_best: Callable[[int, dict], None] | None = None,
    run_key: dict | None = None,
) -> dict:
    """Run cfg.steps optimizer steps. `batches(start_step)` yields the batches from that step on;
    `loss_fn(model, batch)` returns the loss and a dict of floats to log. Returns a summary.

    Optional: `state_model`, the module whose parameters are optimised and saved (default `model`;
    pass the bare model when `model` is a DDP or compiled wrapper around it); `train_mode(flag)`
    instead of model.train(flag) (e.g. to keep a frozen encoder in eval mode); `no_sync`, DDP's
    context that skips the gradient all-reduce of all but the last micro-batch; `evaluate(step)`, a
    dict of metrics (rank 0 only); `on_best(step, metrics)`, called when cfg.best_metric improves (or
    ties: later is better); `run_key`, settings that a resumed run must share with the first."""
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "resume.safetensors"
    log_path = out / "train_log.jsonl"
    core = model if state_model is None else state_model
    rank, world = _dist_info()
    main = rank == 0
    if train_mode is None:
        train_mode = model.train
    optimizer = make_optimizer(core, cfg)
    extended = cfg.grad_accum is not None or cfg.amp != "no" or world > 1
    scaler = None
    if cfg.amp == "fp16" and torch.device(cfg.device).type == "cuda":
        scaler = torch.amp.GradScaler("cuda")
    start, extra = 0, {"train_seconds": 0.0}
    if resume and state_path.exists():
        start, extra = load_state(state_path, core, optimizer)
        if run_key is not None and extra.get("run_key", run_key) != run_key:
            old = extra["run_key"]
            differs = sorted(k for k in set(old) | set(run_key) if old.get(k) != run_key.get(k))
            raise ValueError(f"{state_path}: saved by a run with other settings ({', '.join(differs)}); "
                             "rerun with the same settings, or without --resume to start over")
        if scaler is not None and "scaler" in extra:
            scaler.load_state_dict(extra["scaler"])
        if main:
            _truncate_log(log_path, start)
            print(f"resuming from step {start} ({state_path})")
    elif main and log_path.exists():
        log_path.unlink()
    best = extra.get("best")  # {"step": s, "value": v} of the best evaluation so far
    train_mode(True)
    seconds = float(extra.get("train_seconds", 0.0))
    t_window, n_window = time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, initial=start, desc=describe, unit="step", dynamic_ncols=True, mininterval=1.0,
               disable=not main)
    step = start
    with (open(log_path, "a") if main else nullcontext()) as log:
        for step, batch in zip(range(start, cfg.steps), batches(start)):
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if extended:
                loss_value, parts = _extended_step(model, batch, loss_fn, cfg, optimizer, scaler, no_sync, world)
            else:
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
                if main:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.set_postfix(loss=f"{loss_value:.3f}", sps=f"{rate:.0f}")
            due = (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or step + 1 == cfg.steps
            if evaluate is not None and due:
                t_eval = time.perf_counter()
                if main:
                    metrics = evaluate(step + 1)
                    log.write(json.dumps({"step": step + 1, "eval": metrics}) + "\n")
                    log.flush()
                    value = metrics.get(cfg.best_metric) if cfg.best_metric else None
                    if value is not None and (best is None or value >= best["value"]):
                        best = {"step": step + 1, "value": value}
                        if on_best is not None:
                            on_best(step + 1, metrics)
                _barrier(world)
                train_mode(True)
                t_window += time.perf_counter() - t_eval  # evaluation time is not training time
            if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps and main:
                state = {"train_seconds": seconds}
                if best is not None:
                    state["best"] = best
                if scaler is not None:
                    state["scaler"] = scaler.state_dict()
                if run_key is not None:
                    state["run_key"] = run_key
                save_state(state_path, core, optimizer, step + 1, state)
    bar.close()
    train_mode(False)
    summary = {"steps": cfg.steps, "train_seconds": round(seconds, 1), "state_path": state_path}
    if best is not None:
        summary["best"] = best
    return summary


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _extended_step(model, batch, loss_fn, cfg: LoopConfig, optimizer, scaler, no_sync, world: int):
    """One optimizer step over K micro-batches (mean of their losses), with autocast, an optional
    GradScaler and DDP's all-reduce only after the last micro-batch. Returns the loss (averaged over
    ranks) and the parts to log."""
    micro = batch if cfg.grad_accum is not None else [batch]
    k = len(micro)
    device_type = torch.device(cfg.device).type
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), dtype=torch.float64)
    sums: dict[str, float] = {}
    for i, mb in enumerate(micro):
        sync = no_sync is None or i == k - 1
        with nullcontext() if sync else no_sync():
            with torch.autocast(device_type, dtype=dtype) if dtype is not None else nullcontext():
                loss, parts = loss_fn(model, mb)
            scaled = loss / k if k > 1 else loss
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        total += float(loss.detach()) / k
        for name, v in parts.items():
            sums[name] = sums.get(name, 0.0) + float(v) / k
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if world > 1:  # the logged loss is the mean over ranks (each rank saw its slice of the batch)
        on = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
        values = torch.tensor([float(total), *sums.values()], dtype=torch.float64, device=on)
        torch.distributed.all_reduce(values)
        values = (values / world).tolist()
        total, sums = values[0], dict(zip(sums, values[1:]))
    return float(total), sums


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the resumed step, so the log matches an uninterrupted run."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)
