"""Shared fixtures: where ../shared is, and a temp dir per test; the test tiers
(pytest.ini): every test carries exactly one of unit / oracle / e2e."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from scalpel.mainjob import shared_dir  # $SCALPEL_SHARED, else ../shared beside the repo

REPO = Path(__file__).resolve().parents[2]


SHARED = shared_dir()


TIERS = ("unit", "oracle", "e2e")
# Fixtures that need the packaged Gemma 3 270M: never in the unit tier.
_GEMMA_FIXTURES = {"gemma3_path", "gemma3_hf", "gemma3_hf_tokenizer"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Refuses the run when a collected test has no tier marker or several (before
    -m deselects anything, so every test is checked whatever is selected)."""
    bad = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            bad.append(f"  {item.nodeid}: {' + '.join(tiers) or 'no tier'}")
        elif tiers[0] == "unit" and _GEMMA_FIXTURES & set(getattr(item, "fixturenames", ())):
            bad.append(f"  {item.nodeid}: unit, but it uses the packaged Gemma 3 270M (e2e or oracle)")
    if bad:
        raise pytest.UsageError(
            f"{len(bad)} test(s) need exactly one tier marker out of {', '.join(TIERS)} (see pytest.ini): "
            "add `pytestmark = pytest.mark.<tier>` to the module, or @pytest.mark.<tier> to each test\n"
            + "\n".join(bad))


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared: a missing (or wrong) one fails the test, never skips it."""
    if SHARED is None or not (SHARED / "models").is_dir():
        where = "not found beside the repository" if SHARED is None else f"{SHARED} has no models/ folder"
        pytest.fail(f"../shared (the models, tokenizers and data the tests use): {where}. Set SCALPEL_SHARED to "
                    "its path, e.g. SCALPEL_SHARED=/path/to/shared make test", pytrace=False)
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
