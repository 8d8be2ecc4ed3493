"""The `shapes` training preset: it learns, it is bitwise reproducible, a killed run resumes to the
very same weights, and its command line fails cleanly."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import run_module
from train.loop import LoopConfig
from train.shapes import HELDOUT_FIRST_SEED, ShapesArgs, run

STEPS, SAVE_EVERY, KILL_AT = 40, 10, 28  # killed after step 28: state saved at 20, log written at 25
FAST = dict(batch_size=8, workers=0, threads=1, eval_n=8)


def _log(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines() if line.strip()]


def _same_weights(a: Path, b: Path) -> None:
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    differing = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 40-step run (in this process)."""
    out = tmp_path_factory.mktemp("reference_run")
    record = run(ShapesArgs(out=str(out), steps=STEPS, save_every=SAVE_EVERY, **FAST))
    torch.set_num_threads(1)
    return out, record


def test_loss_goes_down(reference):
    out, _ = reference
    log = _log(out)
    assert LoopConfig(steps=1, lr=0, warmup=0, weight_decay=0).log_every == 25
    assert [r["step"] for r in log] == [25, 40]  # every log_every steps, and the last step
    first, last = log[0], log[-1]
    for key in ("loss", "caption_loss", "aux_loss", "lr", "samples_per_s"):
        assert key in first and key in last
    assert last["loss"] < 0.95 * first["loss"], log
    assert last["caption_loss"] < first["caption_loss"], log


def test_metrics_json(reference):
    out, record = reference
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(record))  # what run() returns is what it wrote
    assert metrics["command"] == "python -m train shapes"
    held = metrics["heldout"]
    assert held["n_scenes"] == FAST["eval_n"]
    for key in ("exact", "colour_acc", "shape_acc", "count_acc", "object_recall", "bleu4", "rouge_l", "cider"):
        assert isinstance(held[key], (int, float)), key
    for key in ("exact", "colour_acc", "shape_acc", "count_acc", "object_recall", "bleu4", "rouge_l"):
        assert 0.0 <= held[key] <= 1.0, key
    assert metrics["heldout_first_seed"] == HELDOUT_FIRST_SEED
    assert metrics["samples_seen"] == STEPS * FAST["batch_size"]
    assert metrics["args"]["steps"] == STEPS and metrics["args"]["batch_size"] == FAST["batch_size"]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "train_log.jsonl"} <= names
    assert "resume.safetensors" not in names  # removed once the run has finished


def test_metrics_are_recomputable(reference):
    """The held-out figures in metrics.json are those of the weights in the directory."""
    from train.shapes import evaluate_scenes, heldout_seeds
    from vizcap.captioner import Captioner

    out, record = reference
    again = evaluate_scenes(Captioner.from_pretrained(out), heldout_seeds(FAST["eval_n"]), progress=False)
    assert again == record["heldout"]


def test_identical_runs_are_bitwise_equal(tmp_path):
    args = dict(steps=5, save_every=1000, seed=1, **{**FAST, "eval_n": 2})
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(ShapesArgs(out=str(a), **args))
    run(ShapesArgs(out=str(b), **args))
    run(ShapesArgs(out=str(c), **{**args, "seed": 2}))
    torch.set_num_threads(1)
    _same_weights(a, b)
    assert [r["loss"] for r in _log(a)] == [r["loss"] for r in _log(b)]
    assert (a / "config.json").read_bytes() == (b / "config.json").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    # …and the check has teeth: another run seed gives other weights
    ta, tc = load_file(a / "model.safetensors"), load_file(c / "model.safetensors")
    assert not torch.equal(ta["project.weight"], tc["project.weight"])


