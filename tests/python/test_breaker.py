"""Circuit breakers: a no-op at zero strength, the edit equal to plain PyTorch hooks on the
transformers model, merge equal to attach, the PEFT export loaded by peft, the file format,
training, and the errors users will meet."""
from __future__ import annotations

import json
import math

import pytest
import torch

import scalpel
from parity_util import TINY_LLAMA, random_hf_model

LLAMA = TINY_LLAMA


def _tiny(seed: int = 0) -> scalpel.Transformer:
    return scalpel.Transformer.from_config(json.dumps(LLAMA), seed=seed, init_std=0.2)


def _tokens(n: int = 3, length: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 97, (n, length), generator=torch.Generator().manual_seed(seed))


def _randomize(cb: scalpel.CircuitBreaker, seed: int = 1, scale: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    for a in cb.adapters:
        a.B = torch.randn(a.B.shape, generator=g) * scale
        a.A = torch.randn(a.A.shape, generator=g) * scale


SITES = [("blocks.1.attn.hook_z", 2), ("blocks.0.attn.hook_z", -1), "blocks.1.mlp.hook_post", "blocks.0.hook_attn_out",
         "blocks.2.hook_mlp_out", "blocks.1.hook_resid_post"]


# ------------------------------------------------------------------ unit --

@pytest.mark.unit
def test_untrained_zero_delta_and_rank_zero_are_bit_identical():
    m = _tiny()
    t = _tokens()
    base = m(t)
    cb = scalpel.CircuitBreaker.create(m, SITES, rank=3, seed=0)
    assert cb.num_parameters == sum(2 * 3 * a.A.shape[1] for a in cb.adapters)
    with cb.attach(m):  # B = 0: no change
        assert torch.equal(m(t), base)
    _randomize(cb)
    with cb.attach(m):
        assert (m(t) - base).abs().max() > 1e-3  # a trained breaker does change the logits
    with cb.attach(m, delta=0.0):
        assert torch.equal(m(t), base)
    zero = scalpel.CircuitBreaker.create(m, SITES, rank=0)
    with zero.attach(m):
        assert torch.equal(m(t), base)
    assert torch.equal(m(t), base)  # detached again


@pytest.mark.unit
def test_delta_scales_the_edit_linearly_at_its_site():
    m = _tiny()
    t = _tokens()
    cb = scalpel.CircuitBreaker.create(m, ["blocks.1.mlp.hook_post"], rank=2)
    _randomize(cb)
    name = "blocks.1.mlp.hook_post"
    _, base = m.run_with_cache(t, [name])
    a = cb.adapters[0]
    for delta in (0.5, 2.0):
        seen = {}
        with cb.attach(m, delta=delta), m.hooks([(name, lambda x, hook: seen.setdefault("x", x.clone()))]):
            m(t)
        want = base[name] + delta * (base[name] @ a.A.T) @ a.B.T
        assert torch.allclose(seen["x"], want, atol=1e-5)


@pytest.mark.unit
def test_positions_generated_leaves_the_prompt_pass_alone():
    m = _tiny()
    t = _tokens(2, 6)
    cb = scalpel.CircuitBreaker.create(m, ["blocks.1.hook_resid_post"], rank=2)
    _randomize(cb, scale=2.0)
    base = m(t)
    ref = m.generate([row.tolist() for row in t], max_new_tokens=6)
    cb.positions = "generated"
    with cb.attach(m):
        assert torch.equal(m(t), base)  # a plain forward has no generated positions
        gen = m.generate([row.tolist() for row in t], max_new_tokens=6)
    assert [r[0] for r in gen.new_tokens] == [r[0] for r in ref.new_tokens]  # the prompt's pass is unedited
    assert gen.new_tokens != ref.new_tokens
    cb.positions = "prompt"
    with cb.attach(m):
        assert not torch.equal(m(t), base)
    cb.positions = "sometimes"
    with pytest.raises(ValueError, match="positions"):
        cb.attach(m)


@pytest.mark.unit
def test_merge_equals_attach_and_unmergeable_sites_say_why():
    t = _tokens()
    mergeable = [("blocks.1.attn.hook_z", 2), ("blocks.1.attn.hook_z", 0), ("blocks.0.attn.hook_z", -1),
                 "blocks.1.mlp.hook_post", "blocks.0.hook_attn_out", "blocks.2.hook_mlp_out"]
    m = _tiny()
    cb = scalpel.CircuitBreaker.create(m, mergeable, rank=2)
    _randomize(cb, scale=0.3)
    cb.delta = 0.7
    assert cb.merge_blocker(m) == ""
    with cb.attach(m):
        attached = m(t)
    cb.merge(m)
    assert (m(t) - attached).abs().max() < 1e-4
    with pytest.raises(ValueError, match="checksum"):  # merging twice would apply the edit twice
        cb.merge(m)
    m2 = _tiny()
    resid = scalpel.CircuitBreaker.create(m2, ["blocks.1.hook_resid_post"], rank=2)
    assert "residual stream" in resid.merge_blocker(m2)
    with pytest.raises(scalpel.UnsupportedError, match="residual stream"):
        resid.merge(m2)
    partial = scalpel.CircuitBreaker.create(m2, ["blocks.1.mlp.hook_post"], rank=2)
    partial.positions = "prompt"
    with pytest.raises(scalpel.UnsupportedError, match="prompt positions"):
        partial.merge(m2)


@pytest.mark.unit
def test_file_round_trip_is_bit_exact_and_other_models_are_refused(tmp_path):
    m = _tiny()
    cb = scalpel.CircuitBreaker.create(m, SITES, rank=3, seed=4)
    _randomize(cb)
    cb.delta, cb.positions = 0.25, "prompt"
    path = tmp_path / "cb.safetensors"
    scalpel.save_intervention(cb, str(path))
    back = scalpel.load_intervention(str(path))
    assert isinstance(back, scalpel.CircuitBreaker) and back.kind == "circuit_breaker"
    assert back.delta == 0.25 and back.positions == "prompt"
    assert [(a.site.hook, a.site.head) for a in back.adapters] == [(a.site.hook, a.site.head) for a in cb.adapters]
    for a, b in zip(cb.adapters, back.adapters):
        assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B)
    assert back.model.checksum == cb.model.checksum == scalpel.ModelFingerprint.of(m).checksum
    desc = scalpel.intervention_description(str(path))
    assert desc["kind"] == "circuit_breaker" and desc["fields"]["adapters"][0]["rank"] == 3
    t = _tokens()
    with cb.attach(m):
        want = m(t)
    with back.attach(m):
        assert torch.equal(m(t), want)
    other = _tiny(seed=1)  # same shapes, other weights: a "fine-tune"
    with pytest.raises(ValueError, match="checksum"):
        back.attach(other)
    with back.attach(other, check_model=False):
        pass
    bigger = scalpel.Transformer.from_config(json.dumps({**LLAMA, "num_hidden_layers": 4}))
    with pytest.raises(ValueError, match="residual-stream weights"):
        back.attach(bigger)


