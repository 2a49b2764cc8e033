"""Causal-tracing metrics against direct computations on transformers' logits
(TinyStories-656K, real weights)."""
from __future__ import annotations

import pytest
import torch
import transformers

import scalpel

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def models(shared):
    path = shared / "models" / "tinystories-656k"
    return scalpel.load(str(path), dtype="float32"), transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32).eval()


def _hf_completion_logprob(hf, prompt, completion):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        lp = hf(ids).logits.float().log_softmax(-1)[0]
    return sum(lp[len(prompt) + i - 1, t].item() for i, t in enumerate(completion))


def test_completion_logprob_and_harm_score_match_transformers(models):
    ours, hf = models
    tok = ours.tokenizer
    prompts = [tok.encode("Once upon a time, there was a little girl named Lily. She"),
               tok.encode("The dog was sad because")]
    harmful = [tok.encode(" hit her friend.", add_special_tokens=False), tok.encode(" he was hungry", add_special_tokens=False)]
    neutral = [tok.encode(" loved to play.", add_special_tokens=False), tok.encode(" it was raining", add_special_tokens=False)]
    got = scalpel.completion_logprob(ours, prompts, harmful, batch_size=1)
    got_batched = scalpel.completion_logprob(ours, prompts, harmful, batch_size=8)  # left padding in the batch
    want = torch.tensor([_hf_completion_logprob(hf, p, c) for p, c in zip(prompts, harmful)])
    assert torch.allclose(got, want, atol=1e-4) and torch.allclose(got_batched, want, atol=1e-4)
    h = scalpel.harm_score(ours, prompts, harmful, neutral)
    want_h = want - torch.tensor([_hf_completion_logprob(hf, p, c) for p, c in zip(prompts, neutral)])
    assert torch.allclose(h, want_h, atol=1e-4)


def test_logit_level_metrics(models):
    ours, _ = models
    tokens = torch.tensor([ours.tokenizer.encode("Once upon a time, there was a")] * 2)
    logits = ours(tokens)
    last = logits[:, -1].log_softmax(-1)
    a, b = torch.tensor([10, 20]), torch.tensor([30, 40])
    assert torch.allclose(scalpel.logit_diff(logits, a, b), logits[[0, 1], -1, a] - logits[[0, 1], -1, b])
    p = last[:, [5, 6, 7]].exp().sum(-1)
    assert torch.allclose(scalpel.refusal_score(logits, [5, 6, 7]), (p / (1 - p)).log(), atol=1e-4)
    assert torch.allclose(scalpel.kl_divergence(logits, logits), torch.zeros(2), atol=1e-6)
    other = logits + torch.randn_like(logits)
    lq, lp = logits[:, -1].log_softmax(-1), other[:, -1].log_softmax(-1)
    assert torch.allclose(scalpel.kl_divergence(other, logits), (lq.exp() * (lq - lp)).sum(-1), atol=1e-5)
    tl = scalpel.token_logprobs(logits, tokens)
    assert tl.shape == (2, tokens.shape[1] - 1)
    assert torch.allclose(tl[0, 3], logits[0, 3].log_softmax(-1)[tokens[0, 4]])
    assert torch.allclose(scalpel.gap_recovered(torch.tensor([1.0, 5.0]), torch.tensor([2.0, 5.0]), torch.tensor([0.0, 5.0])),
                          torch.tensor([0.5, 0.0]))
    assert torch.equal(scalpel.causal_effect(torch.tensor([3.0]), torch.tensor([1.0])), torch.tensor([2.0]))


def test_bad_inputs_are_refused(models):
    ours, _ = models
    with pytest.raises(ValueError, match="one per prompt"):
        scalpel.completion_logprob(ours, [[1, 2]], [[3], [4]])
    with pytest.raises(ValueError, match="at least one token"):
        scalpel.teacher_forced_batch([[1]], [[]])
    with pytest.raises(ValueError, match="logits"):
        scalpel.refusal_score(torch.zeros(3, 4), [1])
    with pytest.raises(ValueError, match="refusal token id"):
        scalpel.refusal_score(torch.zeros(1, 2, 4), [9])
    b = scalpel.teacher_forced_batch([[1, 2, 3], [4]], [[5], [6, 7]], pad_id=0)
    assert b.tokens.tolist() == [[1, 2, 3, 5], [0, 4, 6, 7]]
    assert b.target_mask.tolist() == [[0, 0, 0, 1], [0, 0, 1, 1]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
