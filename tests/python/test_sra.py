"""Directions, concept atoms, ridge residualization and direction edits: ridge and GCV against a
closed-form NumPy computation, the weight edit against the inference-time ablation, the exported
directory against transformers, and SRA against the refusal organism's planted confound."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import transformers

import scalpel
from parity_util import random_hf_model
from scalpel import sra


CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=32, intermediate_size=48,
              num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, vocab_size=60,
              max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False, torch_dtype="float32")


def _model(**over):
    return scalpel.Transformer.from_config(json.dumps({**CONFIG, **over}), seed=3, init_std=0.2)


def _prompts(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 60, (int(k),), generator=g).tolist() for k in torch.randint(4, 11, (n,), generator=g)]


# ----------------------------------------------------------------- ridge ----

def _numpy_ridge(v, A, lam):
    """Closed form with atoms as rows: clean = v − Aᵀ(AAᵀ + λI)⁻¹Av."""
    beta = np.linalg.solve(A @ A.T + lam * np.eye(A.shape[0]), A @ v)
    return v - A.T @ beta, beta


@pytest.mark.unit
def test_ridge_matches_numpy_closed_form():
    rng = np.random.default_rng(0)
    v, A = rng.normal(size=64), rng.normal(size=(6, 64))
    for lam in (0.0, 0.3, 12.0):
        r = scalpel.ridge_residualize(torch.tensor(v), torch.tensor(A), lam)
        clean, beta = _numpy_ridge(v, A, lam)
        assert np.abs(r.clean.numpy() - clean).max() < 1e-6
        assert np.abs(np.array(r.coefficients) - beta).max() < 1e-6
        assert r.explained == pytest.approx(1 - clean @ clean / (v @ v), abs=1e-9)
        assert r.cosine == pytest.approx(clean @ v / np.linalg.norm(clean) / np.linalg.norm(v), abs=1e-9)
    # λ = 0 with k < d is least squares: the residual is orthogonal to every atom
    r0 = scalpel.ridge_residualize(torch.tensor(v), torch.tensor(A), 0.0)
    assert np.abs(A @ r0.clean.numpy()).max() < 1e-9


@pytest.mark.unit
def test_ridge_gcv_picks_the_numpy_gcv_minimum():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 40))
    v = A.T @ np.array([1.0, -0.5, 0.2, 0.0]) + 0.3 * rng.normal(size=40)
    r = scalpel.ridge_residualize(torch.tensor(v), torch.tensor(A), -1.0, 30)
    d = v.size
    scores = []
    for lam in r.gcv_lambdas:
        H = A.T @ np.linalg.solve(A @ A.T + lam * np.eye(4), A)
        res = v - H @ v
        scores.append(res @ res / d / (1 - np.trace(H) / d) ** 2)
    assert np.allclose(scores, r.gcv_scores, rtol=1e-6)
    assert r.lambda_ == r.gcv_lambdas[int(np.argmin(scores))]
    clean, _ = _numpy_ridge(v, A, r.lambda_)
    assert np.abs(r.clean.numpy() - clean).max() < 1e-6


@pytest.mark.unit
def test_ridge_and_audit_reject_bad_input():
    with pytest.raises(ValueError, match=r"atoms as rows, \[k, 8\]"):
        scalpel.ridge_residualize(torch.zeros(8), torch.zeros(3, 7))
    with pytest.raises(ValueError, match="finite"):
        scalpel.ridge_residualize(torch.full((4,), float("nan")), torch.ones(1, 4), 1.0)
    a = torch.tensor([[1.0, 0, 0], [0.99, 0.1, 0], [0, 0, 1]])
    audit = scalpel.audit_directions(a)
    u = (a / a.norm(dim=1, keepdim=True)).numpy()
    assert np.allclose(audit.cosines.numpy(), u @ u.T, atol=1e-6)
    assert audit.condition_number == pytest.approx(np.linalg.cond(u), rel=1e-6)
    assert audit.collinear == [(0, 1)]


@pytest.mark.unit
def test_mean_difference_and_pca_against_numpy():
    rng = np.random.default_rng(2)
    pos = rng.normal(size=(20, 2, 8)) + np.array([3.0] + [0] * 7)
    neg = rng.normal(size=(30, 2, 8))
    md = scalpel.mean_difference(torch.tensor(pos), torch.tensor(neg)).numpy()
    assert np.allclose(md, pos.mean(0) - neg.mean(0), atol=1e-5)
    pc = scalpel.pca_directions(torch.tensor(pos), torch.tensor(neg), 1)[0].numpy()
    for j in range(2):
        x = np.concatenate([pos[:, j], neg[:, j]])
        x = x - x.mean(0)
        top = np.linalg.svd(x, full_matrices=False)[2][0]
        top = top * np.sign(top @ md[j])
        assert np.allclose(pc[j], top, atol=1e-5)
        assert pc[j] @ md[j] > 0
    with pytest.raises(ValueError, match="equal trailing shapes"):
        scalpel.mean_difference(torch.zeros(3, 4), torch.zeros(3, 5))


# ------------------------------------------------------ activations, edits --

@pytest.mark.unit
def test_collect_activations_aligns_left_padded_prompts():
    m = _model()
    prompts = _prompts(6)
    names = ["blocks.1.hook_resid_pre", "blocks.2.hook_attn_out"]
    got = scalpel.collect_activations(m, prompts, names, [-1, -3, 0, 2], batch_size=4)
    assert got.shape == (6, 2, 4, 32)
    for i, p in enumerate(prompts):
        _, cache = m.run_with_cache(torch.tensor([p]), names)
        for j, n in enumerate(names):
            a = cache[n][0]
            want = torch.stack([a[len(p) - 1], a[len(p) - 3], a[0], a[2]])
            assert torch.allclose(got[i, j], want, atol=1e-5), (i, n)
    with pytest.raises(ValueError, match="inside every prompt"):
        scalpel.collect_activations(m, [[1, 2]], names, [-3])


@pytest.mark.unit
def test_stop_at_layer_returns_the_residual_stream_and_runs_no_later_hook():
    m = _model()
    tokens = torch.tensor(_prompts(3)[:1])
    logits, full = m.run_with_cache(tokens)
    for k in range(3):
        resid, cache = m.run_with_cache(tokens, stop_at_layer=k)
        # (hooking every point takes the unfused attention path: equal up to float rounding)
        assert torch.allclose(resid, full[f"blocks.{k}.hook_resid_pre"], atol=1e-5)
        assert all(n not in cache for n in full if n.startswith(tuple(f"blocks.{j}." for j in range(k, 3))))
        assert all(torch.allclose(cache[n], full[n], atol=1e-5) for n in cache)
    assert torch.allclose(m.run_with_cache(tokens, stop_at_layer=3)[0], logits, atol=1e-5)  # n_layers: the whole pass
    with pytest.raises(ValueError, match="stop_at_layer"):
        m.run_with_cache(tokens, stop_at_layer=4)
    # collect_activations stops after the last block it reads, with the same values
    prompts = _prompts(4)
    got = scalpel.collect_activations(m, prompts, ["blocks.0.hook_resid_post", "hook_embed"], [-1])
    for i, p in enumerate(prompts):
        _, c = m.run_with_cache(torch.tensor([p]))
        assert torch.allclose(got[i, 0, 0], c["blocks.0.hook_resid_post"][0, -1], atol=1e-5)
        assert torch.allclose(got[i, 1, 0], c["hook_embed"][0, -1], atol=1e-6)
    with pytest.raises(KeyError):
        scalpel.collect_activations(m, prompts, ["blocks.x.hook_resid_pre"], [-1])


@pytest.mark.unit
def test_ablation_leaves_no_component_along_the_direction():
    m = _model()
    v = torch.randn(32)
    u = v / v.norm()
    names = [f"blocks.{l}.hook_{c}" for l in range(3) for c in ("resid_pre", "resid_mid", "resid_post")]
    toks = torch.tensor([_prompts(1)[0]])
    _, before = m.run_with_cache(toks, names)
    with scalpel.ablate_direction(m, v):
        _, after = m.run_with_cache(toks, names)
    for n in names:
        assert (before[n] @ u).abs().max() > 1e-2  # there was a component
        assert (after[n] @ u).abs().max() < 1e-4, n
    _, again = m.run_with_cache(toks, names)  # the `with` block removed the hooks
    assert torch.equal(again[names[-1]], before[names[-1]])
    with pytest.raises(ValueError, match=r"a vector of shape \[32\]"):
        scalpel.ablate_direction(m, torch.zeros(31))
    with pytest.raises(ValueError, match="nonzero"):
        scalpel.ablate_direction(m, torch.zeros(32))


@pytest.mark.unit
def test_add_direction_shifts_the_residual_stream_by_alpha_v():
    m = _model()
    v = torch.randn(32)
    toks = torch.tensor([_prompts(1)[0]])
    _, before = m.run_with_cache(toks, ["blocks.1.hook_resid_pre"])
    with scalpel.add_direction(m, v, 2.5, 1, [-1]):
        _, after = m.run_with_cache(toks, ["blocks.1.hook_resid_pre"])
    d = after["blocks.1.hook_resid_pre"] - before["blocks.1.hook_resid_pre"]
    assert torch.allclose(d[0, -1], 2.5 * v / v.norm(), atol=1e-5)
    assert d[0, :-1].abs().max() < 1e-6


@pytest.mark.parametrize("gamma", [1.0, 0.5])
@pytest.mark.unit
def test_weight_edit_equals_inference_time_ablation(gamma):
    m = _model()
    v = torch.randn(32)
    prompts = _prompts(5)
    with scalpel.ablate_direction(m, v, gamma):
        hooked = scalpel.last_logits(m, prompts)
        full = m.forward(torch.tensor([prompts[0]]))
    edited = scalpel.orthogonalize_weights(m, v, gamma)
    assert edited == ["model.embed_tokens.weight"] + [f"model.layers.{l}.{w}" for l in range(3)
                                                      for w in ("self_attn.o_proj.weight", "mlp.down_proj.weight")]
    assert (scalpel.last_logits(m, prompts) - hooked).abs().max() < 1e-4
    assert (m.forward(torch.tensor([prompts[0]])) - full).abs().max() < 1e-4


@pytest.mark.unit
def test_weight_edit_from_a_layer_equals_ablation_from_that_layer():
    m = _model()
    v = torch.randn(32)
    prompts = _prompts(4)
    assert scalpel.residual_write_points(m, 2) == ["blocks.2.hook_attn_out", "blocks.2.hook_mlp_out"]
    with scalpel.ablate_direction(m, v, 1.0, 2):
        hooked = scalpel.last_logits(m, prompts)
    with scalpel.ablate_direction(m, v):
        everywhere = scalpel.last_logits(m, prompts)
    assert (hooked - everywhere).abs().max() > 1e-3  # the earlier writes matter
    assert scalpel.orthogonalize_weights(m, v, 1.0, 2) == ["model.layers.2.self_attn.o_proj.weight",
                                                          "model.layers.2.mlp.down_proj.weight"]
    assert (scalpel.last_logits(m, prompts) - hooked).abs().max() < 1e-4
    with pytest.raises(ValueError, match=r"from_layer: expected 0..2, got 3"):
        scalpel.ablate_direction(m, v, 1.0, 3)


@pytest.mark.oracle
def test_tied_embeddings_are_untied_before_the_embedding_is_edited(tmp_path):
    v = torch.randn(32)
    prompts = _prompts(4)
    m = _model(tie_word_embeddings=True)
    with pytest.raises(ValueError, match="tied embeddings.*untie_embeddings"):
        scalpel.orthogonalize_weights(m, v)
    with scalpel.ablate_direction(m, v):
        hooked = scalpel.last_logits(m, prompts)
    with scalpel.ablate_direction(m, v, 1.0, 1):
        hooked_from_1 = scalpel.last_logits(m, prompts)
    assert "lm_head.weight" not in dict(m.named_parameters())
    scalpel.orthogonalize_weights(m, v, 1.0, 1)  # the embedding is not edited: allowed while tied
    assert (scalpel.last_logits(m, prompts) - hooked_from_1).abs().max() < 1e-4
    m = _model(tie_word_embeddings=True)
    assert m.untie_embeddings() and not m.untie_embeddings()
    assert torch.equal(dict(m.named_parameters())["lm_head.weight"], dict(m.named_parameters())["model.embed_tokens.weight"])
    scalpel.orthogonalize_weights(m, v)
    assert (scalpel.last_logits(m, prompts) - hooked).abs().max() < 1e-4
    # the export of a tied source is untied and equals the hooked model in transformers
    src = tmp_path / "tied"
    _model(tie_word_embeddings=True).save_pretrained(str(src))
    assert json.loads((src / "config.json").read_text())["tie_word_embeddings"] is True
    out = sra.export_ablated(src, tmp_path / "edited", v)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    with torch.no_grad():
        want = torch.stack([hf(torch.tensor([p])).logits[0, -1] for p in prompts])
    assert (want - hooked).abs().max() < 1e-4


@pytest.mark.oracle
def test_exported_edit_loads_in_transformers_and_scalpel(tmp_path):
    src = tmp_path / "src"
    _model().save_pretrained(str(src))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    v = torch.randn(32)
    out = sra.export_ablated(src, tmp_path / "edited", v)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()} == before  # source untouched
    meta = json.loads((out / "scalpel_edit.json").read_text())
    assert meta["gamma"] == 1.0 and len(meta["direction"]) == 32
    prompts = _prompts(4)
    m = scalpel.load(str(src))
    with scalpel.ablate_direction(m, v):
        hooked = scalpel.last_logits(m, prompts)
    reloaded = scalpel.last_logits(scalpel.load(str(out)), prompts)
    assert (reloaded - hooked).abs().max() < 1e-4
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    with torch.no_grad():
        want = torch.stack([hf(torch.tensor([p])).logits[0, -1] for p in prompts])
    assert (want - reloaded).abs().max() < 1e-4
    with pytest.raises(Exception, match="exists|overwrite"):
        sra.export_ablated(src, out, v)
    # overwriting the source, or a directory that holds it, is refused (it would delete the source)
    for target in (src, tmp_path, str(src) + "/"):
        with pytest.raises(ValueError, match="not the source .* does not contain it"):
            sra.export_ablated(src, target, v, overwrite=True)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()} == before
    sra.export_ablated(src, str(out) + "/", v, gamma=0.5, overwrite=True)  # "dir/" is the directory dir
    assert json.loads((out / "scalpel_edit.json").read_text())["gamma"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited", "src"]  # no temporary left behind


@pytest.mark.unit
def test_first_token_kl_and_perplexity_against_torch():
    m = _model()
    prompts = _prompts(5)
    ref = scalpel.last_logits(m, prompts)
    for i, p in enumerate(prompts):
        assert torch.allclose(ref[i], m.forward(torch.tensor([p]))[0, -1], atol=1e-5)
    v = torch.randn(32)
    with scalpel.ablate_direction(m, v):
        kl = scalpel.first_token_kl(m, prompts, ref)
        q = scalpel.last_logits(m, prompts)
    want = torch.nn.functional.kl_div(q.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(kl, want, atol=1e-5)
    nll, n = 0.0, 0
    for p in prompts:
        lp = m.forward(torch.tensor([p]))[0].log_softmax(-1)
        nll -= lp[torch.arange(len(p) - 1), torch.tensor(p[1:])].sum().item()
        n += len(p) - 1
    assert scalpel.perplexity(m, prompts, 2) == pytest.approx(np.exp(nll / n), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 token"):
        scalpel.perplexity(m, [[1]])


@pytest.mark.oracle
def test_evaluation_sets_and_solution_perplexity_against_python_and_transformers(shared):
    """WikiText-2 windows are consecutive tokens of the text as Python reads it (universal
    newlines); GSM8K/MBPP rows are the files' first lines; the perplexity of a solution given its
    prompt equals transformers' masked negative log-likelihood on the same weights."""
    src = shared / "models" / "tinystories-656k"
    m = scalpel.load(str(src))
    tok = m.tokenizer
    data = sra.shared_data_dir()
    text = (data / "wikitext-2-raw" / "wiki.test.raw").read_text()
    ids = tok.encode(text[: 4 * 64 * 8])
    assert ids[0] == tok.encode("")[0]  # this tokenizer adds BOS: every window starts with it
    body = ids[1:]
    assert sra.wikitext2(tok, n=4, seq_len=64) == [ids[:1] + body[i * 64:(i + 1) * 64] for i in range(4)]
    rows = [json.loads(x) for x in (data / "gsm8k" / "test.jsonl").read_text().splitlines()[:3]]
    assert sra.gsm8k(3) == [(r["question"], r["answer"]) for r in rows]
    rows = [json.loads(x) for x in (data / "mbpp" / "mbpp.jsonl").read_text().splitlines()[:3]]
    assert sra.mbpp(3) == [(r["text"], r["code"]) for r in rows]
    with pytest.raises(FileNotFoundError, match="SCALPEL_DATA"):
        sra.gsm8k(3, data_dir=shared / "models")

    pairs = sra.gsm8k(3) + sra.mbpp(2)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(src), torch_dtype=torch.float32)
    nll, count = 0.0, 0
    for q, a in pairs:
        p, full = tok.encode(q), tok.encode(q + a)[:256]
        with torch.no_grad():
            lp = torch.log_softmax(hf(torch.tensor([full])).logits[0].double(), -1)
        nll -= sum(lp[t - 1, full[t]].item() for t in range(len(p), len(full)))
        count += len(full) - len(p)
    want = float(np.exp(nll / count))
    assert sra.solution_perplexity(m, pairs) == pytest.approx(want, rel=1e-4)
    assert sra.solution_perplexity(m, pairs, batch_size=1) == pytest.approx(want, rel=1e-4)


