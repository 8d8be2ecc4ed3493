"""The shipped checkpoints by name (issue 24): their titles, how exports name them, and the CLI's
`decoding` measurement of how much decoding strategies differ."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vizcap
from vizcap.files import SHIPPED, SHIPPED_TITLES, shipped_names, shipped_title


@pytest.fixture(scope="module")
def shipped():
    return vizcap.load("shapes")


def test_titles_say_whether_the_attention_was_trained():
    assert SHIPPED_TITLES["shapes"] == "ShapeScenes — attention trained to point"
    assert SHIPPED_TITLES["shapes-free"] == "ShapeScenes — attention left free"
    assert shipped_names()[0] == "shapes"  # the default opens first


def test_a_shipped_title_is_found_by_folder_and_only_for_shipped_folders(tmp_path):
    assert shipped_title(SHIPPED / "shapes") == SHIPPED_TITLES["shapes"]
    assert shipped_title(str(SHIPPED / "shapes") + "/") == SHIPPED_TITLES["shapes"]
    assert shipped_title(SHIPPED / "shapes" / ".." / "shapes") == SHIPPED_TITLES["shapes"]
    (tmp_path / "shapes").mkdir()
    assert shipped_title(tmp_path / "shapes") is None  # a folder called shapes elsewhere is not the shipped one
    assert shipped_title("nlpconnect/vit-gpt2-image-captioning") is None
    assert shipped_title(None) is None


def test_an_export_names_the_shipped_model_by_its_title(shipped):
    from vizcap.scenes import render_scene

    exp = shipped.explain(render_scene(3).image)
    assert json.loads(exp.to_json())["model"] == ("the shipped model “ShapeScenes — attention trained to point” "
                                                 "(vizcap/checkpoints/shapes)")


def test_decoding_spread_scores_every_caption_against_the_scenes_truth(shipped, tmp_path):
    """`vizcap decoding` writes decoding.json: per scene, the captions and whether each is one of the
    scene's right captions; the figures are those records' shares."""
    from vizcap.scenes import render_scene
    from vizcap.spread import caption_with

    run = subprocess.run([sys.executable, "-m", "vizcap", "decoding", "--n", "3", "--draws", "2", "--out",
                          str(tmp_path), "--json"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    stored = json.loads((tmp_path / "decoding.json").read_text())
    assert printed == {k: v for k, v in stored.items() if k != "records"}
    assert stored["command"] == "vizcap decoding --n 3 --draws 2 --beams 5"
    records = stored["records"]
    assert len(records) == 3 and all(len(r["samples"]) == 2 for r in records)
    for r in records:
        scene = render_scene(r["seed"])
        assert 2 <= len(scene.objects) <= 3
        assert r["greedy"] == shipped.caption(scene.image)  # the batch greedy path agrees with the loop
        assert r["greedy"] == caption_with(shipped, shipped.pixels(scene.image), shipped.decoding_params())
        assert r["greedy_right"] == (r["greedy"] in scene.captions)
        assert r["samples_right"] == [s in scene.captions for s in r["samples"]]
    assert stored["samples_right"] == round(sum(sum(r["samples_right"]) for r in records) / 6, 4)  # stored to 4 places
    assert stored["greedy_beam_differ"] == round(sum(r["greedy"] != r["beam"] for r in records) / 3, 4)


def test_decoding_on_the_independent_renderer_scores_against_its_objects(shipped, tmp_path):
    """`vizcap decoding --independent` draws its scenes from the independent renderer (not ShapeScenes),
    scores each caption against the captions its objects allow, and writes decoding_independent.json,
    leaving decoding.json (the lab's file) alone."""
    from vizcap.independent_renderer import render_independent
    from vizcap.scenes import clear_cut
    from vizcap.trust import INDEPENDENT_FIRST_SEED, independent_scene

    run = subprocess.run([sys.executable, "-m", "vizcap", "decoding", "--n", "2", "--draws", "2", "--independent",
                          "--out", str(tmp_path), "--json"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "decoding.json").exists()
    stored = json.loads((tmp_path / "decoding_independent.json").read_text())
    assert json.loads(run.stdout) == {k: v for k, v in stored.items() if k != "records"}
    assert stored["source"] == "independent renderer" and stored["first_seed"] == INDEPENDENT_FIRST_SEED
    assert stored["command"] == "vizcap decoding --n 2 --draws 2 --beams 5 --independent"
    for r in stored["records"]:
        image, objects = render_independent(r["seed"])
        assert 2 <= len(objects) <= 3
        scene = independent_scene(r["seed"] - INDEPENDENT_FIRST_SEED)
        assert scene.image.tobytes() == image.tobytes()
        assert r["greedy"] == shipped.caption(image)
        assert r["greedy_right"] == (r["greedy"] in scene.captions)
        assert r["samples_right"] == [s in scene.captions for s in r["samples"]]
        assert r["clear_cut"] == clear_cut(scene.objects)
    skipped = [s for s in range(INDEPENDENT_FIRST_SEED, stored["records"][-1]["seed"])
               if s not in {r["seed"] for r in stored["records"]}]
    assert all(not 2 <= len(render_independent(s)[1]) <= 3 for s in skipped)  # the first two such scenes, none passed over


def test_decoding_refuses_bad_numbers_before_loading():
    run = subprocess.run([sys.executable, "-m", "vizcap", "decoding", "--draws", "1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("vizcap: error: --n must be at least 1")
    assert "Traceback" not in run.stderr
