"""KernelFinder: every kernel type from every provider, by type id.

A type id is ``provider/name`` (``spec/python3``, ``pyimport/ipykernel``). A
bare name is looked up in the kernelspec provider, so ``python3`` means
``spec/python3``, as Jupyter users expect; listings show kernelspec kernels
under their bare names for the same reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

from kernelyard.discovery.kernelspec import KernelSpec
from kernelyard.discovery.paths import jupyter_runtime_dir
from kernelyard.discovery.providers import KernelProvider, KernelSpecProvider, PythonEnvProvider
from kernelyard.errors import KernelSpecError, NoSuchKernelSpec
from kernelyard.provisioning import KernelProcess, LaunchOptions, SubprocessProvisioner
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["ENTRY_POINT_GROUP", "KernelFinder", "load_entry_point_providers"]

log = logging.getLogger(__name__)

#: The entry-point group third-party providers register in.
ENTRY_POINT_GROUP = "kernelyard.providers"
SPEC_PROVIDER_ID = KernelSpecProvider.id


def load_entry_point_providers(group: str = ENTRY_POINT_GROUP) -> Iterator[KernelProvider]:
    """Instantiate every provider in ``group``; one that fails to load is logged and skipped.

    The entry point's name becomes the provider's ``id``.
    """
    for ep in entry_points(group=group):
        try:
            provider = ep.load()()
        except Exception:
            log.warning("kernel provider %r (%s) failed to load", ep.name, ep.value, exc_info=True)
            continue
        if not isinstance(provider, KernelProvider):
            log.warning("kernel provider %r (%s) is not a KernelProvider", ep.name, ep.value)
            continue
        provider.id = ep.name
        yield provider


class KernelFinder:
    """Finds kernel types across providers; the first provider with a given id wins."""

    def __init__(
        self, providers: Iterable[KernelProvider], *, runtime_dir: Path | None = None
    ) -> None:
        """``runtime_dir`` is where connection files go (default: Jupyter's runtime dir)."""
        self.runtime_dir = runtime_dir or jupyter_runtime_dir(os.environ)
        self.providers: dict[str, KernelProvider] = {}
        for provider in providers:
            if provider.id in self.providers:
                log.warning("ignoring a second kernel provider with id %r", provider.id)
                continue
            if "/" in provider.id or not provider.id:
                log.warning("ignoring kernel provider with invalid id %r", provider.id)
                continue
            self.providers[provider.id] = provider

    @classmethod
    def default(cls, *, runtime_dir: Path | None = None) -> KernelFinder:
        """The built-in providers plus every provider registered as an entry point."""
        builtin: list[KernelProvider] = [KernelSpecProvider(), PythonEnvProvider()]
        ours = {type(p) for p in builtin}
        plugins = [p for p in load_entry_point_providers() if type(p) not in ours]
        return cls([*builtin, *plugins], runtime_dir=runtime_dir)

    @staticmethod
    def display_id(provider_id: str, name: str) -> str:
        """The id a listing shows: bare for kernelspecs, ``provider/name`` otherwise."""
        return name if provider_id == SPEC_PROVIDER_ID else f"{provider_id}/{name}"

    def find_kernels(self) -> Iterator[tuple[str, KernelSpec]]:
        """Yield ``(type_id, spec)`` for every kernel type, provider by provider."""
        for provider_id, provider in self.providers.items():
            try:
                kernels = list(provider.find_kernels())
            except Exception:
                log.warning("kernel provider %r failed to list kernels", provider_id, exc_info=True)
                continue
            for name, spec in kernels:
                yield self.display_id(provider_id, name), spec

    def default_type_id(self, preferred: Iterable[str] = ("python3",)) -> str | None:
        """The first of ``preferred`` that exists, else the first kernel listed, else None."""
        listed = [type_id for type_id, _ in self.find_kernels()]
        for type_id in preferred:
            if type_id in listed:
                return type_id
        return listed[0] if listed else None

    def short_names(self) -> dict[str, str]:
        """Every kernel type under its bare name (``kernelyard``, ``ipykernel``) -> type id.

        The first provider to offer a name owns it (kernelspec dirs come
        first), so an installed kernelspec shadows the same kernel offered
        without install. This is how the server names kernels, since Jupyter
        clients expect names without a slash.
        """
        names: dict[str, str] = {}
        for type_id, spec in self.find_kernels():
            names.setdefault(spec.name, type_id)
        return names

    def get_spec(self, type_id: str) -> KernelSpec:
        """The spec of ``type_id``: ``provider/name``, or a bare name.

        A bare name is a kernelspec name first, else the first provider's
        kernel of that name (see :meth:`short_names`). Raises NoSuchKernelSpec
        for an unknown provider or name, and KernelSpecError for a broken or
        invalid one.
        """
        provider_id, sep, name = type_id.partition("/")
        if not sep:
            try:
                return self.get_spec(f"{SPEC_PROVIDER_ID}/{type_id}")
            except NoSuchKernelSpec:
                owner = self.short_names().get(type_id)
                if owner is None or "/" not in owner:
                    raise NoSuchKernelSpec(type_id) from None
                return self.get_spec(owner)
        provider = self.providers.get(provider_id)
        if provider is None or not name:
            raise NoSuchKernelSpec(type_id)
        try:
            return provider.get_spec(name)
        except NoSuchKernelSpec:
            raise NoSuchKernelSpec(type_id) from None
        except KernelSpecError:
            raise
        except Exception as exc:
            raise KernelSpecError(
                f"kernel provider {provider_id!r} failed for {name!r}: {exc}", name=type_id
            ) from exc

    async def launch(
        self,
        type_id: str,
        *,
        kernel_id: str | None = None,
        options: LaunchOptions | None = None,
    ) -> tuple[ConnectionInfo, KernelProcess]:
        """Spawn a kernel of ``type_id``; returns its connection info and process handle.

        jupyter_kernel_mgmt's ``launch``, for those who drive the process themselves:
        the kernel has started but may not answer yet, and its ports stay held until
        ``process.release_ports()``. A :class:`~kernelyard.manager.KernelManager`
        does all that (and restarts, and shutdown) through its provisioner instead.
        """
        provisioner = SubprocessProvisioner(self.runtime_dir)
        spec = self.get_spec(type_id).launch_spec()
        process = await provisioner.start(spec, kernel_id=kernel_id, options=options)
        return process.connection_info, process
