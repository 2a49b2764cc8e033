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
