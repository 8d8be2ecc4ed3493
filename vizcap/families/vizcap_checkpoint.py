"""vizcap's own checkpoints (a folder that train/ wrote, and the shipped ShapeScenes model): the
backend is `vizcap.captioner.Captioner`, which declares the family's facts itself; this adapter only
recognises and loads."""

from __future__ import annotations

from pathlib import Path

from ..backend import CheckpointError
from ..captioner import Captioner
from ..files import SHIPPED, shipped_checkpoint
from .family import Family, Source


class VizcapCheckpoint(Family):
    key = Captioner.kind
    label = Captioner.family_label
    is_photo_model = Captioner.is_photo_model
    decodes_text = Captioner.decodes_text
    decoder_module_prefixes = Captioner.decoder_module_prefixes

    def recognises(self, source: Source) -> bool:
        # anything that is not a Hugging Face model: the checkpoint loader then names what is missing
        return source.model_type is None

    def load(self, source: str | None, progress=None) -> Captioner:
        """`source` None: the shipped ShapeScenes model; a shipped checkpoint's name ("shapes") opens it
        unless a folder of that name is here."""
        if source is not None and not Path(source).exists() and shipped_checkpoint(source):
            return Captioner.from_pretrained(shipped_checkpoint(source))
        try:
            return Captioner.from_pretrained(None if source is None else Path(source))
        except CheckpointError as e:
            if source is not None and not Path(source).exists() and "/" not in source:  # a name, perhaps
                names = ", ".join(sorted(p.name for p in SHIPPED.iterdir() if shipped_checkpoint(p.name)))
                raise CheckpointError(f"{e} (nor a checkpoint shipped with vizcap: {names})") from None
            raise
