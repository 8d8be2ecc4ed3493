"""vizcap.links: a view of the app as a link, and back."""

from __future__ import annotations

import pytest

from vizcap.compose import Placement, compose_scene
from vizcap.decoding import DecodingParams
from vizcap import links
from vizcap.links import View, compose_spec, parse, parse_compose, to_query


def test_the_issues_example_link():
    view, notes = parse({"image": "scene:42", "word": "3", "method": "rollout", "normalize": "max"})
    assert notes == []
    assert view == View(image="scene:42", word=3, method="rollout", normalize="max")


def test_defaults_make_an_empty_query_and_every_setting_round_trips():
    assert to_query(View()) == {}
    views = [
        View(image="scene:0", word=1, method="prefix", layer=1, head=3, normalize="none", sinks=True),
        View(image="compose:white/red-star-25-50-30/blue-circle-75-50-30-45", word=2, method="relevancy",
             normalize="global", decoding=DecodingParams(strategy="beam", beams=5, length_penalty=0.6,
                                                         early_stopping="heuristic", max_tokens=12)),
        View(decoding=DecodingParams(strategy="sample", top_k=5, top_p=0.9, temperature=0.7, seed=3)),
    ]
    for view in views:
        query = to_query(view)
        assert all(isinstance(v, str) for v in query.values())
        back, notes = parse(query)
        assert notes == [] and back == view, query


def test_lists_take_their_last_value_as_streamlit_query_params_give_them():
    view, notes = parse({"word": ["1", "4"], "sinks": ["1"]})
    assert notes == [] and view.word == 4 and view.sinks


@pytest.mark.parametrize("query,name", [
    ({"image": "scene:-1"}, "image"), ({"image": "photo:1"}, "image"), ({"image": "scene:abc"}, "image"),
    ({"image": "compose:purple-sky/red-star-1-1-30"}, "image"), ({"image": "compose:white/red-star-1-1"}, "image"),
    ({"image": "compose:white/gold-star-50-50-30"}, "image"), ({"image": "compose:white/red-star-50-50-95"}, "image"),
    ({"word": "0"}, "word"), ({"word": "two"}, "word"), ({"layer": "-1"}, "layer"), ({"head": "1.5"}, "head"),
    ({"method": "gradcam"}, "method"), ({"normalize": "minmax"}, "normalize"), ({"sinks": "yes"}, "sinks"),
    ({"strategy": "nucleus"}, "strategy"), ({"beams": "99"}, "beams"), ({"top_p": "1.5"}, "top_p"),
    ({"temperature": "nan"}, "temperature"), ({"seed": "x"}, "seed"), ({"word": "9" * 40}, "word"),
])
def test_a_bad_value_is_one_line_and_leaves_the_rest_of_the_link(query, name):
    view, notes = parse({**query, "method": query.get("method", "rollout")} if name != "method" else query)
    assert len(notes) == 1 and "\n" not in notes[0] and notes[0].startswith(f"link: {name}=") and len(notes[0]) < 200
    if name != "method":
        assert view.method == "rollout"  # the good part of the link still applies
    assert getattr(view, name, None) == getattr(View(), name, None) or name in {f for f in DecodingParams.__dataclass_fields__}


def test_composed_scenes_travel_in_the_link():
    placements = [Placement("red", "star", 0.25, 0.5, 0.3), Placement("blue", "circle", 0.75, 0.5, 0.3, 45.0)]
    spec = compose_spec(placements, "light grey")
    assert spec == "compose:light-grey/red-star-25-50-30/blue-circle-75-50-30-45"
    back, background = parse_compose(spec.split(":", 1)[1])
    assert back == placements and background == "light grey"
    assert compose_scene(back, background=background).caption == compose_scene(placements, background="light grey").caption


def test_the_lessons_steps_are_valid_views_and_its_photo_is_fixed():
    import numpy as np

    from vizcap.lesson import PHOTO, STEPS, focus_word, photo_like
    from vizcap.links import image_problem

    assert len(STEPS) == 6 and all(s.say.count(".") <= 2 for s in STEPS)  # one sentence each, read aloud
    assert all(s.image == PHOTO or image_problem(s.image) is None for s in STEPS)
    assert np.array_equal(np.asarray(photo_like()), np.asarray(photo_like())) and photo_like().size == (320, 240)
    assert focus_word("two pink circles and an orange square".split()) == 6
    assert focus_word("a red triangle left of a blue circle".split(), "a red star left of a blue circle") == 2
    assert focus_word([]) == 0


def test_values_the_model_or_caption_lack_are_named_not_clamped():
    """Issue 26, item 6: /explorer?word=30&layer=7&head=9 on a 2-layer, 4-head model with a 7-word caption
    silently became word 7, all layers, all heads; each is now named in a message."""
    view, notes = links.parse({"image": "scene:42", "word": "30", "layer": "7", "head": "9"})
    assert not notes and (view.layer, view.head, view.word) == (7, 9, 30)  # valid in themselves
    fitted, notes = links.fit(view, n_layers=2, n_heads=4)
    assert (fitted.layer, fitted.head) == (None, None)
    assert notes == ["link: layer=7 ignored (this model has layers 0 to 1; showing all layers)",
                     "link: head=9 ignored (this model has heads 0 to 3; showing all heads)"]
    assert links.fit(links.View(layer=1, head=3), 2, 4) == (links.View(layer=1, head=3), [])
    assert links.word_note(30, 7) == "link: word=30 ignored (this caption has 7 words)"
    assert links.word_note(7, 7) is None and links.word_note(1, 1) is None
    assert links.step_note("9", 5) == "link: step=9 ignored (a step number from 1 to 5; showing step 1)"
    assert links.step_note("0", 5) and links.step_note("x", 5) and links.step_note("5", 5) is None


def test_the_lessons_focus_word_knows_every_right_caption():
    """Given all right captions, a caption that is one of them has no wrong word (the focus is its last
    shape word), and a wrong one is wrong where it leaves the right caption it follows longest."""
    from vizcap.lesson import focus_word

    truths = ["a red star left of a blue circle", "a blue circle right of a red star"]
    assert focus_word("a blue circle right of a red star".split(), truths) == 7
    assert focus_word("a blue circle left of a red star".split(), truths) == 3  # follows the second one to "left"
    assert focus_word("a blue square right of a red star".split(), truths) == 2
    assert focus_word("a blue circle right of a red star".split(), truths[0]) == 1  # one truth: the canonical one


def test_a_link_names_a_shipped_model_and_refuses_others():
    """model=NAME opens a shipped checkpoint (issue 24: the twins by name); an unknown name is said and
    ignored; the default (no model) writes nothing."""
    from vizcap.files import shipped_names

    assert "shapes" in shipped_names()
    view, notes = parse({"model": "shapes", "word": "2"})
    assert notes == [] and view.model == "shapes" and view.word == 2
    assert to_query(view) == {"word": "2", "model": "shapes"} and parse(to_query(view))[0] == view
    view, notes = parse({"model": "../shapes", "word": "2"})
    assert view.model is None and view.word == 2
    assert notes and notes[0].startswith("link: model=../shapes ignored (a shipped model: shapes")
    assert "model" not in to_query(View())