# A real `python -m train shapes ...` process that SIGKILLs itself (no cleanup, no handlers) just
# before step KILL_AT, i.e. at a deterministic point between the save at step 20 and the end.
_KILLER = """
import os, signal, sys
import train.shapes as shapes
kill_at = int(os.environ["VIZCAP_TEST_KILL_AT"])
real_train = shapes.train
def train(model, batches, *args, **kwargs):
    def killing(start):
        for step, batch in enumerate(batches(start), start):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch
    return real_train(model, killing, *args, **kwargs)
shapes.train = train
from train.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_run_resumes_to_the_same_bits(reference, tmp_path, monkeypatch):
    ref_out, ref_record = reference
    out = tmp_path / "interrupted"
    cli = ["shapes", "--out", str(out), "--steps", str(STEPS), "--save-every", str(SAVE_EVERY),
           "--batch-size", str(FAST["batch_size"]), "--workers", "0", "--threads", "1",
           "--eval-n", str(FAST["eval_n"])]
    monkeypatch.setenv("VIZCAP_TEST_KILL_AT", str(KILL_AT))
    killed = run_module("-c", _KILLER, *cli)
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = out / "resume.safetensors"
    assert state.exists()
    assert not (out / "model.safetensors").exists()
    with safe_open(str(state), "pt") as f:
        assert f.metadata()["step"] == "20"
    assert [r["step"] for r in _log(out)] == [25]  # logged before the kill, after the last save
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    resumed = run_module("-m", "train", *cli, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    assert "resuming from step 20" in resumed.stdout
    _same_weights(ref_out, out)
    # the log reads as if the run had never stopped: step 25 once, and the same losses
    ref_log, log = _log(ref_out), _log(out)
    assert [r["step"] for r in log] == [r["step"] for r in ref_log]
    assert [(r["loss"], r["caption_loss"], r["aux_loss"], r["lr"]) for r in log] == [
        (r["loss"], r["caption_loss"], r["aux_loss"], r["lr"]) for r in ref_log
    ]
    assert not state.exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["heldout"] == ref_record["heldout"]
    assert metrics["command"] == "python -m train shapes " + " ".join(cli[1:] + ["--resume"])


def test_resume_without_state_starts_fresh(tmp_path):
    """--resume with nothing to resume from is an ordinary run from step 0."""
    out = tmp_path / "fresh"
    args = ShapesArgs(out=str(out), steps=3, save_every=1000, seed=1, **{**FAST, "eval_n": 2})
    run(args)
    first = load_file(out / "model.safetensors")
    run(ShapesArgs(**{**asdict(args), "resume": True}))
    torch.set_num_threads(1)
    second = load_file(out / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert [r["step"] for r in _log(out)] == [3]


# -- training on several right captions (issue 24, item 1) -----------------------------------------


def _data(captions: str, bind_to: str = "named"):
    from train.shapes import ShapeScenesData, default_config
    from vizcap.model import CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tokenizer = CaptionTokenizer.word_level(VOCABULARY)
    cfg = default_config(tokenizer, "vit")
    return ShapeScenesData(cfg, CaptionModel(cfg).grid, tokenizer, first_seed=0, hard_every=4, captions=captions,
                           bind_to=bind_to)


def test_canonical_samples_are_what_they_were():
    """A captions="canonical" sample is built as before issue 24 (the first shipped model's
    recipe): the canonical caption, place labels = the scene's object order, bound[j] = object j's normalised cover, refers = word_referents(scene)."""
    from train.shapes import BOUND, word_referents
    from vizcap.scenes import HARD, SceneConfig, cell_coverage, cells_from_coverage, render_scene

    data = _data("canonical")
    for k in range(24):
        pixels, ids, shapes, colours, order, relation, bound, refers, places = data[k]
        scene = render_scene(k, HARD if k % 4 == 3 else SceneConfig())
        assert ids == [data.tokenizer.bos_id, *data.tokenizer.encode(scene.caption), data.tokenizer.eos_id]
        cover = cell_coverage(scene.mask, data.grid).reshape(-1, data.grid[0] * data.grid[1])
        assert torch.equal(order, torch.from_numpy(cells_from_coverage(cover)))
        for j in range(BOUND):
            want = cover[j + 1] / max(cover[j + 1].sum(), 1e-12) if j < len(scene.objects) else 0 * cover[0]
            assert torch.equal(bound[j], torch.from_numpy(want.astype("float32"))), (k, j)
        assert torch.equal(refers[1:-1], torch.from_numpy(word_referents(scene)))
        assert places.tolist() == [j + 1 if j < len(scene.objects) else 0 for j in range(BOUND)]  # canonical order


@pytest.mark.parametrize("bind_to", ["named", "place"])
def test_all_captions_draws_other_phrasings_and_its_labels_follow(bind_to):
    """captions="all": sample k's caption is one of its scene's right captions, drawn by k alone
    (the same in another dataset object; a scene seen again later may get another), not always the
    canonical one. The place labels stay the canonical ones (the picture fixes them; a label that
    followed the drawn phrasing could not be read off the picture). Bound token k is the k-th object
    the drawn caption names (bind_to="named", the shipped recipe) or the object at canonical place k
    ("place"), and each word names the bound tokens of the objects its phrase describes."""
    from train.shapes import BOUND, OBJECT_WORDS, RenderedScenes
    from vizcap.evaluate import parse_objects
    from vizcap.scenes import SHAPE_WORDS
    from vizcap.scenes import HARD, SceneConfig, cell_coverage, cells_from_coverage, ordered_phrasings, render_scene

    data, again = _data("all", bind_to), _data("all", bind_to)
    other = 0
    for k in range(48):
        pixels, ids, shapes, colours, order, relation, bound, refers, places = data[k]
        assert ids == again[k][1]
        config = HARD if k % 4 == 3 else SceneConfig()
        scene = render_scene(k, config)
        caption = data.tokenizer.decode(ids)
        phrasing = next(p for p in ordered_phrasings(scene.objects, config) if p.caption == caption)
        other += caption != scene.caption
        cover = cell_coverage(scene.mask, data.grid).reshape(-1, data.grid[0] * data.grid[1])
        cells = torch.from_numpy(cells_from_coverage(cover))  # 0 = background, i + 1 = scene object i
        # the place labels are what the picture fixes (canonical places), whichever phrasing was drawn
        assert torch.equal(order, cells), (k, caption)
        binds = list(phrasing.order if bind_to == "named" else range(len(scene.objects)))  # token k -> object
        for t in range(BOUND):
            i = binds[t] if t < len(binds) else None
            want = cover[i + 1] / max(cover[i + 1].sum(), 1e-12) if i is not None else 0 * cover[0]
            assert torch.equal(bound[t], torch.from_numpy(want.astype("float32"))), (k, caption, t)
        words = caption.split()
        for w, word in enumerate(words):  # a size/colour/shape word names the places of its phrase's objects
            named = {m for m in range(BOUND) if refers[1 + w, m]}
            if word in OBJECT_WORDS:
                j = next(j for j in range(w, len(words)) if words[j] in SHAPE_WORDS)  # its phrase's shape word
                pair = (words[j - 1], parse_objects(words[j])[0][1])
                assert named == {t for t, i in enumerate(binds)
                                 if (scene.objects[i].colour, scene.objects[i].shape) == pair}, (k, caption, w)
            else:
                assert not named, (k, caption, w)
    assert 10 <= other < 48, other  # about half the scenes have several right captions
    rendered = RenderedScenes(data, 8, workers=0, progress=False)
    drawn = {k % 8: set() for k in range(8)}
    for k in range(64):
        drawn[k % 8].add(tuple(rendered[k][1]))
    assert any(len(captions) > 1 for captions in drawn.values())


def test_relation_labels_say_under_each_object_of_a_pair_the_relation_a_caption_naming_it_first_writes():
    """The dense relation label under object i's cells is the relation word of the right caption that
    names object i first (class RELATIONS.index + 1); background and scenes without a relation are 0."""
    from vizcap.scenes import HARD, RELATIONS, SceneConfig, cell_coverage, cells_from_coverage, ordered_phrasings, render_scene

    data = _data("all")
    pairs = 0
    for k in range(64):
        pixels, ids, shapes, colours, order, relation, bound, refers, places = data[k]
        config = HARD if k % 4 == 3 else SceneConfig()
        scene = render_scene(k, config)
        cover = cell_coverage(scene.mask, data.grid).reshape(-1, data.grid[0] * data.grid[1])
        cells = torch.from_numpy(cells_from_coverage(cover))
        want = torch.zeros_like(cells)
        for p in ordered_phrasings(scene.objects, config):
            said = [r for r in RELATIONS if f" {r} " in f" {p.caption} "]
            if said:
                want[cells == p.order[0] + 1] = RELATIONS.index(said[0]) + 1
        pairs += bool(want.any())
        assert torch.equal(relation, want), (k, scene.captions)
    assert 5 <= pairs < 64, pairs


def test_all_captions_run_is_reproducible(tmp_path):
    args = dict(steps=4, save_every=1000, seed=1, captions="all", **{**FAST, "eval_n": 2})
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(ShapesArgs(out=str(a), **args))
    run(ShapesArgs(out=str(b), **args))
    run(ShapesArgs(out=str(c), **{**args, "captions": "canonical"}))
    torch.set_num_threads(1)
    _same_weights(a, b)
    assert [r["loss"] for r in _log(a)] == [r["loss"] for r in _log(b)]
    assert json.loads((a / "metrics.json").read_text())["args"]["captions"] == "all"
    assert json.loads((a / "metrics.json").read_text())["heldout"]["references"] == "all"
    # …and the option has teeth: the canonical captions train other weights
    ta, tc = load_file(a / "model.safetensors"), load_file(c / "model.safetensors")
    assert not torch.equal(ta["project.weight"], tc["project.weight"])


def test_unknown_captions_choice_is_refused(capsys):
    assert _exit_code(["shapes", "--captions", "some", "--steps", "1"]) == 2
    with pytest.raises(ValueError, match="captions must be one of"):
        _data("some")


# -- the command line fails cleanly ----------------------------------------------------------------


def test_steps_zero_exits_2_without_traceback(tmp_path):
    proc = run_module("-m", "train", "shapes", "--steps", "0", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--steps" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "argv",
    [["shapes", "--batch-size", "0"], ["shapes", "--steps", "ten"], ["nopreset"], ["shapes", "--bogus"], []],
)
def test_bad_arguments_exit_2(argv, capsys):
    from train.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_unwritable_out_exits_2(tmp_path, capsys):
    from train.__main__ import main

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = main(["shapes", "--out", str(blocker), "--steps", "1", "--threads", "1", "--workers", "0"])
    torch.set_num_threads(1)
    assert code == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "Traceback" not in err


def test_corrupt_resume_state_exits_2(tmp_path, capsys):
    from train.__main__ import main

    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "resume.safetensors").write_bytes(b"\x00" * 64)
    code = main(["shapes", "--out", str(out), "--steps", "2", "--threads", "1", "--workers", "0", "--resume"])
    torch.set_num_threads(1)
    assert code == 2
    err = capsys.readouterr().err
    assert "resume.safetensors" in err and "Traceback" not in err


def _exit_code(argv: list[str]) -> int:
    """train.__main__.main's exit status, whether it returns it or raises SystemExit (argparse);
    any other exception (a traceback for the user) fails the test."""
    from train.__main__ import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    finally:
        torch.set_num_threads(1)
    return code


def _tiny_argv(out: Path, *extra: str) -> list[str]:
    return ["shapes", "--out", str(out), "--steps", "2", "--batch-size", "2", "--workers", "0", "--threads", "1",
            "--eval-n", "2", *extra]


@pytest.mark.parametrize("flag", ["--save-every", "--threads"])
def test_zero_counts_exit_2(flag, tmp_path, capsys):
    """--save-every 0 / --threads 0 are bad arguments: status 2 and a message, not a traceback
    from deep inside the loop (ZeroDivisionError) or torch (RuntimeError)."""
    out = tmp_path / "o"
    assert _exit_code(_tiny_argv(out, flag, "0")) == 2
    assert flag in capsys.readouterr().err
    assert not (out / "model.safetensors").exists()


def test_eval_n_zero_is_refused_up_front_or_skipped(tmp_path, capsys):
    """--eval-n 0 must not train the whole run and only then fail: either it is refused before
    training (status 2) or the run completes (status 0, metrics.json written)."""
    out = tmp_path / "o"
    code = _exit_code(_tiny_argv(out, "--eval-n", "0"))
    err = capsys.readouterr().err
    if code == 2:
        assert not (out / "model.safetensors").exists(), f"trained the whole run, then failed: {err}"
    else:
        assert code == 0 and (out / "metrics.json").exists()


def test_error_tally_tells_relation_only_mistakes_from_others():
    from train.errors import tally
    from vizcap.scenes import render_scene

    scenes = [render_scene(k) for k in range(200)]
    distinct = lambda s: len({o.colour for o in s.objects}) == len(s.objects)  # noqa: E731
    pair = next(s for s in scenes if " left of " in s.caption and distinct(s))
    three = next(s for s in scenes if len(s.objects) == 3 and not distinct(s))  # a colour repeated
    flipped = pair.caption.replace(" left of ", " right of ")
    wrong_name = three.caption.replace(three.objects[0].colour, "red" if three.objects[0].colour != "red" else "blue", 1)
    got = tally([pair.captions[-1], flipped, wrong_name, three.caption], [pair, pair, three, three])
    assert got == {"scenes": {2: 2, 3: 2}, "wrong": {2: 1, 3: 1}, "relation_only": 1,
                   "colour_repeated": {"scenes": {3: 2}, "wrong": {3: 1}}, "axis_turned": {"scenes": 0, "wrong": 0}}


def test_axis_turned_finds_the_pairs_whose_relation_the_square_input_turns():
    """The oracle is the model's own input: the scene's mask squeezed to 128×128 as the picture is. Where
    axis_turned says so, the objects' mask centres there are further apart along the other axis than the
    caption's relation; in the pairs it passes over, along the same axis."""
    import numpy as np
    from PIL import Image

    from train.errors import axis_turned, tally
    from vizcap.scenes import pair_relation, render_scene

    def square_axis(scene):  # "x" or "y": where the two objects' centres are further apart in the 128×128 input
        mask = np.asarray(Image.fromarray(scene.mask).resize((128, 128), Image.NEAREST))
        (y1, x1), (y2, x2) = (np.argwhere(mask == i).mean(0) for i in (1, 2))
        return "x" if abs(x2 - x1) >= abs(y2 - y1) else "y"

    pairs = [s for s in map(render_scene, range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + 1200))
             if pair_relation(s.objects) is not None]
    turned = [s for s in pairs if axis_turned(s)]
    assert 0 < len(turned) < len(pairs) / 10
    caption_axis = lambda s: "x" if pair_relation(s.objects) in ("left of", "right of") else "y"  # noqa: E731
    assert all(square_axis(s) != caption_axis(s) for s in turned)
    kept = [s for s in pairs if not axis_turned(s)]
    assert sum(square_axis(s) == caption_axis(s) for s in kept) >= 0.98 * len(kept)  # near-ties aside
    assert tally([s.caption for s in turned], turned)["axis_turned"] == {"scenes": len(turned), "wrong": 0}


