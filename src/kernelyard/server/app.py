"""The ASGI application and the uvicorn runner.

:func:`create_app` builds the Starlette app for a :class:`ServerSettings`
and a backend factory (the local :class:`~kernelyard.manager.MultiKernelManager`
by default; the gateway passes its own). The app's lifespan owns the backend
and :class:`~kernelyard.server.kernels.ServedKernels`: leaving it shuts every
kernel down. :class:`KernelServer` runs it on uvicorn (an embedding program, or a
test, starts and stops one itself); :func:`serve` runs one until SIGINT or
SIGTERM.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from kernelyard.backend import KernelBackend
from kernelyard.errors import KernelyardError, NoSuchKernel
from kernelyard.manager import MultiKernelManager
from kernelyard.provisioning import LaunchOptions
from kernelyard.server import rest
from kernelyard.server.auth import AuthMiddleware, error_body
from kernelyard.server.events import EventBus
from kernelyard.server.kernels import ServedKernels
from kernelyard.server.settings import ServerSettings
from kernelyard.server.websocket import KernelSocket
from kernelyard.transport.sockets import raise_open_file_limit

__all__ = ["BackendFactory", "KernelServer", "create_app", "serve"]

log = logging.getLogger(__name__)

#: Builds the backend the server runs on, as an async context manager.
BackendFactory = Callable[[ServerSettings], AbstractAsyncContextManager[KernelBackend]]


@asynccontextmanager
async def local_backend(settings: ServerSettings) -> AsyncIterator[KernelBackend]:
    """Kernels on this machine: a MultiKernelManager with automatic restarts, its fork
    server for the default kernel started at once (so the first start is fast too).
    """
    async with MultiKernelManager(
        default_type_id=settings.default_kernel,
        options=LaunchOptions(
            startup_timeout=settings.kernel_info_timeout,
            transport_encryption=settings.transport_encryption,
        ),
    ) as kernels:
        try:
            await kernels.warm_up()
        except KernelyardError as exc:  # the kernel type is reported when it is started
            log.warning("cannot prepare the default kernel %r: %s", settings.default_kernel, exc)
        yield kernels


async def kernel_channels(websocket: WebSocket) -> None:
    kernels: ServedKernels = websocket.app.state.kernels
    try:
        kernel = kernels.get(websocket.path_params["kernel_id"])
    except NoSuchKernel as exc:
        await websocket.send_denial_response(rest.error_response(exc))
        return
    await KernelSocket(websocket, kernel, kernels.settings, kernels.factory).serve()


async def event_stream(websocket: WebSocket) -> None:
    bus: EventBus = websocket.app.state.events
    await websocket.accept()
    with bus.subscribe() as records:
        async with anyio.create_task_group() as tg:

            async def until_closed() -> None:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(until_closed)
            async for record in records:
                await websocket.send_text(record.decode())


async def _on_error(request: Request, exc: Exception) -> Response:
    return rest.error_response(exc)


async def _not_found(request: Request, exc: Exception) -> Response:
    return Response(error_body("Not Found"), 404, media_type="application/json")


def create_app(
    settings: ServerSettings,
    *,
    backend: BackendFactory = local_backend,
    events: EventBus | None = None,
) -> Starlette:
    """The server as an ASGI app (auth middleware outermost). ``events`` is the bus
    its events go to (a new one by default; the gateway's requests report there too).
    """
    base = settings.base_url
    kernel = base + "api/kernels/{kernel_id:str}"
    routes = [
        Route(base + "api", rest.api_version),
        Route(base + "api/", rest.api_version),
        Route(base + "api/status", rest.api_status),
        Route(base + "api/openapi.json", rest.api_spec),
        Route(base + "api/kernels", rest.list_kernels, methods=["GET"]),
        Route(base + "api/kernels", rest.start_kernel, methods=["POST"]),
        Route(kernel, rest.get_kernel, methods=["GET"]),
        Route(kernel, rest.delete_kernel, methods=["DELETE"]),
        Route(kernel + "/interrupt", rest.interrupt_kernel, methods=["POST"]),
        Route(kernel + "/restart", rest.restart_kernel, methods=["POST"]),
        WebSocketRoute(kernel + "/channels", kernel_channels),
        Route(base + "api/kernelspecs", rest.list_kernelspecs),
        Route(base + "api/kernelspecs/{name:str}", rest.get_kernelspec),
        Route(
            base + "kernelspecs/{name:str}/{filename:str}",
            rest.kernelspec_file,
            methods=["GET", "HEAD"],
        ),
        WebSocketRoute(base + "api/events/subscribe", event_stream),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bus = events or EventBus()
        async with (
            backend(settings) as kernel_backend,
            ServedKernels(kernel_backend, settings, bus) as kernels,
        ):
            app.state.settings = settings
            app.state.events = bus
            app.state.kernels = kernels
            yield

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={KernelyardError: _on_error, Exception: _on_error, 404: _not_found},
    )
    app.add_middleware(AuthMiddleware, settings=settings)
    return app


class KernelServer(uvicorn.Server):
    """The app on uvicorn, with kernelyard's settings. :meth:`stop` (and SIGINT or
    SIGTERM while :meth:`serve` runs) first closes every kernel WebSocket with 1001
    ("going away": final, clients do not reconnect), then stops as uvicorn does:
    every kernel the server started is shut down (bounded by ``shutdown_timeout``).
    """

    def __init__(
        self,
        settings: ServerSettings,
        *,
        backend: BackendFactory = local_backend,
        events: EventBus | None = None,
    ):
        self.settings = settings
        self.app = create_app(settings, backend=backend, events=events)
        config = uvicorn.Config(
            self.app,
            host=settings.ip,
            port=settings.port,
            ws="websockets-sansio",
            ws_max_size=settings.max_message_size,
            # Compressing every small kernel message costs more CPU than loopback or a
            # LAN saves; jupyter_server does not compress either.
            ws_per_message_deflate=settings.ws_compression,
            ws_ping_interval=settings.ws_ping_interval or None,
            ws_ping_timeout=settings.ws_ping_timeout or None,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout)),
        )
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        """``http://IP:PORT/base_url/`` with the port it listens on (once started)."""
        sockets = [s for srv in self.servers for s in srv.sockets]
        port = sockets[0].getsockname()[1] if sockets else self.settings.port
        return f"http://{self.settings.ip}:{port}{self.settings.base_url}"

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def stop(self) -> None:
        """Stop serving, as a SIGTERM does, but without raising the signal again once
        stopped (uvicorn does that for signals). Call it on the server's event loop.
        """
        self._close_then(lambda: setattr(self, "should_exit", True))

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._stopping:  # a second signal: stop at once, as uvicorn does
            super().handle_exit(sig, frame)
        else:
            self._close_then(functools.partial(super().handle_exit, sig, frame))

    def _close_then(self, stop: Callable[[], None]) -> None:
        """Tell every connection the server stops (1001), give them a moment to send
        their close frames, then ``stop``.
        """
        kernels: ServedKernels | None = getattr(self.app.state, "kernels", None)
        if self.should_exit or self._stopping or kernels is None or self._loop is None:
            stop()
            return
        self._stopping = True
        kernels.close_connections()
        self._loop.call_later(0.2, stop)


async def serve(
    settings: ServerSettings,
    *,
    backend: BackendFactory = local_backend,
    events: EventBus | None = None,
    on_ready: Callable[[str], Any] | None = None,
) -> None:
    """Run the server until SIGINT or SIGTERM; ``on_ready`` gets the URL once it listens
    (see :class:`KernelServer` for what a stop does).
    """
    limit = raise_open_file_limit()  # each kernel's channels take about ten
    log.debug("open-file limit: %d", limit)
    server = KernelServer(settings, backend=backend, events=events)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.01)
        if on_ready is not None:
            on_ready(server.url)
