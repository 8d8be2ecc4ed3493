"""Decoding strategies declared once, and the parameters of one decoding request.

Each strategy is declared once in `STRATEGIES` (a `Strategy`: which search of the one decoding loop,
vizcap/decoding.py, it runs and which knobs it uses); `register()` adds one. `params_for` builds a
request's DecodingParams once, with the knobs the strategy does not use at their neutral values;
`validate` is the one validation; `describe` says a request in words. Plain Python (no torch), so the
command line can list the strategies and check its arguments before any heavy import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

MAX_BEAMS = 16
# When beam search may stop before max_tokens (Hugging Face's `early_stopping`, same rules):
#   "exact"     stop once K hypotheses have ended and no live beam can still beat the worst of the K
#               best, bounding a live beam's best possible score exactly (HF early_stopping="never")
#   "heuristic" the same test, but the bound assumes the live beam ends now; with length_penalty > 0 a
#               longer beam can still overtake after the stop (HF early_stopping=False, its default)
#   "first_k"   stop as soon as K hypotheses have ended (HF early_stopping=True)
EARLY_STOPPING = ("exact", "heuristic", "first_k")


@dataclass(frozen=True)
class DecodingParams:
    """Every decoding knob, validated in one place for the API, the CLI and the app."""

    strategy: str = "greedy"
    beams: int = 1
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    temperature: float = 1.0
    length_penalty: float = 1.0
    seed: int | None = None
    max_tokens: int = 20
    early_stopping: str = "exact"  # beam search only: see EARLY_STOPPING

    def __post_init__(self):
        problems = validate(self)
        if problems:
            raise ValueError(problems[0])


# The knobs a strategy may use; one it does not use is set to its neutral value (DecodingParams' default).
KNOBS = ("beams", "length_penalty", "early_stopping", "temperature", "top_k", "top_p", "seed")
# How the one decoding loop picks tokens: the most probable one, K beams, or a draw from the filtered distribution.
SEARCHES = ("greedy", "beam", "sample")


@dataclass(frozen=True)
class Strategy:
    """A decoding strategy as the API, the CLI, the app and links know it, declared once."""

    name: str  # what `DecodingParams.strategy`, --strategy and links hold
    search: str  # how the decoding loop picks tokens: one of SEARCHES (the loop reads this, never the name)
    knobs: tuple[str, ...] = ()  # the KNOBS it uses (max_tokens always applies)
    label: str = ""  # for people: "beam search"
    help: str = ""  # one line for the app

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"a strategy's name is a word of letters, digits and _; got {self.name!r}")
        if self.search not in SEARCHES:
            raise ValueError(f"strategy {self.name!r}: search must be one of {', '.join(SEARCHES)}; got {self.search!r}")
        if set(self.knobs) - set(KNOBS):
            raise ValueError(f"strategy {self.name!r}: knobs must be some of {', '.join(KNOBS)}; got {self.knobs!r}")


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add `strategy` (or replace the one of its name): from then on DecodingParams, the API, the
    CLI's --strategy, the app and links accept it, and the decoding loop runs it by its `search`."""
    if not isinstance(strategy, Strategy):
        raise TypeError(f"register() takes a Strategy; got {type(strategy).__name__}")
    STRATEGIES[strategy.name] = strategy
    return strategy


def unregister(name: str) -> None:
    """Remove a strategy added by register() (tests' throwaway strategies)."""
    STRATEGIES.pop(name, None)


for _strategy in (
    Strategy("greedy", "greedy", (), "greedy", "the most probable word at every step"),
    Strategy("beam", "beam", ("beams", "length_penalty", "early_stopping"), "beam search",
             "keeps the K best partial captions; the best finished one wins (score = logp / length**length_penalty)"),
    Strategy("sample", "sample", ("temperature", "top_k", "top_p", "seed"), "sampling",
             "draws each word from the model's distribution, reshaped by temperature, top-k and top-p"),
):
    register(_strategy)
del _strategy


# Every DecodingParams field at its default: the neutral value of a knob a strategy does not use
DEFAULTS = {f.name: f.default for f in fields(DecodingParams)}
KNOB_NAMES = {"beams": "beams", "length_penalty": "length penalty", "early_stopping": "early stopping",
              "temperature": "temperature", "top_k": "top-k", "top_p": "top-p", "seed": "seed"}


