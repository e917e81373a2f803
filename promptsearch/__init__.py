"""promptsearch: automatic prompt search for language models.

Importing this package is cheap: torch and transformers load only when a model is
loaded or a prompt is scored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from promptsearch import _moved
from promptsearch.errors import (
    ConfigError,
    DataError,
    ModelError,
    PromptSearchError,
    StorageError,
    StudyConflictError,
    TemplateError,
)
from promptsearch.prompt import Prompt
from promptsearch.task import Example, Task

__version__ = "0.1.0"

_moved.install()  # old module paths (promptsearch.scorer, ...) for one release

__all__ = [
    "Budget",
    "ConfigError",
    "DataError",
    "Example",
    "ModelError",
    "Prompt",
    "PromptEnsemble",
    "PromptSearchError",
    "Racing",
    "Scorer",
    "Selection",
    "StorageError",
    "StudyConflictError",
    "Task",
    "TemplateError",
    "__version__",
    "evaluate",
    "export_prompt",
    "export_study",
    "final",
    "load_model",
    "load_task",
    "search",
]

# name -> module holding it; imported on first attribute access
_LAZY = {
    "Budget": "promptsearch.study.budget",
    "Racing": "promptsearch.study.racing",
    "PromptEnsemble": "promptsearch.study.ensemble",
    "Selection": "promptsearch.study.selection",
    "search": "promptsearch.api",
    "evaluate": "promptsearch.api",
    "final": "promptsearch.api",
    "export_prompt": "promptsearch.export.formats",
    "export_study": "promptsearch.export.study",
    "Scorer": "promptsearch.scoring.scorer",
    "load_model": "promptsearch.models.loading",
    "load_task": "promptsearch.tasks",
}

if TYPE_CHECKING:
    from promptsearch.api import evaluate, final, search
    from promptsearch.export.formats import export_prompt
    from promptsearch.export.study import export_study
    from promptsearch.models.loading import load_model
    from promptsearch.scoring.scorer import Scorer
    from promptsearch.study.budget import Budget
    from promptsearch.study.ensemble import PromptEnsemble
    from promptsearch.study.racing import Racing
    from promptsearch.study.selection import Selection
    from promptsearch.tasks import load_task


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'promptsearch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
