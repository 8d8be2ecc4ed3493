"""The benchmarks' JSON records: a run of some models adds to the file, never drops what another run
measured (the relevancy benchmark's BLIP row takes an idle hour of its own)."""

from __future__ import annotations

from benchmarks.relevancy import merged


def test_a_run_of_one_model_keeps_the_other_models_entries():
    old = {"command": "python benchmarks/relevancy.py --only vit-gpt2", "load_average_start": [1.4],
           "load_average_end": [1.7], "models": {"vit-gpt2": {"relevancy_s": 4.6}, "blip-base": {"relevancy_s": 90.0}}}
    new = {"command": "python benchmarks/relevancy.py --only blip-base", "load_average_start": [0.2],
           "load_average_end": [0.9], "models": {"blip-base": {"relevancy_s": 70.0, "command": "python benchmarks/"
                                                                     "relevancy.py --only blip-base"}}}
    out = merged(new, old)
    assert out["command"] == new["command"] and out["load_average_start"] == [0.2]
    assert out["models"]["blip-base"] == new["models"]["blip-base"]  # the new measurement wins
    assert out["models"]["vit-gpt2"] == {"command": old["command"], "load_average": [[1.4], [1.7]], "relevancy_s": 4.6}
    assert merged(new, {})["models"] == new["models"]
