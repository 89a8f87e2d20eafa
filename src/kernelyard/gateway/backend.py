"""GatewayBackend: the KernelBackend of a remote gateway's kernels.

The kernels live on a Kernel Gateway, an Enterprise Gateway, a
jupyter_server or another kernelyard; this backend reaches them with the
gateway's REST API (:class:`~kernelyard.gateway.http.GatewayHTTP`) and one
WebSocket per open channels (:class:`~kernelyard.gateway.channels.GatewayChannels`).
It is a second implementation of the seam, not a wrapper of the local
manager: the server runs on it unchanged (``create_app(backend=GatewayBackend(s).factory)``),
and library code drives remote kernels with it directly::

    async with GatewayBackend(GatewaySettings(url=...)) as gateway:
        kernel_id = await gateway.start_kernel("python3")
        async with gateway.client(kernel_id) as client:  # a KernelClient
            await client.wait_for_ready()

What each method does on the gateway:

* ``start_kernel``: ``POST {kernels_endpoint}`` with the name and ``env``:
  every ``KERNEL_*`` variable of this process, the allowed ones
  (``allowed_envs``), the caller's, ``KERNEL_WORKING_DIR`` (the caller's
  cwd) and ``KERNEL_LAUNCH_TIMEOUT``. Given a ``kernel_id``, the running
  remote kernel of that id is adopted instead (NoSuchKernel if it has none).
* ``shutdown_kernel``: ``DELETE`` (a kernel already gone there is fine).
* ``restart_kernel`` and ``interrupt_kernel``: ``POST .../restart`` and
  ``.../interrupt``; open channels see RESTART and RESTARTED around a restart.
* ``kernel_specs`` and ``kernel_spec_file``: the gateway's kernelspecs (its
  default included) and their resource files.
* ``list_kernels`` and ``kernel_model``: the gateway's models.

Each remote kernel this backend knows has one :class:`~kernelyard.lifecycle.Lifecycle`
here, the one owner of its state: RESTART/RESTARTED around a restart,
SHUTDOWN when it is deleted or found gone on the gateway (``refresh``, which
the server calls every ``refresh_interval`` seconds: a kernel missing from
the gateway's list is asked for directly before it is declared gone, since a
list can be partial), DIED and GAVE_UP when its
WebSocket cannot be reopened. On exit, the kernels this backend started are
deleted, unless ``keep_kernels`` is set.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import anyio

from kernelyard.backend import KernelChannels, KernelModel, KernelSpecs, Progress
from kernelyard.client import KernelClient
from kernelyard.errors import (
    GatewayError,
    GatewayHTTPError,
    InvalidState,
    NoSuchKernel,
    NoSuchKernelSpec,
)
from kernelyard.gateway.bodies import kernel_model, kernelspecs_from, start_env
from kernelyard.gateway.channels import GatewayChannels
from kernelyard.gateway.http import GatewayEvent, GatewayHTTP
from kernelyard.gateway.settings import GatewaySettings
from kernelyard.lifecycle import Change, KernelState, Lifecycle

__all__ = ["GatewayBackend", "RemoteKernel", "start_env"]

log = logging.getLogger(__name__)

#: Seconds the gateway's kernelspecs are reused before they are fetched again.
SPECS_TTL = 5.0
#: Seconds the exit waits for the DELETEs of the kernels this backend started.
EXIT_TIMEOUT = 30.0
#: Why a kernel that vanished from the gateway is gone.
GONE_REASON = "culled on the gateway"


@dataclass(eq=False)
class RemoteKernel:
    """One kernel of the gateway, as this backend knows it."""

    id: str
    name: str
    lifecycle: Lifecycle
    started_here: bool  # started by this backend (deleted on exit), not adopted


class GatewayBackend:
    """KernelBackend over a gateway. Use as ``async with``; see the module docstring."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        on_event: Callable[[GatewayEvent], object] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.http = GatewayHTTP(settings, on_event=on_event)
        self._environ = os.environ if environ is None else environ
        self.kernels: dict[str, RemoteKernel] = {}
        #: The open upstream sockets per kernel (the gateway counts them as connections).
        self._channels: dict[str, set[GatewayChannels]] = {}
        self._specs: tuple[float, KernelSpecs] | None = None
        self._open = False

    def factory(self, settings: object) -> Self:
        """This backend as the server's ``create_app(backend=...)`` factory wants it."""
        return self

    async def __aenter__(self) -> Self:
        if self._open:
            raise InvalidState("the GatewayBackend is already open")
        await self.http.__aenter__()
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.settings.keep_kernels:
                with anyio.CancelScope(shield=True), anyio.move_on_after(EXIT_TIMEOUT):
                    async with anyio.create_task_group() as tg:
                        for kernel in list(self.kernels.values()):
                            if kernel.started_here:
                                tg.start_soon(self._shutdown_quietly, kernel.id)
        finally:
            self._open = False
            await self.http.__aexit__(exc_type, exc, tb)

    async def _shutdown_quietly(self, kernel_id: str) -> None:
        try:
            await self.shutdown_kernel(kernel_id, reason="the server stopped")
        except (GatewayError, NoSuchKernel) as exc:
            log.warning("remote kernel %s was not deleted: %s", kernel_id, exc)

    # -- paths ------------------------------------------------------------------------

    def _kernel_path(self, kernel_id: str, action: str = "") -> str:
        path = f"{self.settings.kernels_endpoint}/{quote(kernel_id, safe='')}"
        return f"{path}/{action}" if action else path

    # -- kernelspecs -------------------------------------------------------------------

    async def kernel_specs(self) -> KernelSpecs:
        """The gateway's kernelspecs (fetched at most every SPECS_TTL seconds); those that
        do not parse are skipped with a warning.
        """
        now = time.monotonic()
        if self._specs is not None and now - self._specs[0] < SPECS_TTL:
            return self._specs[1]
        params = {}
        if "KERNEL_USERNAME" in self._environ:
            params["user"] = self._environ["KERNEL_USERNAME"]
        body = await self.http.json("GET", self.settings.kernelspecs_endpoint, params=params)
        specs = kernelspecs_from(body, self.settings.url)
        self._specs = (now, specs)
        return specs

    async def kernel_spec_file(self, name: str, filename: str) -> bytes:
        if "/" in filename or "\\" in filename or filename in ("", ".", ".."):
            raise NoSuchKernelSpec(f"{name}/{filename}")
        path = (
            f"{self.settings.kernelspecs_resource_endpoint}/{quote(name, safe='')}/"
            f"{quote(filename, safe='')}"
        )
        try:
            response = await self.http.request("GET", path)
        except GatewayHTTPError as exc:
            if exc.status_code == 404:
                raise NoSuchKernelSpec(f"{name}/{filename}") from None
            raise
        return response.content

    # -- kernels -------------------------------------------------------------------------

    def new_kernel_id(self) -> str | None:
        """None: the gateway names its kernels (a ``kernel_id`` adopts one of them)."""
        return None

    async def start_kernel(
        self,
        name: str | None = None,
        *,
        kernel_id: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Start a kernel on the gateway (``name`` None: the gateway's default), or adopt
        its running kernel ``kernel_id``; returns the id once the gateway answered
        (``progress`` is not told: the gateway's model says what its start waits for).
        """
        self._check_open()
        if kernel_id is not None:
            known = self.kernels.get(kernel_id)
            if known is not None and not known.lifecycle.gone:
                raise InvalidState(f"kernel id {kernel_id!r} is already in use")
            model = await self._get_model(kernel_id)
            self._record(model, started_here=False)
            return kernel_id
        body: dict[str, Any] = {"env": start_env(self.settings, self._environ, env, cwd)}
        if name:
            body["name"] = name
        try:
            model = await self.http.json("POST", self.settings.kernels_endpoint, body=body)
        except GatewayHTTPError as exc:
            # jupyter_server and Kernel Gateway answer an unknown name with 500, not 404.
            if name and exc.status_code in (404, 500) and not await self._offers(name):
                raise NoSuchKernelSpec(name) from exc
            raise
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            raise GatewayError(
                f"the gateway at {self.settings.url} answered a start without a kernel id: "
                f"{str(model)[:200]}",
                url=self.settings.url,
            )
        return self._record(model, started_here=True).id

    async def _offers(self, name: str) -> bool:
        """Whether the gateway lists kernelspec ``name`` (True when it cannot tell)."""
        self._specs = None  # ask again: the failed start may be why the list changed
        try:
            return name in (await self.kernel_specs()).specs
        except GatewayError:
            return True

    def _record(self, model: Mapping[str, Any], *, started_here: bool) -> RemoteKernel:
        kernel_id = str(model["id"])
        lifecycle = Lifecycle(kernel_id)
        lifecycle.apply(Change.START)
        lifecycle.apply(Change.READY)
        kernel = RemoteKernel(kernel_id, str(model.get("name", "")), lifecycle, started_here)
        self.kernels[kernel_id] = kernel
        return kernel

    async def _known(self, kernel_id: str) -> RemoteKernel:
        """The record of ``kernel_id``, adopting a kernel of the gateway not seen before."""
        kernel = self.kernels.get(kernel_id)
        if kernel is None:
            kernel = self._record(await self._get_model(kernel_id), started_here=False)
        return kernel

    async def _get_model(self, kernel_id: str) -> dict[str, Any]:
        try:
            model = await self.http.json("GET", self._kernel_path(kernel_id))
        except GatewayHTTPError as exc:
            if exc.status_code == 404:
                raise NoSuchKernel(kernel_id) from None
            raise
        if not isinstance(model, dict) or model.get("id") != kernel_id:
            raise GatewayError(
                f"the gateway at {self.settings.url} answered GET of kernel {kernel_id} "
                f"with {str(model)[:200]}",
                url=self.settings.url,
            )
        return model

    async def shutdown_kernel(
        self, kernel_id: str, *, now: bool = False, reason: str = "shut down"
    ) -> None:
        """``DELETE`` the kernel (the gateway decides how politely: ``now`` cannot be
        passed through the REST API). Open channels get SHUTDOWN, then ChannelClosed.
        """
        self._check_open()
        kernel = await self._known(kernel_id)
        if kernel.lifecycle.can(Change.SHUTDOWN):
            kernel.lifecycle.apply(Change.SHUTDOWN, reason)
        try:
            await self.http.request("DELETE", self._kernel_path(kernel_id))
        except GatewayHTTPError as exc:
            if exc.status_code != 404:
                raise
        finally:
            self.kernels.pop(kernel_id, None)
        if kernel.lifecycle.can(Change.STOPPED):
            kernel.lifecycle.apply(Change.STOPPED, reason)

    async def restart_kernel(self, kernel_id: str, *, now: bool = False) -> None:
        """``POST .../restart``; returns once the gateway answered. A failed restart
        raises (the gateway's error) and leaves the kernel DEAD here.
        """
        self._check_open()
        kernel = await self._known(kernel_id)
        kernel.lifecycle.apply(Change.RESTART)  # InvalidState once it is shutting down
        try:
            await self.http.request("POST", self._kernel_path(kernel_id, "restart"))
        except BaseException as exc:
            if kernel.lifecycle.can(Change.DIED):
                kernel.lifecycle.apply(Change.DIED, f"restart failed: {exc}")
            if isinstance(exc, GatewayHTTPError) and exc.status_code == 404:
                raise NoSuchKernel(kernel_id) from exc
            raise
        if kernel.lifecycle.can(Change.RESTARTED):
            kernel.lifecycle.apply(Change.RESTARTED)

    async def interrupt_kernel(self, kernel_id: str) -> None:
        self._check_open()
        kernel = await self._known(kernel_id)
        if kernel.lifecycle.state is not KernelState.RUNNING:
            raise InvalidState(
                f"kernel {kernel_id} is {kernel.lifecycle.state.value}: nothing to interrupt"
            )
        try:
            await self.http.request("POST", self._kernel_path(kernel_id, "interrupt"))
        except GatewayHTTPError as exc:
            if exc.status_code == 404:
                raise NoSuchKernel(kernel_id) from exc
            raise

    @asynccontextmanager
    async def open_channels(
        self, kernel_id: str, *, session: str | None = None
    ) -> AsyncIterator[KernelChannels]:
        """One upstream WebSocket for as long as the block runs (see GatewayChannels);
        ``session`` is its ``session_id`` (a new one if None).
        """
        self._check_open()
        kernel = await self._known(kernel_id)
        channels = GatewayChannels(
            self.http,
            kernel_id,
            kernel.lifecycle,
            session=session or uuid.uuid4().hex,
            is_gone=lambda: self._gone_reason(kernel_id),
        )
        mine = self._channels.setdefault(kernel_id, set())
        try:
            async with channels:
                mine.add(channels)
                yield channels
        finally:
            mine.discard(channels)
            if not mine:
                self._channels.pop(kernel_id, None)

    def client(self, kernel_id: str, *, session: str | None = None) -> KernelClient:
        """A client of the remote kernel over its WebSocket (not open yet: use it as
        ``async with``); the upstream ``session_id`` is the client's session.
        """
        session = session or uuid.uuid4().hex
        return KernelClient(
            channels=functools.partial(self.open_channels, kernel_id, session=session),
            session=session,
            kernel_id=kernel_id,
        )

    async def _gone_reason(self, kernel_id: str) -> str | None:
        """None while the gateway has the kernel, else why it is gone."""
        try:
            await self._get_model(kernel_id)
        except NoSuchKernel:
            return GONE_REASON
        return None

    # -- models --------------------------------------------------------------------------

    async def list_kernels(self) -> list[KernelModel]:
        """Every kernel the gateway runs, with its model's state, activity and connections."""
        body = await self.http.json("GET", self.settings.kernels_endpoint)
        if not isinstance(body, list):
            raise GatewayError(
                f"the gateway at {self.settings.url} listed kernels as {str(body)[:200]}",
                url=self.settings.url,
            )
        return [self._model(m) for m in body if isinstance(m, dict) and "id" in m]

    async def kernel_model(self, kernel_id: str) -> KernelModel:
        return self._model(await self._get_model(kernel_id))

    def _model(self, model: Mapping[str, Any]) -> KernelModel:
        kernel = self.kernels.get(str(model["id"]))
        return kernel_model(model, kernel.lifecycle if kernel is not None else None)

    @property
    def refresh_interval(self) -> float:
        return self.settings.refresh_interval

    async def refresh(self) -> list[KernelModel]:
        """The gateway's models of the kernels this backend knows (one list request),
        their ``connections`` without this backend's own upstream sockets.

        A known kernel missing from the list is asked for directly before it is
        declared gone (a list can be partial); a gone one gets SHUTDOWN
        ("culled on the gateway") and is forgotten.
        """
        listed = {m.id: m for m in await self.list_kernels()}
        models = []
        for kernel in list(self.kernels.values()):
            model = listed.get(kernel.id)
            if model is None:
                if kernel.lifecycle.state is not KernelState.RUNNING:
                    continue
                try:
                    model = await self.kernel_model(kernel.id)  # a partial list: it is there
                except NoSuchKernel:
                    self._gone(kernel)
                    continue
            ours = sum(1 for c in self._channels.get(kernel.id, ()) if c.upstream_connected)
            models.append(replace(model, connections=max(0, model.connections - ours)))
        return models

    def _gone(self, kernel: RemoteKernel) -> None:
        """``kernel`` no longer exists on the gateway (a DELETE may have said so first)."""
        for change in (Change.SHUTDOWN, Change.STOPPED):
            if kernel.lifecycle.can(change):
                kernel.lifecycle.apply(change, GONE_REASON)
        self.kernels.pop(kernel.id, None)

    def _check_open(self) -> None:
        if not self._open:
            raise InvalidState("use 'async with GatewayBackend(...)' first")
