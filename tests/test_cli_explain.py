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

METHODS = ("cross_attention", "prefix", "rollout", "relevancy", "decoder_relevancy", "occlusion")


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


def assert_close(got, want, tol: float = 1.1e-4, where: str = ""):
    """Nested dicts and lists equal, floats to `tol` (figures are rounded to 4 places, and the CLI may run
    with more threads: a last-digit difference of a rounded mean is allowed)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, sorted(got), sorted(want))
        for k in want:
            assert_close(got[k], want[k], tol, f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, tol, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)) and abs(got - want) <= tol, (where, got, want)
    else:
        assert got == want, (where, got, want)


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
        # nested lists tokens × gh × gw of floats, non-negative but for occlusion's drops (greying may help)
        assert isinstance(maps, list) and len(maps) == T
        assert all(isinstance(row, list) and len(row) == gh for token in maps for row in [token])
        assert all(isinstance(cells, list) and len(cells) == gw for token in maps for cells in token)
        assert all(isinstance(v, (float, int)) and (v >= 0 or method == "occlusion")
                   for token in maps for cells in token for v in cells)
        arr = np.array(maps, dtype=float)
        np.testing.assert_allclose(np.abs(arr).reshape(T, -1).sum(1), 1.0, atol=1e-4, err_msg=method)  # --normalize sum
        np.testing.assert_allclose(arr, e.maps(method, normalize="sum"), atol=2e-6, err_msg=method)  # = the API

    # export: one PNG per word (first method), a GIF with one frame per word, the JSON
    image = Image.open(path)
    stem = path.stem
    pngs = sorted(out.glob(f"{stem}.*.cross_attention.png"))
    assert len(pngs) == T
    for j, png in enumerate(pngs):
        assert png.name.startswith(f"{stem}.{j:02d}_")
        with Image.open(png) as im:
            # slide-ready: the overlay (the image at 480 px wide) with the word above it and a colour bar beside it
            assert im.format == "PNG" and im.width > 480 + 40 and im.height > round(image.height * 480 / image.width) + 40
            from vizcap.maps import colour_range as map_colour_range
            from vizcap.render import overlay, resized

            vmax, _ = map_colour_range(e.maps("cross_attention", normalize="sum"), "cross_attention", "sum")
            plain = np.asarray(overlay(resized(image, 480), e.maps("cross_attention", normalize="sum")[j], vmax=vmax))
            drawn = np.asarray(im.convert("RGB"))[42 : 42 + plain.shape[0], 12 : 12 + plain.shape[1]]
            assert np.abs(drawn.astype(int) - plain).max() <= 2  # the word's own map, on one scale for every word
    gifs = list(out.glob("*.gif"))
    assert [g.name for g in gifs] == [f"{stem}.cross_attention.gif"]
    with Image.open(gifs[0]) as gif:
        assert gif.format == "GIF" and gif.n_frames == T
    exported = strict_json((out / f"{stem}.json").read_text())
    assert exported["caption"] == record["caption"] and set(exported["maps"]) == set(METHODS)
    # the JSON says how its maps were made and with which model and decoding settings
    assert exported["view"]["normalize"] == "sum" and exported["view"]["methods"] == list(record["maps"])
    assert exported["params"]["strategy"] == "greedy" and exported["model"]
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


def test_maps_all_is_every_method_the_checkpoint_has(chatty_checkpoint, prefix_checkpoint, scene_files):
    """`--maps all`: every method on a checkpoint with prefix and cross-attention, equal to naming
    them; on a prefix-only checkpoint every method but cross_attention (which it does not have)."""
    named = vizcap("caption", scene_files[0], "--checkpoint", chatty_checkpoint, "--json", "--maps", ",".join(METHODS))
    every = vizcap("caption", scene_files[0], "--checkpoint", chatty_checkpoint, "--json", "--maps", "all")
    assert every.returncode == 0 and named.returncode == 0, every.stderr + named.stderr
    assert strict_json(every.stdout) == strict_json(named.stdout)
    assert set(strict_json(every.stdout)["maps"]) == set(METHODS)
    prefix_only = vizcap("caption", scene_files[0], "--checkpoint", prefix_checkpoint, "--json", "--maps", "all")
    assert prefix_only.returncode == 0, prefix_only.stderr
    assert set(strict_json(prefix_only.stdout)["maps"]) == set(METHODS) - {"cross_attention"}


def test_eval_writes_the_trust_json_the_app_reads(tmp_path):
    """`vizcap eval --independent --out DIR` on the shipped model: stdout is trust.json's content; the file
    holds the API's figures for both scene sources (real numbers: this model names objects right), the
    command that made it, and per-scene lines from which every figure is recomputed; the app's verdict
    reads it."""
    from vizcap import figures, load, trust
    from vizcap.captioner import DEFAULT_CHECKPOINT

    before = sorted(p.name for p in DEFAULT_CHECKPOINT.iterdir())
    proc = vizcap("eval", "--n", 3, "--curves-n", 1, "--rank-n", 2, "--orders", 3, "--independent", "--out", tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    stored = strict_json((tmp_path / "trust.json").read_text())
    assert strict_json(lines[0]) == stored
    assert sorted(p.name for p in DEFAULT_CHECKPOINT.iterdir()) == before  # --out: nothing written elsewhere
    assert stored["command"] == "vizcap eval --n 3 --curves-n 1 --rank-n 2 --orders 3 --independent"

    cap = load()
    api = {"held-out ShapeScenes": trust.evaluate_trust(cap, n=3, curves_n=1, progress=False, rank_n=2, orders=3),
           "independent renderer": trust.evaluate_trust(cap, n=3, curves_n=1, progress=False, rank_n=2, orders=3,
                                                        scene_fn=trust.independent_scene, source="independent renderer")}
    records = [strict_json(line) for line in (tmp_path / "trust_scenes.jsonl").read_text().splitlines()]
    for section in (stored, stored["independent"]):
        source = section["source"]
        assert_close({k: v for k, v in section.items() if k not in ("command", "first_seed", "independent")},
                     api[source], where=source)
        assert section["n_words"] >= 3
        for m in METHODS:  # numbers, not nulls
            assert 0 <= section["pointing"][m]["hit"] <= 1 and 0 <= section["mass_in_box"][m]["mass"] <= 1
            assert -1 <= section["sanity_spearman"][m] <= 1
            assert len(section["curves"][m]["deletion_map"]) == 9
            assert len(section["ranking"]["deletion"]["all"][m]["mean"]) == 4  # the top-k test, k = 1, 2, 4, 8
        assert section["rank_n"] == 2 and section["ranking"]["orders"] == 3
        mine = [{k: v for k, v in r.items() if k != "source"} for r in records if r["source"] == source]
        assert [r["i"] for r in mine] == [0, 1, 2]
        summary = trust.summarise(mine, tuple(section["pointing"]), tuple(section["grid"]), source)
        assert {k: v for k, v in section.items() if k not in ("command", "first_seed", "independent", "curves_n", "rank_n")} \
            == summary, source
        assert sum("rank" in w for r in mine[:2] for w in r["words"]) == sum(len(r["words"]) for r in mine[:2])
        assert not any("rank" in w for w in mine[2]["words"])
    verdict = " ".join(figures.trust_verdict(stored))
    best = max(stored["pointing"], key=lambda m: stored["pointing"][m]["hit"])
    assert best.replace("_", " ") in verdict and "Too little" not in verdict


def test_eval_writes_into_the_checkpoint_by_default(tiny_checkpoint, tmp_path):
    """Without --out, trust.json and trust_scenes.jsonl go into the checkpoint directory. (A model of 8
    training steps names nothing right: the undefined figures are null, never NaN.)"""
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    proc = vizcap("eval", "--checkpoint", ckpt, "--n", 2, "--curves-n", 0)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {ckpt / 'trust.json'}" in proc.stdout
    stored = strict_json((ckpt / "trust.json").read_text())
    assert stored["n_scenes"] == 2 and "independent" not in stored
    assert set(stored["pointing"]) == set(METHODS)
    assert len((ckpt / "trust_scenes.jsonl").read_text().splitlines()) == 2
    a_file = ckpt / "config.json"
    bad = vizcap("eval", "--checkpoint", ckpt, "--n", 1, "--out", a_file)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [f"vizcap: error: --out {a_file}: not a directory"]
    made = vizcap("eval", "--checkpoint", ckpt, "--n", 1, "--curves-n", 0, "--out", tmp_path / "new" / "folder")
    assert made.returncode == 0, made.stderr
    assert strict_json((tmp_path / "new" / "folder" / "trust.json").read_text())["n_scenes"] == 1
