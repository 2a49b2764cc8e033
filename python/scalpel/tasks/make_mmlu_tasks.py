"""Writes scalpel_mmlu_<subject>.yaml for each MMLU subject and the scalpel_mmlu group
(run from this folder: python make_mmlu_tasks.py; the files are committed)."""
from pathlib import Path

SUBJECTS = """abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology college_chemistry
college_computer_science college_mathematics college_medicine college_physics computer_security conceptual_physics
econometrics electrical_engineering elementary_mathematics formal_logic global_facts high_school_biology
high_school_chemistry high_school_computer_science high_school_european_history high_school_geography
high_school_government_and_politics high_school_macroeconomics high_school_mathematics high_school_microeconomics
high_school_physics high_school_psychology high_school_statistics high_school_us_history high_school_world_history
human_aging human_sexuality international_law jurisprudence logical_fallacies machine_learning management marketing
medical_genetics miscellaneous moral_disputes moral_scenarios nutrition philosophy prehistory professional_accounting
professional_law professional_medicine professional_psychology public_relations security_studies sociology
us_foreign_policy virology world_religions""".split()

here = Path(__file__).resolve().parent
for s in SUBJECTS:
    about = s.replace("_", " ")
    (here / f"scalpel_mmlu_{s}.yaml").write_text(
        f'include: _mmlu_template_yaml\ntask: scalpel_mmlu_{s}\ntask_alias: {s}\n'
        f'dataset_kwargs:\n  subject: {s}\n'
        f'description: "The following are multiple choice questions (with answers) about {about}.\\n\\n"\n')
(here / "scalpel_mmlu.yaml").write_text(
    "# MMLU, all 57 subjects: acc weighted by subject size (= lm-eval's mmlu group's acc).\n"
    "group: scalpel_mmlu\ntask:\n" + "".join(f"  - scalpel_mmlu_{s}\n" for s in SUBJECTS) +
    "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 1.0\n")
