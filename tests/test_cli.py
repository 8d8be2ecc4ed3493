"""`python -m vizcap caption`, run as a user would: a fresh process, real files, exit codes."""

from __future__ import annotations

import json

import pytest

from conftest import run_module

# said only when there is something to say (vizcap/notices.py)
OPTIONAL_KEYS = {"notice", "attention_trained", "trained_maps"}
SUCCESS_KEYS = {"image", "caption", "tokens", "token_probs", "grid", "maps"}


def vizcap(*args: str):
    proc = run_module("-m", "vizcap", *map(str, args))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout
    return proc


def json_lines(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    records = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    assert all(isinstance(r, dict) for r in records)
    return records


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    fake = d / "notes.png"
    fake.write_text("this is a text file wearing a .png name\n")
    return {"missing": d / "does_not_exist.png", "fake": fake}


def _check_success(record: dict, path, grid):
    assert SUCCESS_KEYS <= set(record) <= SUCCESS_KEYS | OPTIONAL_KEYS, record
    if "attention_trained" in record:  # recorded by the checkpoint's metrics.json
        assert record["attention_trained"] == bool(record["trained_maps"])
    if not record["tokens"]:  # an empty caption always says why
        assert "ended the caption at once" in record["notice"]
    assert record["image"] == str(path)
    assert isinstance(record["caption"], str)
    assert len(record["tokens"]) == len(record["token_probs"])
    assert all(isinstance(t, str) for t in record["tokens"])
    assert all(0.0 < p <= 1.0 for p in record["token_probs"])
    assert record["grid"] == list(grid)
    assert isinstance(record["maps"], dict)


def test_json_mixed_inputs(tiny_checkpoint, tiny_captioner, scene_files, bad_inputs):
    good1, good2, _ = scene_files
    inputs = [good1, bad_inputs["missing"], good2, bad_inputs["fake"], good1]
    proc = vizcap("caption", *inputs, "--checkpoint", tiny_checkpoint, "--json")
    assert proc.returncode == 2, proc.stderr
    records = json_lines(proc.stdout)
    assert [r["image"] for r in records] == [str(p) for p in inputs]  # one line per input, in order
    for i in (0, 2, 4):
        _check_success(records[i], inputs[i], tiny_captioner.grid)
        assert records[i]["caption"] == tiny_captioner.caption(str(inputs[i]))
    for i in (1, 3):
        assert set(records[i]) == {"image", "error"}, records[i]
        assert str(inputs[i]) in records[i]["error"]
        assert "\n" not in records[i]["error"]
    assert records[0] == records[4]  # the same image twice gives the same answer


def test_json_all_good_matches_the_api(chatty_checkpoint, scene_files):
    from vizcap import load

    captioner = load(chatty_checkpoint)
    proc = vizcap("caption", *scene_files, "--checkpoint", chatty_checkpoint, "--json", "--max-tokens", "4")
    assert proc.returncode == 0, proc.stderr
    records = json_lines(proc.stdout)
    assert len(records) == len(scene_files)
    for path, record in zip(scene_files, records):
        _check_success(record, path, captioner.grid)
        expected = captioner.caption_details(str(path), max_tokens=4)
        assert record["caption"] == expected["caption"]
        assert record["tokens"] == expected["tokens"]
        assert record["token_probs"] == pytest.approx(expected["token_probs"], abs=1e-6)
        assert 1 <= len(record["tokens"]) <= 4  # --max-tokens reaches the decoder
        assert record["caption"] == " ".join(record["tokens"])


def test_plain_output_one_line_per_image(tiny_checkpoint, tiny_captioner, scene_files):
    proc = vizcap("caption", *scene_files, "--checkpoint", tiny_checkpoint)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(scene_files)
    for path, line in zip(scene_files, lines):
        assert line.startswith(f"{path}:")
        assert line[len(str(path)) + 1 :].strip() == tiny_captioner.caption(str(path))
        assert not line.lstrip().startswith("{")  # readable text, not JSON


def test_plain_output_with_failures(tiny_checkpoint, scene_files, bad_inputs):
    inputs = [bad_inputs["fake"], scene_files[0], bad_inputs["missing"]]
    proc = vizcap("caption", *inputs, "--checkpoint", tiny_checkpoint)
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{scene_files[0]}:")
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 2
    assert str(bad_inputs["fake"]) in errors[0] and str(bad_inputs["missing"]) in errors[1]


def test_bad_checkpoint_directory(tmp_path, scene_files):
    proc = vizcap("caption", scene_files[0], "--checkpoint", tmp_path / "no_such_checkpoint", "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert "no_such_checkpoint" in err[0] and "error" in err[0]


def test_damaged_checkpoint(tiny_checkpoint, tmp_path, scene_files):
    import shutil

    d = tmp_path / "damaged"
    shutil.copytree(tiny_checkpoint, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])
    proc = vizcap("caption", scene_files[0], "--checkpoint", d)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0], proc.stderr


@pytest.mark.parametrize("bad", [["--max-tokens", "0"], []])
def test_bad_arguments(bad, scene_files, tiny_checkpoint):
    paths = [scene_files[0]] if bad else []  # no PATH at all is an error too
    proc = vizcap("caption", *paths, "--checkpoint", tiny_checkpoint, *bad)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "error" in proc.stderr
