"""vizcap.compare: the word set beside a word of another model's caption."""

from vizcap.compare import matching_word


def test_the_same_word_is_found_wherever_the_other_caption_put_it():
    a = "a red star left of a blue circle".split()
    b = "a blue circle right of a red star".split()
    assert matching_word(a, 2, b) == (7, True)  # "star": last in the other caption
    assert matching_word(a, 7, b) == (2, True)
    assert matching_word(a, 0, b) == (0, True)  # "a" at 0 and 5: the nearer one
    assert matching_word(a, 5, b) == (5, True)


def test_a_word_the_other_caption_lacks_gets_the_nearest_position_and_says_so():
    a = "two pink circles and an orange square".split()
    b = "a pink circle".split()
    assert matching_word(a, 1, b) == (1, True)
    assert matching_word(a, 2, b) == (2, False)  # "circles" is not "circle"
    assert matching_word(a, 6, b) == (2, False)  # past its end: its last word
    assert matching_word(a, 0, []) == (None, False)
    assert matching_word(["Star "], 0, ["a", "star"]) == (1, True)  # text compared stripped, any case