# --------------------------------------------------------------- registry --

@pytest.mark.unit
def test_default_registry_and_round_trip(tmp_path, shared):
    reg = sra.Registry.default_registry()
    assert reg.names(["shield"]) == ["math", "coding", "logic", "factual", "story"]
    assert reg.names(["confound"]) == ["imperative", "formal", "long", "polite", "list_format"]
    assert len(reg.atoms["imperative"].positive) == 36  # 3 templates × 12 fills
    m = scalpel.load(str(shared / "models" / "tinystories-656k"))
    fmt = lambda s: f"User: {s}\nAssistant: "  # noqa: E731
    small = sra.Registry([sra.Atom("a", "shield", ["Count to 3.", "What is 2 plus 2?"], ["Tell me a story.", "Hi."]),
                          sra.Atom("b", "confound", ["Tell me about dogs."], ["What about dogs?"])])
    small.extract(m, ["blocks.1.hook_resid_pre"], [-1, -2], fmt)
    enc = lambda ps: [m.tokenizer.encode(fmt(p)) for p in ps]  # noqa: E731
    want = (scalpel.collect_activations(m, enc(small.atoms["a"].positive), ["blocks.1.hook_resid_pre"], [-2]).mean(0)
            - scalpel.collect_activations(m, enc(small.atoms["a"].negative), ["blocks.1.hook_resid_pre"], [-2]).mean(0))
    assert torch.allclose(small.direction("a", "blocks.1.hook_resid_pre", -2), want[0, 0], atol=1e-5)
    small.save(tmp_path / "reg.json", {"model": "tinystories-656k"})
    back = sra.Registry.load(tmp_path / "reg.json")
    assert back.names() == ["a", "b"] and back.atoms["a"].positive == small.atoms["a"].positive
    assert torch.equal(back.direction("b", "blocks.1.hook_resid_pre", -1), small.direction("b", "blocks.1.hook_resid_pre", -1))
    audit = back.audit("blocks.1.hook_resid_pre", -1)
    assert audit["atoms"] == ["a", "b"] and audit["cosines"][0][0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(KeyError, match="extract"):
        back.direction("a", "blocks.0.hook_resid_pre", -1)
    with pytest.raises(ValueError, match="kind: expected one of"):
        sra.Atom("x", "shiled", ["a"], ["b"])
    (tmp_path / "bad.json").write_text(json.dumps({"format": "scalpel.atoms/1", "atoms": [{"name": "x", "kind": "shield"}]}))
    with pytest.raises(scalpel.FormatError, match=r"bad.json: atom entry 'x': missing positive, negative"):
        sra.Registry.load(tmp_path / "bad.json")


# -------------------------------------------------- truth: the organism ----

@pytest.mark.e2e
def test_sra_removes_refusal_with_less_damage_than_the_dirty_direction(shared):
    """The refusal organism's dirty direction carries its planted style confound: ablating it
    leaves harmful *questions* refused and needs a stronger γ (and then hurts harmless prompts);
    the SRA-cleaned direction removes refusal in both styles at γ = 1 with less KL."""
    from scalpel import organisms as O

    model = scalpel.load(str(O.build("refusal")))
    fmt = O.chat_prompt
    assert sra.post_instruction_positions(model, fmt)[-1] == -1
    data = O.refusal_data()
    harmful = [q for k, q, _ in data if k == "harmful"][:200]
    harmless = [q for k, q, _ in data if k == "harmless"][:200]
    site = ("blocks.1.hook_resid_mid", -1)
    cands = sra.candidate_directions(model, harmful, harmless, fmt, hooks=[site[0]], positions=[site[1]])
    dirty = cands.directions[0, 0]
    reg = O.refusal_registry()
    reg.extract(model, [site[0]], [site[1]], fmt)
    res = sra.surgical_direction(dirty, reg, *site)
    assert res.ridge.coefficients[0] > 0  # the style confound is part of the dirty direction
    E = O.refusal_eval()
    harm = [q for q, _ in E["harmful_questions"] + E["harmful_commands"]]
    safe = [q for q, _ in E["harmless_commands"] + E["harmless_questions"]]
    ref = scalpel.last_logits(model, [model.tokenizer.encode(fmt(p)) for p in safe])
    base = sra.evaluate(model, harm, safe, fmt, reference_logits=ref, max_new_tokens=8, judge=O.refusal_judge)
    assert base["refusal_rate"] == 1.0 and base["over_refusal"] == 0.0
    with scalpel.ablate_direction(model, dirty):
        d = sra.evaluate(model, harm, safe, fmt, reference_logits=ref, max_new_tokens=8, judge=O.refusal_judge)
    with scalpel.ablate_direction(model, res.clean):
        c = sra.evaluate(model, harm, safe, fmt, reference_logits=ref, max_new_tokens=8, judge=O.refusal_judge)
    assert c["refusal_rate"] <= 0.05 < d["refusal_rate"] < base["refusal_rate"]  # refusal falls for both
    assert c["over_refusal"] == 0.0 and c["first_token_kl"] < d["first_token_kl"]
    # At a matched refusal rate (dirty needs γ = 2) the dirty edit breaks harmless requests (they get
    # refused) and moves the shield skills' answers more than SRA does.
    shield = [model.tokenizer.encode(fmt(q)) for k in ("sum", "count", "copy") for q, _ in E[k]]
    ref_s = scalpel.last_logits(model, shield)
    with scalpel.ablate_direction(model, dirty, 2.0):
        d2 = sra.evaluate(model, harm, safe, fmt, reference_logits=ref, max_new_tokens=8, judge=O.refusal_judge)
        d2_shield = scalpel.first_token_kl(model, shield, ref_s).mean().item()
    with scalpel.ablate_direction(model, res.clean):
        c_shield = scalpel.first_token_kl(model, shield, ref_s).mean().item()
    assert d2["refusal_rate"] <= 0.05
    assert d2["over_refusal"] >= 0.25 > c["over_refusal"]
    assert d2_shield > 10 * c_shield


@pytest.mark.e2e
def test_eval_command_on_the_organism_with_an_exported_edit(tmp_path, shared):
    """`scalpel eval`: the hooked direction and the exported weights give the same numbers."""
    from scalpel import cli
    from scalpel import organisms as O

    src = O.build("refusal")
    v = torch.randn(128)
    out = sra.export_ablated(src, tmp_path / "edited", v)
    args = ["-n", "4", "--texts", "2", "--seq-len", "32", "--max-new-tokens", "6", "--organism"]
    assert cli.main(["eval", "--model", str(src), "--direction", str(out / "scalpel_edit.json"),
                     "--out", str(tmp_path / "a"), *args]) == 0
    assert cli.main(["eval", "--model", str(out), "--reference", str(src), "--out", str(tmp_path / "b"), *args]) == 0
    a = json.loads((tmp_path / "a" / "eval.json").read_text())
    b = json.loads((tmp_path / "b" / "eval.json").read_text())
    for k in ("refusal_rate", "over_refusal", "first_token_kl", "perplexity", "gsm8k_perplexity", "mbpp_perplexity"):
        assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-5), k
    assert a["first_token_kl"] > 0 and (tmp_path / "a" / "eval.md").read_text().startswith("# scalpel eval")
    assert cli.main(["eval", "--model", str(src), "--direction", str(tmp_path / "missing.json"), *args]) == 2


