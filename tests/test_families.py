"""The model families behind `vizcap.load` (vizcap/families/): a family added with one registry line
is used, and what a loaded captioner says of itself comes from the family that loaded it."""

from __future__ import annotations

from pathlib import Path

import pytest

import hub_fixtures
from conftest import make_random_captioner


@pytest.fixture
def registry(monkeypatch):
    """vizcap.families with FAMILIES restored after the test."""
    from vizcap import families

    monkeypatch.setattr(families, "FAMILIES", list(families.FAMILIES))
    return families


def test_a_registered_family_loads_what_it_recognises(registry, tmp_path):
    import vizcap
    from vizcap.captioner import CheckpointError
    from vizcap.families import Family

    built = make_random_captioner("both")
    calls = []

    class Marked(Family):  # a throwaway family: folders holding a MARKER file
        key, label = "marked", "marked test family"
        is_photo_model, decodes_text, decoder_module_prefixes = False, False, ("decoder.",)

        def recognises(self, source):
            return (Path(source.text) / "MARKER").exists()

        def load(self, source, progress=None):
            calls.append((source, progress))
            return built

    (tmp_path / "model").mkdir()
    with pytest.raises(CheckpointError, match="missing"):  # no marker: read as a vizcap checkpoint
        vizcap.load(tmp_path / "model")
    (tmp_path / "model" / "MARKER").write_text("")
    family = registry.register(Marked())
    assert registry.family_of(str(tmp_path / "model")) is family
    say = print
    assert vizcap.load(tmp_path / "model", progress=say) is built
    assert calls == [(str(tmp_path / "model"), say)]
    assert registry.family_of(str(tmp_path / "elsewhere")) is registry.VIZCAP_CHECKPOINT  # others are not its


def test_a_captioner_says_what_its_family_declares(registry, tmp_path, tiny_checkpoint):
    """Every fact pages and photo_trust read comes from the family: the built-in ones, and a family
    registered in front of BLIP (a subclass with its own label) whose label then shows."""
    import vizcap
    from vizcap.families.blip import Blip

    blip_dir = hub_fixtures.blip(tmp_path / "blip")
    sources = {"vizcap": tiny_checkpoint, "vision-encoder-decoder": hub_fixtures.vit_gpt2(tmp_path / "vit_gpt2"),
               "blip": blip_dir, "git": hub_fixtures.git(tmp_path / "git")}
    for key, source in sources.items():
        family = registry.family_of(str(source))
        cap = vizcap.load(source)
        assert (family.key, cap.kind) == (key, key)
        facts = ("label", "is_photo_model", "decodes_text", "decoder_module_prefixes")
        assert [getattr(cap, "family_label" if f == "label" else f) for f in facts] == [getattr(family, f) for f in facts]
        assert any(name.startswith(cap.decoder_module_prefixes) for name, _ in cap.model.named_parameters())
    assert [vizcap.load(s).is_photo_model for s in sources.values()] == [False, True, True, True]

    class RelabelledBlip(Blip):
        label = "Hugging Face BLIP (relabelled)"

    registry.register(RelabelledBlip())
    assert vizcap.load(blip_dir).family_label == "Hugging Face BLIP (relabelled)"


def test_suggested_hub_ids_come_from_the_families():
    from vizcap import families, hub

    assert len(families.SUGGESTED) == 3 and all(hub.is_hub_id(s) for s in families.SUGGESTED)
    assert families.SUGGESTED[2] == "microsoft/git-base-coco"


def test_photo_trust_randomises_a_vizcap_model_as_trust_does():
    """photo_trust's one re-initialisation (the backend's decoder_module_prefixes) gives a vizcap model
    exactly the weights of trust.randomized_copy (the ShapeScenes sanity check), encoder kept."""
    import torch

    from vizcap.photo_trust import randomized
    from vizcap.trust import randomized_copy

    cap = make_random_captioner("both")
    ours, theirs = randomized(cap).model.state_dict(), randomized_copy(cap).model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    before = cap.model.state_dict()
    assert not torch.equal(ours["decoder.lm_head.weight"], before["decoder.lm_head.weight"])
    assert all(torch.equal(ours[k], before[k]) for k in ours if k.startswith("encoder."))


def test_shipped_checkpoints_open_by_name(tmp_path, monkeypatch):
    """Issue 24: vizcap.load("shapes") and --checkpoint shapes open the shipped model; a folder of that name
    in the current directory comes first; an unknown name says which names ship."""
    import vizcap
    from vizcap.files import DEFAULT_CHECKPOINT

    monkeypatch.chdir(tmp_path)
    assert vizcap.load("shapes").name == str(DEFAULT_CHECKPOINT)
    with pytest.raises(vizcap.CheckpointError, match=r"shapes-nope: not a checkpoint directory \(nor a checkpoint "
                                                     r"shipped with vizcap: shapes, shapes-free"):
        vizcap.load("shapes-nope")
    (tmp_path / "shapes").mkdir()  # a folder here of the same name is what the user meant
    with pytest.raises(vizcap.CheckpointError, match="config.json"):
        vizcap.load("shapes")
