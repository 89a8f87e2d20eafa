"""ServerSettings: every knob of the server, as one frozen dataclass.

The CLI builds it (``kernelyard serve --help`` lists a flag per field, with
the help text and default given here);
library users pass it to :func:`~kernelyard.server.create_app`. Defaults
match jupyter_server where it has the same knob, except where a default of
its is a known pain (a 10 MiB message cap, output dropped by rate limits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernelyard.provisioning.encryption import TransportEncryption, encryption_mode

__all__ = ["ServerSettings"]

MiB = 1 << 20


def knob(default: Any, help: str) -> Any:
    """A settings field with its help text (the CLI makes a flag of it)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the server does; each field's ``metadata["help"]`` gives units and meaning."""

    # -- serving ---------------------------------------------------------------------
    ip: str = knob("127.0.0.1", "the address to listen on")
    port: int = knob(8888, "0: any free port")
    base_url: str = knob("/", "every route sits under it; always starts and ends with '/'")
    root_dir: str = knob(".", "a POST's 'path' is resolved under it to the kernel's cwd")
    default_kernel: str = knob("kernelyard", "used when a POST names no kernel")

    # -- auth ---------------------------------------------------------------------------
    token: str = knob("", "'' means no token is required (--no-token)")
    allow_origin: str = knob("", "'*' or one exact origin; '' means same origin only")
    allow_origin_pat: str = knob("", "a regular expression origins may match")
    allow_credentials: bool = knob(False, "Access-Control-Allow-Credentials on CORS answers")
    disable_check_xsrf: bool = knob(
        False, "cookie-authenticated writes need X-XSRFToken unless set"
    )

    # -- kernels ----------------------------------------------------------------------
    max_kernels: int = knob(0, "0: no limit; starts beyond it get 403")
    allowed_env: frozenset[str] = knob(frozenset({"JPY_SESSION_NAME"}), "also every KERNEL_* name")
    allowed_message_types: frozenset[str] = knob(frozenset(), "empty: every type may be sent")
    allow_tracebacks: bool = knob(True, "False: error tracebacks are replaced (iopub and replies)")
    traceback_replacement: str = knob(
        "An exception occurred at runtime, which is not shown due to security reasons.",
        "the traceback clients see when tracebacks are not allowed",
    )
    transport_encryption: TransportEncryption = knob(  # noqa: RUF009 (knob() is a field())
        "disabled",
        "CurveZMQ for the kernels the server starts: auto (when the kernelspec supports it) "
        "or required (a kernelspec without support fails to start)",
    )
    kernel_info_timeout: float = knob(60.0, "seconds a restart waits for the kernel to answer")
    shutdown_timeout: float = knob(10.0, "seconds the server waits for kernels when it stops")

    # -- culling --------------------------------------------------------------------------
    cull_idle_timeout: float = knob(0, "seconds idle before a kernel is culled; 0: never")
    cull_interval: float = knob(300, "seconds between culling passes; <= 0 means the default")
    cull_busy: bool = knob(False, "cull kernels that are busy (idle is then time since activity)")
    cull_connected: bool = knob(False, "cull kernels that have WebSocket connections")

    # -- WebSocket ------------------------------------------------------------------------
    max_message_size: int = knob(64 * MiB, "largest WebSocket message a client may send")
    ws_ping_interval: float = knob(30.0, "seconds between pings; 0: no pings")
    ws_ping_timeout: float = knob(90.0, "seconds without a pong before the socket is closed")
    kernel_ws_protocol: str | None = knob(None, "None: v1 when offered; '': always legacy")
    ws_compression: bool = knob(
        False, "permessage-deflate when the client offers it (off, as in jupyter_server)"
    )

    # -- output: replay log and rate limits ------------------------------------------------
    replay_max_messages: int = knob(100_000, "messages the per-kernel replay log holds at most")
    replay_max_bytes: int = knob(64 * MiB, "bytes it holds at most (oldest go first)")
    limit_rate: bool = knob(True, "pace IOPub per connection (never drops; merges stream chunks)")
    iopub_msg_rate_limit: float = knob(1000.0, "messages per second per connection")
    iopub_data_rate_limit: float = knob(1_000_000.0, "stream bytes per second per connection")
    rate_limit_window: float = knob(3.0, "seconds the rates are averaged over")

    def __post_init__(self) -> None:
        base = "/" + self.base_url.strip("/")
        object.__setattr__(self, "base_url", base if base == "/" else base + "/")
        if self.cull_interval <= 0:
            object.__setattr__(self, "cull_interval", 300.0)
        object.__setattr__(self, "transport_encryption", encryption_mode(self.transport_encryption))
