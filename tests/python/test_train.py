"""Training: the loss against transformers', AdamW + schedule + clipping against torch.optim.AdamW
step by step, resuming a checkpoint, frozen parameters, and export to a directory transformers loads."""
from __future__ import annotations

import json
import math

import pytest
import torch
import transformers

import scalpel


CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=32, intermediate_size=48,
              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=50,
              max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False, torch_dtype="float32")


def _model(seed=0, **over):
    return scalpel.Transformer.from_config(json.dumps({**CONFIG, **over}), seed=seed)


def _data():
    g = torch.Generator().manual_seed(1)
    return [scalpel.LMExample(torch.randint(0, 50, (n,), generator=g).tolist()) for n in (9, 6, 12)]


def _options(**kw):
    o = scalpel.TrainOptions()
    o.steps, o.batch_size, o.lr, o.min_lr, o.warmup_steps = 6, 3, 3e-3, 3e-4, 2
    o.weight_decay, o.grad_clip = 0.1, 0.5
    for k, v in kw.items():
        setattr(o, k, v)
    return o


@pytest.mark.unit
def test_batches_pad_left_and_mask_targets():
    b = scalpel.make_lm_batch([scalpel.LMExample([5, 6, 7]), scalpel.LMExample([8, 9], [0, 1])], pad_id=0)
    assert b.tokens.tolist() == [[5, 6, 7], [0, 8, 9]]
    assert b.attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert b.loss_mask.tolist() == [[0, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="one entry per token"):
        scalpel.make_lm_batch([scalpel.LMExample([1, 2], [1])])
    with pytest.raises(ValueError, match="at least one token"):
        scalpel.make_lm_batch([scalpel.LMExample([])])


@pytest.mark.oracle
def test_loss_equals_transformers(shared):
    model = scalpel.load(str(shared / "models" / "tinystories-656k"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(shared / "models" / "tinystories-656k", dtype=torch.float32)
    tok = model.tokenizer
    ex = [scalpel.LMExample(tok.encode("Once upon a time, there was a cat.")),
          scalpel.LMExample(tok.encode("Lily liked to play."), [0, 0, 0, 1, 1, 1][: len(tok.encode("Lily liked to play."))])]
    b = scalpel.make_lm_batch(ex)
    got = scalpel.lm_loss(model, b).item()
    labels = b.tokens.masked_fill(b.loss_mask == 0, -100)
    pos = (b.attention_mask.cumsum(1) - 1).clamp_min(0)
    with torch.no_grad():
        want = hf(input_ids=b.tokens, attention_mask=b.attention_mask, position_ids=pos, labels=labels).loss.item()
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.unit
def test_schedule():
    o = _options(steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert scalpel.learning_rate(o, 0) == pytest.approx(0.1)
    assert scalpel.learning_rate(o, 9) == pytest.approx(1.0)
    assert scalpel.learning_rate(o, 10) == pytest.approx(1.0)
    assert scalpel.learning_rate(o, 55) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert scalpel.learning_rate(o, 100) == pytest.approx(0.1)


@pytest.mark.oracle
def test_adamw_equals_torch_step_by_step(tmp_path):
    # one example: every batch is that example repeated, so both sides see the same data
    data = _data()[:1]
    model = _model()
    model.save_pretrained(str(tmp_path / "init"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "init", dtype=torch.float32)
    o = _options()
    res = scalpel.train_lm(model, data, o)
    decay = [p for n, p in hf.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in hf.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: scalpel.learning_rate(o, s) / o.lr)
    ids = torch.tensor([data[0].tokens] * o.batch_size)
    losses, norms = [], []
    for _ in range(o.steps):
        opt.zero_grad()
        loss = hf(input_ids=ids, labels=ids).loss
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(hf.parameters(), o.grad_clip).item())
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert res.loss == pytest.approx(losses, abs=1e-5)
    assert res.grad_norm == pytest.approx(norms, rel=1e-4)
    assert res.lr == pytest.approx([scalpel.learning_rate(o, s) for s in range(o.steps)])
    theirs = dict(hf.named_parameters())
    for name, p in model.named_parameters():
        assert (p - theirs[name].detach()).abs().max().item() < 1e-5, name
    assert not any(p.requires_grad for _, p in model.named_parameters())


@pytest.mark.unit
def test_resume_is_identical_and_writes_the_run(tmp_path):
    data = _data()
    straight = _model()
    scalpel.train_lm(straight, data, _options(run_dir=str(tmp_path / "a")))
    part = _model()
    scalpel.train_lm(part, data, _options(run_dir=str(tmp_path / "b"), checkpoint_every=3, steps=6))
    assert (tmp_path / "b" / "checkpoint-3" / "optimizer.safetensors").exists()
    resumed = _model(seed=9)  # other weights: the checkpoint restores them
    res = scalpel.train_lm(resumed, data, _options(run_dir=str(tmp_path / "c"),
                                                   resume_from=str(tmp_path / "b" / "checkpoint-3")))
    assert res.steps == 6 and len(res.loss) == 3
    for (n, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), n
    lines = (tmp_path / "a" / "losses.csv").read_text().splitlines()
    assert lines[0] == "step,loss,lr,grad_norm" and len(lines) == 7
    assert scalpel.load_checkpoint(_model(seed=5), str(tmp_path / "a" / "checkpoint-6")) == 6


@pytest.mark.unit
def test_frozen_parameters_stay(tmp_path):
    model = _model()
    before = {n: p.clone() for n, p in model.named_parameters()}
    scalpel.train_lm(model, _data(), _options(trainable=["model.layers.1.self_attn."]))
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != n.startswith("model.layers.1.self_attn."), n
    with pytest.raises(ValueError, match="matches none"):
        scalpel.train_lm(model, _data(), _options(trainable=["model.layers.7."]))


@pytest.mark.oracle
def test_save_pretrained_loads_in_transformers_and_back(tmp_path, shared):
    model = _model(seed=3)
    model.save_pretrained(str(tmp_path / "out"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)).abs().max().item() < 1e-5
    again = scalpel.load(str(tmp_path / "out"))
    assert torch.equal(again(ids), model(ids))
    with pytest.raises(ValueError, match="not empty"):
        model.save_pretrained(str(tmp_path / "out"))
    # a real checkpoint: tied weights stay tied, tokenizer files travel, the source is refused
    ts = scalpel.load(str(shared / "models" / "tinystories-656k"))
    ts.save_pretrained(str(tmp_path / "ts"), dtype="bfloat16")
    assert (tmp_path / "ts" / "tokenizer.json").exists()
    hf2 = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ts")
    assert hf2.dtype == torch.bfloat16
    back = scalpel.load(str(tmp_path / "ts"), dtype="bfloat16")
    ref = scalpel.load(str(shared / "models" / "tinystories-656k"), dtype="bfloat16")
    ids = torch.tensor([ts.tokenizer.encode("Once upon a time")])
    assert torch.equal(back(ids), ref(ids))
    with pytest.raises(ValueError, match="source"):
        ts.save_pretrained(str(shared / "models" / "tinystories-656k"), overwrite=True)


@pytest.mark.oracle
def test_from_config_is_seeded_and_parameters_need_a_known_layout(tmp_path):
    a, b, c = _model(seed=1), _model(seed=1), _model(seed=2)
    pa, pb, pc = dict(a.named_parameters()), dict(b.named_parameters()), dict(c.named_parameters())
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert not torch.equal(pa["model.layers.0.self_attn.q_proj.weight"], pc["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(pa["model.norm.weight"], torch.ones(32))
    assert abs(pa["model.embed_tokens.weight"].std().item() - 0.02) < 0.003
    cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=50, n_positions=32)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(scalpel.UnsupportedError, match="re-laid out"):
        scalpel.load(str(tmp_path / "gpt2")).named_parameters()
    with pytest.raises(scalpel.UnsupportedError, match="llama, mistral or qwen2"):
        scalpel.Transformer.from_config(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                                                    "n_embd": 32, "n_layer": 1, "n_head": 4, "vocab_size": 50}))


@pytest.mark.oracle
def test_optimize_on_own_tensors_equals_torch_adamw_and_stops_on_nan(tmp_path):
    """The one loop on a user's tensors: each step equals torch.optim.AdamW (no clipping, constant
    lr) on the same loss; loss parts land in losses.csv; a NaN loss stops it, parameters kept."""
    target = torch.tensor([3.0, -1.0, 0.5])
    x = torch.zeros(3)
    ref = torch.zeros(3, requires_grad=True)
    opts = scalpel.TrainOptions()
    opts.steps, opts.lr, opts.min_lr, opts.warmup_steps, opts.grad_clip, opts.weight_decay = 25, 0.1, 0.1, 0, 0.0, 0.01
    opts.beta2, opts.run_dir = 0.999, str(tmp_path / "run")
    res = scalpel.optimize([scalpel.TrainParam("x", x)], lambda step: ((x - target).pow(2).sum(), {"dist": 1.0}), opts)
    opt = torch.optim.AdamW([ref], lr=0.1, betas=(0.9, 0.999), eps=opts.eps, weight_decay=0.01)
    for _ in range(25):
        opt.zero_grad()
        (ref - target).pow(2).sum().backward()
        opt.step()
    assert torch.allclose(x, ref.detach(), atol=1e-6), (x, ref)
    assert not x.requires_grad and res.parts["dist"] == [1.0] * 25
    assert (tmp_path / "run" / "losses.csv").read_text().splitlines()[0] == "step,loss,dist,lr,grad_norm"
    kept = x.clone()
    with pytest.raises(FloatingPointError, match="step 1"):
        scalpel.optimize([scalpel.TrainParam("x", x)], lambda step: (x * float("nan")).sum(), opts)
    assert torch.equal(x, kept)
    with pytest.raises(ValueError, match="gradient"):
        scalpel.optimize([scalpel.TrainParam("x", x)], lambda step: torch.tensor(1.0), opts)
