"""Tokenizers: a word-level one for ShapeScenes (one token per word, so every heatmap belongs to a
whole word), and the GPT-2 BPE one for real photos. Both are `tokenizers.Tokenizer` objects saved as
`tokenizer.json`; `CaptionTokenizer` adds the few conveniences the captioner needs."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from .files import atomic_write

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


class CaptionTokenizer:
    """Wraps a `tokenizers.Tokenizer` and knows its pad/bos/eos ids."""

    def __init__(self, tokenizer: Tokenizer, pad: str = PAD, bos: str = BOS, eos: str = EOS):
        self.tokenizer = tokenizer
        ids = {name: tokenizer.token_to_id(name) for name in (pad, bos, eos)}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer has no special token(s) {missing}")
        self.pad_id, self.bos_id, self.eos_id = ids[pad], ids[bos], ids[eos]

    @classmethod
    def word_level(cls, words: list[str] | tuple[str, ...]) -> "CaptionTokenizer":
        """A whitespace word tokenizer over `words` (lower-cased); ids follow the list order."""
        vocab = {w: i for i, w in enumerate(dict.fromkeys([*SPECIALS, *words]))}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> "CaptionTokenizer":
        tok = Tokenizer.from_file(str(path))
        vocab = tok.get_vocab()
        if BOS in vocab:
            return cls(tok)
        # GPT-2 BPE: one special token serves as bos, eos and pad.
        return cls(tok, pad="<|endoftext|>", bos="<|endoftext|>", eos="<|endoftext|>")

    def save(self, path: str | Path) -> None:
        atomic_write(path, lambda p: self.tokenizer.save(str(p)))  # a reader never sees half a tokenizer.json

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without bos/eos."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, stopping at eos and dropping specials."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i not in (self.bos_id, self.pad_id):
                out.append(i)
        return self.tokenizer.decode(out, skip_special_tokens=True).strip()

    def token_text(self, i: int) -> str:
        """How one token is shown to a student (GPT-2's 'Ġ' space marker becomes a space)."""
        return (self.tokenizer.id_to_token(i) or UNK).replace("Ġ", " ").strip() or " "
