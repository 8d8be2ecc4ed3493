"""One table per concept (issue 23): a map method and a decoding strategy registered at run time (the
`throwaway` fixture, tests/conftest.py) reach the API, the CLI (its main() in the same process), links,
exports, the trust evaluation and what the explorer reads with no other edit (the explorer itself:
tests/test_app.py::test_the_explorer_offers_a_registered_method_and_strategy)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import vizcap
from vizcap import decoding, links, maps, trust
from vizcap.cli import main
from vizcap.decoding import DecodingParams, params_for

PICTURE = str(Path(__file__).resolve().parent / "golden" / "scene42.png")
SAMPLING = dict(top_k=5, temperature=1.5, seed=3)



@pytest.fixture(scope="module")
def shipped():
    return vizcap.load()


def test_registered_method_and_strategy_reach_the_api(throwaway, shipped):
    ref = shipped.explain(PICTURE, params=DecodingParams(strategy="sample", **SAMPLING))
    exp = shipped.explain(PICTURE, params=DecodingParams(strategy="my_sample", **SAMPLING))
    # the copy runs through the one loop by its declared search: the same seeded draws, the same caption
    assert exp.params.strategy == "my_sample" and exp.seed == 3
    assert exp.token_ids == ref.token_ids and len(exp) > 0
    keywords = shipped.explain(PICTURE, strategy="my_sample", **SAMPLING)
    assert keywords.params == exp.params and keywords.token_ids == ref.token_ids
    np.testing.assert_array_equal(exp.maps("my_rollout"), ref.maps("rollout"))
    np.testing.assert_array_equal(exp.maps("my_rollout", normalize="max"), ref.maps("rollout", normalize="max"))
    with pytest.raises(ValueError, match="combines all layers and heads"):
        exp.maps("my_rollout", layer=0)
    record = exp.to_dict(("my_rollout",), "none")
    assert record["view"]["units"]["my_rollout"] == maps.METHODS["rollout"].unit
    assert record["params"]["strategy"] == "my_sample"
    np.testing.assert_allclose(record["maps"]["my_rollout"], np.round(ref.maps("rollout"), 6))


def test_registered_method_and_strategy_reach_the_cli(throwaway, shipped, capsys):
    ref = shipped.explain(PICTURE, params=params_for("sample", **SAMPLING))
    code = main(["caption", PICTURE, "--json", "--maps", "my_rollout", "--strategy", "my_sample", "--top-k", "5",
                 "--temperature", "1.5", "--seed", "3"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0, record
    assert record["tokens"] == ref.tokens and record["strategy"] == "my_sample" and record["seed"] == 3
    np.testing.assert_allclose(record["maps"]["my_rollout"], ref.maps("rollout"), atol=1e-6)
    assert main(["caption", PICTURE, "--json", "--maps", "all"]) == 0
    assert "my_rollout" in json.loads(capsys.readouterr().out)["maps"]


def test_what_the_explorer_links_and_trust_read(throwaway, shipped):
    exp = shipped.explain(PICTURE)
    assert "my_rollout" in maps.available(exp.mode) and maps.METHODS["my_rollout"].help == "a copy of rollout"
    raw = exp.maps("my_rollout")
    assert maps.colour_range(raw, "my_rollout", "none") == maps.colour_range(raw, "rollout", "none")
    view, notes = links.parse({"method": "my_rollout", "strategy": "my_sample", "top_k": "5"})
    assert notes == [] and view.method == "my_rollout" and view.decoding.strategy == "my_sample"
    assert "my_sample" in decoding.STRATEGIES and "my_rollout" in maps.names()
    assert trust._supports(shipped, "my_rollout")
    result = trust.evaluate_trust(shipped, n=1, curves_n=0, methods=("rollout", "my_rollout"), progress=False)
    assert result["pointing"]["my_rollout"] == result["pointing"]["rollout"]


def test_unregistered_names_are_refused(shipped):
    exp = shipped.explain(PICTURE)
    with pytest.raises(ValueError, match="method must be one of"):
        exp.maps("my_rollout")
    with pytest.raises(ValueError, match="strategy must be one of"):
        DecodingParams(strategy="my_sample")
    view, notes = links.parse({"method": "my_rollout"})
    assert view.method == "cross_attention" and len(notes) == 1


def test_params_for_neutralises_the_knobs_a_strategy_does_not_use():
    assert params_for("greedy", beams=4, top_k=5, temperature=2.0, seed=7) == DecodingParams(strategy="greedy")
    beam = params_for("beam", beams=4, top_k=5, length_penalty=0.5)
    assert (beam.beams, beam.top_k, beam.length_penalty) == (4, 0, 0.5)
    assert params_for("beam", {"beams": 3, "length_penalty": 2.0}).length_penalty == 2.0  # a model's own default
    with pytest.raises(ValueError, match="temperature"):  # every value given is checked, used or not
        params_for("greedy", temperature=0)
    assert decoding.validate({"strategy": "beam", "beams": 0}) and decoding.validate({"strategy": "beam"}) == []


def test_colour_range_reads_the_registry():
    """A registered copy of a method gets its colour range from its declaration: a "share" method's raw
    scale stops at 1 for a weak map (a weak map stays weak), a "data" one at the map's own peak."""
    import dataclasses

    weak = np.full((2, 3, 3), 0.2)
    maps.register(dataclasses.replace(maps.METHODS["relevancy"], name="my_share", colour_range="share"))
    maps.register(dataclasses.replace(maps.METHODS["rollout"], name="my_data", colour_range="data"))
    try:
        assert maps.colour_range(weak, "my_share", "none")[0] == 1.0
        assert maps.colour_range(weak, "my_data", "none")[0] == pytest.approx(0.2)
        assert maps.colour_range(weak, "my_data", "none")[1] == maps.METHODS["rollout"].unit
        assert maps.colour_range(weak, "not_registered", "none") == (pytest.approx(0.2), "weight")
    finally:
        maps.unregister("my_share")
        maps.unregister("my_data")
    with pytest.raises(ValueError, match="normalize must be one of"):
        maps.colour_range(weak, "rollout", "peak")
