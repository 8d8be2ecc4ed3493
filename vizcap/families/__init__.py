"""Model families: one adapter per family behind one loader registry, which `vizcap.load` uses.

    vizcap_checkpoint.py        vizcap's own checkpoints (the shipped ShapeScenes model, train/'s folders)
    vision_encoder_decoder.py   Hugging Face VisionEncoderDecoderModel: ViT/DeiT/BEiT + GPT-2
    blip.py                     Hugging Face BlipForConditionalGeneration
    git.py                      Hugging Face GitForCausalLM (the image tokens are the decoder's prefix)
    family.py                   what every adapter declares (Family) and what it is shown (Source)
    huggingface.py              the base of the Hugging Face families (loading: vizcap/hub.py)

`load(source)` asks each family in FAMILIES, in order, whether it recognises the source (a vizcap
checkpoint folder; a Hugging Face folder or hub id whose config names the family's model_type); the
first that does loads it. A new family is one module here and one line in FAMILIES (before the
vizcap checkpoint, which takes every folder that is not a Hugging Face one).
"""

from __future__ import annotations

from pathlib import Path

from .. import hub
from ..backend import CheckpointError
from .blip import Blip
from .family import Family, Source
from .git import Git
from .huggingface import HuggingFaceFamily
from .vision_encoder_decoder import VisionEncoderDecoder
from .vizcap_checkpoint import VizcapCheckpoint

VIZCAP_CHECKPOINT = VizcapCheckpoint()  # also the shipped model's family: load() with no source
FAMILIES: list[Family] = [
    VisionEncoderDecoder(),
    Blip(),
    Git(),
    VIZCAP_CHECKPOINT,  # last: any folder that is not a Hugging Face one (its loader says what is missing)
]
SUGGESTED = tuple(f.example_source for f in FAMILIES if f.example_source)  # hub ids the app offers


def register(family: Family) -> Family:
    """Add a family; it is asked first, so it can claim sources the built-in families would take."""
    FAMILIES.insert(0, family)
    return family


def family_of(source: str) -> Family:
    """The family that loads `source` (a hub id's config is read through the cache to know its type)."""
    found = Source(text=source, model_type=hub.model_type(source))
    for family in FAMILIES:
        if family.recognises(found):
            return family
    raise hub.unsupported_model(source, [f for f in FAMILIES if isinstance(f, HuggingFaceFamily)])


def load(source: str | Path | None = None, progress=None, fast: bool = False):
    """Load any captioner vizcap explains (default: the shipped ShapeScenes model):

    * a vizcap checkpoint directory (config.json with a format_version, model.safetensors, tokenizer.json);
    * a local Hugging Face folder holding a VisionEncoderDecoderModel (ViT/DeiT/BEiT + GPT-2 with
      cross-attention), a BlipForConditionalGeneration or a GitForCausalLM;
    * a hub id of any of them (e.g. "nlpconnect/vit-gpt2-image-captioning"), through the Hugging Face cache.

    `progress(message)` is told what is being loaded. `fast=True`: a Hugging Face captioner's linear
    layers in int8 (vizcap/fast.py; the backend's `precision` says so); vizcap's own small models
    refuse it. Any problem: CheckpointError, one line."""
    if source is None:
        family, text = VIZCAP_CHECKPOINT, None
    else:
        text = str(source)
        if not text.strip():
            raise CheckpointError("empty checkpoint path")
        family = family_of(text)
    captioner = family.load(text, progress)  # first, so that a bad folder says what is wrong with it
    if fast:
        if not isinstance(family, HuggingFaceFamily):
            raise CheckpointError(f"fast mode is for big Hugging Face captioners; {family.label}s are small and "
                                  "already fast in float32, so it would only cost accuracy: load without fast")
        if progress:
            progress("fast mode: the linear layers in int8")
        captioner.make_fast()
    return captioner
