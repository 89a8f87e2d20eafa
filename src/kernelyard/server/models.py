"""The REST shapes of jupyter_server's kernels and kernelspecs APIs, built from backend values.

Pure: the backend gives typed values (:class:`~kernelyard.backend.KernelSpecs`,
a :class:`~kernelyard.discovery.KernelSpec`), the server turns them into the
JSON bodies clients expect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kernelyard.backend import KernelSpecs
from kernelyard.discovery import KernelSpec

__all__ = ["format_time", "kernelspec_model", "kernelspecs_body"]


def format_time(when: datetime) -> str:
    """ISO 8601 in UTC, always with six fractional digits and a ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def kernelspec_model(name: str, spec: KernelSpec, *, base_url: str = "/") -> dict[str, Any]:
    """One kernelspec as ``GET /api/kernelspecs`` lists it: its ``kernel.json`` and the
    URL of each resource file the server serves.
    """
    prefix = base_url.rstrip("/") + "/kernelspecs/" + name + "/"
    resources: dict[str, str] = {}
    for filename in spec.resource_names():
        key = filename if filename in ("kernel.js", "kernel.css") else filename.rpartition(".")[0]
        resources[key or filename] = prefix + filename
    return {"name": name, "spec": spec.to_dict(), "resources": resources}


def kernelspecs_body(specs: KernelSpecs, *, base_url: str = "/") -> dict[str, Any]:
    """The ``GET /api/kernelspecs`` body."""
    return {
        "default": specs.default,
        "kernelspecs": {
            name: kernelspec_model(name, spec, base_url=base_url)
            for name, spec in specs.specs.items()
        },
    }
