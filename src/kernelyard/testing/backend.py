"""FakeBackend: a :class:`~kernelyard.backend.KernelBackend` whose kernels live in memory.

Its kernels are :class:`~kernelyard.testing.process.FakeProcess` es in the
test's own event loop: no process, no socket, no file. They keep the
contract of the real backend (lifecycle events, held sends, errors), so a
frontend or the server can be tested against it in milliseconds::

    async with FakeBackend() as backend:
        kernel_id = await backend.start_kernel()
        async with backend.open_channels(kernel_id) as channels:
            ...

    app = create_app(ServerSettings(default_kernel="fake"), backend=FakeBackend().factory)

A test makes things happen with :meth:`FakeBackend.crash` (the kernel dies,
as if its process exited: restarted like the local backend's restarter
would, up to ``restart_limit`` times, unless ``restart=False``) and
:attr:`FakeBackend.start_errors` (starts of a kernel type fail), and looks at
:class:`FakeKernel` (what it was started with, what it received).
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from kernelyard.backend import KernelChannels, KernelSpecs, Progress
from kernelyard.discovery import KernelSpec
from kernelyard.errors import InvalidState, KernelyardError, NoSuchKernel, NoSuchKernelSpec
from kernelyard.lifecycle import Change, KernelState, Lifecycle
from kernelyard.wire import Message, Signer

from .channels import FakeChannels
from .process import FakeProcess

__all__ = ["FAKE_SPEC", "FakeBackend", "FakeKernel"]

#: The kernel type a FakeBackend offers unless given others.
FAKE_SPEC = KernelSpec(
    name="fake",
    argv=(sys.executable, "-c", "raise SystemExit('a fake kernel runs in memory')"),
    display_name="Python (fake, in memory)",
    language="python",
    interrupt_mode="message",
)


class FakeKernel:
    """One kernel a :class:`FakeBackend` runs, across its restarts, as a test sees it."""

    def __init__(self, kernel_id: str, name: str, *, cwd: str | None, env: dict[str, str]):
        self.id = kernel_id
        self.name = name  # its kernel type
        self.cwd = cwd  # as start_kernel was given them
        self.env = env
        self.lifecycle = Lifecycle(kernel_id)
        self.signer = Signer(secrets.token_hex(16).encode())  # really signed, as on the wire
        #: The running process; None while it is dead, restarting or stopped.
        self.process: FakeProcess | None = None
        #: Automatic restarts after deaths so far.
        self.restarts = 0
        #: Every valid message it received, in order, across restarts.
        self.messages: list[Message] = []

    @property
    def state(self) -> KernelState:
        return self.lifecycle.state

    @property
    def execution_count(self) -> int:
        """The current process's execution count (0 when there is none)."""
        return self.process.execution_count if self.process is not None else 0


