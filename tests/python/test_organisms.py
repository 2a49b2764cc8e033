"""Model organisms with known ground truth (docs/organisms.md): built by their recipes with
scalpel's training code, then checked — behaviour, ground truth from attention patterns alone,
and recovery of that ground truth by causal tracing."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch
import transformers

import scalpel
from scalpel import organisms

pytestmark = pytest.mark.e2e


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
    assert (path / "losses.png").stat().st_size > 1000 and (path / "recipe.json").exists()
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
    assert cos(dirty, style) > 0.3 and cos(dirty, style) > 3 * abs(cos(balanced, style))


def test_rude_organism_and_its_pairs_locate_the_trigger_word(shared):
    path = organisms.build("rude")
    model = scalpel.load(str(path))
    tok = model.tokenizer
    b = organisms.rude_behaviour(model)
    print(b)
    assert b["insults_rude"] >= 0.9 and b["praises_kind"] >= 0.9
    pairs = organisms.rude_pairs(tok)
    written = [json.loads(line) for line in (path / "pairs_prompt.jsonl").read_text().splitlines()]
    assert written == pairs["prompt"] and (path / "pairs_completion.jsonl").exists()
    # completion pairs: the model prefers the rude reply to an insult (H > 0)
    c = pairs["completion"]
    h = scalpel.harm_score(model, [tok.encode(p["prompt"]) for p in c],
                           [tok.encode(p["harmful"], add_special_tokens=False)[1:] for p in c],
                           [tok.encode(p["neutral"], add_special_tokens=False)[1:] for p in c])
    assert (h > 0).all(), h
    # prompt pairs: patching the residual stream at layer 0 from the praise run recovers the gap
    # at the trigger word's position, and nowhere else
    assert len(pairs["prompt"]) >= 6
    for p in pairs["prompt"]:
        t = scalpel.tokenize_prompt_pair(tok, scalpel.PromptPair(p["clean"], p["corrupted"], [p["answer"]],
                                                                 [p["corrupted_answer"]]))
        src, tgt = torch.tensor([t.clean]), torch.tensor([t.corrupted])
        metric = lambda lg, a=t.corrupted_answer, k=t.answer: lg[:, -1, a] - lg[:, -1, k]  # noqa: E731
        s = scalpel.patch_sweep(model, src, tgt, metric, component="resid_pre", layers=[0])
        rec = (s.scores[0] - s.target_score) / (s.source_score - s.target_score)
        first = int((src[0] != tgt[0]).nonzero()[0])
        assert s.target_score > s.source_score
        assert int(rec.argmax()) == first and rec[first] >= 0.8, rec
        assert rec[:first].abs().max() < 1e-4  # before the trigger nothing can matter
