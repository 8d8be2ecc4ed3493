"""What a checkpoint's folder records about its training and evaluation, read without guessing:
train_log.jsonl (the loss curve), metrics.json (the run's arguments and its evaluation) and trust.json
(`vizcap eval`'s trust measurements). A missing or unreadable file reads as None or []; a value of the
wrong type is left out, never replaced by a default."""

from __future__ import annotations

import json
from pathlib import Path

TRAIN_LOG = "train_log.jsonl"
METRICS = "metrics.json"
TRUST = "trust.json"
DECODING = "decoding.json"  # written by `vizcap decoding` (vizcap.spread)
DECODING_INDEPENDENT = "decoding_independent.json"  # written by `vizcap decoding --independent`


def read_json(path) -> dict | None:
    """A JSON object from `path`, or None (missing, unreadable or not an object)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_jsonl(path) -> list[dict]:
    """The JSON objects of a .jsonl file, one a line (other lines skipped); [] when missing."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def training_log(folder) -> list[dict]:
    """The rows of the checkpoint's train_log.jsonl ([] when it has none)."""
    return read_jsonl(Path(folder) / TRAIN_LOG)


def metrics(folder) -> dict | None:
    """The checkpoint's metrics.json, or None."""
    return read_json(Path(folder) / METRICS)


def saved_trust(folder) -> dict | None:
    """The checkpoint's trust.json (written by `vizcap eval`), or None."""
    return read_json(Path(folder) / TRUST)


def stamp(folder, name: str):
    """The modification time (ns) of the checkpoint's file `name`, None when it is missing: a cache key
    that changes when the file does."""
    try:
        return (Path(folder) / name).stat().st_mtime_ns
    except (OSError, TypeError, ValueError):
        return None


def decoding_spread(folder, independent: bool = False) -> dict | None:
    """The checkpoint's decoding.json (`vizcap decoding`: how much strategies differ), or None; with
    independent=True, decoding_independent.json (the same on the independent renderer's scenes)."""
    return read_json(Path(folder) / (DECODING_INDEPENDENT if independent else DECODING))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def training_facts(folder) -> dict:
    """What the checkpoint's metrics.json says about its training: steps, batch_size, samples (the
    pictures it saw: samples_seen, or steps × batch size), aux_weight, bind_weight, attend_weight,
    named_weight (a training-only head that learned which objects the caption has named so far), repeat_weight
    (an unlikelihood term against a shape word that names an already-named phrase again), captions
    ("canonical": one caption per scene; "all": every right phrasing; a ShapeScenes run that predates the
    choice is "canonical"), bind_to ("named" | "place": train/shapes.py; a run that predates the choice is
    "named"), attend_relations (the supervised attention also at a pair's relation word; absent = a run from
    before the option, which had none), minutes, command. Missing facts are absent, never guessed."""
    recorded = metrics(folder) or {}
    args = recorded.get("args") if isinstance(recorded.get("args"), dict) else {}
    facts = {}
    for key in ("steps", "batch_size"):
        if isinstance(args.get(key), int) and not isinstance(args.get(key), bool):
            facts[key] = args[key]
    if isinstance(recorded.get("samples_seen"), int):
        facts["samples"] = recorded["samples_seen"]
    elif "steps" in facts and "batch_size" in facts:
        facts["samples"] = facts["steps"] * facts["batch_size"]
    for key in ("aux_weight", "bind_weight", "attend_weight", "named_weight", "repeat_weight"):
        if _number(args.get(key)):
            facts[key] = args[key]
    if args.get("captions") in ("canonical", "all"):
        facts["captions"] = args["captions"]
    elif _number(args.get("attend_weight")):  # a ShapeScenes run from before --captions: it trained on Scene.caption
        facts["captions"] = "canonical"
    if args.get("bind_to") in ("named", "place"):
        facts["bind_to"] = args["bind_to"]
    elif _number(args.get("bind_weight")):  # a ShapeScenes run from before --bind-to bound the k-th named object
        facts["bind_to"] = "named"
    if isinstance(args.get("attend_relations"), bool):
        facts["attend_relations"] = args["attend_relations"]
    if _number(recorded.get("train_seconds")):
        facts["minutes"] = recorded["train_seconds"] / 60
    if isinstance(recorded.get("command"), str):
        facts["command"] = recorded["command"]
    return facts