@pytest.mark.e2e
def test_sra_example_writes_its_report(tmp_path, shared):
    """examples/sra_refusal_organism.py --quick: the report, its plots, and the issue's numbers."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(repo / "examples" / "sra_refusal_organism.py"), "--quick", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    for png in ("gamma_sweep", "lambda_sweep", "sites", "leave_one_out", "selection_bypass", "atoms_cosine"):
        assert (tmp_path / f"{png}.png").stat().st_size > 5000
    sra_row = next(x for x in rep["comparison"] if x["edit"] == "SRA (organism atoms)")
    assert sra_row["refusal_rate"] <= 0.05
    assert rep["matched"]["kl_ratio"] >= 5
    assert rep["export"]["max_abs_diff_vs_hooks"] < 1e-4 and rep["export"]["max_abs_diff_transformers"] < 1e-4
    assert "## Leave one atom out" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("name", ["qwen2.5-0.5b-instruct", "mistral-7b-instruct-v0.3", "phi-3-mini-128k-instruct"])
@pytest.mark.oracle
def test_post_instruction_positions_and_refusal_tokens_match_hf(shared, name):
    """The template tokens after the instruction, and the refusal phrases' first tokens, against
    transformers' tokenizer and chat template."""
    path = shared / "tokenizers" / name
    tok = scalpel.Tokenizer.from_file(str(path))
    model = tok  # the prompt functions take a model or its tokenizer
    fmt = sra.chat_formatter(model)
    hf = transformers.AutoTokenizer.from_pretrained(str(path))
    probe = "Tell me a story about a dog."
    full = hf.apply_chat_template([{"role": "user", "content": probe}], add_generation_prompt=True, tokenize=False)
    assert fmt(probe) == full
    ids = hf(full, add_special_tokens=False)["input_ids"]
    cut = full.rindex(probe) + len(probe)
    n = len(ids) - len(hf(full[:cut], add_special_tokens=False)["input_ids"])
    assert sra.post_instruction_positions(model, fmt, probe) == list(range(-n, 0))
    assert n >= 2  # every one of these templates has an end-of-turn and an assistant header
    got = sra.refusal_tokens(model, fmt, phrases=("I cannot",))
    want = hf(full + "I cannot", add_special_tokens=False)["input_ids"][len(ids)]
    assert got == [want]


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "phi3"])
def test_weight_edit_equals_ablation_on_every_structure(arch, tmp_path):
    """orthogonalize_weights reads the residual writers from the model's structure: GPT-2's Conv1D
    (transposed at load), GPT-NeoX's parallel residual with biases, Phi-3's fused projections."""
    # Untied heads: a tied GPT-2 directory resolves its head to the embedding as a second view of the
    # same data, which the model does not yet recognise as tied (a known issue, left for #14).
    cfg = {"gpt2": lambda: transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=120, n_positions=64,
                                                   tie_word_embeddings=False),
           "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                                          num_attention_heads=4, vocab_size=120,
                                                          max_position_embeddings=64, rotary_pct=0.25),
           "phi3": lambda: transformers.Phi3Config(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                                   num_attention_heads=4, num_key_value_heads=4, vocab_size=120,
                                                   max_position_embeddings=64, pad_token_id=0)}[arch]()
    random_hf_model(cfg, tmp_path)
    m = scalpel.load(str(tmp_path))
    v = torch.randn(32)
    prompts = [[int(t) for t in torch.randint(0, 120, (7,), generator=torch.Generator().manual_seed(i))] for i in range(4)]
    if m.tied_embeddings:
        assert m.untie_embeddings()
    base = scalpel.last_logits(m, prompts)
    with scalpel.ablate_direction(m, v):
        hooked = scalpel.last_logits(m, prompts)
    assert (hooked - base).abs().max() > 1e-3  # the ablation moves the logits
    writers = [w.name for w in m.residual_writers()]
    assert len(writers) == (2 if arch == "gpt2" else 1) + 2 * 2 * (2 if arch != "phi3" else 1)
    edited = scalpel.orthogonalize_weights(m, v)
    assert edited == writers
    assert (scalpel.last_logits(m, prompts) - hooked).abs().max() < 1e-4
