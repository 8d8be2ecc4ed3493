"""`Family`: what every model family's adapter declares, and `Source`: what the registry knows of a
source before it is loaded. The registry (vizcap/families/__init__.py) asks each family in turn
whether it recognises a source; the first that does loads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A source as given to `vizcap.load` (a folder, a hub id), and the Hugging Face `model_type` its
    config names (None when it is not a Hugging Face folder or hub id)."""

    text: str
    model_type: str | None = None


class Family:
    """One family of models vizcap explains. Its backends (vizcap/backend.py) carry the same facts
    (`kind`, `family_label`, `is_photo_model`, `decodes_text`, `decoder_module_prefixes`), so code
    that holds a loaded captioner never asks which family it is."""

    key: str  # the backends' `kind`
    label: str  # the family in a few words for people, e.g. "Hugging Face BLIP"
    is_photo_model: bool  # True: a captioner of photos; False: a ShapeScenes model whose truth vizcap knows
    decodes_text: bool  # True: sub-word tokens, so the caption is the tokenizer's decode, not the words joined
    decoder_module_prefixes: tuple[str, ...]  # parameter names of what reads the image (randomised by photo_trust)
    example_source: str | None = None  # a hub id people can try (the app suggests it)

    def recognises(self, source: Source) -> bool:
        raise NotImplementedError

    def load(self, source: str | None, progress=None):
        """The backend for `source`; CheckpointError, one line, on any problem. `progress(message)` is
        told what is being loaded."""
        raise NotImplementedError
