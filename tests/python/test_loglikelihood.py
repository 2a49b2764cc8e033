"""The log-likelihood engine against lm-evaluation-harness's own `hf` backend
(transformers) on the same weights: per-request log-likelihoods within 1e-3,
the same greedy flags and generations; and the scalpel_* tasks run through
lm_eval.simple_evaluate with ScalpelLM give lm-eval's hf numbers item by item.
The engine's own invariants (sharing, padding, cutting, rolling windows) are
tests/cpp/test_loglikelihood.cpp."""
from __future__ import annotations

import math

import pytest
import torch

import scalpel

TOL = 1e-3  # the bar, float32

# Contexts shared by several continuations, multi-token continuations, trailing
# spaces and newlines (they move into the continuation), an empty context (the
# prefix token) and a context that begins with BOS's own text.
REQUESTS = [
    ("Once upon a time, there was a little girl.", " She"),
    ("Once upon a time, there was a little girl.", " Her name was Lily and she liked to play"),
    ("Once upon a time, there was a little girl.", " The girl was sad."),
    ("The dog ran to the park ", "and played with a ball."),
    ("The dog ran to the park\n\n", "The end."),
    ("", "Once upon a time"),
    ("One day, Tim saw a big red", " ball in the sky. He was happy."),
    ("<|start_story|>Once upon a time", " there was a cat."),
]

DOCUMENTS = [
    "Once upon a time, there was a little dog. The dog liked to run and jump. One day, the dog found a "
    "big bone in the garden. He was very happy and showed it to his friend, the cat.",
    "Tom and Sue went to the beach. They built a sand castle.",
]


@pytest.fixture(scope="module")
def tiny(shared):
    return shared / "models" / "tinystories-656k"


def _instances(kind, args_list):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(args_list)]


def _tokenizer(path):
    """The `tokenizers` library's reading of tokenizer.json (scalpel's tokenizer oracle). transformers 5
    rebuilds TinyStories' tokenizer as a LlamaTokenizer that drops characters outside the vocabulary
    ("(" becomes nothing instead of <unk>), so AutoTokenizer would test that difference, not the engine."""
    import transformers

    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"), bos_token="<|start_story|>",
                                                eos_token="<|end_story|>", unk_token="<unk>")


def _hflm(path_or_model, tokenizer=None, **kw):
    from lm_eval.models.huggingface import HFLM

    if tokenizer is None:
        return HFLM(pretrained=str(path_or_model), tokenizer=_tokenizer(path_or_model), dtype="float32", batch_size=4,
                    device="cpu", **kw)
    return HFLM(pretrained=path_or_model, tokenizer=tokenizer, batch_size=4, device="cpu", **kw)


@pytest.mark.oracle
def test_loglikelihood_matches_lm_eval_hf(tiny):
    from scalpel.lm_eval import ScalpelLM

    hf = _hflm(tiny)
    ours = ScalpelLM(pretrained=str(tiny), batch_size=3)
    unshared = ScalpelLM(pretrained=str(tiny), batch_size=2, share_context=False)
    want = hf.loglikelihood(_instances("loglikelihood", REQUESTS))
    for lm in (ours, unshared):
        got = lm.loglikelihood(_instances("loglikelihood", REQUESTS))
        for (r, (g, gg), (w, wg)) in zip(REQUESTS, got, want):
            assert abs(g - w) < TOL, (r, g, w)
            assert gg == wg, r
    # The same token split as lm-eval's (it is what makes the numbers equal).
    tok = ours.tokenizer
    for ctx, cont in REQUESTS:
        req = scalpel.encode_request(tok, ctx, cont)
        if ctx:
            c, k = hf._encode_pair(ctx, cont)
        else:
            k = hf.tok_encode(cont, add_special_tokens=False)
            c = [hf.prefix_token_id]
        assert (list(req.context), list(req.continuation)) == (c, k), (ctx, cont)


