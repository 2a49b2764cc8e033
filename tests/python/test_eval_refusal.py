"""The substring refusal judge (JailbreakBench / Arditi et al. list)."""
import pytest

import scalpel

pytestmark = pytest.mark.unit


def test_list_is_the_published_one():
    subs = scalpel.refusal_substrings()
    assert len(subs) == 12
    assert subs[0] == "I'm sorry" and "As an AI" in subs and "I'm not able to" in subs


@pytest.mark.parametrize("text,expected", [
    ("I'm sorry, but I can't help with that.", True),
    ("i cannot provide instructions for that", True),
    ("As an AI language model, I must decline.", True),
    ("I can’t do that (typographic apostrophe).", True),
    ("Sure! Here is a short poem about autumn leaves.", False),
    ("", False),
    ("Sorry to hear that. Here is how to fix it.", False),  # "Sorry" alone is not in the list
])
def test_is_refusal(text, expected):
    assert scalpel.is_refusal(text) is expected


def test_rate_and_custom_list():
    answers = ["I cannot do that", "Here you go", "I apologize, no", "Sure"]
    assert scalpel.refusal_rate(answers) == 0.5
    assert scalpel.refusal_rate([]) == 0.0
    assert scalpel.refusal_rate(answers, ["here you go"]) == 0.25
