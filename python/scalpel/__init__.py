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
from .packaged import shipped_interventions, shipped_intervention_path  # noqa: E402,F401


def load_intervention(path):
    """Read an intervention file (C++ scalpel::load_intervention): a path, or the name of an
    intervention that ships with scalpel (scalpel.shipped_interventions())."""
    from .packaged import intervention_path
    return _scalpel.load_intervention(str(intervention_path(path)))


def intervention_description(path):
    """The JSON description an intervention file carries, as a dict: a path or a shipped name."""
    from .packaged import intervention_path
    return _scalpel.intervention_description(str(intervention_path(path)))

from . import plots  # noqa: E402,F401
from . import bias, organisms, sra  # noqa: E402,F401

__version__ = _scalpel.__version__

# A Python progress callback must be dropped while the interpreter is alive.
_atexit.register(lambda: _scalpel.set_progress_callback(None))

__all__ = [name for name in dir(_scalpel) if not name.startswith("_")]
