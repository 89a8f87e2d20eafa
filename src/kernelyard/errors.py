"""Every exception kernelyard raises.

The tree::

    KernelyardError
    ├── ProtocolError                 a message broke the Jupyter messaging protocol
    │   ├── LocalProtocolError        we were asked to send something invalid (ValueError)
    │   └── RemoteProtocolError       a peer sent something invalid
    │       ├── MalformedMessage      frames that do not form a message
    │       └── InvalidSignature      HMAC missing or wrong
    │           └── ReplayedMessage   a valid signature seen before
    ├── ConnectionInfoError           a connection file or dict that cannot be used (ValueError)
    ├── EncryptionUnavailable         CurveZMQ is asked for, but this libzmq lacks it (RuntimeError)
    ├── KernelSpecError               a kernelspec that cannot be used
    │   └── NoSuchKernelSpec          no kernel type by that name (LookupError)
    ├── NoSuchKernel                  no running kernel by that id (LookupError)
    ├── LaunchError                   the kernel process could not be started
    ├── InvalidState                  an operation the lifecycle state forbids (RuntimeError)
    ├── KernelDied                    the kernel process or its heartbeat is gone
    ├── ChannelClosed                 the channel was closed under the caller
    ├── RequestError                  a request did not get a usable reply
    │   ├── ReplyTimeout              no reply in time (TimeoutError)
    │   └── ExecutionError            an execute reply with status "error", on request
    ├── RequestRejected               the server refuses a client's HTTP request (status)
    ├── DebuggerError                 the kernel's debugger cannot do what was asked
    ├── GatewaySettingError           a gateway setting that cannot be used (ValueError)
    ├── GatewayError                  the remote gateway could not be used
    │   ├── GatewayUnreachable        no connection to it
    │   ├── GatewayTimeout            no answer in time (TimeoutError)
    │   └── GatewayHTTPError          it answered with an HTTP error status
    └── StoreError                    the state store cannot be opened, read or written

Rules: every class lives here; built-in bases are mixed in where the meaning
matches, so ``except TimeoutError`` keeps working; foreign errors (ZMQError,
OSError, httpx errors) are translated where they enter, chained with ``from``;
context travels as attributes, not only in the text.
"""

from __future__ import annotations

__all__ = [
    "ChannelClosed",
    "ConnectionInfoError",
    "DebuggerError",
    "EncryptionUnavailable",
    "ExecutionError",
    "GatewayError",
    "GatewayHTTPError",
    "GatewaySettingError",
    "GatewayTimeout",
    "GatewayUnreachable",
    "InvalidSignature",
    "InvalidState",
    "KernelDied",
    "KernelSpecError",
    "KernelyardError",
    "LaunchError",
    "LocalProtocolError",
    "MalformedMessage",
    "NoSuchKernel",
    "NoSuchKernelSpec",
    "ProtocolError",
    "RemoteProtocolError",
    "ReplayedMessage",
    "ReplyTimeout",
    "RequestError",
    "RequestRejected",
    "StoreError",
]


class KernelyardError(Exception):
    """Base class of every error kernelyard raises."""


# -- wire -------------------------------------------------------------------


class ProtocolError(KernelyardError):
    """A message broke the Jupyter messaging protocol."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to send something that is not a valid message."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something that is not a valid message."""


class MalformedMessage(RemoteProtocolError):
    """Frames or bytes that do not form a message (framing, JSON or field types)."""


class InvalidSignature(RemoteProtocolError):
    """A message whose HMAC signature is missing or does not match."""


class ReplayedMessage(InvalidSignature):
    """A correctly signed message whose signature was already accepted once."""