@pytest.mark.oracle
def test_rolling_matches_lm_eval_hf_across_windows(tiny):
    from scalpel.lm_eval import ScalpelLM

    # max_length 16 cuts each document into several windows.
    hf = _hflm(tiny, max_length=16)
    ours = ScalpelLM(pretrained=str(tiny), batch_size=3, max_length=16)
    want = hf.loglikelihood_rolling(_instances("loglikelihood_rolling", [(d,) for d in DOCUMENTS]))
    got = ours.loglikelihood_rolling(_instances("loglikelihood_rolling", [(d,) for d in DOCUMENTS]))
    for g, w in zip(got, want):
        assert abs(g - w) < TOL * 10, (g, w)  # a sum over ~50 tokens
    # One window when it fits: the sum of forward()'s log-probabilities.
    model = ours.model
    ids = scalpel.encode_text(model.tokenizer, DOCUMENTS[1])
    seq = torch.tensor([[scalpel.prefix_token_id(model.tokenizer)] + ids])
    lp = torch.log_softmax(model.forward(seq)[0, :-1].double(), -1)
    direct = lp.gather(1, seq[0, 1:, None]).sum().item()
    assert abs(scalpel.loglikelihood_rolling(model, [DOCUMENTS[1]])[0] - direct) < 1e-4


@pytest.mark.oracle
def test_generate_until_matches_lm_eval_hf(tiny):
    from scalpel.lm_eval import ScalpelLM

    hf = _hflm(tiny)
    ours = ScalpelLM(pretrained=str(tiny), batch_size=2)
    reqs = [("Once upon a time, there was a", {"until": ["."], "max_gen_toks": 24, "do_sample": False}),
            ("Tom and Sue went to the", {"until": ["\n", " park"], "max_gen_toks": 12}),
            ("The cat", {"until": ["zzz"], "max_gen_toks": 8})]
    want = hf.generate_until(_instances("generate_until", reqs))
    got = ours.generate_until(_instances("generate_until", reqs))
    assert got == want
    assert all("." not in g for g in got[:1]) and len(got[2]) > 0
    with pytest.raises(NotImplementedError, match="greedy"):
        ours.generate_until(_instances("generate_until", [("The", {"do_sample": True, "temperature": 0.7})]))


def _per_item(results, task):
    """(doc_id, [loglikelihood per choice]) of a simple_evaluate run with log_samples."""
    return {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in results["samples"][task]}


def _evaluate(lm, tasks, limit, shared, **kw):
    import lm_eval
    from scalpel.lm_eval import task_manager

    return lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=limit, log_samples=True,
                                   task_manager=task_manager(shared / "data"), bootstrap_iters=0, **kw)


def _compare(ours, theirs, task, tol=TOL):
    a, b = _per_item(ours, task), _per_item(theirs, task)
    assert a.keys() == b.keys() and a
    for doc, lls in a.items():
        assert len(lls) == len(b[doc])
        for x, y in zip(lls, b[doc]):
            assert abs(x - y) < tol, (task, doc, x, y)
        # The same answer, unless its two best choices are within 2e-3.
        best = sorted(b[doc], reverse=True)
        if len(best) < 2 or best[0] - best[1] > 2e-3:
            assert max(range(len(lls)), key=lls.__getitem__) == max(range(len(lls)), key=b[doc].__getitem__)


@pytest.mark.oracle
def test_tasks_through_simple_evaluate_match_hf(tiny, shared):
    from scalpel.lm_eval import ScalpelLM

    tasks = ["scalpel_hellaswag", "scalpel_mmlu_anatomy"]
    ours = _evaluate(ScalpelLM(pretrained=str(tiny), batch_size=8), tasks, 12, shared, num_fewshot=2)
    theirs = _evaluate(_hflm(tiny), tasks, 12, shared, num_fewshot=2)
    for t in tasks:
        _compare(ours, theirs, t)
        for metric in ("acc,none",):
            assert math.isclose(ours["results"][t][metric], theirs["results"][t][metric], abs_tol=1 / 12 + 1e-9)
    assert "acc_norm,none" in ours["results"]["scalpel_hellaswag"]
    # Zero-shot tasks with their own prompt (TruthfulQA's QA prompt; MC2's probability mass).
    tasks = ["scalpel_truthfulqa_mc1", "scalpel_truthfulqa_mc2"]
    ours = _evaluate(ScalpelLM(pretrained=str(tiny), batch_size=8), tasks, 6, shared)
    theirs = _evaluate(_hflm(tiny), tasks, 6, shared)
    for t in tasks:
        _compare(ours, theirs, t)
        assert abs(ours["results"][t]["acc,none"] - theirs["results"][t]["acc,none"]) < 1e-3
    truthful = ours
    # Whole pages over rolling windows (TinyStories' 512 positions: several windows per page).
    ours = _evaluate(ScalpelLM(pretrained=str(tiny), batch_size=8), ["scalpel_wikitext"], 2, shared)
    theirs = _evaluate(_hflm(tiny), ["scalpel_wikitext"], 2, shared)
    for metric in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none"):
        a, b = ours["results"]["scalpel_wikitext"][metric], theirs["results"]["scalpel_wikitext"][metric]
        assert abs(a - b) < 1e-4 * abs(b), (metric, a, b)
    sample = truthful["samples"]["scalpel_truthfulqa_mc1"][0]["arguments"][0][0]
    assert sample.startswith("Q: What is human life expectancy") and sample.endswith("\nA:")