def describe(params: DecodingParams) -> str:
    """The decoding in a few words for people: "greedy", "beam search (beams 4, length penalty 1)",
    "sampling (temperature 1.5, top-k 5, seed 3)": the strategy's label and the knobs it uses that are
    not off (top-k 0 and top-p 1 are off; early stopping only when not the default)."""
    strategy = STRATEGIES[params.strategy]
    shown = []
    for knob in strategy.knobs:
        value = getattr(params, knob)
        if (knob, value) in (("top_k", 0), ("top_p", 1.0), ("early_stopping", DEFAULTS["early_stopping"])):
            continue
        shown.append(f"{KNOB_NAMES.get(knob, knob)} {value:g}" if isinstance(value, float) else
                     f"{KNOB_NAMES.get(knob, knob)} {value}")
    return (strategy.label or strategy.name) + (f" ({', '.join(shown)})" if shown else "")


def _show(value) -> str:
    """repr() for a message: one short line, whatever the value (a 5000-digit int, a huge string)."""
    try:
        text = repr(value)
    except Exception:  # e.g. an int beyond Python's digit limit for str()
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def validate(p) -> list[str]:
    """One-line messages for every invalid value (empty if all are fine). `p` is a DecodingParams, or
    a dict of its fields (missing ones count as DecodingParams' defaults): the one validation of
    every knob, for the API, the CLI, the app and links."""
    if isinstance(p, dict):
        p = _Values({**DEFAULTS, **p})
    out = []

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):  # a finite real number (an int too large for a float is still finite)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))

    if not isinstance(p.strategy, str) or p.strategy not in STRATEGIES:
        out.append(f"strategy must be one of {', '.join(STRATEGIES)}; got {_show(p.strategy)}")
    if not is_int(p.beams) or not 1 <= p.beams <= MAX_BEAMS:
        out.append(f"beams must be a whole number from 1 to {MAX_BEAMS}; got {_show(p.beams)}")
    if not is_int(p.top_k) or p.top_k < 0:
        out.append(f"top_k must be a whole number >= 0 (0 = off); got {_show(p.top_k)}")
    if not is_num(p.top_p) or not 0 < p.top_p <= 1:
        out.append(f"top_p must be in (0, 1] (1 = off); got {_show(p.top_p)}")
    if not is_num(p.temperature) or p.temperature <= 0 or p.temperature > 100:
        out.append(f"temperature must be > 0 and <= 100; got {_show(p.temperature)}")
    if not is_num(p.length_penalty) or abs(p.length_penalty) > 10:
        out.append(f"length_penalty must be a number from -10 to 10; got {_show(p.length_penalty)}")
    if p.seed is not None and (not is_int(p.seed) or not 0 <= p.seed < 2**63):
        out.append(f"seed must be a whole number >= 0 or None; got {_show(p.seed)}")
    if not is_int(p.max_tokens) or not 1 <= p.max_tokens <= 256:
        out.append(f"max_tokens must be a whole number from 1 to 256; got {_show(p.max_tokens)}")
    if p.early_stopping not in EARLY_STOPPING:
        out.append(f"early_stopping must be one of {', '.join(EARLY_STOPPING)}; got {_show(p.early_stopping)}")
    return out


class _Values:
    """A dict's items as attributes, for validate() (DecodingParams itself validates on creation)."""

    def __init__(self, values: dict):
        self.__dict__.update(values)


def params_for(strategy: str = "greedy", defaults: dict | None = None, **knobs) -> DecodingParams:
    """The DecodingParams of one request, built once. Knobs left as None take `defaults` (a model's
    own: its generation config), then DecodingParams' defaults; every value given is validated (a
    ValueError with the first problem), then the knobs the strategy does not use are set to their
    neutral values, so two requests that decode alike are equal (the app caches explanations by them)."""
    unknown = sorted(set(knobs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"params_for() got an unexpected knob {unknown[0]!r}")
    values = {**DEFAULTS, **{k: v for k, v in (defaults or {}).items() if v is not None and k in DEFAULTS},
              **{k: v for k, v in knobs.items() if v is not None}, "strategy": strategy}
    problems = validate(values)
    if problems:
        raise ValueError(problems[0])
    used = STRATEGIES[strategy].knobs
    return DecodingParams(**{k: (DEFAULTS[k] if k in KNOBS and k not in used else v) for k, v in values.items()})
