"""Writes scalpel_bbh_<task>.yaml and scalpel_bbh_cot_<task>.yaml for the 27 BIG-Bench Hard tasks and their groups (run from this
folder with lm-eval 0.4.13 installed: python make_bbh_tasks.py; the files are committed).

The three few-shot exemplars and the description of each task are BIG-Bench Hard's own prompts (Suzgun et al.
2022, github.com/suzgunmirac/BIG-Bench-Hard, cot-prompts/, MIT license), read here from lm-eval's bbh_fewshot
task files (lm-evaluation-harness 0.4.13, MIT), which carry them with the chain of thought removed. The test
items come from SCALPEL_DATA/bbh/<task>.json at run time.
"""
from importlib import resources
from pathlib import Path

import yaml

here = Path(__file__).resolve().parent


def main() -> None:
    src = resources.files("lm_eval") / "tasks" / "bbh" / "fewshot"
    names = []
    for f in sorted(p for p in src.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_")):
        cfg = yaml.safe_load(f.read_text())
        name = cfg["dataset_name"]
        names.append(name)
        out = {"include": "_bbh_template_yaml", "task": f"scalpel_bbh_{name}", "task_alias": name,
               "dataset_kwargs": {"subtask": name}, "description": cfg["description"],
               "fewshot_config": cfg["fewshot_config"]}
        (here / f"scalpel_bbh_{name}.yaml").write_text(
            "# BIG-Bench Hard exemplars and description: Suzgun et al. 2022 (MIT), via lm-eval 0.4.13's bbh_fewshot\n"
            "# (see make_bbh_tasks.py). Generated; do not edit.\n" + yaml.safe_dump(out, sort_keys=False, width=100))
    (here / "scalpel_bbh.yaml").write_text(
        "# BIG-Bench Hard, 27 tasks, 3-shot direct answers: exact match weighted by task size (lm-eval's bbh_fewshot).\n"
        "group: scalpel_bbh\ntask:\n" + "".join(f"  - scalpel_bbh_{n}\n" for n in names) +
        "aggregate_metric_list:\n  - metric: exact_match\n    aggregation: mean\n    weight_by_size: true\n"
        "metadata:\n  version: 1.0\n")


def main_cot() -> None:
    """The chain-of-thought variant (lm-eval's bbh_cot_fewshot): BIG-Bench Hard's CoT exemplars."""
    src = resources.files("lm_eval") / "tasks" / "bbh" / "cot_fewshot"
    names = []
    for f in sorted(p for p in src.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_")):
        cfg = yaml.safe_load(f.read_text())
        name = cfg["dataset_name"]
        names.append(name)
        out = {"include": "_bbh_cot_template_yaml", "task": f"scalpel_bbh_cot_{name}", "task_alias": name,
               "dataset_kwargs": {"subtask": name}, "description": cfg["description"],
               "doc_to_text": cfg["doc_to_text"], "fewshot_config": cfg["fewshot_config"]}
        (here / f"scalpel_bbh_cot_{name}.yaml").write_text(
            "# BIG-Bench Hard chain-of-thought exemplars and description: Suzgun et al. 2022 (MIT), via lm-eval\n"
            "# 0.4.13's bbh_cot_fewshot (see make_bbh_tasks.py). Generated; do not edit.\n"
            + yaml.safe_dump(out, sort_keys=False, width=100))
    (here / "scalpel_bbh_cot.yaml").write_text(
        "# BIG-Bench Hard, 27 tasks, 3-shot chain of thought: exact match of the extracted answer, weighted by task\n"
        "# size (lm-eval's bbh_cot_fewshot).\n"
        "group: scalpel_bbh_cot\ntask:\n" + "".join(f"  - scalpel_bbh_cot_{n}\n" for n in names) +
        "aggregate_metric_list:\n  - metric: exact_match\n    aggregation: mean\n    weight_by_size: true\n"
        "    filter_list: get-answer\nmetadata:\n  version: 1.0\n")


if __name__ == "__main__":
    main()
    main_cot()
    main()