@pytest.mark.oracle
def test_generation_tasks_match_hf(tiny, shared):
    from scalpel.lm_eval import ScalpelLM

    tasks = ["scalpel_gsm8k_cot", "scalpel_bbh_boolean_expressions", "scalpel_bbh_word_sorting"]
    ours = _evaluate(ScalpelLM(pretrained=str(tiny), batch_size=4), tasks, 3, shared, num_fewshot=2)
    theirs = _evaluate(_hflm(tiny), tasks, 3, shared, num_fewshot=2)
    for task in tasks:
        a = {s["doc_id"]: s["resps"][0][0] for s in ours["samples"][task]}
        b = {s["doc_id"]: s["resps"][0][0] for s in theirs["samples"][task]}
        assert a == b and all(isinstance(t, str) for t in a.values()), task
        for key, value in theirs["results"][task].items():
            if key.startswith("exact_match,"):
                assert ours["results"][task][key] == value, (task, key)


@pytest.mark.oracle
def test_bbh_chain_of_thought_task_loads(shared):
    # Its 1024 generated tokens do not fit TinyStories' 512 positions (lm-eval's hf refuses it too), so
    # only the task is checked here: the prompt, the exemplars and the answer filter.
    from scalpel.lm_eval import task_manager

    task = task_manager(shared / "data").load(["scalpel_bbh_cot_navigate"])["tasks"]["scalpel_bbh_cot_navigate"]
    doc = task.test_docs()[0]
    assert task.doc_to_text(doc).endswith("A: Let's think step by step.\n")
    assert task.config.generation_kwargs["max_gen_toks"] == 1024
    samples = task.config.fewshot_config.samples
    assert len(samples) == 3 and "So the answer is" in samples[0]["target"]
    assert [f["name"] for f in task.config.filter_list] == ["get-answer"]


@pytest.mark.oracle
def test_lm_eval_command_line_knows_scalpel(tiny, shared, tmp_path, monkeypatch):
    from scalpel.cli import main

    monkeypatch.setenv("SCALPEL_DATA", str(shared / "data"))
    rc = main(["lm-eval", "run", "--model", "scalpel", "--model_args", f"pretrained={tiny},batch_size=4",
               "--tasks", "scalpel_mmlu_anatomy", "--limit", "2", "--num_fewshot", "1",
               "--output_path", str(tmp_path)])
    assert rc == 0
    results = list(tmp_path.rglob("results_*.json"))
    assert results, list(tmp_path.rglob("*"))
    import json

    res = json.loads(results[0].read_text())
    assert "acc,none" in res["results"]["scalpel_mmlu_anatomy"]


@pytest.mark.oracle
def test_scalpel_eval_cli_runs_tasks(tiny, shared, tmp_path):
    from scalpel.cli import main

    rc = main(["eval", "--model", str(tiny), "--tasks", "scalpel_mmlu_anatomy,scalpel_truthfulqa_mc2", "--limit", "3",
               "--num-fewshot", "0", "--bootstrap", "0", "--data", str(shared / "data"), "--out", str(tmp_path)])
    assert rc == 0
    import json

    res = json.loads((tmp_path / "eval.json").read_text())
    assert set(res["results"]) == {"scalpel_mmlu_anatomy", "scalpel_truthfulqa_mc2"}
    assert "scalpel_mmlu_anatomy" in (tmp_path / "eval.md").read_text()


