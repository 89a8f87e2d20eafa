"""KernelManager: the lifecycle of one kernel (start, interrupt, restart, shutdown, kill).

The manager has no background task: the process's exit arrives as a loop
callback from the provisioner, and requests to the kernel (readiness,
``shutdown_request``, ``interrupt_request``) go through a short-lived
:class:`~kernelyard.client.KernelClient`.

Guarantees:

* ``start`` returns only when the kernel answered ``kernel_info``; a kernel
  that exits first raises LaunchError with its exit code and the tail of its
  stderr, at once, not after a timeout.
* ``shutdown`` asks politely (``shutdown_request`` on control) and awaits the
  reply; a kernel that has not left ``exit_grace`` seconds after replying (0
  by default: its hooks ran before it replied) is sent SIGTERM, then SIGKILL
  after ``kill_grace`` (all three are :class:`LaunchOptions`), always to the
  whole process group. All of it takes at most ``shutdown_timeout +
  exit_grace + kill_grace`` seconds. The process
  is always reaped; connection and ipc files are removed.
* ``restart`` is in place: same kernel id, key, connection file and (unless
  ``newports``) ports; clients made by :meth:`client` carry on.
* Clients made by :meth:`client` fail their pending calls with KernelDied the
  moment the process dies.
"""

from __future__ import annotations

import logging
import signal
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio

from kernelyard.client import KernelClient
from kernelyard.discovery import KernelFinder
from kernelyard.errors import InvalidState, KernelDied, KernelyardError, LaunchError, ReplyTimeout
from kernelyard.lifecycle import Change, KernelState, Lifecycle, Listener
from kernelyard.provisioning import (
    Adopting,
    AttachInfo,
    LaunchOptions,
    LaunchSpec,
    ProvisionedKernel,
    Provisioner,
    SubprocessProvisioner,
)
from kernelyard.provisioning.registry import provisioner_for
from kernelyard.wire import Channel, ConnectionInfo
from kernelyard.wire.connection import PORT_FIELDS

__all__ = ["KernelManager"]

log = logging.getLogger(__name__)


