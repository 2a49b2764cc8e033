"""Harm probes and gated interventions: the probe equal to scikit-learn's logistic regression at
the same penalty, auroc equal to scikit-learn's, a gate that acts per example through generation
(held from the prompt pass), the file round trip, and the exports that cannot carry a gate."""
from __future__ import annotations

import json

import pytest
import torch

import scalpel
from parity_util import TINY_LLAMA

LLAMA = TINY_LLAMA


def _model(seed: int = 0) -> scalpel.Transformer:
    return scalpel.Transformer.from_config(json.dumps(LLAMA), seed=seed, init_std=0.2)


def _prompts(n: int, seed: int, last: int | None = None) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = [torch.randint(10, 97, (6,), generator=g).tolist() for _ in range(n)]
    return [p[:-1] + [last] for p in out] if last is not None else out


@pytest.mark.oracle
def test_the_probe_equals_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    m = _model()
    harmful, benign = _prompts(20, 1), _prompts(24, 2)
    hook = "blocks.2.hook_resid_pre"
    probe = scalpel.HarmProbe.fit(m, hook, harmful, benign, l2=0.05)
    acts = scalpel.collect_activations(m, harmful + benign, [hook], [-1])[:, 0, 0].double().numpy()
    y = [1] * 20 + [0] * 24
    scaler = StandardScaler().fit(acts)
    ref = LogisticRegression(C=1.0 / (0.05 * len(y)), tol=1e-12, max_iter=10000).fit(scaler.transform(acts), y)
    test = _prompts(10, 3)
    want = ref.predict_proba(scaler.transform(
        scalpel.collect_activations(m, test, [hook], [-1])[:, 0, 0].double().numpy()))[:, 1]
    got = probe.predict(m, test).double().numpy()
    assert abs(got - want).max() < 1e-4, (got, want)


@pytest.mark.oracle
def test_auroc_equals_scikit_learns_with_ties():
    from sklearn.metrics import roc_auc_score
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (200,), generator=g).double()  # many ties
    labels = (torch.rand(200, generator=g) < 0.4).long()
    assert abs(scalpel.auroc(scores, labels) - roc_auc_score(labels.numpy(), scores.numpy())) < 1e-12
    with pytest.raises(ValueError, match="both classes"):
        scalpel.auroc(scores, torch.zeros(200))


@pytest.mark.unit
def test_a_threshold_gate_acts_per_example_through_generation(tmp_path):
    m = _model()
    harmful, benign = _prompts(12, 1, last=5), _prompts(12, 2, last=6)
    probe = scalpel.HarmProbe.fit(m, "blocks.0.hook_resid_pre", harmful, benign)
    sv = scalpel.SteeringVector.create(m, ["blocks.1.hook_resid_post"])
    sv.vectors = [torch.randn(32, generator=torch.Generator().manual_seed(4)) * 4]
    g = scalpel.GatedIntervention.create(m, sv, probe, mode="threshold")
    prompts = [_prompts(1, 7, last=5)[0], _prompts(1, 8, last=6)[0]]
    opts = scalpel.GenerateOptions()
    opts.max_new_tokens = 8
    plain = m.generate(prompts, opts).tokens
    with sv.attach(m):
        steered = m.generate(prompts, opts).tokens
    with g.attach(m):
        gated = m.generate(prompts, opts).tokens
    assert torch.equal(gated[1], plain[1])      # benign: the gate stays closed on every generated token
    assert torch.equal(gated[0], steered[0])    # harmful: full strength, held after the prompt pass
    assert not torch.equal(steered[0], plain[0])
    assert g.gate_values(m, prompts).tolist() == [1.0, 0.0]
    scalpel.save_intervention(g, str(tmp_path / "g.safetensors"))
    back = scalpel.load_intervention(str(tmp_path / "g.safetensors"))
    assert isinstance(back, scalpel.GatedIntervention) and isinstance(back.inner, scalpel.SteeringVector)
    with back.attach(m):
        assert torch.equal(m.generate(prompts, opts).tokens, gated)
    with pytest.raises(ValueError, match="gated.inner"):
        scalpel.export_control_vector(m, g, str(tmp_path / "x.gguf"))
    cb = scalpel.CircuitBreaker.create(m, ["blocks.1.mlp.hook_post"], rank=2)
    gb = scalpel.GatedIntervention.create(m, cb, probe)
    with pytest.raises(ValueError, match="gated.inner"):
        scalpel.export_peft(m, gb, str(tmp_path / "peft"))
    late = scalpel.HarmProbe("blocks.2.hook_resid_post", probe.weight, probe.bias)
    with pytest.raises(ValueError, match="probe an earlier layer"):
        scalpel.GatedIntervention.create(m, sv, late)


@pytest.mark.unit
def test_a_gate_scales_a_breaker_per_example_and_learns_where_to_open():
    m = _model()
    harmful, benign = _prompts(12, 1, last=5), _prompts(12, 2, last=6)
    probe = scalpel.HarmProbe.fit(m, "blocks.0.hook_resid_pre", harmful, benign)
    cb = scalpel.CircuitBreaker.create(m, ["blocks.1.mlp.hook_post"], rank=2)
    g = torch.Generator().manual_seed(1)
    cb.adapters[0].B = torch.randn(cb.adapters[0].B.shape, generator=g)
    gb = scalpel.GatedIntervention.create(m, cb, probe, mode="threshold")
    t = torch.tensor([harmful[0], benign[0]])
    base = m(t)
    with cb.attach(m):
        full = m(t)
    with gb.attach(m, 0.5):                       # the strength is the breaker's δ
        half = m(t)
    assert torch.equal(half[1], base[1])
    with cb.attach(m, 0.5):
        assert (half[0] - m(t)[0]).abs().max() < 1e-5
    assert (full[0] - half[0]).abs().max() > 1e-3
    # learned: open on harmful rows (the harm term), closed on benign preserve text (the KL term)
    data = scalpel.BreakerData(harmful, [[1]] * 12, [[40]] * 12, benign)
    cb2 = scalpel.CircuitBreaker.create(m, ["blocks.1.mlp.hook_post"], rank=2)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.warmup_steps = 40, 12, 0.05, 2
    scalpel.train_breaker(m, cb2, data, scalpel.BreakerObjective(preserve="none"), o)
    sg = scalpel.GatedIntervention.create(m, cb2, probe, w=0.0, b=0.0)
    o.steps, o.lr = 60, 0.3
    scalpel.train_gate(m, sg, data, scalpel.BreakerObjective(lambda_preserve=10.0), o)
    on, off = float(sg.gate_values(m, _prompts(6, 3, last=5)).mean()), float(sg.gate_values(m, _prompts(6, 4, last=6)).mean())
    assert on > 0.5 and off < 0.2, (on, off)  # (the margin loss saturates once the harm is gone: "open enough")
