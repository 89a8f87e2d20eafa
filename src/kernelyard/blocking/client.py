"""BlockingKernelClient: KernelClient's methods, each a blocking call on the private loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from kernelyard.blocking.portal import build, call, portal
from kernelyard.client import KernelClient, OutputHook, StdinHook
from kernelyard.client.links import ChannelsFactory
from kernelyard.wire import Channel, ConnectionInfo, Frames, Message
from kernelyard.wire.channel import MESSAGE_CHANNELS

__all__ = ["BlockingKernelClient", "BlockingReceiver"]


class BlockingReceiver:
    """Messages of a subscription, one blocking ``get`` at a time (or by iteration)."""

    def __init__(self, stream: MemoryObjectReceiveStream[Message]) -> None:
        self._stream = stream

    def get(self, timeout: float | None = None) -> Message:
        """The next message; TimeoutError after ``timeout`` seconds."""
        return call(partial(_receive, self._stream, timeout))

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield self.get()


async def _receive(stream: MemoryObjectReceiveStream[Message], timeout: float | None) -> Message:
    with anyio.fail_after(timeout):
        return await stream.receive()


class BlockingKernelClient:
    """A blocking client of one kernel; see KernelClient for what each method does.

    Open it with ``with`` (or :meth:`start_channels` / :meth:`stop_channels`).
    """

    def __init__(
        self,
        connection_info: ConnectionInfo | None = None,
        *,
        channels: ChannelsFactory | None = None,
        session: str | None = None,
        username: str = "kernelyard",
        heartbeat: bool = True,
        heartbeat_interval: float = 0.5,
        time_to_dead: float = 3.0,
        kernel_id: str | None = None,
    ) -> None:
        """A KernelClient for ``connection_info`` or ``channels`` (see it for the
        parameters; the channels it opens must belong to the blocking layer's loop), not open yet.
        """
        self.async_client: KernelClient = build(
            partial(
                KernelClient,
                connection_info,
                channels=channels,
                session=session,
                username=username,
                heartbeat=heartbeat,
                heartbeat_interval=heartbeat_interval,
                time_to_dead=time_to_dead,
                kernel_id=kernel_id,
            )
        )
        self._opened: AbstractContextManager[object] | None = None

    @classmethod
    def wrap(
        cls, client: KernelClient, *, opened: AbstractContextManager[object] | None = None
    ) -> BlockingKernelClient:
        """A blocking face for an existing ``client``; ``opened`` (a context entered on the
        loop that holds it open) is what :meth:`stop_channels` leaves.
        """
        self = cls.__new__(cls)
        self.async_client, self._opened = client, opened
        return self

    # -- open and close ------------------------------------------------------------

    def start_channels(self) -> None:
        """Connect the sockets and start the readers."""
        opened = portal().wrap_async_context_manager(self.async_client)
        opened.__enter__()
        self._opened = opened

    def stop_channels(self) -> None:
        """Close everything (idempotent)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.__exit__(None, None, None)

    def __enter__(self) -> Self:
        self.start_channels()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_channels()

    def close(self) -> None:
        """The same as :meth:`stop_channels` (the async client's ``aclose``)."""
        self.stop_channels()

    # -- state and messages ------------------------------------------------------------

    @property
    def connection_info(self) -> ConnectionInfo | None:
        """None for a client over a backend's channels (a kernel behind a gateway)."""
        return self.async_client.connection_info

    @property
    def session(self) -> str:
        return self.async_client.session

    @property
    def is_alive(self) -> bool:
        return self.async_client.is_alive

    @property
    def execution_state(self) -> str:
        return self.async_client.execution_state

    def message(
        self,
        msg_type: str,
        content: Mapping[str, Any] | None = None,
        *,
        channel: Channel = Channel.SHELL,
        subshell_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: Frames = (),
        parent: Message | None = None,
    ) -> Message:
        return self.async_client.message(
            msg_type,
            content,
            channel=channel,
            subshell_id=subshell_id,
            metadata=metadata,
            buffers=buffers,
            parent=parent,
        )

    @contextmanager
    def subscribe(
        self, channels: frozenset[Channel] = MESSAGE_CHANNELS
    ) -> Iterator[BlockingReceiver]:
        with portal().wrap_async_context_manager(self.async_client.subscribe(channels)) as stream:
            yield BlockingReceiver(stream)

    def iopub(self) -> AbstractContextManager[BlockingReceiver]:
        return self.subscribe(frozenset({Channel.IOPUB}))

    def stdin_requests(self) -> Message:
        return call(self.async_client.stdin_requests)

    # -- requests (one line each) -------------------------------------------------------

    def send(self, msg: Message) -> None:
        return call(partial(self.async_client.send, msg))

    def request(self, msg: Message, *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.request, msg, timeout=timeout))

    def wait_for_ready(self, timeout: float | None = 60.0) -> Message:
        return call(partial(self.async_client.wait_for_ready, timeout))

    def kernel_info(
        self, *, channel: Channel = Channel.SHELL, timeout: float | None = None
    ) -> Message:
        return call(partial(self.async_client.kernel_info, channel=channel, timeout=timeout))

    def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        return call(
            partial(
                self.async_client.execute,
                code,
                silent=silent,
                store_history=store_history,
                user_expressions=user_expressions,
                allow_stdin=allow_stdin,
                stop_on_error=stop_on_error,
                subshell_id=subshell_id,
                timeout=timeout,
            )
        )

    def execute_interactive(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: Mapping[str, str] | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        subshell_id: str | None = None,
        output_hook: OutputHook | None = None,
        stdin_hook: StdinHook | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Hooks run on the loop thread (a sync ``stdin_hook`` in a worker thread)."""
        return call(
            partial(
                self.async_client.execute_interactive,
                code,
                silent=silent,
                store_history=store_history,
                user_expressions=user_expressions,
                allow_stdin=allow_stdin,
                stop_on_error=stop_on_error,
                subshell_id=subshell_id,
                output_hook=output_hook,
                stdin_hook=stdin_hook,
                timeout=timeout,
            )
        )

    def complete(
        self,
        code: str,
        cursor_pos: int | None = None,
        *,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        return call(
            partial(
                self.async_client.complete,
                code,
                cursor_pos,
                subshell_id=subshell_id,
                timeout=timeout,
            )
        )

    def inspect(
        self,
        code: str,
        cursor_pos: int | None = None,
        detail_level: int = 0,
        *,
        subshell_id: str | None = None,
        timeout: float | None = None,
    ) -> Message:
        return call(
            partial(
                self.async_client.inspect,
                code,
                cursor_pos,
                detail_level,
                subshell_id=subshell_id,
                timeout=timeout,
            )
        )

    def history(
        self,
        *,
        raw: bool = True,
        output: bool = False,
        hist_access_type: str = "range",
        session: int = 0,
        start: int = 0,
        stop: int | None = None,
        n: int | None = None,
        pattern: str | None = None,
        unique: bool = False,
        timeout: float | None = None,
    ) -> Message:
        return call(
            partial(
                self.async_client.history,
                raw=raw,
                output=output,
                hist_access_type=hist_access_type,
                session=session,
                start=start,
                stop=stop,
                n=n,
                pattern=pattern,
                unique=unique,
                timeout=timeout,
            )
        )

    def is_complete(
        self, code: str, *, subshell_id: str | None = None, timeout: float | None = None
    ) -> Message:
        return call(
            partial(self.async_client.is_complete, code, subshell_id=subshell_id, timeout=timeout)
        )

    def comm_info(self, target_name: str | None = None, *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.comm_info, target_name, timeout=timeout))

    def shutdown(self, *, restart: bool = False, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.shutdown, restart=restart, timeout=timeout))

    def interrupt(self, *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.interrupt, timeout=timeout))

    def input(self, value: str, *, parent: Message | None = None) -> None:
        return call(partial(self.async_client.input, value, parent=parent))

    def debug_request(self, content: Mapping[str, Any], *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.debug_request, content, timeout=timeout))

    def create_subshell(self, *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.create_subshell, timeout=timeout))

    def delete_subshell(self, subshell_id: str, *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.delete_subshell, subshell_id, timeout=timeout))

    def list_subshell(self, *, timeout: float | None = None) -> Message:
        return call(partial(self.async_client.list_subshell, timeout=timeout))

    def comm_open(
        self,
        target_name: str,
        data: Mapping[str, Any] | None = None,
        *,
        comm_id: str,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        subshell_id: str | None = None,
    ) -> str:
        return call(
            partial(
                self.async_client.comm_open,
                target_name,
                data,
                comm_id=comm_id,
                metadata=metadata,
                buffers=buffers,
                subshell_id=subshell_id,
            )
        )

    def comm_msg(
        self,
        comm_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        buffers: Sequence[bytes] = (),
        subshell_id: str | None = None,
    ) -> str:
        return call(
            partial(
                self.async_client.comm_msg,
                comm_id,
                data,
                metadata=metadata,
                buffers=buffers,
                subshell_id=subshell_id,
            )
        )

    def comm_close(
        self, comm_id: str, data: Mapping[str, Any] | None = None, *, subshell_id: str | None = None
    ) -> str:
        return call(partial(self.async_client.comm_close, comm_id, data, subshell_id=subshell_id))
