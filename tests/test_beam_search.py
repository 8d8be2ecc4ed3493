"""Beam search (vizcap.decoding.search) against references that share none of its rules.

A synthetic "decoder" over a tiny vocabulary gives each token history its own fixed, random
next-token distribution, so that every sequence's probability is known and all of them can be
enumerated:

* with at least as many beams as there are sequences, beam search keeps every candidate, so it
  must return the exhaustive best (by logp / length**length_penalty, truncated sequences included
  and marked as such);
* whatever the beam width, early stopping under the "exact" rule must never change the result:
  it must equal the same beam search run to max_tokens without stopping early.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import vizcap.decoding as decoding
from vizcap.decoding import DecodingParams, search

EOS = 0


class TinyDecoder:
    """step_fn for search(): logits depend on the whole token history (seeded per history)."""

    def __init__(self, vocab: int, seed: int, eos_bias: float = 0.0, sharp: float = 2.0):
        self.vocab, self.seed, self.eos_bias, self.sharp = vocab, seed, eos_bias, sharp
        self.rows: list[tuple[int, ...]] = []

    def logits(self, history: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((self.seed, history)) % (2**31))
        x = torch.randn(self.vocab, generator=g) * self.sharp
        x[EOS] += self.eos_bias
        return x

    def logp(self, history: tuple[int, ...]) -> torch.Tensor:
        return torch.log_softmax(self.logits(history), -1)

    def __call__(self, tokens, parents):
        if tokens is None:
            self.rows = [()]
        else:
            self.rows = [self.rows[p] + (t,) for p, t in zip(parents.tolist(), tokens.tolist())]
        return torch.stack([self.logits(h) for h in self.rows]), {}


def exhaustive(dec: TinyDecoder, max_tokens: int, lp: float) -> list[tuple[float, tuple[int, ...], bool]]:
    """Every sequence (ended with <eos> within max_tokens, or cut at max_tokens), scored; best first."""
    out = []
    for n in range(1, max_tokens + 1):
        for body in itertools.product(range(1, dec.vocab), repeat=n - 1):
            for last in range(dec.vocab):
                seq = body + (last,)
                if last != EOS and n < max_tokens:
                    continue  # neither ended nor cut: a prefix of longer sequences
                logp = sum(float(dec.logp(seq[:i])[seq[i]]) for i in range(n))
                out.append((logp / n**lp, seq, last != EOS))
    return sorted(out, key=lambda x: -x[0])


CASES = [(vocab, max_tokens, seed, lp, eos_bias)
         for vocab, max_tokens in ((3, 3), (4, 2))
         for seed in range(6)
         for lp in (-1.0, 0.0, 0.5, 1.0, 2.0)
         for eos_bias in (-1.0, 1.0)]


@pytest.mark.parametrize("vocab,max_tokens,seed,lp,eos_bias", CASES)
def test_enough_beams_find_the_exhaustive_best(vocab, max_tokens, seed, lp, eos_bias):
    dec = TinyDecoder(vocab, seed, eos_bias)
    ranked = exhaustive(dec, max_tokens, lp)
    assert len(ranked) <= decoding.MAX_BEAMS
    params = DecodingParams(strategy="beam", beams=decoding.MAX_BEAMS, length_penalty=lp, max_tokens=max_tokens)
    result = search(dec, params, EOS, vocab)
    score, seq, truncated = ranked[0]
    assert tuple(result.best.tokens) == seq
    assert result.best.score(lp) == pytest.approx(score, abs=1e-5)
    assert result.best.truncated == truncated and result.best.finished == (not truncated)
    # every sequence was considered, each marked as ended or truncated
    got = {tuple(h.tokens): (s, h.truncated) for h, s in result.candidates}
    assert set(got) == {s for _, s, _ in ranked}
    for s_ref, seq_ref, trunc_ref in ranked:
        assert got[seq_ref][0] == pytest.approx(s_ref, abs=1e-5) and got[seq_ref][1] == trunc_ref


def test_the_exhaustive_cases_include_truncated_winners_and_ended_winners():
    """The cases above test both kinds of winner (else the marking would go unchecked)."""
    kinds = {exhaustive(TinyDecoder(v, s, b), m, lp)[0][2] for v, m, s, lp, b in CASES}
    assert kinds == {True, False}


def _never_stop(monkeypatch):
    monkeypatch.setattr(decoding, "_beam_done", lambda done, live, K, n, params: not live)


def test_exact_early_stopping_never_changes_the_result(monkeypatch):
    """A live beam can still overtake the finished ones when length_penalty > 0; stopping must wait."""
    stopped_early = 0
    for lp, beams, seed in itertools.product((0.0, 0.5, 1.0, 2.0, 3.0), (2, 3), range(30)):
        dec = TinyDecoder(5, seed, eos_bias=1.5, sharp=1.0)
        params = DecodingParams(strategy="beam", beams=beams, length_penalty=lp, max_tokens=7)
        early = search(dec, params, EOS, 5)
        with monkeypatch.context() as m:
            _never_stop(m)
            full = search(dec, params, EOS, 5)
        stopped_early += len(early.tree) < len(full.tree)
        assert early.best.tokens == full.best.tokens, (lp, beams, seed)
        assert early.best.score(lp) == full.best.score(lp)
    assert stopped_early > 20  # the rule did stop early often (else this test checks nothing)


def test_the_heuristic_rule_is_huggingfaces_and_can_stop_too_early(monkeypatch):
    """"heuristic" (HF's early_stopping=False) bounds a live beam by its score now; with a length
    penalty a beam it dropped would have won. Documented, and used only when asked for."""
    differs = 0
    for seed in range(40):
        dec = TinyDecoder(5, seed, eos_bias=1.5, sharp=1.0)
        params = DecodingParams(strategy="beam", beams=2, length_penalty=3.0, max_tokens=7, early_stopping="heuristic")
        early = search(dec, params, EOS, 5)
        with monkeypatch.context() as m:
            _never_stop(m)
            full = search(dec, params, EOS, 5)
        differs += early.best.tokens != full.best.tokens
    assert differs


def test_first_k_stops_when_k_hypotheses_ended():
    dec = TinyDecoder(5, 1, eos_bias=1.5, sharp=1.0)
    result = search(dec, DecodingParams(strategy="beam", beams=3, max_tokens=12, early_stopping="first_k"), EOS, 5)
    ended = [h for h, _ in result.candidates if h.finished]
    assert len(ended) >= 3
    # it stopped at the first step where the third hypothesis ended
    assert max(len(h.tokens) for h in ended) == len(result.tree)
    assert sum(len(step.finished) for step in result.tree[:-1]) < 3


def test_truncated_hypotheses_are_marked_in_the_tree_and_the_candidates():
    dec = TinyDecoder(4, 2, eos_bias=-6.0)  # <eos> almost never: every beam is cut at max_tokens
    result = search(dec, DecodingParams(strategy="beam", beams=3, max_tokens=4), EOS, 4)
    assert result.best.truncated and not result.best.finished
    assert result.tree[-1].truncated and not any(step.truncated for step in result.tree[:-1])
    greedy = search(dec, DecodingParams(strategy="greedy", max_tokens=4), EOS, 4)
    assert greedy.best.truncated and len(greedy.best.tokens) == 4


def test_early_stopping_is_validated():
    with pytest.raises(ValueError, match="early_stopping must be one of"):
        DecodingParams(strategy="beam", early_stopping="never")
    assert math.isfinite(DecodingParams().length_penalty)
