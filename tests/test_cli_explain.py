"""`python -m vizcap caption` with strategies, maps and export, and `vizcap eval`, run as a user
would: fresh processes, real files, exit codes. The CLI's numbers must be the API's numbers."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import run_module

METHODS = ("cross_attention", "prefix", "rollout", "relevancy")


def vizcap(*args) -> subprocess.CompletedProcess:
    proc = run_module("-m", "vizcap", *map(str, args), timeout=600)  # generous: the machine may be busy
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout
    return proc


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (not JSON, whatever Python's json module accepts)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def chatty(chatty_checkpoint):
    from vizcap.captioner import Captioner

    return Captioner.from_pretrained(chatty_checkpoint)


def test_beam_search(chatty_checkpoint, chatty, scene_files):
    proc = vizcap("caption", *scene_files[:2], "--checkpoint", chatty_checkpoint, "--strategy", "beam", "--beams", 3, "--json")
    assert proc.returncode == 0, proc.stderr
    records = [strict_json(line) for line in proc.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in scene_files[:2]]
    for record, path in zip(records, scene_files):
        e = chatty.explain(path, strategy="beam", beams=3)
        assert record["strategy"] == "beam" and record["seed"] is None
        assert record["caption"] == e.caption and record["tokens"] == e.tokens
        assert record["score"] == pytest.approx(e.score, abs=1e-5)
        assert record["token_probs"] == pytest.approx([float(p) for p in e.probs], abs=1e-5)


def test_sampling_with_a_seed_repeats_itself(chatty_checkpoint, chatty, scene_files):
    args = ("caption", scene_files[0], "--checkpoint", chatty_checkpoint, "--strategy", "sample", "--seed", 5,
            "--temperature", 1.5, "--top-p", 0.95, "--json")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: vizcap(*args), range(2))
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    record = strict_json(first.stdout)
    assert record["seed"] == 5 and record["strategy"] == "sample"
    e = chatty.explain(scene_files[0], strategy="sample", seed=5, temperature=1.5, top_p=0.95)
    assert record["caption"] == e.caption


def test_maps_normalize_and_export(chatty_checkpoint, chatty, scene_files, tmp_path):
    out = tmp_path / "export"
    path = scene_files[1]
    proc = vizcap("caption", path, "--checkpoint", chatty_checkpoint, "--maps", ",".join(METHODS),
                  "--normalize", "sum", "--export", out, "--json")
    assert proc.returncode == 0, proc.stderr
    record = strict_json(proc.stdout)
    T, (gh, gw) = len(record["tokens"]), record["grid"]
    assert T > 1 and set(record["maps"]) == set(METHODS)
    e = chatty.explain(path)
    assert record["tokens"] == e.tokens and [gh, gw] == list(e.grid)
    for method, maps in record["maps"].items():
        # nested lists tokens × gh × gw of non-negative floats
        assert isinstance(maps, list) and len(maps) == T
        assert all(isinstance(row, list) and len(row) == gh for token in maps for row in [token])
        assert all(isinstance(cells, list) and len(cells) == gw for token in maps for cells in token)
        assert all(isinstance(v, (float, int)) and v >= 0 for token in maps for cells in token for v in cells)
        arr = np.array(maps, dtype=float)
        np.testing.assert_allclose(arr.reshape(T, -1).sum(1), 1.0, atol=1e-4, err_msg=method)  # --normalize sum
        np.testing.assert_allclose(arr, e.maps(method, normalize="sum"), atol=2e-6, err_msg=method)  # = the API

    # export: one PNG per word (first method), a GIF with one frame per word, the JSON
    image = Image.open(path)
    stem = path.stem
    pngs = sorted(out.glob(f"{stem}.*.cross_attention.png"))
    assert len(pngs) == T
    for j, png in enumerate(pngs):
        assert png.name.startswith(f"{stem}.{j:02d}_")
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size == image.size
    gifs = list(out.glob("*.gif"))
    assert [g.name for g in gifs] == [f"{stem}.cross_attention.gif"]
    with Image.open(gifs[0]) as gif:
        assert gif.format == "GIF" and gif.n_frames == T
    exported = strict_json((out / f"{stem}.json").read_text())
    assert exported["caption"] == record["caption"] and set(exported["maps"]) == set(METHODS)
    np.testing.assert_allclose(np.array(exported["maps"]["rollout"]), np.array(record["maps"]["rollout"]), atol=1e-6)
    assert not list(out.glob(".*.tmp")), "no temporary files left behind"


BAD_ARGS = {
    "beams 0": ["--strategy", "beam", "--beams", "0"],
    "top-p 1.5": ["--strategy", "sample", "--top-p", "1.5"],
    "temperature 0": ["--strategy", "sample", "--temperature", "0"],
    "temperature -1": ["--strategy", "sample", "--temperature", "-1"],
    "unknown method": ["--maps", "cross_attention,saliency"],
    "unknown strategy": ["--strategy", "nucleus"],
    "normalize bogus": ["--normalize", "bogus"],
}


def test_invalid_values_exit_2_with_one_line(chatty_checkpoint, prefix_checkpoint, scene_files):
    """Every bad value: status 2, one line on stderr naming the problem, nothing on stdout. (Run
    side by side: each is a fresh interpreter.)"""
    cases = {name: ["caption", scene_files[0], "--checkpoint", chatty_checkpoint, *extra] for name, extra in BAD_ARGS.items()}
    cases["cross_attention of a prefix model"] = ["caption", scene_files[0], "--checkpoint", prefix_checkpoint,
                                                  "--maps", "cross_attention"]
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(cases, pool.map(lambda args: vizcap(*args), cases.values())))
    expected_word = {"beams 0": "beams", "top-p 1.5": "top_p", "temperature 0": "temperature",
                     "temperature -1": "temperature", "unknown method": "saliency", "unknown strategy": "strategy",
                     "normalize bogus": "normalize", "cross_attention of a prefix model": "cross_attention"}
    for name, proc in results.items():
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (name, proc.stderr)
        assert lines[0].startswith("vizcap: error:") and expected_word[name] in lines[0], (name, lines[0])
        assert proc.stdout == "", name


def test_eval_prints_one_json_object(tiny_checkpoint):
    proc = vizcap("eval", "--checkpoint", tiny_checkpoint, "--n", 2, "--curves-n", 1, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    result = strict_json(lines[0])  # undefined figures are null, never NaN
    assert isinstance(result, dict)
    assert {"pointing", "mass_in_box", "sanity_spearman", "curves", "caption"} <= set(result)
    assert result["n_scenes"] == 2
    assert set(result["pointing"]) == set(METHODS)
    for m in METHODS:
        hit = result["pointing"][m]["hit"]
        assert hit is None or 0 <= hit <= 1
    assert 0 <= result["caption"]["bleu1"] <= 1
