"""Pair datasets: loading, validation, alignment checks."""
from pathlib import Path

import pytest

import scalpel

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_shipped_datasets_load_and_align(shared):
    tok = scalpel.load_tokenizer(str(shared / "models" / "tinystories-656k"))
    pairs = scalpel.load_prompt_pairs(str(REPO / "data" / "pairs" / "tinystories_names.jsonl"))
    assert len(pairs) >= 6
    for p in pairs:
        t = scalpel.tokenize_prompt_pair(tok, p)
        assert len(t.clean) == len(t.corrupted) and t.answer >= 0 and t.corrupted_answer >= 0
    comp = scalpel.load_completion_pairs(str(REPO / "data" / "pairs" / "gemma3_refusal_completions.jsonl"))
    assert len(comp) >= 6 and all(c.prompt and c.harmful and c.neutral for c in comp)


@pytest.mark.parametrize("line,match", [
    ('{"clean": "a", "corrupted": "b"}', r":1: expected key \"answer\" or \"answers\""),
    ('{"clean": "a", "corrupted": 3, "answer": "x"}', "corrupted: expected a string"),
    ('{"clean": "a", "corrupted": "b", "answers": []}', "non-empty list"),
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "invalid JSON"),
])
def test_malformed_prompt_pairs(tmp_path, line, match):
    f = tmp_path / "p.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(scalpel.FormatError, match=match):
        scalpel.load_prompt_pairs(str(f))


def test_missing_empty_and_misaligned(tmp_path, shared):
    with pytest.raises(FileNotFoundError):
        scalpel.load_completion_pairs(str(tmp_path / "none.jsonl"))
    (tmp_path / "e.jsonl").write_text("// only a comment\n\n")
    with pytest.raises(scalpel.FormatError, match="at least one"):
        scalpel.load_completion_pairs(str(tmp_path / "e.jsonl"))
    (tmp_path / "c.jsonl").write_text('{"prompt": "p", "harmful": "h"}\n')
    with pytest.raises(scalpel.FormatError, match='c.jsonl:1: expected key "neutral"'):
        scalpel.load_completion_pairs(str(tmp_path / "c.jsonl"))
    tok = scalpel.load_tokenizer(str(shared / "models" / "tinystories-656k"))
    bad = scalpel.PromptPair("Lily went home.", "Lily and her mother went home.", ["x"])
    with pytest.raises(ValueError, match="same number of tokens"):
        scalpel.tokenize_prompt_pair(tok, bad)
