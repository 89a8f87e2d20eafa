"""Which HTTP status each error gets: the server's one table (pure)."""

from __future__ import annotations

from kernelyard.errors import (
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
    InvalidState,
    KernelDied,
    KernelSpecError,
    KernelyardError,
    LaunchError,
    NoSuchKernel,
    NoSuchKernelSpec,
    ReplyTimeout,
    RequestRejected,
)

__all__ = ["ERROR_STATUS", "status_for"]

#: Error type -> HTTP status; the first matching row wins (RequestRejected and
#: GatewayHTTPError carry their own: a gateway's answer keeps its status).
ERROR_STATUS: tuple[tuple[type[KernelyardError], int], ...] = (
    (NoSuchKernel, 404),
    (NoSuchKernelSpec, 404),
    (KernelSpecError, 404),
    (InvalidState, 409),
    (ReplyTimeout, 504),
    (GatewayTimeout, 504),
    (GatewayUnreachable, 503),
    (GatewayError, 502),
    (LaunchError, 500),
    (KernelDied, 500),
    (KernelyardError, 500),
)


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message a client gets for ``exc``."""
    if isinstance(exc, RequestRejected):
        return exc.status, str(exc)
    if isinstance(exc, GatewayHTTPError):
        return exc.status_code, str(exc)
    if isinstance(exc, NoSuchKernel):
        return 404, f"Kernel does not exist: {exc.kernel_id}"  # jupyter_server's words
    if isinstance(exc, KernelyardError):
        return next(code for kind, code in ERROR_STATUS if isinstance(exc, kind)), str(exc)
    return 500, "Unhandled error"