@pytest.mark.unit
def test_the_fingerprint_is_the_same_in_float32_and_bfloat16(tmp_path):
    m = _tiny()
    m.save_pretrained(str(tmp_path / "m"))
    a = scalpel.load(str(tmp_path / "m"), dtype="float32")
    b = scalpel.load(str(tmp_path / "m"), dtype="bfloat16")
    assert scalpel.ModelFingerprint.of(a).checksum == scalpel.ModelFingerprint.of(b).checksum
    assert scalpel.ModelFingerprint.of(a).mismatch(b) == ""


@pytest.mark.unit
def test_bad_sites_and_malformed_files_get_specific_errors(tmp_path):
    m = _tiny()
    with pytest.raises(scalpel.UnknownNameError, match="blocks.7"):
        scalpel.CircuitBreaker.create(m, ["blocks.7.mlp.hook_post"], rank=2)
    with pytest.raises(scalpel.UnsupportedError, match="attn.hook_z"):
        scalpel.CircuitBreaker.create(m, ["blocks.0.attn.hook_pattern"], rank=2)
    with pytest.raises(ValueError, match="head"):
        scalpel.CircuitBreaker.create(m, [("blocks.0.attn.hook_z", 4)], rank=2)
    with pytest.raises(ValueError, match="twice"):
        scalpel.CircuitBreaker.create(m, ["blocks.0.hook_mlp_out", "blocks.0.hook_mlp_out"], rank=2)
    cb = scalpel.CircuitBreaker.create(m, ["blocks.0.hook_mlp_out"], rank=2)
    cb.adapters[0].A = torch.zeros(2, 31)
    with pytest.raises(ValueError, match=r"A \[rank, 32\]"):
        cb.attach(m)
    # a safetensors file that is not an intervention, and one with a tensor missing
    scalpel.save_safetensors(str(tmp_path / "plain.safetensors"), {"x": torch.zeros(2)})
    with pytest.raises(scalpel.FormatError, match="intervention"):
        scalpel.load_intervention(str(tmp_path / "plain.safetensors"))
    good = scalpel.CircuitBreaker.create(m, ["blocks.0.hook_mlp_out"], rank=2)
    scalpel.save_intervention(good, str(tmp_path / "cb.safetensors"))
    desc = scalpel.intervention_description(str(tmp_path / "cb.safetensors"))
    scalpel.save_safetensors(str(tmp_path / "cut.safetensors"), {"adapters.0.A": good.adapters[0].A},
                             {"scalpel.intervention": json.dumps(desc)})
    with pytest.raises(scalpel.FormatError, match="adapters.0.B"):
        scalpel.load_intervention(str(tmp_path / "cut.safetensors"))
    desc["kind"] = "magic"
    scalpel.save_safetensors(str(tmp_path / "magic.safetensors"), dict(good.tensors()),
                             {"scalpel.intervention": json.dumps(desc)})
    with pytest.raises(scalpel.FormatError, match="magic"):
        scalpel.load_intervention(str(tmp_path / "magic.safetensors"))
    with pytest.raises(FileNotFoundError):
        scalpel.load_intervention(str(tmp_path / "absent.safetensors"))


