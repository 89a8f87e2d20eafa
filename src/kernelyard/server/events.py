"""Server events: jupyter_server's ``kernel_actions`` and ``gateway_client`` records.

Each action (start, interrupt, restart, shutdown, cull) yields one record with
jupyter_server's fields (``action``, ``kernel_id``, ``kernel_name``,
``status``, ``status_code`` on errors, ``msg``) inside jupyter_events'
envelope; in gateway mode every request to the gateway yields a
``gateway_client`` record (``status``, ``status_code``, ``msg``). Each is
written as one JSON line to the ``kernelyard.events`` logger and sent to
every subscriber of ``/api/events/subscribe``. A subscriber that stops
reading loses events (counted), never the server's memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from kernelyard._clock import utcnow
from kernelyard.wire import format_date

__all__ = ["GATEWAY_CLIENT_SCHEMA", "KERNEL_ACTIONS_SCHEMA", "EventBus"]

log = logging.getLogger("kernelyard.events")

KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
GATEWAY_CLIENT_SCHEMA = "https://events.jupyter.org/jupyter_server/gateway_client/v1"
#: Events a subscriber may have queued before further ones are dropped for it.
SUBSCRIBER_BUFFER = 1000


class EventBus:
    """Fans kernel action records out to the log and to subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[MemoryObjectSendStream[bytes]] = set()
        self.dropped = 0

    def kernel_action(
        self,
        action: str,
        kernel_id: str,
        kernel_name: str,
        *,
        msg: str,
        status_code: int | None = None,
    ) -> dict[str, Any]:
        """Record one action; ``status_code`` (an HTTP status) marks it failed."""
        fields: dict[str, Any] = {
            "action": action,
            "kernel_id": kernel_id,
            "kernel_name": kernel_name,
            "status": "success" if status_code is None else "error",
            "msg": msg,
        }
        if status_code is not None:
            fields["status_code"] = status_code
        return self.emit(KERNEL_ACTIONS_SCHEMA, fields)

    def gateway_client(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Record one request to a gateway (``status``, ``status_code``, ``msg``)."""
        return self.emit(GATEWAY_CLIENT_SCHEMA, fields)

    def emit(self, schema: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Log ``fields`` in jupyter_events' envelope and send them to every subscriber."""
        record: dict[str, Any] = {
            "__timestamp__": format_date(utcnow()),
            "__schema__": schema,
            "__schema_version__": 1,
            "__metadata_version__": 1,
            **fields,
        }
        line = orjson.dumps(record)
        log.info("%s", line.decode())
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(line)
            except anyio.WouldBlock:
                self.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(subscriber)
        return record

    @contextmanager
    def subscribe(self) -> Iterator[MemoryObjectReceiveStream[bytes]]:
        """Every record from now until the block ends (JSON bytes)."""
        send, receive = anyio.create_memory_object_stream[bytes](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
