"""The local provisioners: kernels as processes of this machine.

:class:`SubprocessProvisioner` spawns each kernel in its own session (its
process group is its pid, so signals reach the kernel's children too).
:class:`ForkServerProvisioner` forks kernels whose spec preloads from a fork
server (:mod:`kernelyard.provisioning.forkserver`), and spawns the rest, and
those it cannot fork yet. Both share :func:`~kernelyard.provisioning.launch.launch`
and return a :class:`~kernelyard.provisioning.process.KernelProcess`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

from kernelyard.errors import LaunchError
from kernelyard.provisioning.adopted import AdoptedProcess, adopt_local
from kernelyard.provisioning.forkserver import ForkServers
from kernelyard.provisioning.launch import ProcessStarter, launch
from kernelyard.provisioning.options import LaunchOptions
from kernelyard.provisioning.process import KernelProcess, ProcessEvents, ProcessHandle
from kernelyard.provisioning.provisioner import AttachInfo
from kernelyard.provisioning.spec import LaunchSpec
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["ForkServerProvisioner", "SubprocessProvisioner", "spawn"]


async def spawn(
    spec: LaunchSpec,
    argv: list[str],
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    events: ProcessEvents,
) -> ProcessHandle:
    """Start ``argv`` as a child in a new session; LaunchError if the program cannot run."""
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: events,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=None,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise LaunchError(
            f"cannot start kernel {argv[0]!r}: {exc.strerror or exc}", argv=argv
        ) from exc
    return transport


class SubprocessProvisioner:
    """Spawns every kernel; connection files go to ``runtime_dir``."""

    name = "local"

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir

    async def start(
        self,
        spec: LaunchSpec,
        *,
        kernel_id: str | None = None,
        options: LaunchOptions | None = None,
        connection_info: ConnectionInfo | None = None,
    ) -> KernelProcess:
        """See :meth:`Provisioner.start`; ``kernel_id`` names the connection file."""
        options = options or LaunchOptions()
        return await launch(
            spec,
            self._starter(options),
            provisioner=self.name,
            kernel_id=kernel_id or str(uuid.uuid4()),
            runtime_dir=self.runtime_dir,
            options=options,
            connection_info=connection_info,
        )

    def _starter(self, options: LaunchOptions) -> ProcessStarter:
        return spawn

    async def adopt(self, attach: AttachInfo, spec: LaunchSpec) -> AdoptedProcess:
        """The running kernel ``attach`` names (one launched with ``persist``), taken
        over; LaunchError when its process is gone.
        """
        return adopt_local(attach, spec, provisioner=self.name)


class ForkServerProvisioner(SubprocessProvisioner):
    """Forks kernels that preload from ``forks`` (which the caller owns and closes), when
    ``options.fork`` allows it and their fork server is ready; spawns the others.
    """

    def __init__(self, forks: ForkServers, runtime_dir: Path) -> None:
        super().__init__(runtime_dir)
        self.forks = forks

    def _starter(self, options: LaunchOptions) -> ProcessStarter:
        return self._fork_or_spawn if options.fork and not options.persist else spawn

    async def _fork_or_spawn(
        self,
        spec: LaunchSpec,
        argv: list[str],
        env: dict[str, str],
        cwd: str | os.PathLike[str] | None,
        events: ProcessEvents,
    ) -> ProcessHandle:
        workdir = os.path.abspath(cwd if cwd is not None else os.getcwd())
        forked = await self.forks.spawn(spec, argv, env=env, cwd=workdir, events=events)
        return forked if forked is not None else await spawn(spec, argv, env, cwd, events)
