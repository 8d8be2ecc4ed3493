"""The word-level caption tokenizer."""

from __future__ import annotations

import pytest

from vizcap.scenes import VOCABULARY, SceneConfig, render_scene
from vizcap.tokenizer import BOS, EOS, PAD, UNK, CaptionTokenizer


@pytest.fixture(scope="module")
def tok():
    return CaptionTokenizer.word_level(VOCABULARY)


@pytest.fixture(scope="module")
def captions():
    plain = [render_scene(s).caption for s in range(200)]
    sized = [render_scene(s, SceneConfig(size_words=True)).caption for s in range(200, 240)]
    return plain + sized


def test_specials_and_vocab(tok):
    vocab = tok.tokenizer.get_vocab()
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (vocab[PAD], vocab[BOS], vocab[EOS])
    assert len({tok.pad_id, tok.bos_id, tok.eos_id, vocab[UNK]}) == 4
    assert tok.vocab_size == len(set(VOCABULARY)) + 4
    assert all(w in vocab for w in VOCABULARY)


def test_round_trip_every_caption(tok, captions):
    unk = tok.tokenizer.token_to_id(UNK)
    for c in captions:
        ids = tok.encode(c)
        assert len(ids) == len(c.split()), c  # one token per word
        assert unk not in ids, c
        assert tok.bos_id not in ids and tok.eos_id not in ids
        assert tok.decode(ids) == c
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.pad_id]) == c
        assert [tok.token_text(i) for i in ids] == c.split()


def test_encode_lowercases(tok):
    assert tok.encode("A Red CIRCLE") == tok.encode("a red circle")


def test_save_load_round_trip(tok, captions, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = CaptionTokenizer.from_file(path)
    assert loaded.vocab_size == tok.vocab_size
    assert (loaded.pad_id, loaded.bos_id, loaded.eos_id) == (tok.pad_id, tok.bos_id, tok.eos_id)
    assert loaded.tokenizer.get_vocab() == tok.tokenizer.get_vocab()
    for c in captions:
        ids = tok.encode(c)
        assert loaded.encode(c) == ids
        assert loaded.decode(ids) == c
    unknown = "a zebra circle"
    assert loaded.encode(unknown) == tok.encode(unknown)


def test_unknown_word_is_unk(tok):
    unk = tok.tokenizer.token_to_id(UNK)
    ids = tok.encode("a zebra left of a red circle")
    assert len(ids) == 7
    assert ids[1] == unk
    assert ids[0] == tok.tokenizer.token_to_id("a")
    assert unk not in ids[2:]
    assert tok.encode("zebra giraffe") == [unk, unk]


def test_decode_stops_at_eos(tok):
    ids = tok.encode("a red circle")
    blue_star = tok.encode("two blue stars")
    assert tok.decode([*ids, tok.eos_id, *blue_star]) == "a red circle"
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, *blue_star, tok.eos_id]) == "a red circle"
    assert tok.decode([tok.eos_id, *ids]) == ""
    assert tok.decode([*ids, tok.pad_id, *blue_star]) == "a red circle two blue stars"  # pad is dropped, not a stop


def test_missing_specials_rejected():
    from tokenizers import Tokenizer, models

    bare = Tokenizer(models.WordLevel(vocab={"a": 0, "<unk>": 1}, unk_token="<unk>"))
    with pytest.raises(ValueError, match="special"):
        CaptionTokenizer(bare)
