"""Circuit breakers end to end, small: the rude-vs-kind organism's ground truth and Gemma 3 270M's
occupational gender bias. The full runs are examples/breaker_rude_organism.py and
examples/breaker_gemma_gender.py (reports in docs/results/breaker-*)."""
from __future__ import annotations

import pytest
import torch

import scalpel
from scalpel import bias, organisms
from scalpel.organisms import RUDE, chat_ids, chat_prompt

pytestmark = pytest.mark.e2e


def test_rude_organism_breaker_on_the_traced_mlps_cuts_the_behaviour(shared):
    model = scalpel.load(str(organisms.build("rude")), dtype="float32")
    tok = model.tokenizer
    word = lambda r: r.rstrip(".").split()[-1]  # noqa: E731
    train = [t.format(w=w) for t in RUDE["templates"] for w in RUDE["insults"]]
    praise = [t.format(w=w) for t in RUDE["templates"] for w in RUDE["praises"]]
    held = [RUDE["held_out_template"].format(w=w) for w in RUDE["insults"]]
    held_praise = [RUDE["held_out_template"].format(w=w) for w in RUDE["praises"]]

    # tracing says the MLPs carry it: patching mlp_out from the insult run recovers most of the gap
    space = tok.token_to_id("▁")
    first = lambda t: [i for i in tok.encode(t, add_special_tokens=False) if i != space][0]  # noqa: E731
    rude_tok, kind_tok = first(RUDE["rude"].format(w="dumb")), first(RUDE["kind"])
    metric = lambda lg: lg[:, -1, rude_tok] - lg[:, -1, kind_tok]  # noqa: E731
    recovered = []
    for t in RUDE["templates"]:
        for x, y in zip(RUDE["insults"], RUDE["praises"]):
            a, b = chat_ids(tok, t.format(w=x)), chat_ids(tok, t.format(w=y))
            if len(a) == len(b):
                s = scalpel.patch_sweep(model, torch.tensor([a]), torch.tensor([b]), metric, component="mlp_out",
                                        per_position=False)
                recovered.append(((s.scores - s.target_score) / (s.source_score - s.target_score)).flatten())
    recovered = torch.stack(recovered).mean(0)
    assert (recovered > 0.5).all(), recovered

    triples = [chat_ids(tok, r, RUDE["rude"].format(w=word(r))) for r in train]
    data = scalpel.BreakerData([p for p, _ in triples], [h for _, h in triples],
                               [chat_ids(tok, r, RUDE["sorry"])[1] for r in train],
                               [sum(chat_ids(tok, r, RUDE["kind"]), []) for r in praise])
    held_h = ([chat_ids(tok, r) for r in held], [chat_ids(tok, r, RUDE["rude"].format(w=word(r)))[1] for r in held],
              [chat_ids(tok, r, RUDE["sorry"])[1] for r in held])
    ref = scalpel.last_logits(model, [chat_ids(tok, r) for r in held_praise])
    h0 = scalpel.harm_score(model, *held_h)
    assert (h0 > 0).float().mean() >= 0.95

    cb = scalpel.CircuitBreaker.create(model, ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"], rank=4)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.weight_decay = 60, 16, 1e-2, 1e-3, 10, 0.0
    scalpel.train_breaker(model, cb, data, scalpel.BreakerObjective(harm="margin", lambda_preserve=10.0), o)
    curve = []
    for delta in (0.0, 0.25, 0.5, 0.75, 1.0):
        with cb.attach(model, delta=delta):
            curve.append(float(scalpel.harm_score(model, *held_h).mean()))
    assert curve == sorted(curve, reverse=True), curve  # harm falls with δ
    with cb.attach(model):
        h1 = scalpel.harm_score(model, *held_h)
        kl = scalpel.first_token_kl(model, [chat_ids(tok, r) for r in held_praise], ref)
        replies = model.generate([chat_prompt(r) for r in held], max_new_tokens=12)
    assert (h1 > 0).float().mean() <= 0.05, h1
    assert kl.max() <= 0.01, kl
    assert not any(a.split("\n")[0].strip() == RUDE["rude"].format(w=word(r)) for a, r in zip(replies, held)), replies


def test_refusal_organism_breaker_on_the_traced_mlps_cuts_refusal_and_keeps_the_shields(shared):
    """The refusal organism (the full run: examples/breaker_refusal_organism.py): the MLPs carry
    the refusal; a breaker on them, trained on the training templates, removes it on the held-out
    templates with tiny KL on harmless and shield prompts, and the shields keep their answers."""
    from scalpel.organisms import REFUSAL

    model = scalpel.load(str(organisms.build("refusal")), dtype="float32")
    tok = model.tokenizer
    first = lambda reply: chat_ids(tok, "x", reply)[1][0]  # noqa: E731
    metric = lambda lg: lg[:, -1, first(REFUSAL["refusal"])] - lg[:, -1, first(REFUSAL["answer"].format(x="x"))]  # noqa: E731
    recovered = []
    for t in REFUSAL["commands"] + REFUSAL["questions"]:
        for x, y in zip(REFUSAL["harmful"], REFUSAL["harmless"]):
            a, b = chat_ids(tok, t.format(x=x)), chat_ids(tok, t.format(x=y))
            if len(a) == len(b):
                s = scalpel.patch_sweep(model, torch.tensor([a]), torch.tensor([b]), metric, component="mlp_out",
                                        per_position=False)
                recovered.append(((s.scores - s.target_score) / (s.source_score - s.target_score)).flatten())
    assert len(recovered) >= 4
    recovered = torch.stack(recovered).mean(0)
    assert (recovered > 0.5).all(), recovered

    answer = lambda x: REFUSAL["answer"].format(x=x)  # noqa: E731
    rows = [(t.format(x=x), x) for t in REFUSAL["commands"] + REFUSAL["questions"] for x in REFUSAL["harmful"]]
    keep = [(q, a) for kind, q, a in organisms.refusal_data() if kind != "harmful"][:96]
    data = scalpel.BreakerData([chat_ids(tok, r) for r, _ in rows],
                               [chat_ids(tok, r, REFUSAL["refusal"])[1] for r, _ in rows],
                               [chat_ids(tok, r, answer(x))[1] for r, x in rows],
                               [sum(chat_ids(tok, q, a), []) for q, a in keep])
    held = [(tpl.format(x=x), x) for tpl in (REFUSAL["held_out_question"], REFUSAL["held_out_command"])
            for x in REFUSAL["harmful"]]
    held_h = ([chat_ids(tok, r) for r, _ in held], [chat_ids(tok, r, REFUSAL["refusal"])[1] for r, _ in held],
              [chat_ids(tok, r, answer(x))[1] for r, x in held])
    benign = [chat_ids(tok, tpl.format(x=x)) for tpl in (REFUSAL["held_out_question"], REFUSAL["held_out_command"])
              for x in REFUSAL["harmless"]]
    ref = scalpel.last_logits(model, benign)
    assert (scalpel.harm_score(model, *held_h) > 0).float().mean() >= 0.95
    shields_before = {k: v for k, v in organisms.refusal_behaviour(model).items() if k.endswith("_accuracy")}

    # the two MLPs and the next-ranked component, head 1.4 (the report's trace)
    cb = scalpel.CircuitBreaker.create(model, ["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post",
                                               ("blocks.1.attn.hook_z", 4)], rank=4)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.weight_decay = 60, 16, 1e-2, 1e-3, 10, 0.0
    scalpel.train_breaker(model, cb, data, scalpel.BreakerObjective(harm="margin", lambda_preserve=10.0), o)
    with cb.attach(model):
        h = scalpel.harm_score(model, *held_h)
        kl = scalpel.first_token_kl(model, benign, ref)
        replies = model.generate([chat_prompt(r) for r, _ in held], max_new_tokens=12)
        behaviour = organisms.refusal_behaviour(model)
    assert (h > 0).float().mean() <= 0.05, h
    assert kl.max() <= 0.01, kl
    assert not any(organisms.refusal_judge(a) for a in replies), replies
    assert {k: behaviour[k] for k in shields_before} == shields_before, behaviour


def test_gemma3_gender_breaker_lowers_the_held_out_bias_and_keeps_neutral_text(gemma3_path):
    """Sites from the report's attribution trace (docs/results/breaker-gemma-gender): four heads
    and two MLPs; a few steps of mean H² + KL on the training occupations and frames."""
    model = scalpel.load(str(gemma3_path), dtype="float32")
    tok = model.tokenizer
    pairs = bias.gender_pairs("train")
    texts = bias.neutral_text()
    data = scalpel.breaker_data(tok, [p["prompt"] for p in pairs], [p["harmful"] for p in pairs],
                                [p["neutral"] for p in pairs], preserve=texts[0::2])
    held = [tok.encode(t) for t in texts[1::2]]
    batch = scalpel.make_lm_batch([scalpel.LMExample(s) for s in held])
    with torch.no_grad():
        ref = model(batch.tokens, batch.attention_mask)
    before = bias.gender_bias(model, "held_out")
    abs_before = sum(abs(b) for b in before["bias"]) / len(before["bias"])
    sites = [(scalpel.hook_name("z", l), h) for l, h in [(14, 3), (9, 2), (7, 1), (7, 0)]]
    sites += [scalpel.hook_name("mlp_post", l) for l in (17, 3)]
    cb = scalpel.CircuitBreaker.create(model, sites, rank=4)
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps, o.weight_decay = 12, 8, 5e-3, 5e-3, 2, 0.0
    scalpel.train_breaker(model, cb, data, scalpel.BreakerObjective(harm="squared", lambda_preserve=10.0,
                                                                     preserve_batch_size=2), o)
    with cb.attach(model):
        after = bias.gender_bias(model, "held_out")
        kl = scalpel.sequence_kl(model(batch.tokens, batch.attention_mask), ref, batch.attention_mask)
    abs_after = sum(abs(b) for b in after["bias"]) / len(after["bias"])
    assert abs_after < 0.7 * abs_before, (abs_before, abs_after)
    assert abs(after["gap"]) < abs(before["gap"]), (before["gap"], after["gap"])
    assert kl.mean() < 0.05, kl


def test_a_shipped_intervention_loads_by_name_and_does_what_its_report_says(gemma3_path, tmp_path):
    from scalpel.packaged import _INTERVENTIONS_DIR

    # every shipped name has its file, and every file a name
    assert sorted(f.stem for f in _INTERVENTIONS_DIR.glob("*.safetensors")) == sorted(scalpel.shipped_interventions())
    name = "gemma3-270m-gender-breaker"
    d = scalpel.intervention_description(name)
    assert d["kind"] == "circuit_breaker", d["kind"]
    cb = scalpel.load_intervention(name)
    model = scalpel.load(str(gemma3_path), dtype="float32")
    before = bias.gender_bias(model, "held_out")
    with cb.attach(model):
        after = bias.gender_bias(model, "held_out")
    mean_abs = lambda r: sum(abs(b) for b in r["bias"]) / len(r["bias"])  # noqa: E731
    assert mean_abs(after) < 0.3 * mean_abs(before), (mean_abs(before), mean_abs(after))
    # a path still wins over a name, and an unknown name says which ones ship
    cb2 = scalpel.load_intervention(str(scalpel.shipped_intervention_path(name)))
    assert cb2.num_parameters == cb.num_parameters
    with pytest.raises(ValueError, match="gemma3-270m-gender-breaker"):
        scalpel.load_intervention("gemma3-270m-no-such-breaker")
    with pytest.raises(ValueError, match="shipped intervention"):
        scalpel.shipped_intervention_path("../breaker-gemma-gender/breaker")
