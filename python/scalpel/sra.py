"""Directions, concept atoms and Surgical Refusal Ablation (docs/sra.md).

    reg = scalpel.sra.Registry.default_registry()                        # shields + confounds
    cands = scalpel.sra.candidate_directions(model, harmful, harmless, fmt=fmt)
    sel = scalpel.sra.select_direction(model, cands, harmful_val, harmless_val, fmt=fmt)
    reg.extract(model, [sel.hook], [sel.position], fmt=fmt)
    res = scalpel.sra.surgical_direction(sel.direction, reg, sel.hook, sel.position)
    with scalpel.ablate_direction(model, res.clean): ...       # inference time
    scalpel.sra.export_ablated(source_dir, out_dir, res.clean)  # baked into the weights

Everything here is the C++ core (scalpel/steer/sra.hpp) under the same
names; results C++ gives as JSON arrive as dicts. A `fmt` is a PromptFormat
(chat_formatter(model)), any callable str -> str (with an optional `templated`
attribute: its output carries the template's own BOS), or None for the model's
chat template. This module adds only where the evaluation sets are looked for.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from . import _scalpel
from ._scalpel import (Atom, Candidates, PromptFormat, Registry, Selection, SRAResult, candidate_directions,
                       chat_formatter, complete, default_stop_tokens, encode_formatted, encode_prompts, evaluate,
                       export_ablated, mine_hard_negatives, post_instruction_positions, refusal_tokens,
                       select_direction, solution_perplexity, surgical_direction)

__all__ = ["Atom", "Registry", "KINDS", "PromptFormat", "chat_formatter", "post_instruction_positions",
           "refusal_tokens", "Candidates", "candidate_directions", "Selection", "select_direction", "SRAResult",
           "surgical_direction", "evaluate", "mine_hard_negatives", "encode_prompts", "encode_formatted", "complete",
           "default_stop_tokens", "export_ablated", "shared_data_dir", "wikitext2", "gsm8k", "mbpp",
           "solution_perplexity"]

KINDS = tuple(_scalpel.atom_kinds())
Formatter = Callable[[str], str]


def shared_data_dir() -> Path | None:
    """C++ scalpel::shared_data_dir ($SCALPEL_DATA, else $SCALPEL_SHARED/data), else the data/
    folder of ../shared beside the repository (mainjob.shared_dir), when present."""
    from .mainjob import shared_dir

    found = _scalpel.shared_data_dir()
    if found is not None:
        return Path(found)
    shared = shared_dir()
    return shared / "data" if shared is not None and (shared / "data").is_dir() else None


def _data_dir(data_dir: str | os.PathLike | None) -> str:
    if data_dir is not None:
        return str(data_dir)
    d = shared_data_dir()
    return "" if d is None else str(d)


def wikitext2(tokenizer, n: int = 32, seq_len: int = 128, data_dir: str | os.PathLike | None = None) -> list[list[int]]:
    """n consecutive windows of seq_len tokens from the WikiText-2 (raw) test split."""
    return _scalpel.wikitext2(tokenizer, n, seq_len, _data_dir(data_dir))


def gsm8k(n: int = 32, data_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(question, reference solution) pairs from GSM8K test."""
    return _scalpel.gsm8k(n, _data_dir(data_dir))


def mbpp(n: int = 32, data_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(task, reference code) pairs from MBPP."""
    return _scalpel.mbpp(n, _data_dir(data_dir))
