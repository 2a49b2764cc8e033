"""Model organisms: small models trained here, by fixed recipes with scalpel's own
training code, whose circuits are known in advance — test subjects for the
discovery and editing methods (docs/organisms.md).

    path = scalpel.organisms.build("induction")       # trained once, then cached
    model = scalpel.load(path)                        # a Hugging Face directory transformers loads too

The cache is $SCALPEL_CACHE/organisms (default ~/.cache/scalpel/organisms); each
organism lives in a directory named after its recipe's hash, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from . import _scalpel

__all__ = ["build", "recipes", "induction_data", "induction_scores", "INDUCTION"]

# Induction: a 2-layer transformer with attention only (its MLP's output
# projection is zero and frozen, so the MLP adds exactly 0), trained on random
# token spans that repeat. Tokens 1..255 are the alphabet; 0 is BOS. The span's
# length varies (10..30) so that the repeat cannot be found by position alone.
INDUCTION = {
    "name": "induction",
    "config": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
               "intermediate_size": 4, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
               "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
               "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float32"},
    "span": [10, 30], "examples": 4096, "data_seed": 1, "init_seed": 0,
    "train": {"steps": 2000, "batch_size": 32, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 100, "weight_decay": 0.01,
              "grad_clip": 1.0, "seed": 0},
    # everything but the MLPs (and the post-attention norm in front of them)
    "trainable": ["model.embed_tokens.", "lm_head.", "model.norm.", "model.layers.0.self_attn.",
                  "model.layers.0.input_layernorm.", "model.layers.1.self_attn.", "model.layers.1.input_layernorm."],
}


def recipes() -> dict[str, dict]:
    return {"induction": INDUCTION}


def _cache_root() -> Path:
    return Path(os.environ.get("SCALPEL_CACHE", Path.home() / ".cache" / "scalpel")) / "organisms"


def _recipe_hash(recipe: dict) -> str:
    text = json.dumps(recipe, sort_keys=True) + _scalpel.__version__
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def induction_data(n: int, span, seed: int, vocab: int = 256) -> list[list[int]]:
    """n sequences: BOS, a random span of tokens 1..vocab-1, the same span again.
    `span`: a length, or [min, max] for a random length per sequence."""
    rng = random.Random(seed)
    lo, hi = (span, span) if isinstance(span, int) else span
    out = []
    for _ in range(n):
        s = [rng.randrange(1, vocab) for _ in range(rng.randint(lo, hi))]
        out.append([0] + s + s)
    return out


def induction_scores(model, span: int = 20, n: int = 64, seed: int = 12345):
    """Attention-pattern scores per (layer, head), computed from the patterns alone:
    previous-token score = mean attention from each position to the one before;
    induction score = mean attention from each position of the repeat to the
    position just after the same token's first occurrence. Returns two tensors [layers, heads]."""
    import torch

    seqs = torch.tensor(induction_data(n, span, seed, model.config.d_vocab))
    L = model.config.n_layers
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(L)]
    _, cache = model.run_with_cache(seqs, names)
    prev, ind = [], []
    T = seqs.shape[1]
    q = torch.arange(2, T)
    rq = torch.arange(span + 1, T)  # positions of the repeat: token t repeats position t - span
    for l in range(L):
        pat = cache[names[l]]  # [batch, head, q, k]
        prev.append(pat[:, :, q, q - 1].mean(dim=(0, 2)))
        ind.append(pat[:, :, rq, rq - span + 1].mean(dim=(0, 2)))
    return torch.stack(prev), torch.stack(ind)


def build(name: str, force: bool = False) -> Path:
    """The organism's directory, training it first when it is not cached (progress on stderr)."""
    recipe = recipes().get(name)
    if recipe is None:
        raise KeyError(f"organism {name!r}: expected one of {sorted(recipes())}")
    out = _cache_root() / f"{name}-{_recipe_hash(recipe)}"
    if out.is_dir() and (out / "model.safetensors").exists() and not force:
        return out
    if name == "induction":
        _build_induction(recipe, out)
    return out


def _options(train: dict, trainable: list[str], run_dir: str) -> "_scalpel.TrainOptions":
    o = _scalpel.TrainOptions()
    for k, v in train.items():
        setattr(o, k, v)
    o.trainable = trainable
    o.run_dir = run_dir
    return o


def _build_induction(r: dict, out: Path) -> None:
    import tempfile

    import torch

    model = _scalpel.Transformer.from_config(json.dumps(r["config"]), seed=r["init_seed"])
    with torch.no_grad():  # attention-only: the MLPs add exactly 0 (their output projection is 0 and frozen)
        for n, p in model.named_parameters():
            if ".mlp." in n:
                p.zero_()
    data = [_scalpel.LMExample(s) for s in induction_data(r["examples"], r["span"], r["data_seed"])]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as run:
        res = _scalpel.train_lm(model, data, _options(r["train"], r["trainable"], run))
        model.save_pretrained(str(out), overwrite=True)
        (out / "losses.csv").write_text((Path(run) / "losses.csv").read_text())
    (out / "recipe.json").write_text(json.dumps({**r, "final_loss": res.loss[-1], "seconds": res.seconds}, indent=1) + "\n")
