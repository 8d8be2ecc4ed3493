"""`HuggingFaceFamily`: the base of every Hugging Face captioner family. A family names its
`model_type`, checks a config and names the model class (`model_class`), finds the parts vizcap reads
in a loaded model (`parts`), says how its decoder sees the image (`mode`: by cross-attention, or the
image tokens as a prefix before the words) and how its encoder and decoder are called (`encode`,
`decode`, `session`); loading itself and the backend are shared (vizcap/hub.py)."""

from __future__ import annotations

import torch

from .. import hub
from .family import Family, Source


class HuggingFaceFamily(Family):
    model_type: str  # the config's model_type this family reads
    summary: str  # for the error naming what vizcap explains, e.g. "blip"
    decoder_name: str  # for people, e.g. "GPT-2"
    mode = "cross"  # how the decoder sees the image (vizcap.maps.MODES): "cross", or "prefix" (GIT)
    is_photo_model = True
    decodes_text = True

    @property
    def key(self) -> str:
        return self.model_type

    def recognises(self, source: Source) -> bool:
        return source.model_type == self.model_type

    def load(self, source: str, progress=None) -> hub.HFCaptioner:
        return hub.load_pretrained(source, self, progress=progress)

    # -- what each family says about its models -----------------------------------------------------

    def model_class(self, config, source: str):
        """The transformers class to load `config` with; CheckpointError when this family cannot explain it."""
        raise NotImplementedError

    def parts(self, model) -> hub.HFParts:
        raise NotImplementedError

    def prepare(self, model) -> None:
        """Called on every model HFCaptioner wraps, before its hooks go in: where a family swaps in a
        computation that gives transformers' numbers with less work. Nothing by default."""

    def encoder_name(self, captioner) -> str:
        raise NotImplementedError

    def encode(self, captioner, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] -> the image tokens the decoder reads [B, tokens, d] (the keys of its
        cross-attention, or its prefix)."""
        raise NotImplementedError

    def decode(self, captioner, ids: torch.Tensor, memory: torch.Tensor, use_cache: bool, **kwargs):
        """One decoder call (kwargs: the cache and attention mask HFCaptioner passes); output with .logits."""
        raise NotImplementedError

    def session(self, captioner, memory: torch.Tensor):
        """The step function of vizcap.decoding.search over `memory`."""
        raise NotImplementedError
