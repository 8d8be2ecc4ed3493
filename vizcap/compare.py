"""Two models, one picture: which word of the second caption to set beside a word of the first.

The Compare page shows the same picture, the same method and "the same word" under two models (issue
25, item 6). Their captions may differ ("a red star left of a blue circle" / "a blue circle right of
a red star"), so the word is matched by its text: the occurrence in the other caption nearest in
position; failing that, the word at the nearest position, said as such. Pure functions; no torch.
"""

from __future__ import annotations


def matching_word(tokens: list[str], j: int, other: list[str]) -> tuple[int | None, bool]:
    """(index in `other` to show beside tokens[j], whether it is the same word). Same text
    (case-insensitive, spaces stripped) at the nearest position, ties to the earlier one; else the
    position nearest to j (the last word of a shorter caption); None for an empty caption."""
    if not other:
        return None, False
    word = tokens[j].strip().lower()
    same = [k for k, t in enumerate(other) if t.strip().lower() == word]
    if same:
        return min(same, key=lambda k: (abs(k - j), k)), True
    return min(j, len(other) - 1), False