class KernelManager:
    """Starts and supervises one kernel of a given type. Async; use ``async with`` or call
    :meth:`start` and :meth:`shutdown` yourself.
    """

    def __init__(
        self,
        type_id: str = "python3",
        *,
        finder: KernelFinder | None = None,
        kernel_id: str | None = None,
        options: LaunchOptions | None = None,
        provisioner: Provisioner | None = None,
    ) -> None:
        """``type_id`` is looked up in ``finder`` (:meth:`KernelFinder.default`) at each
        start; ``provisioner`` starts it (default: spawned, its connection file in the
        finder's runtime directory), with ``options``.
        """
        self.type_id = type_id
        self.finder = finder or KernelFinder.default()
        self.kernel_id = kernel_id or str(uuid.uuid4())
        self.options = options or LaunchOptions()
        self.provisioner = provisioner or SubprocessProvisioner(self.finder.runtime_dir)
        #: The kernelspec's own provisioner, if any, with the (name, config) it was made of.
        self._named: tuple[str, Provisioner] | None = None
        self.connection_info: ConnectionInfo | None = None
        self.process: ProvisionedKernel | None = None
        #: The kernel's one state machine; subscribe to it (see :meth:`subscribe`).
        self.lifecycle = Lifecycle(self.kernel_id)
        self.lifecycle.subscribe(self._state_changed)
        self._lock = anyio.Lock()
        self._clients: weakref.WeakSet[KernelClient] = weakref.WeakSet()
        self._changed = anyio.Event()
        #: Why the kernel is DEAD (None otherwise).
        self.death: KernelDied | None = None

    # -- state ------------------------------------------------------------------

    @property
    def state(self) -> KernelState:
        return self.lifecycle.state

    @property
    def interrupt_mode(self) -> str:
        return self.process.interrupt_mode if self.process else "signal"

    def is_alive(self) -> bool:
        """Whether the kernel process is running."""
        return self.process is not None and self.process.is_alive()

    async def wait(self) -> int:
        """Wait for the current kernel process to exit; returns its exit code."""
        if self.process is None:
            raise InvalidState(f"kernel {self.kernel_id} was never started")
        return await self.process.wait()

    def _state_changed(self, event: object) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (in the event loop, synchronously) with every lifecycle event
        from now on, in order; returns the unsubscribe. See :mod:`kernelyard.lifecycle`.
        """
        return self.lifecycle.subscribe(listener)

    async def wait_for_change(self) -> KernelState:
        """Wait for the next state change; returns the new state."""
        await self._changed.wait()
        return self.state

    async def wait_for_death(self) -> KernelDied | None:
        """Wait until the kernel dies on its own (returns why) or is stopped (returns None)."""
        while self.state not in (KernelState.DEAD, KernelState.STOPPED):
            await self.wait_for_change()
        return self.death if self.state is KernelState.DEAD else None

    def declare_dead(self, reason: str) -> None:
        """The kernel no longer answers although its process lives: kill it, and let the
        exit make it DEAD with ``reason`` (the restarter's heartbeat verdict).
        """
        if self.state is KernelState.RUNNING and self.process is not None:
            self._die(reason, exit_code=None)
            self.process.kill()

    def _on_exit(self, process: ProvisionedKernel) -> None:
        """Loop callback: a kernel process exited."""
        if process is not self.process:
            return  # a previous incarnation, already dealt with
        if self.state not in (KernelState.STARTING, KernelState.RUNNING):
            return  # on purpose: shutting down, restarting or already dead
        self._die(process.exit_description, exit_code=process.returncode)

    def _die(self, why: str, *, exit_code: int | None) -> None:
        death = KernelDied(
            f"kernel {self.kernel_id} {why}", kernel_id=self.kernel_id, exit_code=exit_code
        )
        self.death = death
        log.warning("%s", death)
        for client in list(self._clients):
            client.kernel_died(death)
        self.lifecycle.apply(Change.DIED, str(death))

    # -- clients -------------------------------------------------------------------

    def client(
        self,
        *,
        session: str | None = None,
        username: str = "kernelyard",
        heartbeat: bool = True,
        heartbeat_interval: float = 0.5,
        time_to_dead: float = 3.0,
    ) -> KernelClient:
        """A client of this kernel (see :class:`KernelClient` for the parameters) that
        learns at once when it dies or restarts.
        """
        if self.connection_info is None:
            raise InvalidState(f"kernel {self.kernel_id} was never started")
        client = KernelClient(
            self.connection_info,
            session=session,
            username=username,
            heartbeat=heartbeat,
            heartbeat_interval=heartbeat_interval,
            time_to_dead=time_to_dead,
            kernel_id=self.kernel_id,
        )
        self._clients.add(client)
        if self.state is KernelState.DEAD and self.death is not None:
            client.kernel_died(self.death)
        return client

    @asynccontextmanager
    async def _short_client(self, process: ProvisionedKernel) -> AsyncIterator[KernelClient]:
        """A private client for one exchange, whose calls fail at once with KernelDied
        (instead of waiting out their timeout) if ``process`` exits meanwhile.
        """
        async with KernelClient(
            process.connection_info, heartbeat=False, kernel_id=self.kernel_id
        ) as client:
            undo = process.on_exit(
                lambda: client.kernel_died(KernelDied(exit_code=process.returncode))
            )
            try:
                yield client
            finally:
                undo()

    async def _request(self, msg_type: str, content: dict[str, Any], timeout: float) -> None:
        """One request on control; errors (KernelDied, ReplyTimeout) propagate."""
        assert self.process is not None
        async with self._short_client(self.process) as client:
            msg = client.message(msg_type, content, channel=Channel.CONTROL)
            await client.request(msg, timeout=timeout)

    # -- start ----------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the kernel and return once it answers; LaunchError if it cannot."""
        async with self._lock:
            self.lifecycle.apply(Change.START)
            try:
                await self._launch(None)
            except BaseException as exc:
                await self._give_up(f"failed to start: {exc}")
                raise
            self.lifecycle.apply(Change.READY)

    async def adopt(self, attach: AttachInfo) -> None:
        """Take over the running kernel ``attach`` names (launched with
        ``LaunchOptions(persist=True)`` by a manager that is gone: a server that
        restarted); return once it answers ``kernel_info``.

        LaunchError when the provisioner cannot adopt, ``attach`` is another
        kernel's, the process is gone, or it does not answer ``kernel_info`` on
        control (a busy kernel still does) within ``options.startup_timeout``. A
        kernel that failed to be adopted is left as it was: running, its
        connection file in place, for a later try.
        """
        if attach.kernel_id != self.kernel_id:
            raise LaunchError(
                f"attach info of kernel {attach.kernel_id} given to manager of {self.kernel_id}"
            )
        async with self._lock:
            self.lifecycle.apply(Change.START)
            process: ProvisionedKernel | None = None
            try:
                spec = self.finder.get_spec(self.type_id).launch_spec()
                process = await _adopting(self._provisioner_for(spec)).adopt(attach, spec)
                self._check_encrypted(process)
                async with self._short_client(process) as client:
                    await client.kernel_info(
                        channel=Channel.CONTROL, timeout=self.options.startup_timeout
                    )
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    if process is not None:
                        process.cleanup(remove_connection_file=False)  # it is not ours yet
                    self.lifecycle.apply(Change.SHUTDOWN, f"not adopted: {exc}")
                    self.lifecycle.apply(Change.STOPPED, f"not adopted: {exc}")
                if isinstance(exc, KernelyardError | TimeoutError) and not isinstance(
                    exc, LaunchError
                ):
                    raise LaunchError(f"kernel {self.kernel_id} cannot be adopted: {exc}") from exc
                raise
            self.connection_info, self.process = process.connection_info, process
            self.death = None
            process.on_exit(lambda: self._on_exit(process))
            self.lifecycle.apply(Change.READY)

    def _provisioner_for(self, spec: LaunchSpec) -> Provisioner:
        """The kernelspec's own provisioner when it names one (made once, then kept for
        restarts), else the one this manager was given.
        """
        if not spec.provisioner:
            return self.provisioner
        made_of = f"{spec.provisioner} {sorted(spec.provisioner_config.items())!r}"
        if self._named is None or self._named[0] != made_of:  # the kernelspec was edited
            self._named = (made_of, provisioner_for(spec, self.finder.runtime_dir))
        return self._named[1]

    async def _launch(self, connection_info: ConnectionInfo | None) -> None:
        spec = self.finder.get_spec(self.type_id).launch_spec()
        process = await self._provisioner_for(spec).start(
            spec, kernel_id=self.kernel_id, options=self.options, connection_info=connection_info
        )
        self.connection_info, self.process = process.connection_info, process
        self.death = None
        process.on_exit(lambda: self._on_exit(process))
        try:
            self._check_encrypted(process)
            await self._await_answer(process)
        except BaseException:
            with anyio.CancelScope(shield=True):
                process.kill()
                await process.wait()
                process.cleanup(remove_connection_file=False)
            raise
        process.release_ports()

    def _check_encrypted(self, process: ProvisionedKernel) -> None:
        """LaunchError if ``required`` encryption left the kernel in clear text (a
        provisioner of someone else's that does not apply the option).
        """
        if self.options.transport_encryption == "required" and not (
            process.connection_info.encrypted
        ):
            raise LaunchError(
                f"transport_encryption='required', but the provisioner started kernel "
                f"{self.type_id!r} without CurveZMQ keys",
                argv=process.argv,
            )

    async def _await_answer(self, process: ProvisionedKernel) -> None:
        """Wait for the first ``kernel_info_reply``, racing the process's exit."""
        try:
            async with self._short_client(process) as client:
                await client.kernel_info(timeout=self.options.startup_timeout)
        except KernelDied:
            raise LaunchError.citing_stderr(
                f"kernel {self.type_id!r} {process.exit_description} while starting",
                argv=process.argv,
                exit_code=process.returncode,
                stderr_tail=await process.stderr_tail(),
            ) from None
        except ReplyTimeout:
            raise LaunchError(
                f"kernel {self.type_id!r} did not answer within {self.options.startup_timeout} s",
                argv=process.argv,
            ) from None

    async def _give_up(self, reason: str) -> None:
        """After a failed start: make sure the process is gone and its files too."""
        with anyio.CancelScope(shield=True):
            if self.state is not KernelState.SHUTTING_DOWN:
                self.lifecycle.apply(Change.SHUTDOWN, reason)
            await self._stop_process(graceful=False)
            self.lifecycle.apply(Change.STOPPED, reason)

    # -- stop ------------------------------------------------------------------------

    async def _stop_process(self, *, graceful: bool, restart: bool = False) -> None:
        """Ask, then SIGTERM, then SIGKILL; always reap; clean up files (not for a restart)."""
        process = self.process
        if process is None:
            return
        if graceful and process.is_alive():
            try:
                await self._request(
                    "shutdown_request", {"restart": restart}, self.options.shutdown_timeout
                )
            except KernelyardError as exc:
                log.info("kernel %s: shutdown_request failed: %s", self.kernel_id, exc)
            else:
                # The kernel has acknowledged and run its shutdown hooks. Give it
                # exit_grace to leave by itself (plus the time its provisioner takes to
                # see an exit: a cluster's scheduler tells seconds later); then
                # terminate the group rather than wait out its interpreter teardown.
                with anyio.move_on_after(self.options.exit_grace + _exit_latency(process)):
                    await process.wait()
        if process.is_alive():
            process.terminate()
            with anyio.move_on_after(self.options.kill_grace + _exit_latency(process)):
                await process.wait()
        if process.is_alive():
            log.warning("kernel %s ignored SIGTERM; killing it", self.kernel_id)
            process.kill()
            await process.wait()  # SIGKILL cannot be ignored: this returns promptly
        process.cleanup(remove_connection_file=not restart)

    async def shutdown(self, *, now: bool = False, reason: str = "shut down") -> None:
        """Stop the kernel for good (``now``: skip the polite request). Idempotent.

        ``reason`` goes with the SHUTDOWN and STOPPED lifecycle events ("culled", ...).
        """
        async with self._lock:
            if self.state in (KernelState.STOPPED, KernelState.SHUTTING_DOWN):
                return
            if self.state is KernelState.NEW:
                self.lifecycle.apply(Change.STOPPED, reason)
                return
            self.lifecycle.apply(Change.SHUTDOWN, reason)
            with anyio.CancelScope(shield=True):
                await self._stop_process(graceful=not now)
                self.lifecycle.apply(Change.STOPPED, reason)
            closed = KernelDied(f"kernel {self.kernel_id} was shut down", kernel_id=self.kernel_id)
            for client in list(self._clients):
                client.kernel_died(closed)

    async def kill(self) -> None:
        """SIGKILL the kernel's process group at once and clean up (a shutdown without asking)."""
        await self.shutdown(now=True)

    async def restart(self, *, now: bool = False, newports: bool = False) -> None:
        """Stop and start again in place (same id, key, file; same ports unless ``newports``)."""
        async with self._lock:
            if self.connection_info is None:
                raise InvalidState(f"kernel {self.kernel_id} was never started")
            self.lifecycle.apply(Change.RESTART)
            info = self.connection_info
            if newports and info.transport == "tcp":
                info = info.with_ports(dict.fromkeys(PORT_FIELDS, 0))
            try:
                await self._stop_process(graceful=not now, restart=True)
                await self._launch(info)
            except BaseException as exc:
                self._die(f"failed to restart: {exc}", exit_code=None)
                raise
            moved = self.connection_info
            for client in list(self._clients):
                if moved is not None and moved != client.connection_info:
                    client.kernel_moved(moved)  # new ports, or (a cluster) another node
                client.kernel_restarted()
            self.lifecycle.apply(Change.RESTARTED)

    # -- signals -----------------------------------------------------------------------

    async def interrupt(self, *, timeout: float = 5.0) -> None:
        """Interrupt what the kernel runs: SIGINT to its process group, or an
        ``interrupt_request`` (reply awaited) when its spec says ``interrupt_mode: "message"``.
        """
        if self.state is not KernelState.RUNNING or self.process is None:
            raise InvalidState(f"kernel {self.kernel_id} is {self.state.value}, not running")
        if self.interrupt_mode == "message":
            await self._request("interrupt_request", {}, timeout)
        else:
            self.process.interrupt()

    def signal(self, signum: int = signal.SIGINT) -> None:
        """Send ``signum`` to the kernel's process group."""
        if self.process is None:
            raise InvalidState(f"kernel {self.kernel_id} was never started")
        self.process.send_signal(signum)

    # -- context manager ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    def cleanup(self) -> None:
        """Remove the kernel's files if it exited on its own and nobody shut it down."""
        if self.process is not None and not self.process.is_alive():
            self.process.cleanup()

    def __repr__(self) -> str:
        return f"<KernelManager {self.type_id} {self.kernel_id} {self.state.value}>"


def _adopting(provisioner: Provisioner) -> Adopting:
    """``provisioner`` as one that adopts; LaunchError when it cannot."""
    if not isinstance(provisioner, Adopting):
        raise LaunchError(f"provisioner {provisioner.name!r} cannot adopt a running kernel")
    return provisioner


def _exit_latency(process: ProvisionedKernel) -> float:
    """Seconds between a kernel's exit and its handle knowing (``exit_latency``: 0 for
    a local process, whose exit the OS reports at once; a provisioner's handle may say
    more, and one that predates the attribute says nothing).
    """
    return float(getattr(process, "exit_latency", 0.0))
