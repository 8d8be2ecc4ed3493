"""Shared fixtures: one tiny trained checkpoint for the whole session, scene images on disk, and a
helper that runs `python -m ...` in a subprocess the way a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# A long training job may share this machine: keep every test single-threaded.
torch.set_num_threads(1)

# The tiny checkpoint: 8 optimizer steps of the real `shapes` preset, with one resumable save on the way.
TINY_ARGS = dict(steps=8, batch_size=8, eval_n=16, workers=0, threads=1, save_every=4)


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TQDM_DISABLE"] = "1"
    return env


def run_module(*args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python ARGS...` in a fresh interpreter, with the repository importable; text output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=str(cwd or ROOT),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint directory written by train.shapes.run (8 steps): config.json,
    model.safetensors, tokenizer.json, metrics.json, train_log.jsonl. Treat it as read-only."""
    from train.shapes import ShapesArgs, run

    out = tmp_path_factory.mktemp("tiny_checkpoint")
    run(ShapesArgs(out=str(out), **TINY_ARGS))
    torch.set_num_threads(1)
    return out


@pytest.fixture(scope="session")
def tiny_captioner(tiny_checkpoint):
    from vizcap.captioner import Captioner

    return Captioner.from_pretrained(tiny_checkpoint)


def make_random_captioner(mode: str = "both"):
    """An untrained, small captioner whose weights are jolted so that greedy decoding says many
    words (a trained-looking checkpoint without the training): 64 px, d_model 32."""
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionerConfig, CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tok = CaptionTokenizer.word_level(VOCABULARY)
    cfg = CaptionerConfig(image_size=64, d_model=32, n_prefix=2, decoder_layers=1, vocab_size=tok.vocab_size,
                          bos_id=tok.bos_id, eos_id=tok.eos_id, pad_id=tok.pad_id, mode=mode,
                          aux_heads={"shape": 6})
    torch.manual_seed(3)
    model = CaptionModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return Captioner(model, tok)


@pytest.fixture(scope="session")
def chatty_checkpoint(tmp_path_factory) -> Path:
    """A saved random captioner (mode "both") that writes 20-word captions."""
    out = tmp_path_factory.mktemp("chatty_checkpoint")
    make_random_captioner("both").save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory) -> list[Path]:
    """Three ShapeScenes images saved as PNG (ordinary files a user would pass to the CLI)."""
    from vizcap.scenes import render_scene

    d = tmp_path_factory.mktemp("scene_images")
    paths = []
    for seed in (11, 12, 13):
        p = d / f"scene_{seed}.png"
        render_scene(seed).image.save(p)
        paths.append(p)
    return paths
