"""Writes scalpel_bbh_<task>.yaml and scalpel_bbh_cot_<task>.yaml for the 27 BIG-Bench Hard tasks and their
groups (run from this folder with lm-eval 0.4.13 installed: python make_bbh_tasks.py; the files are committed).

The three few-shot exemplars and the description of each task are BIG-Bench Hard's own prompts (Suzgun et al.
2022, github.com/suzgunmirac/BIG-Bench-Hard, cot-prompts/, MIT license), read here from lm-eval's task files
(lm-evaluation-harness 0.4.13, MIT): bbh_fewshot carries them with the chain of thought removed,
bbh_cot_fewshot with it. The test items come from SCALPEL_DATA/bbh/<task>.json at run time.
"""
from importlib import resources
from pathlib import Path

import yaml

here = Path(__file__).resolve().parent

# (lm-eval's folder, our task prefix, our template, keys taken from lm-eval's file, the group's comment and filter)
VARIANTS = [
    ("fewshot", "scalpel_bbh", "_bbh_template_yaml", ("description", "fewshot_config"),
     "3-shot direct answers: exact match weighted by task size (lm-eval's bbh_fewshot).", None),
    ("cot_fewshot", "scalpel_bbh_cot", "_bbh_cot_template_yaml", ("description", "doc_to_text", "fewshot_config"),
     "3-shot chain of thought: exact match of the extracted answer, weighted by task size (lm-eval's "
     "bbh_cot_fewshot).", "get-answer"),
]


def write(folder: str, prefix: str, template: str, keys: tuple, about: str, answer_filter: str | None) -> None:
    src = resources.files("lm_eval") / "tasks" / "bbh" / folder
    names = []
    for f in sorted(p for p in src.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_")):
        cfg = yaml.safe_load(f.read_text())
        name = cfg["dataset_name"]
        names.append(name)
        out = {"include": template, "task": f"{prefix}_{name}", "task_alias": name, "dataset_kwargs": {"subtask": name},
               **{k: cfg[k] for k in keys}}
        (here / f"{prefix}_{name}.yaml").write_text(
            f"# BIG-Bench Hard exemplars and description: Suzgun et al. 2022 (MIT), via lm-eval 0.4.13's bbh/{folder}\n"
            "# (see make_bbh_tasks.py). Generated; do not edit.\n" + yaml.safe_dump(out, sort_keys=False, width=100))
    (here / f"{prefix}.yaml").write_text(
        f"# BIG-Bench Hard, 27 tasks, {about}\n"
        f"group: {prefix}\ntask:\n" + "".join(f"  - {prefix}_{n}\n" for n in names) +
        "aggregate_metric_list:\n  - metric: exact_match\n    aggregation: mean\n    weight_by_size: true\n" +
        (f"    filter_list: {answer_filter}\n" if answer_filter else "") + "metadata:\n  version: 1.0\n")


if __name__ == "__main__":
    for variant in VARIANTS:
        write(*variant)
