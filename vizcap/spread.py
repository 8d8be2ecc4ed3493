"""How much decoding strategies differ, on held-out ShapeScenes with several right captions (issue 24).

A scene of two or three objects can be captioned in several right ways (`Scene.captions`: the order
of the objects, "left of" or "right of", …). A model trained on all of them spreads its probability
over them, and that spread is what makes greedy, beam search and sampling write different captions.
`decoding_spread` measures it: per scene, the greedy caption, the beam-search caption and `draws`
sampled captions (temperature 1, fixed seeds), each scored right when it is any right caption.
`vizcap decoding` writes the figures to the checkpoint's decoding.json, which the decoding lab reads;
`vizcap decoding --independent` measures the same on scenes of the independent renderer
(vizcap/independent_renderer.py, captions written from its objects) into decoding_independent.json.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .decoding import search
from .evaluate import normalise_caption
from .scenes import clear_cut, render_scene
from .strategies import DecodingParams

HELDOUT_FIRST_SEED = 2_000_000_000  # the held-out range of train/shapes.py and vizcap.trust


@torch.inference_mode()
def caption_with(captioner, pixels: torch.Tensor, params: DecodingParams) -> str:
    """The caption `params` decode for the model input `pixels`, through the one decoding loop
    (vizcap.decoding.search) without assembling an explanation's maps."""
    result = search(captioner.session(pixels), params, captioner.eos_id, captioner.vocab_size, tuple(captioner.banned))
    tokens = [t for t in result.best.tokens if t != captioner.eos_id]
    return captioner.tokenizer.decode(tokens)


def scene_spread(captioner, scene, draws: int = 5, beams: int = 5, seed: int = 0) -> dict:
    """One scene: its greedy, beam and sampled captions and which of them are right."""
    rights = {normalise_caption(c) for c in scene.captions}
    pixels = captioner.pixels(scene.image)
    greedy = caption_with(captioner, pixels, DecodingParams())
    beam = caption_with(captioner, pixels, DecodingParams(strategy="beam", beams=beams))
    samples = [caption_with(captioner, pixels, DecodingParams(strategy="sample", temperature=1.0, seed=seed + k))
               for k in range(draws)]
    return {"greedy": greedy, "beam": beam, "samples": samples, "greedy_right": normalise_caption(greedy) in rights,
            "beam_right": normalise_caption(beam) in rights, "samples_right": [normalise_caption(s) in rights for s in samples]}


SOURCES = ("held-out ShapeScenes", "independent renderer")


def _scene(source: str, seed: int):
    """The scene of renderer seed `seed`: ShapeScenes' own renderer, or the independent one."""
    if source == SOURCES[0]:
        return render_scene(seed)
    from .trust import INDEPENDENT_FIRST_SEED, independent_scene

    return independent_scene(seed - INDEPENDENT_FIRST_SEED)


def decoding_spread(captioner, n: int = 200, draws: int = 5, beams: int = 5, first_seed: int | None = None,
                    progress: bool = True, source: str = SOURCES[0]) -> dict:
    """The first `n` scenes with two or three objects of `source` (renderer seeds from `first_seed` on;
    by default held-out ShapeScenes from HELDOUT_FIRST_SEED, the independent renderer from
    vizcap.trust.INDEPENDENT_FIRST_SEED): the share of scenes whose `draws` samples hold at least two
    distinct captions, the share of sampled captions that are right, how often greedy and beam search
    (`beams`) differ, and a few scenes where they do."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    if first_seed is None:
        from .trust import INDEPENDENT_FIRST_SEED

        first_seed = HELDOUT_FIRST_SEED if source == SOURCES[0] else INDEPENDENT_FIRST_SEED
    records, seed = [], first_seed
    bar = tqdm(total=n, desc="decoding spread", unit="scene", disable=not progress)
    while len(records) < n:
        scene = _scene(source, seed)
        if 2 <= len(scene.objects) <= 3:
            records.append({"seed": seed, "clear_cut": clear_cut(scene.objects),
                            **scene_spread(captioner, scene, draws, beams, seed=len(records) * draws)})
            bar.update(1)
        seed += 1
    bar.close()
    differ = [r for r in records if r["greedy"] != r["beam"]]
    sure = [r for r in records if r["clear_cut"]]
    return {
        "source": source, "n_scenes": n, "draws": draws, "beams": beams, "first_seed": first_seed,
        "two_distinct_samples": round(sum(len(set(r["samples"])) >= 2 for r in records) / n, 4),
        **_right_shares(records),
        "greedy_beam_differ": round(len(differ) / n, 4),
        # the same shares on the scenes whose right captions are beyond doubt (scenes.clear_cut): every
        # held-out ShapeScenes scene; the independent renderer also draws nearly diagonal pairs
        "clear_cut": {"n_scenes": len(sure), **_right_shares(sure)},
        "examples": [{"seed": r["seed"], "greedy": r["greedy"], "beam": r["beam"]} for r in differ[:5]],
        "records": records,
    }


def _right_shares(records: list[dict]) -> dict:
    """The shares of right sampled, greedy and beam captions over `records` (0 where there are none)."""
    sampled = [ok for r in records for ok in r["samples_right"]]
    n = max(1, len(records))
    return {"samples_right": round(sum(sampled) / max(1, len(sampled)), 4),
            "greedy_right": round(sum(r["greedy_right"] for r in records) / n, 4),
            "beam_right": round(sum(r["beam_right"] for r in records) / n, 4)}
