"""The server's decisions, pure: what clients may send, what they are told, how sockets close.

Everything the server decides without I/O lives here, so each rule is one
function with a unit test: the close codes and when each is used, which
client messages are refused and how, the error replies and tracebacks
clients see, the body of a kernel start, the execution state and status a
kernel's lifecycle shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from kernelyard.errors import RequestRejected
from kernelyard.lifecycle import Change, KernelEvent, KernelState, Lifecycle
from kernelyard.wire import Channel, Frame

__all__ = [
    "CLIENT_CHANNELS",
    "KERNEL_ID",
    "CloseCode",
    "Refusal",
    "StartRequest",
    "allowed_env",
    "bad_data",
    "check_client_message",
    "close_reason",
    "closing_for",
    "execution_state",
    "injected_status",
    "kernel_unavailable",
    "refusal_reply",
    "scrub_traceback",
    "start_request",
]

#: jupyter_server's kernel id route pattern.
KERNEL_ID = re.compile(r"^\w+-\w+-\w+-\w+-\w+$")
#: Channels a client may send on (IOPub is the kernel's).
CLIENT_CHANNELS = frozenset({Channel.SHELL, Channel.CONTROL, Channel.STDIN})


class CloseCode(IntEnum):
    """Every close code the kernel WebSocket uses, and what a client should do."""

    #: The kernel is gone for good (shut down, culled, dead): final, JupyterLab does
    #: not reconnect.
    FINAL = 1000
    #: The server stops: final too.
    SERVER_STOPPING = 1001
    #: A frame that is not a kernel message; the client may reconnect.
    BAD_DATA = 1007
    #: A frame on a channel clients may not use; the client may reconnect.
    POLICY = 1008
    #: A frame over the size limit (sent by the WebSocket layer itself).
    TOO_BIG = 1009
    #: The kernel cannot take messages now (down too long, too many waiting): come back.
    TRY_AGAIN = 1013
    #: A newer connection of the same session took over (as jupyter_server does).
    REPLACED = 4002


#: The most a close frame's reason may hold, in bytes of UTF-8 (RFC 6455: 125 less the code).
MAX_CLOSE_REASON = 123


def close_reason(text: str) -> str:
    """``text`` as a close frame can carry it: cut, with an ellipsis, to MAX_CLOSE_REASON."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON:
        return text
    return data[: MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."


@dataclass(frozen=True, slots=True)
class Refusal:
    """A client frame that is not forwarded: close with ``code``, or (``code`` None)
    answer with an error reply (``reply`` set for ``*_request`` messages).
    """

    reason: str
    code: CloseCode | None = None
    reply: tuple[str, dict[str, Any]] | None = None


def check_client_message(
    channel: Channel, header: Mapping[str, Any], allowed_types: frozenset[str]
) -> Refusal | None:
    """None when a decoded client message may go to the kernel, else the refusal."""
    if channel not in CLIENT_CHANNELS:
        return Refusal(f"clients may not send on {channel.value}", CloseCode.POLICY)
    msg_type, msg_id = header.get("msg_type"), header.get("msg_id")
    if not isinstance(msg_id, str) or not isinstance(msg_type, str):
        return Refusal("the header needs string msg_id and msg_type", CloseCode.BAD_DATA)
    if allowed_types and msg_type not in allowed_types:
        return Refusal(
            f"the server does not allow {msg_type} messages", reply=refusal_reply(msg_type)
        )
    return None


def refusal_reply(msg_type: str) -> tuple[str, dict[str, Any]] | None:
    """The error reply (type, content) for a refused message type (None: it wants none)."""
    if not msg_type.endswith("_request"):
        return None
    content = {
        "status": "error",
        "ename": "MessageTypeNotAllowed",
        "evalue": f"the server does not allow {msg_type} messages",
        "traceback": [],
    }
    return msg_type.removesuffix("_request") + "_reply", content


def bad_data(error: Exception) -> Refusal:
    """The refusal of a frame that does not decode as a kernel message."""
    return Refusal(f"not a kernel message: {error}"[:120], CloseCode.BAD_DATA)


def kernel_unavailable(error: Exception, *, gone: bool) -> Refusal | None:
    """A message the kernel's channels would not take: when the kernel is gone the
    bridge closes the connection with the final code anyway (None), else the client
    is told to come back later.
    """
    return (
        None
        if gone
        else Refusal(f"the kernel cannot take messages: {error}"[:120], CloseCode.TRY_AGAIN)
    )


def scrub_traceback(parts: list[Frame], replacement: str, *, only_errors: bool) -> list[Frame]:
    """``parts`` with the error's name, value and traceback replaced (``only_errors``:
    leave a reply whose status is not "error" as it is).
    """
    try:
        content = orjson.loads(parts[3])
    except orjson.JSONDecodeError:
        return parts
    if not isinstance(content, dict) or (only_errors and content.get("status") != "error"):
        return parts
    content.update(ename="ExecutionError", evalue="Execution error", traceback=[replacement])
    return [*parts[:3], orjson.dumps(content), *parts[4:]]


# -- the kernel's lifecycle, as clients see it ------------------------------------------


def injected_status(event: KernelEvent) -> str | None:
    """The ``status`` the server tells clients about a lifecycle event, if any."""
    if event.change is Change.DIED and event.will_restart:
        return "restarting"
    if event.change is Change.RESTART and event.previous is KernelState.RUNNING:
        return "restarting"  # by hand (after a death it was said already)
    if event.change in (Change.GAVE_UP, Change.SHUTDOWN):
        return "dead"
    return None


def closing_for(event: KernelEvent) -> tuple[CloseCode, str] | None:
    """How connections close after a lifecycle event (None: they stay open)."""
    if event.change is Change.GAVE_UP:
        return CloseCode.FINAL, "the kernel died"
    if event.change is Change.SHUTDOWN:
        why = "culled" if event.reason == "culled" else "shut down"
        return CloseCode.FINAL, f"the kernel was {why}"
    return None


def execution_state(lifecycle: Lifecycle, published: str) -> str:
    """The REST model's ``execution_state``: what the kernel published while it runs
    (``published``), else what its lifecycle says.
    """
    state = lifecycle.state
    if state is KernelState.RUNNING:
        return published
    if state is KernelState.RESTARTING or (state is KernelState.DEAD and not lifecycle.gone):
        return "restarting"
    if state in (KernelState.NEW, KernelState.STARTING):
        return "starting"
    return "dead"


# -- the body of POST /api/kernels ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartRequest:
    name: str | None
    kernel_id: str | None
    path: str | None
    env: dict[str, str]


def start_request(body: Mapping[str, Any], allowed: frozenset[str]) -> StartRequest:
    """Validate a start's body; RequestRejected (400) names what is wrong."""
    name, kernel_id, path = body.get("name"), body.get("kernel_id"), body.get("path")
    if name is not None and not isinstance(name, str):
        raise RequestRejected(400, "'name' must be a string")
    if kernel_id is not None and (not isinstance(kernel_id, str) or not KERNEL_ID.match(kernel_id)):
        raise RequestRejected(400, f"kernel_id {kernel_id!r} is not a UUID")
    if path is not None and not isinstance(path, str):
        raise RequestRejected(400, "'path' must be a string")
    return StartRequest(
        name or None, kernel_id, path or None, allowed_env(body.get("env"), allowed)
    )


def allowed_env(env: object, allowed: frozenset[str]) -> dict[str, str]:
    """The part of a client's ``env`` passed on: ``KERNEL_*`` and the ``allowed`` names."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise RequestRejected(400, "'env' must be an object of strings")
    kept: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise RequestRejected(400, f"env value of {name!r} must be a string")
        if name.startswith("KERNEL_") or name in allowed:
            kept[name] = value
    return kept