@pytest.mark.e2e
def test_gemma_items_match_hf(gemma3_path, gemma3_hf, gemma3_hf_tokenizer, shared):
    from scalpel.lm_eval import ScalpelLM

    ours_lm = ScalpelLM(pretrained="gemma3-270m", batch_size=8)
    theirs_lm = _hflm(gemma3_hf, gemma3_hf_tokenizer)
    tasks = ["scalpel_hellaswag", "scalpel_mmlu_high_school_geography"]
    ours = _evaluate(ours_lm, tasks, 8, shared, num_fewshot=1)
    theirs = _evaluate(theirs_lm, tasks, 8, shared, num_fewshot=1)
    for t in tasks:
        _compare(ours, theirs, t)
    ours = _evaluate(ours_lm, ["scalpel_truthfulqa_mc2"], 5, shared)
    theirs = _evaluate(theirs_lm, ["scalpel_truthfulqa_mc2"], 5, shared)
    _compare(ours, theirs, "scalpel_truthfulqa_mc2")


@pytest.mark.unit
def test_bad_data_names_file_and_line(tmp_path, monkeypatch):
    from scalpel.tasks import sources  # plain module: no lm-eval needed to read data

    (tmp_path / "hellaswag").mkdir()
    f = tmp_path / "hellaswag" / "hellaswag_val_full.txt"
    f.write_text("A: b\n7\nx\ny\nz\nw\n")
    with pytest.raises(scalpel.FormatError, match=r"hellaswag_val_full.txt:2: expected the gold ending index"):
        sources.hellaswag(data_dir=str(tmp_path))
    f.write_text("A: b\n1\nx\ny\n")
    with pytest.raises(scalpel.FormatError, match="6 lines per item"):
        sources.hellaswag(data_dir=str(tmp_path))
    (tmp_path / "mmlu" / "dev").mkdir(parents=True)
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    (tmp_path / "mmlu" / "dev" / "x_dev.csv").write_text('q,a,b,c,d,A\n"q2",a,b,c,d,E\n')
    (tmp_path / "mmlu" / "test" / "x_test.csv").write_text("q,a,b,c,d,A\n")
    with pytest.raises(scalpel.FormatError, match=r"x_dev.csv:2: expected the answer letter"):
        sources.mmlu(subject="x", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="y_dev.csv"):
        sources.mmlu(subject="y", data_dir=str(tmp_path))
    monkeypatch.delenv("SCALPEL_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="SCALPEL_DATA"):
        sources.hellaswag()


@pytest.mark.unit
def test_engine_python_api(tiny):
    model = scalpel.load(str(tiny))
    tok = model.tokenizer
    res = scalpel.loglikelihood(model, REQUESTS[:3], scalpel.LoglikelihoodOptions(batch_size=2, progress=False))
    lp, greedy = res[0]
    assert lp < 0 and isinstance(greedy, bool)
    reqs = [scalpel.encode_request(tok, c, k) for c, k in REQUESTS[:3]]
    again = scalpel.loglikelihood_tokens(model, reqs)
    assert [r.logprob for r in again] == pytest.approx([r.logprob for r in res], abs=1e-5)
    with pytest.raises(ValueError, match="at least one token"):
        scalpel.loglikelihood_tokens(model, [scalpel.TokenRequest([], [5])])
    # KV cache from Python: continuing rows equals running them whole.
    ids = torch.tensor([tok.encode("Once upon a time there was a dog")])
    whole = model.final_residual(ids)
    first, cache = model.final_residual(ids[:, :4], return_cache=True)
    rest = model.final_residual(ids[:, 4:], past=cache)
    assert torch.allclose(torch.cat([first, rest], 1), whole, atol=1e-5)
    assert torch.allclose(model.unembed(whole), model.forward(ids), atol=1e-5)
    # A Python stop_when ends a row of generate().
    opts = scalpel.GenerateOptions()
    opts.max_new_tokens = 10
    opts.stop_when = lambda row, ids: len(ids) >= 3
    assert opts.stop_when
    assert [len(t) for t in model.generate([ids[0].tolist()], opts).new_tokens] == [3]
    # generate_until stops at a stop string (and cuts before it).
    out = scalpel.generate_until(model, ["Once upon a time"], scalpel.GenerateUntilOptions(until=[","], max_gen_toks=30))
    assert "," not in out[0]