@pytest.mark.unit
def test_training_lowers_the_harm_and_keeps_the_model_frozen(tmp_path):
    m = _tiny()
    weights = [w.tensor.clone() for w in m.residual_writers()]
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(1, 97, (6,), generator=g).tolist() for _ in range(8)]
    harmful = [[int(p[-1] % 50 + 1)] for p in prompts]
    neutral = [[int(p[-1] % 40 + 55)] for p in prompts]
    preserve = [torch.randint(1, 97, (10,), generator=g).tolist() for _ in range(8)]
    data = scalpel.BreakerData(prompts, harmful, neutral, preserve)
    h0 = scalpel.harm_score(m, prompts, harmful, neutral)
    cb = scalpel.CircuitBreaker.create(m, ["blocks.2.mlp.hook_post", ("blocks.2.attn.hook_z", 1)], rank=4)
    opts = scalpel.TrainOptions()
    opts.steps, opts.batch_size, opts.lr, opts.warmup_steps, opts.run_dir = 60, 8, 2e-2, 5, str(tmp_path / "run")
    opts.checkpoint_every = 30
    res = scalpel.train_breaker(m, cb, data, scalpel.BreakerObjective(harm="margin", lambda_preserve=1.0), opts)
    assert res.steps == 60 and set(res.parts) == {"harm", "preserve"}
    assert res.parts["harm"][-1] < 0.5 * res.parts["harm"][0]
    with cb.attach(m):
        h1 = scalpel.harm_score(m, prompts, harmful, neutral)
    assert (h1 < h0).all() and h1.mean() < h0.mean() - 1.0
    assert all(torch.equal(w.tensor, before) for w, before in zip(m.residual_writers(), weights))
    assert all(not a.A.requires_grad and not a.B.requires_grad for a in cb.adapters)
    header = (tmp_path / "run" / "losses.csv").read_text().splitlines()[0]
    assert header == "step,loss,harm,preserve,lr,grad_norm"
    ck = scalpel.load_intervention(str(tmp_path / "run" / "checkpoint-60" / "breaker.safetensors"))
    assert all(torch.equal(a.B, b.B) for a, b in zip(ck.adapters, cb.adapters))
    # the other objectives run and lower their harm term too
    for harm, keep in (("squared", "hidden"), ("reroute", "kl")):
        c2 = scalpel.CircuitBreaker.create(m, ["blocks.1.hook_resid_post"], rank=2, seed=1)
        o2 = scalpel.TrainOptions()
        o2.steps, o2.batch_size, o2.lr, o2.warmup_steps = 30, 8, 5e-2, 2
        r2 = scalpel.train_breaker(m, c2, data, scalpel.BreakerObjective(harm=harm, preserve=keep, lambda_preserve=0.1), o2)
        first, last = sum(r2.parts["harm"][:5]) / 5, sum(r2.parts["harm"][-5:]) / 5
        assert last < 0.7 * first, (harm, r2.parts["harm"])


