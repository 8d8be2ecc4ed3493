"""What vizcap says plainly beside a caption (issue 26, item 5; vizcap/notices.py): a picture unlike the
model's world, and a caption the model ended at once — in the CLI's JSON, its plain output and exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vizcap.cli import main
from vizcap.notices import ENDED_AT_ONCE, SHAPESCENES_ONLY, looks_like_shapescenes
from vizcap.scenes import HARD, render_scene
from vizcap.trust import independent_scene

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photo.jpg"
SCENE = ROOT / "examples" / "scene.png"
GREY = ROOT / "tests" / "golden" / "grey.png"


def test_every_shapescenes_picture_looks_like_one():
    """Held-out seeds of both renderers, normal and hard (the thresholds were set on other seeds)."""
    pictures = [render_scene(s).image for s in range(3_000_000, 3_000_060)]
    pictures += [render_scene(s, HARD).image for s in range(3_000_000, 3_000_030)]
    pictures += [independent_scene(i).image for i in range(500, 530)]
    pictures += [independent_scene(i, hard=True).image for i in range(500, 530)]
    assert all(looks_like_shapescenes(p) for p in pictures)


@pytest.mark.parametrize("make", [
    lambda: Image.open(PHOTO),  # a colour photograph
    lambda: Image.open(PHOTO).convert("L"),  # the same in grey: no object colour at all
    lambda: Image.open(GREY),  # flat grey: nothing drawn
    lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)),  # noise
    lambda: Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))),  # a ramp: a smooth background alone
])
def test_other_pictures_do_not(make):
    assert not looks_like_shapescenes(make())


@pytest.fixture(scope="module")
def ends_at_once(tmp_path_factory):
    """The shipped model made to end every caption at once, by construction: its final layer norm writes
    the <eos> embedding's direction whatever the input, and that embedding (tied to the output layer) is
    made long, so <eos> has the top logit at the first step. (The shipped model itself captions even a
    flat grey picture since it learned every phrasing: no real picture is known to give it an empty caption.)"""
    import torch

    import vizcap

    cap = vizcap.load()
    with torch.no_grad():
        w = cap.model.decoder.transformer.wte.weight
        w[cap.eos_id] *= 10
        ln = cap.model.decoder.transformer.ln_f
        ln.weight.zero_()
        ln.bias.copy_(w[cap.eos_id] / w[cap.eos_id].norm())
    out = tmp_path_factory.mktemp("ends_at_once")
    cap.save_pretrained(out)
    return out


def test_cli_json_carries_the_notices(capsys, ends_at_once):
    assert main(["caption", str(PHOTO), str(SCENE), "--json"]) == 0
    photo, scene = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert photo["notice"].startswith(SHAPESCENES_ONLY) and photo["caption"]
    assert "notice" not in scene
    assert main(["caption", str(GREY), "--checkpoint", str(ends_at_once), "--json"]) == 0
    grey = json.loads(capsys.readouterr().out)
    assert grey["caption"] == "" and ENDED_AT_ONCE in grey["notice"]


def test_plain_output_says_the_notice_on_stderr(capsys):
    assert main(["caption", str(PHOTO)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{PHOTO}: ") and "only ever seen ShapeScenes" in err


def test_export_names_its_picture_and_draws_with_max_by_default(tmp_path, capsys):
    """The export JSON says which picture it explains; its pictures use the app's default (max), so a
    word's map spans the colour scale instead of a flat purple; --json maps stay raw."""
    assert main(["caption", str(PHOTO), "--export", str(tmp_path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    export = json.loads((tmp_path / "photo.json").read_text())
    assert export["image"] == "photo.jpg" and export["size"] == [451, 300]
    assert export["notices"] and export["notices"][0].startswith(SHAPESCENES_ONLY)
    assert export["view"]["normalize"] == "max"
    assert max(max(row) for word in export["maps"]["cross_attention"] for row in word) == pytest.approx(1.0)
    assert record["maps"] == {}  # no --maps: the JSON line carries none; the export carries the drawn one


def test_word_pieces_are_explained():
    """Issue 26, item 10: BLIP's WordPiece pieces ("##op") appeared as words with no word of what they are."""
    from vizcap.notices import WORD_PIECES, piece_notice

    assert piece_notice(["a", "sc", "##op", "of", "ice"]) == WORD_PIECES + "."
    assert piece_notice(["a", "cat", "#", "##"]) is None  # a hash sign is not a piece


def test_outputs_say_which_maps_were_trained_to_point(tmp_path, capsys):
    """Issues 24/25: every output that carries the model says whether its maps were trained to look right.
    The shipped model's metrics.json records the supervised-attention and binding losses (weights > 0)."""
    import vizcap
    from vizcap.notices import attention_notice, map_status, trained_maps

    shipped = vizcap.load()
    assert trained_maps(shipped) == ("cross_attention", "prefix")
    assert map_status(shipped, "prefix").startswith("trained to point") and map_status(shipped, "rollout").startswith("nothing")
    assert "cross-attention and prefix maps show that training" in attention_notice(shipped)
    assert main(["caption", str(SCENE), "--json", "--export", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["attention_trained"] is True and record["trained_maps"] == ["cross_attention", "prefix"]
    export = json.loads((tmp_path / "scene.json").read_text())
    assert export["attention_trained"] is True and any("trained to look at the objects" in n for n in export["notices"])


def test_a_checkpoint_without_the_attention_losses_says_nothing_trained_it(tmp_path):
    """A metrics.json with both loss weights 0 (the free twin of issue 24) → nothing trained; none → unknown."""
    import shutil

    import vizcap
    from vizcap.notices import NOTHING_TRAINED, attention_notice, trained_maps

    folder = tmp_path / "free"
    shutil.copytree(Path(vizcap.load().name), folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["args"].update(attend_weight=0.0, bind_weight=0.0)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert trained_maps(vizcap.load(folder)) == () and attention_notice(vizcap.load(folder)) == NOTHING_TRAINED + "."
    (folder / "metrics.json").unlink()
    assert trained_maps(vizcap.load(folder)) is None and attention_notice(vizcap.load(folder)) is None
