"""Readers of the offline data sets behind the scalpel_* lm-eval tasks.

Each task file names one of these as its ``custom_dataset``; lm-eval calls it
with the task's metadata and dataset_kwargs. The data folder is
``$SCALPEL_DATA`` (``scalpel.lm_eval.task_manager(data_dir)`` sets it) or a
``data_dir`` given through lm-eval's ``--metadata '{"data_dir": "..."}'``; it has
the layout of the project's ``../shared/data`` (``hellaswag/``, ``mmlu/``, ...).
A missing file, or a malformed row, is an error naming the file (and line).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any


from scalpel import FormatError  # a malformed row: the message names file and line


def data_dir(given: str | None = None) -> Path:
    root = given or os.environ.get("SCALPEL_DATA")
    if not root:
        raise FileNotFoundError("scalpel tasks: no data folder. Set SCALPEL_DATA to the folder holding hellaswag/, mmlu/, ... "
                        "(e.g. ../shared/data), pass data_dir to scalpel.lm_eval.task_manager, or give lm-eval "
                        "--metadata '{\"data_dir\": \"...\"}'")
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"scalpel tasks: data folder {path} (from data_dir / SCALPEL_DATA) is not a directory")
    return path


def _file(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"scalpel tasks: expected the data file {path}, which does not exist "
                        f"(data folder from data_dir / SCALPEL_DATA: {root})")
    return path


def _dataset(rows: list[dict[str, Any]]):
    import datasets

    return datasets.Dataset.from_list(rows)


# HellaSwag ------------------------------------------------------------------------------------

def hellaswag_clean(text: str) -> str:
    """HellaSwag's text clean-up as lm-eval's hellaswag task applies it: trim,
    WikiHow's " [title]" becomes a sentence break, other bracketed tags go,
    double spaces become one."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def read_hellaswag(path: Path) -> list[dict[str, Any]]:
    """The 6-line layout (``activity_label: ctx``, the gold index, four endings)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise FormatError(f"{path}: expected 6 lines per item, got {len(lines)} lines "
                        f"(the last item, from line {len(lines) - len(lines) % 6 + 1}, is incomplete)")
    rows = []
    for i in range(0, len(lines), 6):
        label = lines[i + 1].strip()
        if label not in ("0", "1", "2", "3"):
            raise FormatError(f"{path}:{i + 2}: expected the gold ending index 0-3, got {label!r}")
        if any(not e.strip() for e in lines[i + 2:i + 6]) or ": " not in lines[i]:
            raise FormatError(f"{path}:{i + 1}: expected 'activity_label: context' and four non-empty endings")
        rows.append({"ind": i // 6, "query": hellaswag_clean(lines[i]),
                     "choices": [hellaswag_clean(e) for e in lines[i + 2:i + 6]], "label": int(label)})
    return rows


def hellaswag(data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    root = globals()["data_dir"](data_dir)
    return {"validation": _dataset(read_hellaswag(_file(root, "hellaswag", "hellaswag_val_full.txt")))}


# MMLU -----------------------------------------------------------------------------------------

def read_mmlu(path: Path) -> list[dict[str, Any]]:
    """Rows of question, four choices and the answer letter (no header)."""
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for record in reader:
            if len(record) != 6:
                raise FormatError(f"{path}:{reader.line_num}: expected 6 columns (question, A, B, C, D, answer), "
                                f"got {len(record)}")
            answer = record[5].strip()
            if answer not in ("A", "B", "C", "D"):
                raise FormatError(f"{path}:{reader.line_num}: expected the answer letter A-D, got {answer!r}")
            rows.append({"question": record[0], "choices": record[1:5], "answer": "ABCD".index(answer)})
    if not rows:
        raise FormatError(f"{path}: no rows")
    return rows


def mmlu(subject: str | None = None, data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    if not subject:
        raise ValueError("scalpel_mmlu tasks: dataset_kwargs must name the subject")
    root = globals()["data_dir"](data_dir)
    return {"dev": _dataset(read_mmlu(_file(root, "mmlu", "dev", f"{subject}_dev.csv"))),
            "test": _dataset(read_mmlu(_file(root, "mmlu", "test", f"{subject}_test.csv")))}


# TruthfulQA (multiple choice) -----------------------------------------------------------------

# The six-question "QA prompt" of the TruthfulQA paper (Lin, Hilton and Evans, ACL 2022), which
# lm-eval's truthfulqa_mc1 / mc2 put before each question. Source: github.com/sylinrl/TruthfulQA
# (Apache-2.0), truthfulqa/presets.py, QA_PRIMER.
TRUTHFULQA_QA_PROMPT = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def read_truthfulqa_mc(path: Path) -> list[dict[str, Any]]:
    """mc_task.json: a list of {question, mc1_targets: {answer: 0/1}, mc2_targets: {answer: 0/1}}."""
    import json

    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(items, list) or not items:
        raise FormatError(f"{path}: expected a non-empty JSON list of questions")
    rows = []
    for n, item in enumerate(items):
        where = f"{path}: item {n}"
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise FormatError(f"{where}: expected an object with a 'question' string")
        targets = {}
        for key in ("mc1_targets", "mc2_targets"):
            t = item.get(key)
            if not isinstance(t, dict) or not t or any(v not in (0, 1) for v in t.values()):
                raise FormatError(f"{where}: expected '{key}' as {{answer: 0 or 1}}")
            targets[key] = {"choices": list(t), "labels": [int(v) for v in t.values()]}
        labels = targets["mc1_targets"]["labels"]
        if labels[0] != 1 or sum(labels) != 1:
            raise FormatError(f"{where}: expected mc1_targets to list its one true answer first (lm-eval's target 0)")
        rows.append({"question": item["question"],
                     "query": TRUTHFULQA_QA_PROMPT + "\n\nQ: " + item["question"] + "\nA:", **targets})
    return rows


def truthfulqa_mc(data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    root = globals()["data_dir"](data_dir)
    return {"validation": _dataset(read_truthfulqa_mc(_file(root, "truthfulqa", "mc_task.json")))}


def truthfulqa_mc2_results(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """MC2: the probability mass of the true answers, the answers' probabilities normalized to sum 1."""
    import math

    lls = [r[0] for r in results]
    top = max(lls)
    weights = [math.exp(x - top) for x in lls]
    true_mass = sum(w for w, label in zip(weights, doc["mc2_targets"]["labels"]) if label == 1)
    return {"acc": true_mass / sum(weights)}