@pytest.mark.unit
def test_custom_harm_and_the_nan_guard():
    m = _tiny()
    data = scalpel.BreakerData([[1, 2, 3]] * 4, [[4]] * 4, [[5]] * 4, [[6, 7, 8]] * 4)
    cb = scalpel.CircuitBreaker.create(m, ["blocks.2.hook_mlp_out"], rank=2)
    calls = []

    def push_token_9_down(model, rows):
        calls.append(list(rows))
        toks = torch.tensor([data.prompts[r] for r in rows])
        return model(toks)[:, -1].log_softmax(-1)[:, 9].mean()

    opts = scalpel.TrainOptions()
    opts.steps, opts.batch_size, opts.lr, opts.warmup_steps = 20, 2, 5e-2, 1
    before = m(torch.tensor([[1, 2, 3]]))[0, -1].log_softmax(-1)[9]
    res = scalpel.train_breaker(m, cb, data, scalpel.BreakerObjective(harm="custom", custom=push_token_9_down), opts)
    assert len(calls) == 20 and all(len(c) == 2 for c in calls)
    with cb.attach(m):
        after = m(torch.tensor([[1, 2, 3]]))[0, -1].log_softmax(-1)[9]
    assert after < before - 0.5 and res.parts["harm"][-1] < res.parts["harm"][0]
    saved = [a.B.clone() for a in cb.adapters]
    nan = scalpel.BreakerObjective(harm="custom", preserve="none",
                                   custom=lambda model, rows: model(torch.tensor([[1, 2, 3]])).sum() * float("nan"))
    with pytest.raises(FloatingPointError, match="step 1"):
        scalpel.train_breaker(m, cb, data, nan, opts)
    assert all(torch.equal(a.B, b) for a, b in zip(cb.adapters, saved))  # untouched by the diverged step
    with pytest.raises(ValueError, match="custom"):
        scalpel.train_breaker(m, cb, data, scalpel.BreakerObjective(harm="custom"), opts)
    with pytest.raises(ValueError, match="harm"):
        scalpel.train_breaker(m, cb, data, scalpel.BreakerObjective(harm="worse"), opts)
    cb.positions = "prompt"
    with pytest.raises(ValueError, match="positions"):
        scalpel.train_breaker(m, cb, data, scalpel.BreakerObjective(harm="custom", custom=push_token_9_down), opts)
    cb.positions = "all"
    opts.resume_from = "somewhere"
    with pytest.raises(ValueError, match="resume_from"):
        scalpel.train_breaker(m, cb, data, scalpel.BreakerObjective(), opts)


# ---------------------------------------------------------------- oracle --

def _hf_pair(tmp_path, config: dict, seed: int = 0):
    """A random transformers model saved to disk and the same weights in scalpel."""
    import transformers
    cfg = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if k != "architectures"})
    cfg.architectures = config["architectures"]
    hf = random_hf_model(cfg, tmp_path / "hf", seed=seed)
    return hf, scalpel.load(str(tmp_path / "hf"), dtype="float32")


