"""Helpers shared by the parity tests."""
from __future__ import annotations

import random


def random_id_lists(seed: int, size: int, count: int) -> list[list[int]]:
    """Id lists that stress a decoder: any ids, low ids (bytes, specials),
    and the edges of the vocabulary."""
    rng = random.Random(seed)
    lists = []
    for _ in range(count):
        n = rng.randint(0, 12)
        pool = rng.random()
        if pool < 0.4:
            lists.append([rng.randrange(size) for _ in range(n)])
        elif pool < 0.7:
            lists.append([rng.randrange(min(size, 600)) for _ in range(n)])
        else:
            lists.append([rng.choice([0, 1, 2, 3, size - 1, size - 2, rng.randrange(size)]) for _ in range(n)])
    return lists


# The tiny random Llama the intervention tests share (scalpel.Transformer.from_config(json.dumps(TINY_LLAMA))
# or random_hf_model for the same weights in transformers).
TINY_LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 97,
              "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "tie_word_embeddings": False, "torch_dtype": "float32"}


def random_hf_model(config, directory, std: float = 0.2, seed: int = 0):
    """A transformers model of `config` with every parameter drawn from N(0, std²) (seeded), saved
    as safetensors in `directory`: the same weights for transformers and for scalpel.load."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hf = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, std)
    hf.save_pretrained(directory, safe_serialization=True)
    return hf
