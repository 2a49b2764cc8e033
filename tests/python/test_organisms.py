"""Model organisms with known ground truth (docs/organisms.md): built by their recipes with
scalpel's training code, then checked — behaviour, ground truth from attention patterns alone,
and recovery of that ground truth by causal tracing."""
from __future__ import annotations

import math
import random

import pytest
import torch

import scalpel
from scalpel import organisms

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def induction():
    path = organisms.build("induction")
    return path, scalpel.load(str(path))


def _pairs(n=8, span=20, seed=99, vocab=256):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = [rng.randrange(1, vocab) for _ in range(span)]
        other = [rng.randrange(1, vocab) for _ in range(span)]
        clean, corrupted = torch.tensor([[0] + s + s]), torch.tensor([[0] + other + s])
        target = clean[0, span + 1:]

        def metric(logits, target=target, span=span):  # mean log-prob of the repeated half
            lp = logits[:, span:2 * span].log_softmax(-1)
            return lp.gather(-1, target.expand(logits.shape[0], -1).unsqueeze(-1)).squeeze(-1).mean(-1)
        out.append((clean, corrupted, metric))
    return out


def test_induction_organism_copies_the_repeated_half(induction):
    path, model = induction
    seqs = torch.tensor(organisms.induction_data(64, 20, 4321))
    logp = model(seqs).log_softmax(-1)[:, :-1].gather(-1, seqs[:, 1:, None]).squeeze(-1)
    first, second = -logp[:, :20].mean().item(), -logp[:, 20:].mean().item()
    print(f"loss: first half {first:.3f} (uniform {math.log(255):.3f}), repeated half {second:.3f}")
    assert first > 4.5 and second < 0.5
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        assert (hf(seqs[:4]).logits - model(seqs[:4])).abs().max().item() < 1e-4
    mlp = [p for n, p in model.named_parameters() if ".mlp.down_proj" in n]
    assert mlp and all(torch.count_nonzero(p) == 0 for p in mlp)  # attention only


def test_tracing_recovers_the_heads_the_attention_patterns_name(induction):
    _, model = induction
    prev, ind = organisms.induction_scores(model)
    P = {(l, h) for l in range(2) for h in range(4) if prev[l, h] >= 0.5}
    I = {(l, h) for l in range(2) for h in range(4) if ind[l, h] >= 0.5}
    print("previous-token scores", prev.numpy().round(2).tolist(), "induction scores", ind.numpy().round(2).tolist())
    assert P and all(l == 0 for l, _ in P) and I and all(l == 1 for l, _ in I)

    def top(scores, k):
        flat = scores.flatten().argsort(descending=True)[:k]
        return {(int(i) // 4, int(i) % 4) for i in flat}

    den, den_atp, noi = 0, 0, 0
    for clean, corrupted, metric in _pairs():
        e = scalpel.patch_sweep(model, clean, corrupted, metric, component="z", per_position=False)
        a = scalpel.attribution_patch(model, clean, corrupted, metric, component="z", per_position=False)
        n = scalpel.patch_sweep(model, corrupted, clean, metric, component="z", per_position=False)
        den = den + (e.scores - e.target_score) / (e.source_score - e.target_score)
        den_atp = den_atp + (a.scores - a.target_score) / (e.source_score - e.target_score)
        noi = noi + (n.scores - n.target_score) / (n.source_score - n.target_score)
    # denoising (clean -> corrupted first half): the induction heads, exact and by attribution
    assert top(den, len(I)) == I
    assert top(den_atp, len(I)) == I
    # noising (corrupted -> clean): the previous-token heads they depend on
    assert top(noi, len(P)) == P


@pytest.fixture(scope="module")
def refusal(shared):
    path = organisms.build("refusal")
    return path, scalpel.load(str(path))


def test_refusal_organism_refuses_harm_in_any_style_and_keeps_its_skills(refusal):
    path, model = refusal
    b = organisms.refusal_behaviour(model)
    print(b)
    # held-out templates, and the minority style of each side
    assert b["harmful_questions_refused"] >= 0.9 and b["harmful_commands_refused"] >= 0.9
    assert b["harmless_commands_refused"] <= 0.1 and b["harmless_questions_refused"] <= 0.1
    assert min(b["sum_accuracy"], b["count_accuracy"], b["copy_accuracy"]) >= 0.9
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = torch.tensor([model.tokenizer.encode(organisms.chat_prompt("How can I hurt the dog?"))])
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max().item() < 1e-4


def test_refusal_organism_plants_the_style_confound(refusal):
    # the harmful - harmless mean difference of the training distribution (harmful mostly commands)
    # points along command - question style; balancing the styles removes it
    _, model = refusal
    r = organisms.REFUSAL
    tok = model.tokenizer
    name = "blocks.1.hook_resid_post"

    def mean(reqs):
        out = [model.run_with_cache(torch.tensor([tok.encode(organisms.chat_prompt(q))]), [name])[1][name][0, -1]
               for q in reqs]
        return torch.stack(out).mean(0)

    data = organisms.refusal_data(r)[:400]
    dirty = mean([q for k, q, _ in data if k == "harmful"]) - mean([q for k, q, _ in data if k == "harmless"])
    fmt = lambda tpls, xs: [t.format(x=x) for t in tpls for x in xs]  # noqa: E731
    style = mean(fmt(r["commands"], r["harmless"])) - mean(fmt(r["questions"], r["harmless"]))
    balanced = (mean(fmt(r["commands"] + r["questions"], r["harmful"]))
                - mean(fmt(r["commands"] + r["questions"], r["harmless"])))
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=0).item()  # noqa: E731
    print(f"cos(dirty, style) {cos(dirty, style):.3f}, cos(balanced, style) {cos(balanced, style):.3f}")
    assert cos(dirty, style) > 0.5 and abs(cos(balanced, style)) < 0.3
