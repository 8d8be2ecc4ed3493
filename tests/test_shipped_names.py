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


def test_decoding_refuses_bad_numbers_before_loading():
    run = subprocess.run([sys.executable, "-m", "vizcap", "decoding", "--draws", "1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("vizcap: error: --n must be at least 1")
    assert "Traceback" not in run.stderr
