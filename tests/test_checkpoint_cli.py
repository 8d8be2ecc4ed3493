"""Broken checkpoints at the command line, and the loading failures tests/test_checkpoint.py does not
cover: config values that would make loading read other files or build a giant model, unreadable
and undecodable files, a lying safetensors header.

Every failure is a CheckpointError naming the file; at the command line it is exit status 2, one
line on stderr, nothing on stdout, never a traceback."""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from vizcap.captioner import Captioner, CheckpointError
from vizcap.cli import main

from conftest import run_module

FILES = ("config.json", "model.safetensors", "tokenizer.json")



@pytest.fixture(scope="module")
def scene_png(tmp_path_factory) -> Path:
    from vizcap.scenes import render_scene

    path = tmp_path_factory.mktemp("cli_scene") / "scene.png"
    render_scene(3).image.save(path)
    return path


def _edit_config(d: Path, **changes) -> None:
    path = d / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _damage(d: Path, how: str) -> Path:
    """Damage the checkpoint copy `d`; return the path the error must name."""
    config, weights, tokenizer = (d / n for n in FILES)
    if how == "missing_directory":
        shutil.rmtree(d)
        return d
    if how == "file_not_directory":
        shutil.rmtree(d)
        d.write_text("not a directory")
        return d
    if how in ("missing_config", "missing_weights", "missing_tokenizer"):
        name = {"missing_config": config, "missing_weights": weights, "missing_tokenizer": tokenizer}[how]
        name.unlink()
        return name
    if how == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
        return weights
    if how == "garbage_weights":
        weights.write_bytes(b"GARBAGE!" * 64)
        return weights
    if how == "empty_weights":
        weights.write_bytes(b"")
        return weights
    if how == "header_length_lie":
        weights.write_bytes(struct.pack("<Q", 2**62) + b'{"a":1}')
        return weights
    if how == "weights_is_a_pickle":  # a torch.save archive renamed: refused, never unpickled
        weights.write_bytes(b"PK\x03\x04" + bytes(200))
        return weights
    if how == "config_not_json":
        config.write_text("{not json")
        return config
    if how == "config_not_utf8":
        config.write_bytes(b'{"mode": "\xff\xfe"}')
        return config
    if how == "config_deeply_nested":
        config.write_text("[" * 100_000 + "]" * 100_000)
        return config
    if how == "unknown_config_key":
        _edit_config(d, warp_drive=True)
        return config
    if how == "vocab_mismatch":
        _edit_config(d, vocab_size=json.loads(config.read_text())["vocab_size"] + 3)
        return tokenizer
    if how == "tokenizer_garbage":
        tokenizer.write_text("[]")
        return tokenizer
    if how == "wrong_tensor_shape":
        state = load_file(weights)
        state["pos"] = state["pos"][:, :-1].contiguous()
        save_file(state, weights)
        return weights
    if how == "missing_tensor":
        state = load_file(weights)
        del state["project.weight"]
        save_file(state, weights)
        return weights
    if how == "decoder_layers_mismatch":
        _edit_config(d, decoder_layers=3)
        return weights
    if how == "d_model_mismatch":
        _edit_config(d, d_model=64)
        return weights
    if how == "checkpoint_path_kwarg":
        _edit_config(d, encoder_kwargs={"checkpoint_path": str(d / "evil.pth")})
        return config
    raise AssertionError(how)


DAMAGES = ["missing_directory", "file_not_directory", "missing_config", "missing_weights", "missing_tokenizer",
           "truncated_weights", "garbage_weights", "empty_weights", "header_length_lie", "weights_is_a_pickle",
           "config_not_json", "config_not_utf8", "config_deeply_nested", "unknown_config_key", "vocab_mismatch",
           "tokenizer_garbage", "wrong_tensor_shape", "missing_tensor", "decoder_layers_mismatch",
           "d_model_mismatch", "checkpoint_path_kwarg"]