class ConnectionInfoError(KernelyardError, ValueError):
    """Connection info that cannot be used; ``path`` names the file when there is one."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class EncryptionUnavailable(KernelyardError, RuntimeError):
    """CurveZMQ encryption is asked for (a connection's keys, ``transport_encryption``),
    but the libzmq under pyzmq was built without it (``zmq.has("curve")`` is false).
    """


# -- discovery --------------------------------------------------------------


class KernelSpecError(KernelyardError):
    """A kernelspec that cannot be read or used; ``name`` is the kernel type asked for."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class NoSuchKernelSpec(KernelSpecError, LookupError):
    """No kernel type by that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no such kernel type: {name!r}", name=name)


# -- kernels ----------------------------------------------------------------


class NoSuchKernel(KernelyardError, LookupError):
    """No running kernel with that id."""

    def __init__(self, kernel_id: str) -> None:
        super().__init__(f"no such kernel: {kernel_id!r}")
        self.kernel_id = kernel_id


class LaunchError(KernelyardError):
    """The kernel process could not be started, or exited while starting."""

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        exit_code: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.argv = argv
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    @classmethod
    def citing_stderr(
        cls, message: str, *, argv: list[str], exit_code: int | None, stderr_tail: str
    ) -> LaunchError:
        """``message``, then the last line the kernel printed (usually its error)."""
        lines = stderr_tail.strip().splitlines()
        return cls(
            f"{message}: {lines[-1]}" if lines else message,
            argv=argv,
            exit_code=exit_code,
            stderr_tail=stderr_tail,
        )


class InvalidState(KernelyardError, RuntimeError):
    """The operation is not allowed in the current lifecycle state."""


class KernelDied(KernelyardError):
    """The kernel process exited or stopped answering its heartbeat."""

    def __init__(
        self,
        message: str = "kernel died",
        *,
        kernel_id: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kernel_id = kernel_id
        self.exit_code = exit_code


class ChannelClosed(KernelyardError):
    """The channel (socket or WebSocket) was closed while in use."""


class RequestError(KernelyardError):
    """A request did not get a usable reply."""

    def __init__(
        self, message: str, *, msg_id: str | None = None, msg_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.msg_id = msg_id
        self.msg_type = msg_type


class ReplyTimeout(RequestError, TimeoutError):
    """No reply arrived within the timeout."""


class ExecutionError(RequestError):
    """An execute reply with status "error"; raised only when the caller asks for it."""

    def __init__(
        self, ename: str, evalue: str, traceback: list[str], *, msg_id: str | None = None
    ) -> None:
        super().__init__(f"{ename}: {evalue}", msg_id=msg_id, msg_type="execute_reply")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


# -- server -----------------------------------------------------------------


class RequestRejected(KernelyardError):
    """The server refuses an HTTP request: a bad body, a limit reached, no permission.

    ``status`` is the HTTP status code the client gets, with the message as its body.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- kernel -----------------------------------------------------------------


class DebuggerError(KernelyardError):
    """The kernel's debugger cannot serve a debug_request: debugpy is missing or
    failed to start, the debug adapter went away or did not answer in time.
    The kernel answers with a failed DAP response carrying this message.
    """


# -- gateway ----------------------------------------------------------------


class GatewaySettingError(KernelyardError, ValueError):
    """A gateway setting with a value that cannot be used; ``setting`` names it."""

    def __init__(self, setting: str, value: object, problem: str) -> None:
        super().__init__(f"gateway setting {setting}={value!r} {problem}")
        self.setting = setting
        self.value = value


class GatewayError(KernelyardError):
    """The remote gateway at ``url`` could not be used; the message names the hop."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class GatewayUnreachable(GatewayError):
    """No connection to the gateway could be made (refused, no such host, TLS failed)."""


class GatewayTimeout(GatewayError, TimeoutError):
    """The gateway did not answer within the request (or connect) timeout."""


class GatewayHTTPError(GatewayError):
    """The gateway answered with an HTTP error status.

    ``status_code`` is its status, ``message`` the reason it gave (its JSON
    ``message``/``reason``, else the start of its body), ``request`` what was
    asked ("POST /api/kernels").
    """

    def __init__(self, status_code: int, message: str, *, url: str = "", request: str = "") -> None:
        where = f"the gateway at {url}" if url else "the gateway"
        to = f" to {request}" if request else ""
        super().__init__(f"{where} answered {status_code}{to}: {message[:500]}", url=url)
        self.status_code = status_code
        self.message = message
        self.request = request


class StoreError(KernelyardError):
    """The state store cannot be opened, read or written (a file that is not ours, a
    record of an unknown format, a database that refuses); the message says which.
    """
