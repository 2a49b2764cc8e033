"""Tokenizer.apply_chat_template against transformers' AutoTokenizer on the
real model directories (special tokens from their tokenizer_config.json)."""
from __future__ import annotations

import pytest
import transformers

import scalpel


CONVERSATIONS = [
    [{"role": "user", "content": "Hello there!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "  and 3+3?  \n"}],
    [{"role": "user", "content": "Unicode: café 日本 🙂 {{ not a tag }}"}],
]


def _dirs(shared):
    out = []
    for d in sorted((shared / "tokenizers").iterdir()):
        has_tok = (d / "tokenizer.json").exists() or ((d / "vocab.json").exists() and (d / "merges.txt").exists())
        if has_tok and (d / "tokenizer_config.json").exists():
            out.append(d)
    return out


@pytest.mark.oracle
def test_apply_chat_template_matches_transformers(shared):
    checked = 0
    for d in _dirs(shared):
        ref = transformers.AutoTokenizer.from_pretrained(d)
        ours = scalpel.load_tokenizer(str(d))
        if not ref.chat_template:
            assert not ours.has_chat_template, d
            continue
        assert ours.has_chat_template, d
        for conv in CONVERSATIONS:
            for agp in (True, False):
                try:
                    want = ref.apply_chat_template(conv, tokenize=False, add_generation_prompt=agp)
                except Exception as e:  # the template rejects the conversation (e.g. system role)
                    with pytest.raises(ValueError):
                        ours.apply_chat_template(conv, add_generation_prompt=agp)
                    continue
                assert ours.apply_chat_template(conv, add_generation_prompt=agp) == want, (d.name, conv, agp)
                # ... and the rendered prompt tokenizes identically without extra special tokens.
                assert ours.encode(want, add_special_tokens=False) == ref.encode(want, add_special_tokens=False)
                checked += 1
    assert checked >= 20


@pytest.mark.unit
def test_no_chat_template_is_a_clear_error(shared):
    tok = scalpel.load_tokenizer(str(shared / "tokenizers" / "gpt2-xl"))
    assert not tok.has_chat_template
    with pytest.raises(ValueError, match="chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])