class FakeBackend:
    """In-memory kernels behind the KernelBackend interface; see the module docstring.

    ``specs``: the kernel types offered (:data:`FAKE_SPEC` by default; every
    one runs the same fake Python kernel), ``default`` the one a start without
    a name gets (the first by default). ``restart``: deaths are undone
    automatically, at most ``restart_limit`` times per kernel, then it is
    given up; ``restart_delay`` is how long a dead kernel waits for that restart
    (a real one takes time to start again).
    """

    def __init__(
        self,
        specs: Iterable[KernelSpec] | None = None,
        *,
        default: str | None = None,
        restart: bool = True,
        restart_limit: int = 5,
        restart_delay: float = 0.0,
    ) -> None:
        self.specs: dict[str, KernelSpec] = {s.name: s for s in specs or (FAKE_SPEC,)}
        self.default = default if default is not None else next(iter(self.specs), None)
        self.restart = restart
        self.restart_limit = restart_limit
        self.restart_delay = restart_delay
        #: Kernel type name -> the error every start of that type raises.
        self.start_errors: dict[str, KernelyardError] = {}
        #: While this is an Event not yet set, starts wait for it (a cluster queue),
        #: telling their ``progress`` so; the error of ``start_errors`` comes after.
        self.start_gate: anyio.Event | None = None
        self.kernels: dict[str, FakeKernel] = {}
        self._tasks: TaskGroup | None = None

    def factory(self, settings: object) -> Self:
        """This backend as the server's ``create_app(backend=...)`` factory wants it."""
        return self

    async def __aenter__(self) -> Self:
        if self._tasks is not None:
            raise InvalidState("the FakeBackend is already open")
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for kernel_id in list(self.kernels):
            await self.shutdown_kernel(kernel_id, now=True)
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(exc_type, exc, tb)

    def get(self, kernel_id: str) -> FakeKernel:
        try:
            return self.kernels[kernel_id]
        except KeyError:
            raise NoSuchKernel(kernel_id) from None

    # -- what tests do ------------------------------------------------------------------------

    def crash(self, kernel_id: str, reason: str = "the kernel process died") -> None:
        """The kernel dies, as if its process had exited. InvalidState unless it runs."""
        kernel = self.get(kernel_id)
        if kernel.state is not KernelState.RUNNING:
            raise InvalidState(f"kernel {kernel_id} is {kernel.state.value}: it cannot die")
        self._died(kernel, reason)

    # -- KernelBackend -------------------------------------------------------------------------

    async def kernel_specs(self) -> KernelSpecs:
        default = self.default if self.default in self.specs else None
        return KernelSpecs(dict(self.specs), default)

    async def kernel_spec_file(self, name: str, filename: str) -> bytes:
        spec = self.specs.get(name)
        if spec is None:
            raise NoSuchKernelSpec(name)
        try:
            return await anyio.Path(spec.resource_path(filename)).read_bytes()
        except OSError:
            raise NoSuchKernelSpec(f"{name}/{filename}") from None

    def new_kernel_id(self) -> str:
        return str(uuid.uuid4())

    async def start_kernel(
        self,
        name: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        if self._tasks is None:
            raise InvalidState("use 'async with FakeBackend()' before starting kernels")
        name = name or self.default
        if name is None or name not in self.specs:
            raise NoSuchKernelSpec(name or "(no default kernel type)")
        kernel_id = kernel_id or str(uuid.uuid4())
        if kernel_id in self.kernels:
            raise InvalidState(f"kernel id {kernel_id!r} is already in use")
        gate = self.start_gate
        if gate is not None and not gate.is_set():
            if progress is not None:
                progress("waiting for the test's start gate")
            await gate.wait()
        error = self.start_errors.get(name)
        if error is not None:
            raise error
        if kernel_id in self.kernels:
            raise InvalidState(f"kernel id {kernel_id!r} is already in use")
        kernel = FakeKernel(
            kernel_id, name, cwd=os.fspath(cwd) if cwd else None, env=dict(env or {})
        )
        self.kernels[kernel_id] = kernel  # claimed before the await: no duplicate ids
        kernel.lifecycle.apply(Change.START)
        try:
            await self._launch(kernel)
        except BaseException:
            self.kernels.pop(kernel_id, None)
            raise
        kernel.lifecycle.apply(Change.READY)
        kernel.lifecycle.supervise(self.restart)
        return kernel_id

    async def shutdown_kernel(
        self, kernel_id: str, *, now: bool = False, reason: str = "shut down"
    ) -> None:
        kernel = self.get(kernel_id)
        try:
            if kernel.lifecycle.can(Change.SHUTDOWN):
                kernel.lifecycle.apply(Change.SHUTDOWN, reason)
                self._stop(kernel)
                kernel.lifecycle.apply(Change.STOPPED, reason)
        finally:
            self.kernels.pop(kernel_id, None)
        await anyio.lowlevel.checkpoint()

    async def restart_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        await self._restart(self.get(kernel_id))

    async def interrupt_kernel(self, kernel_id: str) -> None:
        kernel = self.get(kernel_id)
        if kernel.state is not KernelState.RUNNING or kernel.process is None:
            raise InvalidState(f"kernel {kernel_id} is {kernel.state.value}: nothing to interrupt")
        kernel.process.interrupt()
        await anyio.lowlevel.checkpoint()

    @asynccontextmanager
    async def open_channels(self, kernel_id: str) -> AsyncIterator[KernelChannels]:
        async with FakeChannels(self.get(kernel_id)) as channels:
            yield channels

    # -- inside ------------------------------------------------------------------------------

    async def _launch(self, kernel: FakeKernel) -> None:
        assert self._tasks is not None
        process = FakeProcess(
            kernel.signer,
            on_exit=lambda reason: self._exited(kernel, process, reason),
            on_message=kernel.messages.append,
        )
        await self._tasks.start(process.run, name=f"fake kernel {kernel.id}")
        kernel.process = process

    def _stop(self, kernel: FakeKernel) -> None:
        process, kernel.process = kernel.process, None
        if process is not None:
            process.stop()

    def _exited(self, kernel: FakeKernel, process: FakeProcess, reason: str) -> None:
        if kernel.process is process and kernel.state is KernelState.RUNNING:
            self._died(kernel, reason)

    def _died(self, kernel: FakeKernel, reason: str) -> None:
        self._stop(kernel)
        kernel.lifecycle.apply(Change.DIED, reason)  # GAVE_UP follows unless supervised
        if kernel.lifecycle.supervised and self._tasks is not None:
            self._tasks.start_soon(self._restart_after_death, kernel)

    async def _restart_after_death(self, kernel: FakeKernel) -> None:
        await anyio.sleep(self.restart_delay)
        if kernel.state is not KernelState.DEAD or kernel.lifecycle.gone:
            return  # restarted by hand, or shut down, meanwhile
        if kernel.restarts >= self.restart_limit:
            kernel.lifecycle.supervise(False)  # gives it up
            return
        kernel.restarts += 1
        await self._restart(kernel)

    async def _restart(self, kernel: FakeKernel) -> None:
        kernel.lifecycle.apply(Change.RESTART)  # InvalidState when stopped
        self._stop(kernel)
        await self._launch(kernel)
        if kernel.state is not KernelState.RESTARTING:  # shut down while it started
            self._stop(kernel)
            raise InvalidState(f"kernel {kernel.id} was {kernel.state.value} during its restart")
        kernel.lifecycle.apply(Change.RESTARTED)
