"""CutProxy: a TCP proxy on 127.0.0.1 between kernelyard and an upstream, that a test cuts.

``cut()`` drops every open connection at once (both ends see the TCP
connection end, as when a network path fails); ``down()`` makes new
connections fail until ``up()`` (accepted, then closed at once, like a
gateway behind a load balancer that lost its backend). ``accepted`` counts
connections, for the tests of retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

import anyio
from anyio.abc import SocketAttribute, SocketStream


class CutProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0
        self.is_down = False
        self._scopes: set[anyio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def down(self) -> None:
        self.is_down = True
        self.cut()

    def up(self) -> None:
        self.is_down = False

    @classmethod
    @asynccontextmanager
    async def running(cls, upstream_port: int) -> AsyncIterator[Self]:
        proxy = cls(upstream_port)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        proxy.port = listener.extra(SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy._handle)
            try:
                yield proxy
            finally:
                proxy.cut()
                tg.cancel_scope.cancel()

    async def _handle(self, client: SocketStream) -> None:
        self.accepted += 1
        async with client:
            if self.is_down:
                return
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            except OSError:
                return
            scope = anyio.CancelScope()
            self._scopes.add(scope)
            try:
                with scope:
                    async with upstream, anyio.create_task_group() as tg:
                        tg.start_soon(_pump, client, upstream, scope)
                        tg.start_soon(_pump, upstream, client, scope)
            finally:
                self._scopes.discard(scope)


async def _pump(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
    try:
        async for data in source:
            await sink.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    scope.cancel()  # one side ended: end the other
