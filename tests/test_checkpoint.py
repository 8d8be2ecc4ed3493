"""Checkpoint directories: save_pretrained -> from_pretrained, and every way loading can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vizcap
from vizcap.captioner import Captioner, CheckpointError
from vizcap.scenes import VOCABULARY, render_scene
from vizcap.tokenizer import CaptionTokenizer

from conftest import make_random_captioner

FILES = {"config.json", "model.safetensors", "tokenizer.json"}


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k



def _load_error(directory) -> str:
    with pytest.raises(CheckpointError) as info:
        Captioner.from_pretrained(directory)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["prefix", "cross", "both"])
def test_round_trip_fresh_model(mode, tmp_path):
    cap = make_random_captioner(mode)
    out = cap.save_pretrained(tmp_path / "c")
    assert {p.name for p in out.iterdir()} == FILES  # nothing else (no temporary files left behind)
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == 1 and config["mode"] == mode
    loaded = Captioner.from_pretrained(out)
    assert loaded.cfg == cap.cfg
    _assert_same_state(cap.model, loaded.model)
    # GPT-2's output layer stays tied to the word embeddings after loading
    dec = loaded.model.decoder
    assert dec.lm_head.weight.data_ptr() == dec.transformer.wte.weight.data_ptr()
    images = [render_scene(s).image for s in (1, 2, 3)]
    assert loaded.caption_batch(images) == cap.caption_batch(images)
    assert loaded.caption_details(images[0]) == cap.caption_details(images[0])


def test_checkpoint_written_by_training_loads(tiny_checkpoint, tiny_captioner):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert FILES <= names
    assert "resume.safetensors" not in names  # a finished run removes its resume state
    assert not [n for n in names if n.endswith(".tmp")]
    assert tiny_captioner.cfg.vocab_size == tiny_captioner.tokenizer.vocab_size
    assert vizcap.load(tiny_checkpoint).cfg == tiny_captioner.cfg


def test_round_trip_trained_checkpoint(tiny_captioner, tmp_path):
    out = tiny_captioner.save_pretrained(tmp_path / "again")
    assert {p.name for p in out.iterdir()} == FILES
    loaded = Captioner.from_pretrained(out)
    _assert_same_state(tiny_captioner.model, loaded.model)
    images = [render_scene(s).image for s in (4, 5)]
    assert loaded.caption_batch(images) == tiny_captioner.caption_batch(images)


def test_resave_keeps_the_tensors_on_disk(tiny_checkpoint, tiny_captioner, tmp_path):
    out = tiny_captioner.save_pretrained(tmp_path / "again")
    original, again = load_file(tiny_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert original.keys() == again.keys()
    for k in original:
        assert torch.equal(original[k], again[k]), k


def test_caption_api_agrees(tiny_captioner, tmp_path):
    scene = render_scene(21)
    details = tiny_captioner.caption_details(scene.image)
    assert details["caption"] == tiny_captioner.caption(scene.image)
    assert details["caption"] == tiny_captioner.caption_batch([scene.image, render_scene(22).image])[0]
    assert len(details["tokens"]) == len(details["token_probs"])
    assert all(0.0 < p <= 1.0 for p in details["token_probs"])
    assert details["grid"] == list(tiny_captioner.grid)
    assert len(details["tokens"]) <= 20
    assert len(tiny_captioner.caption_details(scene.image, max_tokens=3)["tokens"]) <= 3
    # a path, a PIL image and an array give the same caption
    path = tmp_path / "scene.png"
    scene.image.save(path)
    assert tiny_captioner.caption(str(path)) == details["caption"]
    assert tiny_captioner.caption(np.asarray(scene.image)) == details["caption"]


# -- failures: each names the file -----------------------------------------------------------------


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    assert str(missing) in _load_error(missing)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert str(a_file) in _load_error(a_file)


@pytest.mark.parametrize("name", sorted(FILES))
def test_missing_file(ckpt_copy, name):
    (ckpt_copy / name).unlink()
    message = _load_error(ckpt_copy)
    assert name in message and "missing" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "header_only"])
def test_damaged_weights(ckpt_copy, damage):
    path = ckpt_copy / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = b"\x00\x01 this is not a safetensors file " * 100
    elif damage == "empty":
        data = b""
    else:
        data = data[:200]
    path.write_bytes(data)
    assert "model.safetensors" in _load_error(ckpt_copy)


def test_config_unknown_key(ckpt_copy):
    path = ckpt_copy / "config.json"
    config = json.loads(path.read_text())
    config["flux_capacitor"] = 1.21
    path.write_text(json.dumps(config))
    message = _load_error(ckpt_copy)
    assert "config.json" in message and "flux_capacitor" in message


@pytest.mark.parametrize("text", ["{not json", "[1, 2, 3]", '{"mode": "sideways"}', '{"d_model": 30}'])
def test_config_invalid(ckpt_copy, text):
    (ckpt_copy / "config.json").write_text(text)
    assert "config.json" in _load_error(ckpt_copy)


def test_config_that_cannot_build_a_model(ckpt_copy):
    """A config that parses but names an encoder timm does not know is still a CheckpointError that
    names config.json (not a raw RuntimeError from timm)."""
    path = ckpt_copy / "config.json"
    config = json.loads(path.read_text())
    config["encoder"] = "no_such_encoder_xyz"
    path.write_text(json.dumps(config))
    assert "config.json" in _load_error(ckpt_copy)


def test_vocab_size_mismatch(ckpt_copy):
    path = ckpt_copy / "config.json"
    config = json.loads(path.read_text())
    config["vocab_size"] += 5
    path.write_text(json.dumps(config))
    message = _load_error(ckpt_copy)
    assert "tokenizer.json" in message and "vocab_size" in message


def test_tokenizer_mismatch(ckpt_copy):
    CaptionTokenizer.word_level([*VOCABULARY, "hexagon", "octagon"]).save(ckpt_copy / "tokenizer.json")
    assert "tokenizer.json" in _load_error(ckpt_copy)


def test_tokenizer_garbage(ckpt_copy):
    (ckpt_copy / "tokenizer.json").write_text('{"this": "is not a tokenizer"}')
    assert "tokenizer.json" in _load_error(ckpt_copy)


def _error_after_editing_tensors(ckpt_copy, edit) -> str:
    """The load error after `edit(state)` changed the checkpoint's tensors in place."""
    path = ckpt_copy / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)
    return _load_error(ckpt_copy)


def test_tensor_of_wrong_shape(ckpt_copy):
    def widen(state):
        assert "pos" in state
        state["pos"] = torch.zeros(1, state["pos"].shape[1] + 1, state["pos"].shape[2])

    message = _error_after_editing_tensors(ckpt_copy, widen)
    assert "model.safetensors" in message and "pos" in message


def test_missing_and_unexpected_tensors(ckpt_copy):
    message = _error_after_editing_tensors(ckpt_copy, lambda state: state.pop("project.weight"))
    assert "model.safetensors" in message and "project.weight" in message


def test_unexpected_tensor(ckpt_copy):
    message = _error_after_editing_tensors(ckpt_copy, lambda state: state.__setitem__("stray.tensor", torch.zeros(2)))
    assert "model.safetensors" in message and "stray.tensor" in message


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)
    assert vizcap.CheckpointError is CheckpointError
