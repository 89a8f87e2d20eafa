"""Kernels through a jupyter_client provisioner: the adapter (the ``jupyter`` extra).

A kernelspec whose ``metadata.kernel_provisioner.provisioner_name`` is not one
of ours but an entry point of jupyter_client's ``jupyter_client.kernel_provisioners``
group (gateway_provisioners' Kubernetes, Docker and YARN provisioners, a
site's own) launches through that provisioner, under kernelyard's manager and
server.

jupyter_client's provisioners expect a jupyter_client ``KernelManager`` as
their parent: they read its ip, transport, key and encryption setting, and
have it write the connection file. So the adapter makes one
``AsyncKernelManager`` per start, hands it the kernelspec, and lets it run the
provisioner's ``pre_launch``, ``launch_kernel`` and ``post_launch`` exactly as
jupyter_client would. What that returns is a :class:`JupyterKernel`, driven
through the provisioner's own ``wait``, ``send_signal``, ``terminate``,
``kill`` and ``cleanup`` (its coroutines run as tasks where our interface is
synchronous). Readiness, restarts and the heartbeat stay the manager's, as
for every kernel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from kernelyard.errors import KernelSpecError, LaunchError
from kernelyard.provisioning.exits import ExitNotice, ExitNoticed
from kernelyard.provisioning.options import LaunchOptions
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.provisioning.spec import InterruptMode, LaunchSpec, kernel_env
from kernelyard.transport.sockets import asyncio_context
from kernelyard.wire.connection import ConnectionInfo

if TYPE_CHECKING:
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase

__all__ = ["JUPYTER_GROUP", "JupyterKernel", "JupyterProvisioner", "jupyter_provisioner_names"]

log = logging.getLogger(__name__)

#: jupyter_client's entry-point group of provisioners.
JUPYTER_GROUP = "jupyter_client.kernel_provisioners"
#: Seconds between two looks at a kernel's end (the provisioner's ``poll``, which may
#: be a remote API's call: Kubernetes, YARN). The heartbeat notices a silent kernel sooner.
POLL_INTERVAL = 1.0
#: Failed polls in a row after which the kernel is taken for gone.
POLL_FAILURES = 3


def jupyter_provisioner_names() -> list[str]:
    """The provisioners jupyter_client's entry points name (none without jupyter_client)."""
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group=JUPYTER_GROUP))


@dataclass
class JupyterProvisioner:
    """Starts kernels through jupyter_client provisioner ``provisioner_name``."""

    provisioner_name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    runtime_dir: Path | None = None
    #: Names it in AttachInfo: ``jupyter:`` and the provisioner's entry-point name.
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"jupyter:{self.provisioner_name}"

    @classmethod
    def from_spec(
        cls, spec_name: str, provisioner_name: str, config: Mapping[str, Any], runtime_dir: Path
    ) -> JupyterProvisioner:
        """The adapter for a kernelspec naming ``provisioner_name``; KernelSpecError
        when jupyter_client (the ``jupyter`` extra) is not installed.
        """
        try:
            import jupyter_client  # noqa: F401
        except ImportError as exc:
            raise KernelSpecError(
                f"kernelspec {spec_name!r} names jupyter_client provisioner "
                f"{provisioner_name!r}, but jupyter_client is not installed "
                "(pip install 'kernelyard[jupyter]')",
                name=spec_name,
            ) from exc
        return cls(provisioner_name, dict(config), runtime_dir)

    async def start(
        self,
        spec: LaunchSpec,
        *,
        kernel_id: str,
        options: LaunchOptions,
        connection_info: ConnectionInfo | None = None,
    ) -> JupyterKernel:
        """Launch through the provisioner (see the module); LaunchError when it fails,
        or for ``options.persist``, which it cannot honour.
        """
        if options.persist:
            raise LaunchError(
                f"jupyter_client provisioner {self.provisioner_name!r} cannot launch kernels "
                "that outlive their manager (LaunchOptions.persist)"
            )
        from jupyter_client.kernelspec import KernelSpec as JupyterSpec
        from jupyter_client.manager import AsyncKernelManager

        metadata: dict[str, Any] = {
            "kernel_provisioner": {
                "provisioner_name": self.provisioner_name,
                "config": dict(self.config),
            }
        }
        if spec.supports_curve:
            metadata["supported_encryption"] = ["curve"]
        jupyter_spec = JupyterSpec(
            argv=list(spec.argv),
            env=dict(spec.env),
            display_name=spec.kernel_name,
            language="",
            interrupt_mode=spec.interrupt_mode,
            metadata=metadata,
            resource_dir=str(spec.resource_dir or ""),
        )
        # The shared context, not one per manager: it would be destroyed in __del__.
        manager = AsyncKernelManager(
            kernel_name=spec.kernel_name,
            transport=options.transport,
            context=asyncio_context(),
        )
        manager._kernel_spec = jupyter_spec  # what it would load by name, already made
        manager.kernel_id = kernel_id
        manager.ip = options.ip
        manager.transport_encryption = options.transport_encryption
        if self.runtime_dir is not None:
            self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            manager.connection_file = str(self.runtime_dir / f"kernel-{kernel_id}.json")
        if connection_info is not None:  # a restart: the same key, keys and ports
            manager.load_connection_info(_for_jupyter(connection_info))  # type: ignore[arg-type]
        env = kernel_env(options.environment(), spec.env, parent_pid=os.getpid())
        quiet: dict[str, Any] = {}
        if options.stderr is None:
            quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
        try:
            await manager.start_kernel(
                env=dict(env),
                cwd=os.fspath(options.cwd) if options.cwd is not None else None,
                **quiet,
            )
        except BaseException as exc:
            # Failed or cancelled (a DELETE while it starts): nothing it launched may be
            # left running, and the manager's socket and file go.
            with anyio.CancelScope(shield=True):
                await _abandon(manager)
            if not isinstance(exc, Exception):
                raise
            raise LaunchError(
                f"jupyter_client provisioner {self.provisioner_name!r} could not start kernel "
                f"{spec.kernel_name!r}: {type(exc).__name__}: {exc}",
                argv=list(spec.argv),
            ) from exc
        provisioner = manager.provisioner
        assert provisioner is not None  # start_kernel made it
        info = ConnectionInfo.from_dict(_from_jupyter(manager.get_connection_info()))
        located = await provisioner.get_provisioner_info()
        return JupyterKernel(
            manager=manager,
            provisioner=provisioner,
            connection_info=info,
            argv=list(spec.argv),
            interrupt_mode=spec.interrupt_mode,
            name=self.name,
            location=_plain(located),
        )


