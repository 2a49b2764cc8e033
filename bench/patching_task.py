"""The patching benchmarks' shared task: a random-weight model of Qwen2.5-0.5B's
shape (config from ../shared/tokenizers, seed 0, float32) and a clean/corrupted
pair of random tokens that differ in the middle one, with the last-position
logit difference as the metric. Used by bench_patching.py,
bench_patching_tl.py, bench_attribution.py and bench_directions.py so they time the same thing."""
from __future__ import annotations

from pathlib import Path


def save_random_qwen(shared: str | Path, path: str | Path):
    """Writes the random model as a Hugging Face directory at `path`; returns its config."""
    import torch
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(Path(shared) / "tokenizers" / "qwen2.5-0.5b-instruct")
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(path)
    return cfg


def load_random_qwen(shared: str | Path, with_transformers: bool = False):
    """The random model loaded by scalpel (float32) and, when asked, by transformers from the same
    directory: (config, scalpel model, transformers model or None)."""
    import tempfile

    import torch
    import transformers

    import scalpel

    with tempfile.TemporaryDirectory() as tmp:
        cfg = save_random_qwen(shared, tmp)
        model = scalpel.load(tmp, dtype="float32")
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval() if with_transformers else None
    return cfg, model, hf


def patching_pair(vocab_size: int, tokens: int):
    """(clean [1, tokens], corrupted [1, tokens], metric: logits -> [rows])."""
    import torch

    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, vocab_size, (1, tokens), generator=g)
    corrupted = clean.clone()
    corrupted[0, tokens // 2] = (clean[0, tokens // 2] + 1) % vocab_size
    a, b = int(clean[0, -1]), int(clean[0, 0])

    def metric(logits):
        return logits[:, -1, a] - logits[:, -1, b]

    return clean, corrupted, metric