def test_relation_weight_adds_a_relation_head_and_records_it(tmp_path):
    """--relation-weight 1 (the default since both shipped models use it) adds the head and records the
    weight; 0 leaves it out."""
    from vizcap.scenes import RELATIONS

    assert ShapesArgs().relation_weight == 1.0 and ShapesArgs().captions == "all"  # `python -m train shapes`

    args = dict(steps=2, save_every=1000, seed=1, captions="all", **{**FAST, "eval_n": 2})
    run(ShapesArgs(out=str(tmp_path / "r"), relation_weight=1.0, **args))
    run(ShapesArgs(out=str(tmp_path / "n"), relation_weight=0.0, **args))
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["aux_heads"]["relation"] == len(RELATIONS) + 1
    assert "relation" not in json.loads((tmp_path / "n" / "config.json").read_text())["aux_heads"]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["args"]["relation_weight"] == 1.0
    assert "aux.relation.weight" in load_file(tmp_path / "r" / "model.safetensors")


def test_decoder_layers_sets_the_decoders_depth_and_records_it(tmp_path):
    """--decoder-layers N builds a GPT-2 decoder of N blocks, saved in config.json and metrics.json
    (the default, 2, is both shipped models' depth); the loaded checkpoint has N blocks; below 1 the
    CLI refuses without a traceback."""
    from vizcap.captioner import Captioner
    from vizcap.files import DEFAULT_CHECKPOINT

    assert ShapesArgs().decoder_layers == 2
    assert json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())["decoder_layers"] == ShapesArgs().decoder_layers

    args = dict(steps=1, save_every=1000, seed=1, **{**FAST, "eval_n": 2})
    run(ShapesArgs(out=str(tmp_path / "d3"), decoder_layers=3, **args))
    assert json.loads((tmp_path / "d3" / "config.json").read_text())["decoder_layers"] == 3
    assert json.loads((tmp_path / "d3" / "metrics.json").read_text())["args"]["decoder_layers"] == 3
    assert len(Captioner.from_pretrained(tmp_path / "d3").model.decoder.transformer.h) == 3

    done = run_module("-m", "train", "shapes", "--decoder-layers", "0", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "--decoder-layers must be at least 1" in done.stderr and "Traceback" not in done.stderr


def test_attend_relations_points_a_pairs_relation_word_at_the_object_named_before_it(tmp_path):
    """--attend-relations (the default): the word that decides a pair's relation ("left", "above") refers to
    the object named before it in every phrasing (the relation is read from it), and to nothing without the
    option; "of" and the other words keep their referents; --no-attend-relations turns it off."""
    from train.shapes import RELATION_WORDS, word_referents
    from vizcap.files import DEFAULT_CHECKPOINT as SHIPPED_DEFAULT
    from vizcap.scenes import ordered_phrasings, render_scene

    scene = next(s for s in map(render_scene, range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + 200))
                 if len(s.objects) == 2 and len(s.captions) == 2 and s.objects[0].colour == s.objects[1].colour)
    for phrasing in ordered_phrasings(scene.objects):
        words = phrasing.caption.split()
        plain, with_relation = word_referents(scene, phrasing), word_referents(scene, phrasing, relations=True)
        (at,) = [i for i, w in enumerate(words) if w in RELATION_WORDS]
        assert not plain[at].any()
        assert with_relation[at].tolist() == [1.0, 0.0, 0.0]  # the first named object (column 0)
        assert (with_relation[:at, 0] == plain[:at, 0]).all() and plain[:at, 0].sum() == at - 1  # "a" names nothing
        keep = [i for i in range(len(words)) if i != at]
        assert (with_relation[keep] == plain[keep]).all()

    from train.shapes import ShapeScenesData, default_config
    from vizcap.model import CaptionModel
    from vizcap.scenes import VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tokenizer = CaptionTokenizer.word_level(VOCABULARY)
    cfg = default_config(tokenizer, "vit")
    data = ShapeScenesData(cfg, CaptionModel(cfg).grid, tokenizer, first_seed=0, captions="all", attend_relations=True)
    relation_ids = {tokenizer.encode(w)[0] for w in RELATION_WORDS}
    _, ids, *_, refers, _ = next(data[k] for k in range(100) if relation_ids & set(data[k][1]))
    (at,) = [i for i, t in enumerate(ids) if t in relation_ids]
    assert refers[at].sum() == 1  # the samples the training loop reads carry it
    run(ShapesArgs(out=str(tmp_path / "r"), attend_relations=True, steps=1, save_every=1000, seed=1, **{**FAST, "eval_n": 2}))
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["args"]["attend_relations"] is True

    assert ShapesArgs().attend_relations is True  # the shipped default's recipe (metrics.json records it)
    assert json.loads((SHIPPED_DEFAULT / "metrics.json").read_text())["args"]["attend_relations"] is True
    done = run_module("-m", "train", "shapes", "--no-attend-relations", "--steps", "0", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "--steps must be at least 1" in done.stderr  # the flag parses; the run is refused


def test_named_targets_follow_the_objects_each_shape_word_names(tmp_path):
    """--named-weight: the head's targets, on samples drawn from every phrasing, equal an oracle that reads
    the caption: at each shape word, the scene objects of that colour and shape (in the canonical order)
    become named, and stay named. A run with the head records its weight and saves the captioner alone."""
    from train.shapes import ShapeScenesData, collate, default_config, named_targets
    from vizcap.captioner import Captioner
    from vizcap.model import CaptionModel
    from vizcap.scenes import PLURALS, SHAPE_WORDS, VOCABULARY, render_scene
    from vizcap.tokenizer import CaptionTokenizer

    tokenizer = CaptionTokenizer.word_level(VOCABULARY)
    cfg = default_config(tokenizer, "vit", relation=True)
    data = ShapeScenesData(cfg, CaptionModel(cfg).grid, tokenizer, first_seed=0, captions="all")
    items = [data[k] for k in range(40)]
    pixels, ids, shape_t, colour_t, order_t, relation_t, bound_t, refers_t, places_t = collate(items, tokenizer.pad_id)
    shape_ids = torch.tensor([tokenizer.encode(w)[0] for w in sorted(SHAPE_WORDS)])
    targets, exists = named_targets(ids, refers_t, places_t, shape_ids)
    singular = {plural: shape for shape, plural in PLURALS.items()}
    checked = 0
    for k in range(40):
        objects = render_scene(k).objects
        words = [tokenizer.token_text(i) for i in items[k][1][1:-1]]
        assert exists[k].tolist() == [j < len(objects) for j in range(3)]
        named = [0.0, 0.0, 0.0]
        for t, word in enumerate(words, start=1):
            if word in SHAPE_WORDS:
                colour, shape = words[t - 2], singular.get(word, word)
                for j, o in enumerate(objects):
                    named[j] = 1.0 if (o.colour, o.shape) == (colour, shape) else named[j]
            assert targets[k, t].tolist() == named, (k, words, t)
            checked += 1
        assert targets[k, 0].sum() == 0 and targets[k, len(words) + 1].tolist() == [float(j < len(objects)) for j in range(3)]
    assert checked > 150

    run(ShapesArgs(out=str(tmp_path / "n"), named_weight=1.0, steps=2, save_every=1000, seed=1, **{**FAST, "eval_n": 2}))
    assert json.loads((tmp_path / "n" / "metrics.json").read_text())["args"]["named_weight"] == 1.0
    assert "named_loss" in json.loads((tmp_path / "n" / "train_log.jsonl").read_text().splitlines()[-1])
    assert not any(k.startswith("named") for k in load_file(tmp_path / "n" / "model.safetensors"))
    Captioner.from_pretrained(tmp_path / "n")


def test_repeat_targets_ban_the_shape_that_would_name_a_named_phrase_again(tmp_path):
    """--repeat-weight: at the position before a shape word, the banned tokens are both forms of every
    shape already named in the colour being written; an oracle that reads the words agrees on samples
    drawn from every phrasing, the right word is never banned, and one gradient step on the loss lowers
    the banned probability. A run with it records its weight and the loss."""
    from train.shapes import ShapeScenesData, collate, default_config, repeat_loss, repeat_targets
    from vizcap.model import CaptionModel
    from vizcap.scenes import COLOURS, PLURALS, SHAPE_WORDS, VOCABULARY
    from vizcap.tokenizer import CaptionTokenizer

    tokenizer = CaptionTokenizer.word_level(VOCABULARY)
    singular = {plural: shape for shape, plural in PLURALS.items()}
    kind = {tokenizer.encode(w)[0]: singular.get(w, w) for w in SHAPE_WORDS}
    colours = {tokenizer.encode(c)[0] for c in COLOURS}
    V = tokenizer.vocab_size

    def banned_words(caption: str) -> list[set[str]]:
        ids = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(caption), tokenizer.eos_id]])
        banned = repeat_targets(ids, colours, kind, V)[0]
        return [{tokenizer.token_text(i) for i in row.nonzero().flatten().tolist()} for row in banned]

    got = banned_words("a pink cross and a pink star and a blue circle")  # position t predicts word t + 1
    assert got[6] == {"cross", "crosses"} and sum(map(len, got)) == 2  # before "star" only (<bos> is token 0)
    got = banned_words("two red circles and a red square")
    assert got[6] == {"circle", "circles"} and sum(map(len, got)) == 2
    assert sum(map(len, banned_words("a red circle left of a blue circle"))) == 0  # another colour: fine

    cfg = default_config(tokenizer, "vit", relation=True)
    data = ShapeScenesData(cfg, CaptionModel(cfg).grid, tokenizer, first_seed=0, captions="all")
    items = [data[k] for k in range(60)]
    ids = collate(items, tokenizer.pad_id)[1]
    banned = repeat_targets(ids, colours, kind, V)
    some = 0
    for b in range(60):
        words = [tokenizer.token_text(i) for i in ids[b].tolist()]
        named, colour = set(), None
        for t in range(len(words) - 1):
            colour = words[t] if words[t] in COLOURS else colour
            want = set()
            if words[t + 1] in SHAPE_WORDS:
                for c, s in named:
                    if c == colour:
                        want |= {s, PLURALS[s]}
                named.add((colour, singular.get(words[t + 1], words[t + 1])))
                assert not banned[b, t, ids[b, t + 1]]  # the right word is never banned
            assert {tokenizer.token_text(i) for i in banned[b, t].nonzero().flatten().tolist()} == want, (words, t)
            some += bool(want)
    assert some > 0  # these samples hold repeated colours

    logits = torch.zeros(1, 8, V, requires_grad=True)
    one = torch.zeros(1, 8, V, dtype=torch.bool)
    one[0, 3, [4, 5]] = True
    loss = repeat_loss(logits, one)
    assert torch.isclose(loss, -torch.log1p(torch.tensor(-2 / V)))
    loss.backward()
    after = (logits - 10.0 * logits.grad).softmax(-1)[0, 3, [4, 5]].sum()
    assert after < 2 / V and logits.grad[0, :3].abs().sum() == 0  # only the banned position moves
    assert repeat_loss(logits, torch.zeros_like(one)) == 0

    run(ShapesArgs(out=str(tmp_path / "r"), repeat_weight=1.0, steps=2, save_every=1000, seed=1, **{**FAST, "eval_n": 2}))
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["args"]["repeat_weight"] == 1.0
    assert "repeat_loss" in json.loads((tmp_path / "r" / "train_log.jsonl").read_text().splitlines()[-1])
