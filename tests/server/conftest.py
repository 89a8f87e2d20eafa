"""The server in the test's own process, on 127.0.0.1 and a random port, on a FakeBackend.

``serving(**knobs)`` runs a :class:`~kernelyard.server.KernelServer` with
:class:`~kernelyard.testing.FakeBackend` kernels (no process is started):
real HTTP and WebSocket connections, milliseconds per test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx
import pytest

from kernelyard.server import KernelServer, ServerSettings
from kernelyard.server.kernels import ServedKernels
from kernelyard.testing import FakeBackend

TOKEN = "fake-token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Served:
    """A running in-process server and the fake backend under it."""

    server: KernelServer
    backend: Any  # a FakeBackend, or what the test put under the server
    token: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    @property
    def kernels(self) -> ServedKernels:
        kernels: ServedKernels = self.server.app.state.kernels
        return kernels

    def http(self, **headers: str) -> httpx.AsyncClient:
        auth = {"Authorization": f"token {self.token}"} if self.token else {}
        return httpx.AsyncClient(base_url=self.url, headers={**auth, **headers}, timeout=10)

    async def start(self, **body: Any) -> str:
        """Start a kernel over REST (``POST /api/kernels`` with ``body``); its id, once
        it answers (the POST itself answers while it starts).
        """
        async with self.http() as http:
            response = await http.post("api/kernels", json=body)
        assert response.status_code == 201, response.text
        kernel_id = str(response.json()["id"])
        with anyio.fail_after(5):
            await self.kernels.get(kernel_id).running()
        return kernel_id


class PromptServer(KernelServer):
    """uvicorn's loop and shutdown without their fixed 0.1 s pauses, so that a test's
    teardown takes milliseconds; otherwise the same steps, lifespan shutdown included.
    """

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            await anyio.sleep(0.002)

    async def shutdown(self, sockets: Any = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        with anyio.fail_after(5):
            while self.server_state.connections or self.server_state.tasks:
                await anyio.sleep(0.002)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


@asynccontextmanager
async def serving(
    backend: Any = None,
    *,
    uvicorn_options: Mapping[str, Any] | None = None,
    wrap_app: Callable[[Any], Any] | None = None,
    **knobs: Any,
) -> AsyncIterator[Served]:
    """A server on ``backend`` (a new FakeBackend by default; anything with a backend
    ``factory``) with ``knobs`` as settings.

    ``uvicorn_options`` are set on the ``uvicorn.Config`` before it is loaded (TLS:
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``, ``ssl_cert_reqs``; the
    server's ``url`` still says ``http``); ``wrap_app`` wraps the ASGI app uvicorn
    serves (a test's middleware), ``Served.server.app`` staying the app itself.
    """
    settings = replace(
        ServerSettings(port=0, token=TOKEN, default_kernel="fake", ws_ping_interval=0), **knobs
    )
    fake = backend or FakeBackend()
    server = PromptServer(settings, backend=fake.factory)
    for name, value in (uvicorn_options or {}).items():
        if not hasattr(server.config, name):
            raise TypeError(f"uvicorn.Config has no option {name!r}")
        setattr(server.config, name, value)
    if wrap_app is not None:
        server.config.app = wrap_app(server.config.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(5):
            while not server.started:
                if server.should_exit:
                    raise AssertionError("the server did not start")
                await anyio.sleep(0.002)
        try:
            yield Served(server, fake, settings.token)
        finally:
            server.should_exit = True  # at once: tests close their connections themselves


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving() as running:
        yield running
