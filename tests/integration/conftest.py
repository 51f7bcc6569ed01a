"""Fixtures for the integration tests: fresh copies of the example modules."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

_copies = itertools.count()


@pytest.fixture
def example() -> Callable[[str], ModuleType]:
    """Load ``examples/<name>.py`` as a new module, so module-level state
    (rooms, counters, stored messages) starts empty in every test."""
    def load(name: str) -> ModuleType:
        path = EXAMPLES / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"example_{name}_{next(_copies)}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
