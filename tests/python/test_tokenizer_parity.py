"""Parity of scalpel's tokenizer with Hugging Face.

For every tokenizer under $SCALPEL_SHARED/tokenizers and models/tinystories-656k
that has a tokenizer.json (or a *tokenizer.json file) or vocab.json + merges.txt,
and over tests/support/hard_strings.json plus prompts from $SCALPEL_SHARED/data,
scalpel must give exactly the oracle's

  * ids, with add_special_tokens True and False,
  * decode(ids) with skip_special_tokens False and True,
  * decode of random id lists (ids that split multi-byte characters included).

Oracle: tokenizers.Tokenizer.from_file for tokenizer.json files;
transformers.AutoTokenizer.from_pretrained for vocab.json + merges.txt
directories (Qwen2.5, and GPT-2's vocab.json + merges.txt copied without its
tokenizer.json).

scalpel side: ``scalpel.load_tokenizer(path)`` with ``encode(text,
add_special_tokens=...)`` / ``decode(ids, skip_special_tokens=...)``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from parity_util import random_id_lists

pytestmark = pytest.mark.oracle

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "support"

PER_SOURCE = 200  # prompts taken from each data set
RANDOM_ID_LISTS = 300


# ───────────────────────────── locating things ──────────────────────────────


def _shared_dir() -> Path | None:
    env = os.environ.get("SCALPEL_SHARED")
    path = Path(env) if env else REPO.parent / "shared"
    return path if path.is_dir() else None


def _discover(shared: Path) -> list[tuple[str, Path, str]]:
    """(name, path to load, oracle kind) for every tokenizer in shared."""
    found = []
    dirs = sorted(p for p in (shared / "tokenizers").glob("*") if p.is_dir())
    dirs.append(shared / "models" / "tinystories-656k")
    for d in dirs:
        if not d.is_dir():
            continue
        if (d / "tokenizer.json").is_file():
            found.append((d.name, d, "tokenizers"))
        elif (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
            found.append((d.name, d, "transformers"))
        else:
            for f in sorted(d.glob("*tokenizer.json")):
                found.append((f"{d.name}/{f.name}", f, "tokenizers"))
    return found


SHARED = _shared_dir()
TOKENIZERS = _discover(SHARED) if SHARED else []
# GPT-2 through vocab.json + merges.txt (the directory also has tokenizer.json).
VOCAB_MERGES_COPIES = [("gpt2-xl[vocab.json+merges.txt]", "gpt2-xl")] if SHARED else []


@pytest.fixture(scope="module")
def shared() -> Path:
    if SHARED is None or not TOKENIZERS:
        where = "not found beside the repository" if SHARED is None else f"no tokenizers found under {SHARED}"
        pytest.fail(f"../shared (the tokenizers and data these tests compare on): {where}. Set SCALPEL_SHARED to "
                    "its path", pytrace=False)
    return SHARED


# ─────────────────────────────── the corpus ─────────────────────────────────


def _data_prompts(shared: Path) -> list[str]:
    data = shared / "data"
    out: list[str] = []
    splits = sorted((data / "refusal_direction" / "splits").glob("*.json"))
    for f in splits:
        items = json.loads(f.read_text(encoding="utf-8"))
        out += [d["instruction"] for d in items[: PER_SOURCE // max(1, len(splits)) + 1]]
    advbench = data / "advbench" / "harmful_behaviors.csv"
    if advbench.is_file():
        with advbench.open(newline="", encoding="utf-8") as fh:
            out += [row["goal"] for _, row in zip(range(PER_SOURCE), csv.DictReader(fh))]
    gsm8k = data / "gsm8k" / "test.jsonl"
    if gsm8k.is_file():
        with gsm8k.open(encoding="utf-8") as fh:
            out += [json.loads(line)["question"] for _, line in zip(range(PER_SOURCE), fh)]
    mbpp = data / "mbpp" / "mbpp.jsonl"
    if mbpp.is_file():
        with mbpp.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for _, line in zip(range(PER_SOURCE), fh)]
        out += [r["text"] for r in rows]
        out += [r["code"] for r in rows[: PER_SOURCE // 2]]  # code: indentation, CRLF
    return [s for s in out if isinstance(s, str)]


@pytest.fixture(scope="module")
def corpus(shared: Path) -> list[str]:
    hard = json.loads((SUPPORT / "hard_strings.json").read_text(encoding="utf-8"))
    strings = hard + _data_prompts(shared)
    assert len(strings) > 500
    return strings


# ──────────────────────────────── oracles ───────────────────────────────────


class Oracle:
    def __init__(self, path: Path, kind: str):
        if kind == "tokenizers":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
            self.encode = lambda s, special: tok.encode(s, add_special_tokens=special).ids
            self.decode = lambda ids, skip: tok.decode(ids, skip_special_tokens=skip)
            self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(path))
            self.encode = lambda s, special: tok(s, add_special_tokens=special)["input_ids"]
            self.decode = lambda ids, skip: tok.decode(ids, skip_special_tokens=skip)
            self.vocab_size = len(tok)


# ─────────────────────────────── scalpel side ───────────────────────────────


class Scalpel:
    """Runs scalpel (the Python module) on a batch of inputs."""

    def __init__(self):
        import scalpel

        self.module = scalpel

    def encode_decode(self, path: Path, strings: list[str]) -> list[dict]:
        tok = self.module.load_tokenizer(str(path))
        out = []
        for s in strings:
            ids = list(tok.encode(s, add_special_tokens=True))
            out.append({
                "ids": ids,
                "ids_plain": list(tok.encode(s, add_special_tokens=False)),
                "decode": tok.decode(ids, skip_special_tokens=False),
                "decode_skip": tok.decode(ids, skip_special_tokens=True),
            })
        return out

    def decode_lists(self, path: Path, lists: list[list[int]]) -> list[dict]:
        tok = self.module.load_tokenizer(str(path))
        return [{"decode": tok.decode(ids, skip_special_tokens=False),
                 "decode_skip": tok.decode(ids, skip_special_tokens=True)} for ids in lists]


@pytest.fixture(scope="module")
def scalpel_side() -> Scalpel:
    return Scalpel()


# ──────────────────────────────── checks ────────────────────────────────────


def _compare(path: Path, kind: str, strings: list[str], side: Scalpel) -> None:
    oracle = Oracle(path, kind)
    got = side.encode_decode(path, strings)
    assert len(got) == len(strings)
    mismatches = []
    for s, g in zip(strings, got):
        ids = oracle.encode(s, True)
        want = {
            "ids": ids,
            "ids_plain": oracle.encode(s, False),
            "decode": oracle.decode(ids, False),
            "decode_skip": oracle.decode(ids, True),
        }
        have = {k: g.get(k) for k in want}
        if have != want:
            mismatches.append((s, {k: (have[k], want[k]) for k in want if have[k] != want[k]}, g.get("error")))
    detail = "\n".join(f"  {s[:80]!r}: {d} {e or ''}" for s, d, e in mismatches[:5])
    assert not mismatches, f"{len(mismatches)}/{len(strings)} strings differ from the oracle:\n{detail}"

    # Decoding arbitrary ids: special ids, ids that split multi-byte characters.
    lists = random_id_lists(1234, oracle.vocab_size, RANDOM_ID_LISTS)
    got = side.decode_lists(path, lists)
    bad = []
    for ids, g in zip(lists, got):
        want = {"decode": oracle.decode(ids, False), "decode_skip": oracle.decode(ids, True)}
        have = {k: g.get(k) for k in want}
        if have != want:
            bad.append((ids, have, want))
    assert not bad, f"{len(bad)}/{len(lists)} id lists decode differently, e.g. {bad[:3]}"


# Without ../shared, one placeholder case whose `shared` fixture fails the run (never a silent skip).
@pytest.mark.parametrize("name,path,kind", TOKENIZERS or [("no-shared-data", None, None)],
                         ids=[t[0] for t in TOKENIZERS] or ["no-shared-data"])
def test_parity(name, path, kind, shared, corpus, scalpel_side):
    _compare(path, kind, corpus, scalpel_side)


@pytest.mark.parametrize("name,source", VOCAB_MERGES_COPIES or [("no-shared-data", None)],
                         ids=[t[0] for t in VOCAB_MERGES_COPIES] or ["no-shared-data"])
def test_parity_vocab_merges_copy(name, source, shared, corpus, scalpel_side, tmp_path):
    src = shared / "tokenizers" / source
    for f in ("vocab.json", "merges.txt", "config.json"):
        if (src / f).is_file():
            shutil.copy(src / f, tmp_path / f)
    _compare(tmp_path, "transformers", corpus, scalpel_side)


def test_every_tokenizer_found(shared):
    names = {t[0] for t in TOKENIZERS}
    # The tokenizers this suite exists for; a missing one means discovery broke.
    for expected in ("gpt2-xl", "llama-2-7b-hf", "qwen2.5-0.5b-instruct", "tinystories-656k"):
        assert expected in names, names
