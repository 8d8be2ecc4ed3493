"""Behaviour held still through refactoring: `vizcap caption --json --maps all` on the committed pictures
gives what tests/golden/caption_maps_all.json recorded (written by `python tests/make_golden.py` before the
registries of issue 23 were built). Captions, tokens and probabilities must match exactly; maps to 1e-5
(the file stores 6 decimals). Keys added later to a record (notices) are allowed; none may go missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

import make_golden

GOLDEN = json.loads((make_golden.HERE / "caption_maps_all.json").read_text())


@pytest.mark.parametrize("name", sorted(make_golden.RUNS))
def test_cli_output_unchanged(name):
    now = make_golden.run(make_golden.RUNS[name])
    assert len(now) == len(GOLDEN[name])
    for was, got in zip(GOLDEN[name], now):
        missing = set(was) - set(got)
        assert not missing, f"{was['image']}: keys gone: {missing}"
        for key, value in was.items():
            if key == "maps":
                assert list(got["maps"]) == list(value), was["image"]
                for method, m in value.items():
                    np.testing.assert_allclose(np.array(got["maps"][method]), np.array(m), atol=1e-5,
                                               err_msg=f"{was['image']} {method}")
            elif key in ("token_probs", "class_token_share", "score"):
                np.testing.assert_allclose(np.array(got[key], dtype=float), np.array(value, dtype=float), atol=1e-6)
            else:
                assert got[key] == value, (was["image"], key)
