"""scalpel: find the circuits inside transformer language models, and change
their behaviour surgically.

The C++ core (``scalpel._scalpel``) does the work; this package re-exports it
and adds only Python sugar. Every public C++ function has the same name here.
"""
from __future__ import annotations

import atexit as _atexit

import torch as _torch  # noqa: F401  (loads libtorch before the extension)

from . import _scalpel
# Every public name of the C++ core, under the same name.
for _name in dir(_scalpel):
    if not _name.startswith("_"):
        globals()[_name] = getattr(_scalpel, _name)

from .model import Model, load, default_stop_tokens  # noqa: E402,F401  (adds hooks() and generate() to Transformer)
from .packaged import packaged_model_path, packaged_model_parts, packaged_models  # noqa: E402,F401
from . import plots  # noqa: E402,F401
from . import bias, organisms, sra  # noqa: E402,F401

__version__ = _scalpel.__version__

# A Python progress callback must be dropped while the interpreter is alive.
_atexit.register(lambda: _scalpel.set_progress_callback(None))

__all__ = [name for name in dir(_scalpel) if not name.startswith("_")]
