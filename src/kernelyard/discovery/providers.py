"""Kernel type providers: the sources :class:`~kernelyard.discovery.finder.KernelFinder` asks.

A provider has an ``id`` (the part before the ``/`` of a type id such as
``spec/python3``) and answers two questions: which kernels it offers, and the
spec of one of them. Listing never fails because of one broken kernel: it is
skipped with a warning. Asking for that kernel by name raises its error.

Third-party providers register a zero-argument factory in the entry-point
group ``kernelyard.providers``; the entry point's name is the provider id.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from kernelyard.discovery.kernelspec import (
    IPYKERNEL_PRELOAD,
    KernelSpec,
    load_kernelspec,
    normalize_kernel_name,
)
from kernelyard.discovery.ownkernel import KERNEL_NAME, kernelyard_spec
from kernelyard.discovery.paths import kernel_dirs
from kernelyard.errors import KernelSpecError, NoSuchKernelSpec

__all__ = ["KernelProvider", "KernelSpecProvider", "PythonEnvProvider"]

log = logging.getLogger(__name__)


@runtime_checkable
class KernelProvider(Protocol):
    """A source of kernel types."""

    id: str

    def find_kernels(self) -> Iterator[tuple[str, KernelSpec]]:
        """Yield ``(name, spec)`` for every usable kernel; broken ones are logged and skipped."""
        ...

    def get_spec(self, name: str) -> KernelSpec:
        """The spec of ``name``; NoSuchKernelSpec if unknown, KernelSpecError if broken."""
        ...


class KernelSpecProvider:
    """Kernelspec directories on Jupyter's data path (``kernels/NAME/kernel.json``)."""

    id = "spec"

    def __init__(
        self,
        dirs: Sequence[Path] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Search ``dirs`` (highest priority first), or Jupyter's path for ``environ``."""
        self.dirs = list(dirs) if dirs is not None else kernel_dirs(environ or os.environ)

    def _candidates(self) -> Iterator[tuple[str, Path]]:
        """Every ``(lowercased name, dir)`` holding a kernel.json, first occurrence only."""
        seen: set[str] = set()
        for base in self.dirs:
            try:
                entries = sorted(base.iterdir())
            except OSError:
                continue  # missing or unreadable search dirs are normal
            for entry in entries:
                key = entry.name.lower()
                if key not in seen and (entry / "kernel.json").is_file():
                    seen.add(key)
                    yield key, entry

    def find_kernels(self) -> Iterator[tuple[str, KernelSpec]]:
        for name, path in self._candidates():
            try:
                yield name, load_kernelspec(path, name)
            except KernelSpecError as exc:
                log.warning("skipping kernelspec in %s: %s", path, exc)

    def get_spec(self, name: str) -> KernelSpec:
        key = normalize_kernel_name(name)
        for candidate, path in self._candidates():
            if candidate == key:
                return load_kernelspec(path, key)
        raise NoSuchKernelSpec(name)


#: What ipykernel imports before it answers (its debugger pulls in debugpy): a fork
#: server imports it once, and each ``pyimport/ipykernel`` start takes ~130 ms, not ~400.


#: The first ipykernel that takes CurveZMQ keys (and says so in its own kernelspec).
IPYKERNEL_CURVE = (7, 4)


def _ipykernel_encryption() -> dict[str, list[str]]:
    """``supported_encryption`` as the installed ipykernel's own kernelspec declares it."""
    try:
        version = importlib.metadata.version("ipykernel")
    except importlib.metadata.PackageNotFoundError:
        return {}
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return {"supported_encryption": ["curve"]} if numbers >= IPYKERNEL_CURVE else {}


class PythonEnvProvider:
    """Kernels importable in the running Python environment, offered without any install.

    ``pyimport/kernelyard`` (our kernel) is always offered;
    ``pyimport/ipykernel`` when ipykernel can be imported (checked without
    importing it). Both list what a fork server should preload.
    """

    id = "pyimport"

    def _specs(self) -> dict[str, KernelSpec]:
        specs: dict[str, KernelSpec] = {KERNEL_NAME: kernelyard_spec()}
        found = importlib.util.find_spec("ipykernel")
        if found is not None and found.submodule_search_locations:
            package_dir = Path(next(iter(found.submodule_search_locations)))
            specs["ipykernel"] = KernelSpec(
                name="ipykernel",
                argv=(sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"),
                display_name=f"Python {sys.version_info.major} (ipykernel)",
                language="python",
                metadata={
                    "debugger": True,
                    "kernelyard": {"preload": list(IPYKERNEL_PRELOAD)},
                    **_ipykernel_encryption(),
                },
                kernel_protocol_version="5.5",
                resource_dir=package_dir / "resources",
            )
        return specs

    def find_kernels(self) -> Iterator[tuple[str, KernelSpec]]:
        yield from self._specs().items()

    def get_spec(self, name: str) -> KernelSpec:
        spec = self._specs().get(name.lower())
        if spec is None:
            raise NoSuchKernelSpec(name)
        return spec
