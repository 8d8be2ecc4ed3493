"""What the app used to compute inside its Streamlit glue and now asks the library for (issue 23): a
checkpoint's own records (vizcap.records), an uploaded file (vizcap.images.read_upload) and the picture
the model saw (vizcap.images.model_view). Pure functions, tested without Streamlit."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_random_captioner
from vizcap import records
from vizcap.images import MAX_UPLOAD_MB, from_model_input, model_view, read_upload, to_model_input


def test_training_facts_read_only_what_metrics_json_records(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({
        "args": {"steps": 100, "batch_size": 8, "aux_weight": 0.5, "bind_weight": True, "attend_weight": "2"},
        "train_seconds": 90, "command": "python -m train shapes"}))
    facts = records.training_facts(tmp_path)
    # samples from steps × batch; booleans and strings are not numbers; nothing else is invented
    assert facts == {"steps": 100, "batch_size": 8, "samples": 800, "aux_weight": 0.5, "minutes": 1.5,
                     "command": "python -m train shapes"}
    (tmp_path / "metrics.json").write_text(json.dumps({"samples_seen": 123, "args": {"steps": 10, "batch_size": 4}}))
    assert records.training_facts(tmp_path)["samples"] == 123  # the recorded count wins over the product
    # which captions it trained on (issue 24): as recorded, or, for a ShapeScenes run from before the choice
    # (its args hold a numeric attend_weight), the canonical one
    for args, want in (({"captions": "all", "attend_weight": 0}, "all"), ({"attend_weight": 1.0}, "canonical"),
                       ({"captions": "some"}, None), ({}, None)):
        (tmp_path / "metrics.json").write_text(json.dumps({"args": args}))
        assert records.training_facts(tmp_path).get("captions") == want, args
    # which object each prefix token was bound to: as recorded, or "named" for a run from before the choice
    for args, want in (({"bind_to": "place", "bind_weight": 1.0}, "place"), ({"bind_weight": 1.0}, "named"),
                       ({"bind_to": "other"}, None), ({}, None)):
        (tmp_path / "metrics.json").write_text(json.dumps({"args": args}))
        assert records.training_facts(tmp_path).get("bind_to") == want, args
    # whether a pair's relation word was supervised too: only a recorded boolean
    for args, want in (({"attend_relations": True}, True), ({"attend_relations": False}, False),
                       ({"attend_relations": "yes"}, None), ({"attend_weight": 1.0}, None)):
        (tmp_path / "metrics.json").write_text(json.dumps({"args": args}))
        assert records.training_facts(tmp_path).get("attend_relations") == want, args
    # the named-so-far head's weight: a recorded number only
    for args, want in (({"named_weight": 1.0}, 1.0), ({"named_weight": 0}, 0), ({"named_weight": "1"}, None), ({}, None)):
        (tmp_path / "metrics.json").write_text(json.dumps({"args": args}))
        assert records.training_facts(tmp_path).get("named_weight") == want, args
    for args, want in (({"repeat_weight": 0.5}, 0.5), ({"repeat_weight": None}, None), ({}, None)):
        (tmp_path / "metrics.json").write_text(json.dumps({"args": args}))
        assert records.training_facts(tmp_path).get("repeat_weight") == want, args


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]", '"text"'])
def test_a_missing_or_unusable_metrics_json_reads_as_nothing(tmp_path, content):
    if content is not None:
        (tmp_path / "metrics.json").write_text(content)
    assert records.metrics(tmp_path) is None
    assert records.training_facts(tmp_path) == {}


def test_training_log_skips_lines_that_are_not_objects(tmp_path):
    assert records.training_log(tmp_path) == []  # no log at all
    (tmp_path / records.TRAIN_LOG).write_text('{"step": 1, "loss": 2.0}\ncut off {\n[3]\n{"step": 2, "loss": 1.0}\n')
    assert records.training_log(tmp_path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]


def test_saved_trust_is_the_checkpoints_trust_json(tmp_path):
    assert records.saved_trust(tmp_path) is None
    (tmp_path / "trust.json").write_text(json.dumps({"n_scenes": 8, "command": "vizcap eval"}))
    assert records.saved_trust(str(tmp_path)) == {"n_scenes": 8, "command": "vizcap eval"}


def _png(size=(20, 10), colour=(200, 30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_read_upload_names_a_file_by_its_bytes():
    data = _png()
    image, image_id, error = read_upload("a.png", data)
    assert error is None and image.size == (20, 10) and image.getpixel((3, 3)) == (200, 30, 40)
    assert read_upload("other-name.png", data)[1] == image_id  # the same bytes, the same picture
    assert read_upload("b.png", _png(colour=(0, 0, 0)))[1] != image_id
    assert image_id.startswith("upload:") and len(image_id) == len("upload:") + 16


def test_read_upload_refuses_without_raising():
    image, image_id, error = read_upload("big.png", _png(), size=(MAX_UPLOAD_MB + 1) * 1024 * 1024)
    assert image is None and image_id is None and "over the 20 MB limit" in error
    image, image_id, error = read_upload("notes.png", b"just some text")
    assert image is None and image_id is None and error.startswith("notes.png")


def test_from_model_input_undoes_the_normalisation():
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    back = from_model_input(to_model_input(picture, 16, mean, std), mean, std)
    assert np.abs(np.asarray(back, int) - np.asarray(picture, int)).max() <= 1  # float32 rounding only


def test_model_view_is_the_vizcap_models_squashed_input():
    captioner = make_random_captioner("both")
    picture = Image.new("RGB", (120, 40), (10, 200, 90))
    seen = model_view(captioner, picture)
    side = captioner.cfg.image_size
    assert seen.size == (side, side)  # the whole picture squashed, never cropped
    assert np.abs(np.asarray(seen, int) - [10, 200, 90]).max() <= 1


def test_model_view_of_a_photo_model_uses_its_image_processor():
    """A Hugging Face captioner normalises with its processor's statistics (0 and 1 where it gives none),
    and model_view undoes exactly what the backend states."""
    from vizcap.hub import HFCaptioner

    pixels = lambda image: torch.zeros(1, 3, 4, 4)  # noqa: E731  a normalised 0 everywhere
    stated = SimpleNamespace(image_processor=SimpleNamespace(image_mean=[0.5] * 3, image_std=[0.5] * 3))
    unstated = SimpleNamespace(image_processor=SimpleNamespace())
    for fake in (stated, unstated):  # the backends' own properties, on stand-ins
        fake.image_mean, fake.image_std = HFCaptioner.image_mean.fget(fake), HFCaptioner.image_std.fget(fake)
        fake.pixels = pixels
    assert set(np.asarray(model_view(stated, None)).ravel()) == {128}  # 0 × 0.5 + 0.5 = mid-grey
    assert set(np.asarray(model_view(unstated, None)).ravel()) == {0}  # 0 × 1 + 0 = black
