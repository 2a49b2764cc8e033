"""The main job (`scalpel demo`) end to end on Gemma 3 270M, small."""
import json

import pytest

import scalpel
from scalpel import cli, mainjob

pytestmark = pytest.mark.e2e


def test_main_job_writes_a_consistent_report(gemma3_path, tmp_path):
    run_dir = mainjob.run("gemma3-270m", out=tmp_path, n=3, max_new_tokens=6, sets=("harmful", "harmless"))
    assert {p.name for p in run_dir.iterdir()} >= {"report.json", "report.md", "refusals.png"}
    report = json.loads((run_dir / "report.json").read_text())
    assert report["config"]["architecture"] == "gemma3" and report["config"]["layers"] == 18
    for name in ("harmful", "harmless"):
        s = report["sets"][name]
        assert s["prompts"] == len(s["samples"]) == 3
        assert s["refusals"] == sum(scalpel.is_refusal(x["answer"]) for x in s["samples"])
        assert 0 <= s["timing"]["ended_turn"] <= 3
    md = (run_dir / "report.md").read_text()
    assert "## Refusals" in md and "<start_of_turn>user" in md


def test_cli_convert_and_inspect(gemma3_path, tmp_path, capsys):
    assert cli.main(["inspect", str(gemma3_path)]) == 0
    out = capsys.readouterr().out
    assert "general.architecture" in out and "Q4_K" in out and "236 tensors" in out
    assert cli.main(["convert", str(gemma3_path), str(tmp_path / "hf")]) == 0
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["torch_dtype"] == "bfloat16"
    # transformers loads the bfloat16 directory; it agrees with scalpel's float32 model on the argmax
    import torch
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.dtype == torch.bfloat16
    ours = scalpel.load(str(gemma3_path))
    ids = torch.tensor([ours.tokenizer.encode("Once upon a time, in a small village by the sea, there lived")])
    with torch.no_grad():
        agree = (hf(ids).logits.float().argmax(-1) == ours(ids).argmax(-1)).float().mean().item()
    assert agree >= 0.8, agree
    assert cli.main(["convert", str(gemma3_path), str(tmp_path / "hf")]) == 2  # not empty: refused, clear error
    assert "not empty" in capsys.readouterr().err
