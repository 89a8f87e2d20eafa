"""Shared fixtures and hypothesis settings."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from .helpers import MakeSpec, make_spec_dir

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def make_spec() -> MakeSpec:
    """``make_spec(base, name, **fields)`` writes ``base/name/kernel.json``."""
    return make_spec_dir