class JupyterKernel(ExitNoticed):
    """A kernel a jupyter_client provisioner started, behind our ProvisionedKernel."""

    def __init__(
        self,
        *,
        manager: AsyncKernelManager,
        provisioner: KernelProvisionerBase,
        connection_info: ConnectionInfo,
        argv: list[str],
        interrupt_mode: InterruptMode,
        name: str,
        location: dict[str, Any],
    ) -> None:
        self.connection_info = connection_info
        self.argv = argv
        self._interrupt_mode: InterruptMode = interrupt_mode
        self._manager = manager
        self._provisioner = provisioner
        self._name = name
        self._location = location
        self._exit = ExitNotice()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spawn(self._watch())

    @property
    def interrupt_mode(self) -> InterruptMode:
        return self._interrupt_mode

    @property
    def exit_description(self) -> str:
        return f"exited with code {self.returncode} (jupyter_client provisioner {self._name})"

    async def _watch(self) -> None:
        """Poll the provisioner until the kernel ended (its ``poll`` says a code)."""
        failures = 0
        while True:
            try:
                code = await self._provisioner.poll()
                failures = 0
            except Exception as exc:  # a remote API's hiccup: gone only if it lasts
                failures += 1
                log.warning("kernel %s: the provisioner's poll failed: %s", self._name, exc)
                code = -1 if failures >= POLL_FAILURES else None
            if code is not None:
                break
            await asyncio.sleep(POLL_INTERVAL)
        self._exit.ended(int(code))

    async def stderr_tail(self) -> str:
        """ "": the provisioner's kernel writes where the provisioner sends it."""
        return ""

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(_quietly(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            self._spawn(self._provisioner.send_signal(signum))

    def interrupt(self) -> None:
        self.send_signal(signal.SIGINT)

    def terminate(self) -> None:
        if self.returncode is None:
            self._spawn(self._provisioner.terminate(restart=False))

    def kill(self) -> None:
        if self.returncode is None:
            self._spawn(self._provisioner.kill(restart=False))

    def release_ports(self) -> None:
        """Nothing held here: jupyter_client chose and released the ports."""

    def cleanup(self, *, remove_connection_file: bool = True) -> None:
        """The provisioner's cleanup, and its manager's (the connection file goes unless
        the kernel restarts in place).
        """
        restart = not remove_connection_file

        # jupyter_client's cleanup_resources calls the provisioner's cleanup too.
        self._spawn(self._manager.cleanup_resources(restart=restart))

    def attach_info(self, kernel_id: str) -> AttachInfo:
        """The provisioner's own ``get_provisioner_info`` (what it re-attaches from)."""
        return AttachInfo(self._name, kernel_id, self.connection_info, self._location)


async def _abandon(manager: AsyncKernelManager) -> None:
    """After a failed start: kill what the provisioner launched, release the rest."""
    provisioner = manager.provisioner
    if provisioner is not None and provisioner.has_process:
        await _quietly(provisioner.kill(restart=False))
    await _quietly(manager.cleanup_resources(restart=False))


async def _quietly(work: Awaitable[Any]) -> None:
    """Run a provisioner's coroutine whose failure nobody waits for; log it."""
    try:
        await work
    except Exception as exc:
        log.warning("a jupyter_client provisioner call failed: %s: %s", type(exc).__name__, exc)


def _for_jupyter(info: ConnectionInfo) -> dict[str, Any]:
    """Our connection info as jupyter_client's ``load_connection_info`` takes it."""
    data = info.to_dict()
    data["key"] = info.key
    return data


def _from_jupyter(data: Mapping[str, Any]) -> dict[str, Any]:
    """jupyter_client's connection info (bytes key and Curve keys) as plain JSON data."""
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without what JSON cannot hold or must not hold (keys: the connection
    info carries those, in its 0600 places).
    """
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("connection_info", "key"):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[key] = value
    return kept
