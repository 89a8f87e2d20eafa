"""Helpers shared by tests: kernelspec directories made on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

MakeSpec = Callable[..., Path]


def make_spec_dir(base: Path, name: str, raw: str | None = None, **fields: Any) -> Path:
    """Write ``base/name/kernel.json`` (``raw`` text, or a valid spec updated with ``fields``)."""
    spec_dir = base / name
    spec_dir.mkdir(parents=True)
    data = {"argv": ["python", "-m", name, "-f", "{connection_file}"], "language": "python"}
    data.update(fields)
    (spec_dir / "kernel.json").write_text(raw if raw is not None else json.dumps(data))
    return spec_dir