# WikiText-2 (document level) ------------------------------------------------------------------

def read_wikitext_pages(path: Path) -> list[dict[str, Any]]:
    """The raw test split cut into articles: a page starts at each top-level heading line
    (" = Title = ", one '=' each side) and keeps its lines as the file has them."""
    text = path.read_text(encoding="utf-8")
    pages, current = [], []
    for line in text.splitlines(keepends=True):
        if line.startswith(" = ") and not line.startswith(" = = ") and current and "".join(current).strip():
            pages.append("".join(current))
            current = []
        current.append(line)
    if current and "".join(current).strip():
        pages.append("".join(current))
    if not pages:
        raise FormatError(f"{path}: no article (expected WikiText raw text with ' = Title = ' headings)")
    return [{"page": p} for p in pages]


# The detokenization rules of lm-eval's wikitext task (literal replacements and bracket / quote
# tightening), applied in the same order.
_WIKITEXT_LITERAL_BEFORE = [("s '", "s'")]
_WIKITEXT_NUMBERS = [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", ".")]
_WIKITEXT_PUNCTUATION = [(f" {p} ", f"{p} ") for p in (":", ";", ".", "!", "?", ",")]
_WIKITEXT_PAIRS = [(r"\(\s*([^\)]*?)\s*\)", r"(\1)"), (r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
                   (r"{\s*([^}]*?)\s*}", r"{\1}"), (r"\"\s*([^\"]*?)\s*\"", r'"\1"'), (r"'\s*([^']*?)\s*'", r"'\1'")]
_WIKITEXT_AFTER = [("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \u00b0 ", "\u00b0"),
                   (" \n", "\n"), ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s")]


def wikitext_detokenize(doc: dict[str, Any]) -> str:
    s = doc["page"]
    for a, b in _WIKITEXT_LITERAL_BEFORE:
        s = s.replace(a, b)
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    for a, b in _WIKITEXT_NUMBERS + _WIKITEXT_PUNCTUATION:
        s = s.replace(a, b)
    for pattern, repl in _WIKITEXT_PAIRS:
        s = re.sub(pattern, repl, s)
    for a, b in _WIKITEXT_AFTER:
        s = s.replace(a, b)
    return s


def wikitext_results(doc: dict[str, Any], results: list[float]) -> dict[str, tuple[float, int]]:
    """(log-likelihood, words) and (log-likelihood, bytes) pairs; words and bytes of the page before
    detokenization, as lm-eval counts them."""
    (ll,) = results
    words = len(re.split(r"\s+", doc["page"]))
    n_bytes = len(doc["page"].encode("utf-8"))
    return {"word_perplexity": (ll, words), "byte_perplexity": (ll, n_bytes), "bits_per_byte": (ll, n_bytes)}


def wikitext(data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    root = globals()["data_dir"](data_dir)
    return {"test": _dataset(read_wikitext_pages(_file(root, "wikitext-2-raw", "wiki.test.raw")))}


# GSM8K (chain of thought) ---------------------------------------------------------------------

def read_gsm8k(path: Path) -> list[dict[str, Any]]:
    """test.jsonl: {question, answer}, the answer ending in '#### <number>'."""
    import json

    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "####" not in str(row.get("answer")):
            raise FormatError(f"{path}:{n}: expected {{question, answer}} with the answer ending in '#### <number>'")
        rows.append({"question": row["question"], "answer": row["answer"]})
    if not rows:
        raise FormatError(f"{path}: no rows")
    return rows


def gsm8k(data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    root = globals()["data_dir"](data_dir)
    return {"test": _dataset(read_gsm8k(_file(root, "gsm8k", "test.jsonl")))}


# BIG-Bench Hard -------------------------------------------------------------------------------

def read_bbh(path: Path) -> list[dict[str, Any]]:
    """<task>.json: {"examples": [{input, target}, ...]} (plus BIG-Bench's canary string)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise FormatError(f"{path}: expected an object with a non-empty 'examples' list")
    rows = []
    for n, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str) or not isinstance(ex.get("target"), str):
            raise FormatError(f"{path}: example {n}: expected {{input, target}} strings")
        rows.append({"input": ex["input"], "target": ex["target"]})
    return rows


def bbh(subtask: str | None = None, data_dir: str | None = None, **_: Any) -> dict[str, Any]:
    if not subtask:
        raise ValueError("scalpel_bbh tasks: dataset_kwargs must name the subtask")
    root = globals()["data_dir"](data_dir)
    return {"test": _dataset(read_bbh(_file(root, "bbh", f"{subtask}.json")))}
