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