@pytest.mark.parametrize("how", DAMAGES)
def test_cli_caption_with_a_broken_checkpoint(ckpt_copy, scene_png, capsys, how):
    named = _damage(ckpt_copy, how)
    status = main(["caption", str(scene_png), "--checkpoint", str(ckpt_copy), "--json"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""  # no half-written records
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vizcap: error: ") and str(named) in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["truncated_weights", "unknown_config_key", "missing_directory"])
def test_cli_eval_with_a_broken_checkpoint(ckpt_copy, capsys, how):
    named = _damage(ckpt_copy, how)
    status = main(["eval", "--checkpoint", str(ckpt_copy), "--n", "2", "--curves-n", "0", "--json"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(named) in lines[0], err


def test_cli_subprocess_broken_checkpoint(ckpt_copy, scene_png):
    """A fresh interpreter, as a user runs it: exit 2, one line, no traceback."""
    named = _damage(ckpt_copy, "truncated_weights")
    proc = run_module("-m", "vizcap", "caption", str(scene_png), "--checkpoint", str(ckpt_copy), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vizcap: error: ") and str(named) in lines[0], proc.stderr


# -- API: what test_checkpoint.py does not already cover --------------------------------------------


def _error(d: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        Captioner.from_pretrained(d)
    message = str(info.value)
    assert "\n" not in message and len(message) <= 500, message
    return message


@pytest.mark.parametrize("changes, field", [
    ({"encoder_kwargs": {"checkpoint_path": "/tmp/evil.pth"}}, "checkpoint_path"),
    ({"encoder_kwargs": {"pretrained": True}}, "pretrained"),
    ({"encoder_kwargs": {"pretrained_cfg_overlay": {"file": "/tmp/evil.pth"}}}, "pretrained_cfg_overlay"),
    ({"encoder_kwargs": "timm"}, "encoder_kwargs"),
    ({"image_size": 10**6}, "image_size"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 128.5}, "image_size"),
    ({"decoder_layers": 100_000}, "decoder_layers"),
    ({"d_model": True}, "d_model"),
    ({"mapper_heads": 0}, "mapper_heads"),
    ({"vocab_size": -1}, "vocab_size"),
    ({"eos_id": 10**9}, "eos_id"),
    ({"encoder": 42}, "encoder"),
])
def test_config_values_that_train_never_writes(ckpt_copy, changes, field):
    _edit_config(ckpt_copy, **changes)
    started = time.process_time()
    message = _error(ckpt_copy)
    assert str(ckpt_copy / "config.json") in message
    assert field in message, message
    assert time.process_time() - started < 10  # refused before anything big is built


def test_a_config_describing_a_giant_model_is_refused_from_the_header(ckpt_copy, monkeypatch):
    """d_model 65536 passes the config's bounds; the safetensors header (read without the tensors)
    shows that the weights are 128 wide, before a 65536-wide model would be allocated."""
    import vizcap.captioner as captioner_module

    def no_building(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(captioner_module, "CaptionModel", no_building)
    _edit_config(ckpt_copy, d_model=65536, decoder_heads=4, mapper_heads=4)
    message = _error(ckpt_copy)
    assert str(ckpt_copy / "model.safetensors") in message and "65536" in message


def test_unreadable_config(ckpt_copy, monkeypatch):
    """As root, chmod 000 does not stop reading; the permission error is simulated."""
    real = Path.read_text

    def guarded(self, *args, **kwargs):
        if self.name == "config.json":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", guarded)
    message = _error(ckpt_copy)
    assert str(ckpt_copy / "config.json") in message and "Permission denied" in message


def test_checkpoint_through_a_broken_symlink(tmp_path):
    link = tmp_path / "ckpt"
    link.symlink_to(tmp_path / "gone")
    assert str(link) in _error(link)


def test_weights_file_that_is_a_directory(ckpt_copy):
    (ckpt_copy / "model.safetensors").unlink()
    (ckpt_copy / "model.safetensors").mkdir()
    message = _error(ckpt_copy)
    assert "model.safetensors" in message and "missing" in message


def test_good_checkpoint_still_loads(ckpt_copy, tiny_captioner, scene_png, capsys):
    assert Captioner.from_pretrained(ckpt_copy).cfg == tiny_captioner.cfg
    assert main(["caption", str(scene_png), "--checkpoint", str(ckpt_copy), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["caption"] == tiny_captioner.caption(str(scene_png))


# -- every write is atomic ---------------------------------------------------------------------------


def test_interrupted_save_keeps_the_old_checkpoint(ckpt_copy, tiny_captioner, monkeypatch):
    """A save that dies half-way through the weights leaves the previous checkpoint loadable and no
    temporary files behind."""
    import vizcap.captioner as captioner_module

    before = {n: (ckpt_copy / n).read_bytes() for n in FILES}

    def dies_half_way(model, path):
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(captioner_module, "save_model", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        tiny_captioner.save_pretrained(ckpt_copy)
    monkeypatch.undo()
    assert sorted(p.name for p in ckpt_copy.iterdir()) == sorted(FILES)  # no .tmp left
    assert (ckpt_copy / "model.safetensors").read_bytes() == before["model.safetensors"]
    Captioner.from_pretrained(ckpt_copy)


def test_tokenizer_save_is_atomic(tiny_captioner, tmp_path, monkeypatch):
    target = tmp_path / "tokenizer.json"
    tiny_captioner.tokenizer.save(target)
    good = target.read_bytes()

    class Broken:
        def save(self, path):
            Path(path).write_text("{")
            raise OSError("disk full")

    monkeypatch.setattr(tiny_captioner.tokenizer, "tokenizer", Broken())
    with pytest.raises(OSError):
        tiny_captioner.tokenizer.save(target)
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]


def test_cli_export_leaves_no_partial_files(tiny_checkpoint, scene_png, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["caption", str(scene_png), "--checkpoint", str(tiny_checkpoint), "--json", "--export", str(out)]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert names and not [n for n in names if n.startswith(".") or n.endswith(".tmp")], names
    assert (out / "scene.json").is_file() and json.loads((out / "scene.json").read_text())


WRITE = re.compile(r"""\.write_text\(|\.write_bytes\(|\bopen\([^)]*["'][wax]b?\+?["']|\.save\(|save_file\(|save_model\(|json\.dump\(|np\.save|torch\.save""")
ALLOWED = {  # (file, what the line contains): writes that are atomic by other means, or not files
    ("train/loop.py", 'open(log_path, "a")'),  # the training log is appended line by line (flushed)
    ("train/loop.py", "tmp.write_text("),  # followed by os.replace(tmp, path)
    ("vizcap/render.py", "frames[0].save(buf"),  # into a BytesIO
    ("vizcap/scenes.py", "image.save(buf"),  # into a BytesIO
    ("vizcap/independent_renderer.py", "image.save(buf"),  # into a BytesIO (hard scenes' JPEG round trip)
    ("vizcap/figures/images.py", "shown.save(buf"),  # into a BytesIO (an image's data URI)
    ("vizcap/html_page.py", "image.save(buf"),  # into a BytesIO (the interactive page's picture)
    ("train/photos.py", "Captioner.save_pretrained("),  # save_pretrained writes atomically
    ("train/fabricate.py", ""),  # a throwaway dataset for the tests and the benchmarks, never a user's file
}


def test_every_file_write_is_atomic():
    """Static: in vizcap/ and train/, each write to a file goes through atomic_write (a lambda on
    the same line), or is one of the few listed exceptions."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in sorted([*root.joinpath("vizcap").rglob("*.py"), *root.joinpath("train").rglob("*.py")]):
        rel = str(path.relative_to(root))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if not WRITE.search(code) or "atomic_write(" in code or code.strip().startswith(("def ", '"', "'")):
                continue
            if any(rel == f and snippet in code for f, snippet in ALLOWED):
                continue
            offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