def _reference_hooks(hf, cb, delta):
    """The breaker as plain PyTorch hooks on the transformers modules (no scalpel code)."""
    handles = []
    cfg = hf.config
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    for a in cb.adapters:
        parts = a.site.hook.split(".")
        layer = hf.model.layers[int(parts[1])]
        A, B = a.A.detach().clone(), a.B.detach().clone()

        def edit(x, A=A, B=B):
            return x + delta * (x @ A.T) @ B.T

        if parts[-1] == "hook_z":
            h = a.site.head

            def pre(mod, args, h=h, edit=edit):
                x = args[0].clone()
                if h < 0:
                    return (edit(x),)
                x[..., h * d_head:(h + 1) * d_head] = edit(x[..., h * d_head:(h + 1) * d_head])
                return (x,)
            handles.append(layer.self_attn.o_proj.register_forward_pre_hook(pre))
        elif parts[-1] == "hook_post":
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(lambda mod, args, edit=edit: (edit(args[0]),)))
        elif parts[-1] == "hook_attn_out":
            handles.append(layer.self_attn.o_proj.register_forward_hook(lambda mod, args, out, edit=edit: edit(out)))
        elif parts[-1] == "hook_mlp_out":
            handles.append(layer.mlp.down_proj.register_forward_hook(lambda mod, args, out, edit=edit: edit(out)))
        elif parts[-1] == "hook_resid_post":
            def post(mod, args, out, edit=edit):
                return (edit(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else edit(out)
            handles.append(layer.register_forward_hook(post))
        else:
            raise AssertionError(a.site.hook)
    return handles


@pytest.mark.oracle
def test_the_edit_equals_plain_pytorch_hooks_on_transformers(tmp_path):
    hf, m = _hf_pair(tmp_path, LLAMA)
    t = _tokens()
    cb = scalpel.CircuitBreaker.create(m, SITES, rank=3)
    _randomize(cb, scale=0.3)
    with cb.attach(m, delta=0.8):
        ours = m(t)
    handles = _reference_hooks(hf, cb, 0.8)
    with torch.no_grad():
        want = hf(t).logits
    for h in handles:
        h.remove()
    assert (ours - want).abs().max() < 1e-4
    with torch.no_grad():
        assert (m(t) - hf(t).logits).abs().max() < 1e-4  # and detached, both are the plain model again


GEMMA3 = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 32,
          "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
          "head_dim": 8, "vocab_size": 97, "max_position_embeddings": 64, "sliding_window": 4,
          "query_pre_attn_scalar": 8, "tie_word_embeddings": True}


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_export_peft_loads_in_peft_with_the_same_logits(tmp_path, arch):
    import peft
    hf, m = _hf_pair(tmp_path, LLAMA if arch == "llama" else GEMMA3)
    t = _tokens()
    sites = [("blocks.1.attn.hook_z", 2), ("blocks.1.attn.hook_z", 0), "blocks.0.mlp.hook_post"]
    if arch == "llama":
        sites += ["blocks.0.hook_attn_out", ("blocks.0.attn.hook_z", -1)]
    cb = scalpel.CircuitBreaker.create(m, sites, rank=2)
    _randomize(cb, scale=0.3)
    with cb.attach(m, delta=0.6):
        ours = m(t)
    scalpel.export_peft(m, cb, str(tmp_path / "adapter"), delta=0.6)
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["lora_alpha"] == cfg["r"]
    pm = peft.PeftModel.from_pretrained(hf, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        theirs = pm(t).logits
    assert (ours - theirs).abs().max() < 1e-4
    if arch == "gemma3":  # post-norms: the block outputs cannot merge, and say so
        out = scalpel.CircuitBreaker.create(m, ["blocks.0.hook_attn_out"], rank=2)
        with pytest.raises(scalpel.UnsupportedError, match="post-norm"):
            scalpel.export_peft(m, out, str(tmp_path / "no"))
