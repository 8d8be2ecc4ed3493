"""ShapeScenes' caption scores (vizcap.evaluate) when a scene has several right captions."""

from __future__ import annotations

import pytest

from vizcap.evaluate import caption_metrics, scene_scores
from vizcap.scenes import SceneObject, phrasings


def _obj(colour: str, shape: str, x: float, y: float) -> SceneObject:
    return SceneObject(colour, shape, (int(x) - 10, int(y) - 10, int(x) + 10, int(y) + 10), 0.25)


PAIR = [_obj("red", "circle", 20, 50), _obj("blue", "star", 100, 60)]  # red left of blue
TRIPLE = [_obj("red", "circle", 20, 50), _obj("blue", "star", 100, 60), _obj("green", "square", 180, 40)]


def _scores(prediction: str, objects: list[SceneObject]) -> dict:
    return scene_scores([prediction], [objects], [phrasings(objects)])


@pytest.mark.parametrize("prediction", ["a red circle left of a blue star", "a blue star right of a red circle"])
def test_exact_accepts_every_right_caption(prediction):
    assert _scores(prediction, PAIR)["exact"] == 1.0
    assert _scores(prediction.upper() + ".", PAIR)["exact"] == 1.0  # case and punctuation are not words


@pytest.mark.parametrize("prediction", ["a red circle right of a blue star",  # the relation is false
                                        "a blue star left of a red circle",
                                        "a red circle and a blue star",  # a pair's relation left out
                                        "a red star left of a blue circle",  # colours swapped
                                        "a red circle", ""])
def test_exact_rejects_a_wrong_caption(prediction):
    assert _scores(prediction, PAIR)["exact"] == 0.0


def test_one_reference_string_is_the_only_right_caption():
    """A lone string (how records from before issue 24 hold their truth) accepts only itself."""
    mirrored = "a blue star right of a red circle"
    assert scene_scores([mirrored], [PAIR], ["a red circle left of a blue star"])["exact"] == 0.0
    assert scene_scores([mirrored], [PAIR], [[mirrored]])["exact"] == 1.0


def test_colours_and_shapes_are_scored_against_the_order_the_prediction_follows():
    """'a green square and a red circle and a pink star' follows the right caption green, red, blue:
    all shapes right, 2 of 3 colours (pink for blue). Scored place by place against the canonical
    order (red, blue, green) instead, no object would be right."""
    s = _scores("a green square and a red circle and a pink star", TRIPLE)
    assert s["exact"] == 0.0
    assert s["colour_acc"] == pytest.approx(2 / 3) and s["shape_acc"] == 1.0
    assert s["object_recall"] == pytest.approx(2 / 3) and s["count_acc"] == 1.0
    canonical_only = scene_scores(["a green square and a red circle and a pink star"], [TRIPLE], [phrasings(TRIPLE)[0]])
    assert canonical_only["colour_acc"] == 0.0 and canonical_only["shape_acc"] == 0.0


def test_colours_and_shapes_come_from_one_order_not_the_best_of_each():
    """'a blue star and a red square and a green circle' fits blue, red, green (colours 3, shapes 1)
    as well as blue, green, red (colours 1, shapes 3): the earlier right caption decides both scores,
    rather than each score taking the order that suits it (which would give 3 and 3)."""
    s = _scores("a blue star and a red square and a green circle", TRIPLE)
    assert s["colour_acc"] == 1.0 and s["shape_acc"] == pytest.approx(1 / 3)


def test_bleu_and_cider_take_every_right_caption_as_a_reference():
    mirrored = "a blue star right of a red circle"
    every = caption_metrics({0: mirrored}, {0: phrasings(PAIR)})
    canonical = caption_metrics({0: mirrored}, {0: phrasings(PAIR)[:1]})
    assert every["bleu4"] == pytest.approx(1.0, abs=1e-6) and canonical["bleu4"] < 0.5
