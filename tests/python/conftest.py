"""Shared fixtures: where ../shared is, and a temp dir per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from scalpel.mainjob import shared_dir  # $SCALPEL_SHARED, else ../shared beside the repo

REPO = Path(__file__).resolve().parents[2]


SHARED = shared_dir()


@pytest.fixture(scope="session")
def shared() -> Path:
    if SHARED is None:
        pytest.skip("../shared not found (set SCALPEL_SHARED)")
    return SHARED


def _share_gguf_readers() -> None:
    """The gguf package parses the 262k-token vocabulary of the Gemma 3 file in
    ~45 s, and transformers parses the file anew for the config, the weights
    and the tokenizer. Tests share one parse per file (test-only)."""
    try:
        import gguf
    except ImportError:
        return
    original = gguf.GGUFReader
    cache: dict = {}

    def reader(path, mode="r"):
        st = os.stat(path)
        key = (str(Path(path).resolve()), mode, st.st_size, st.st_mtime_ns)
        if key not in cache:
            cache[key] = original(path, mode)
        return cache[key]

    gguf.GGUFReader = reader


_share_gguf_readers()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    """The Gemma 3 270M GGUF, found through its PyPI package and assembled once."""
    from scalpel.packaged import packaged_model_path

    return packaged_model_path()


@pytest.fixture(scope="session")
def gemma3_hf(gemma3_path):
    """transformers' own Gemma 3 model loaded from the same GGUF (float32, eager)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gemma3_path.parent), gguf_file=gemma3_path.name, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


@pytest.fixture(scope="session")
def gemma3_hf_tokenizer(gemma3_path):
    """transformers' conversion of the GGUF's tokenizer."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(gemma3_path.parent), gguf_file=gemma3_path.name)
