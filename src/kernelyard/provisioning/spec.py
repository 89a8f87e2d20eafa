"""What to launch: the command line and environment of a kernel, made from templates.

Pure functions over plain data; :mod:`kernelyard.provisioning.local` runs
what they produce.
"""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["LaunchSpec", "format_argv", "kernel_env"]

InterruptMode = Literal["signal", "message"]

_FIELD = re.compile(r"\{([A-Za-z0-9_]+)\}")
_THIS_PYTHON = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """The launch-relevant part of a kernelspec."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    interrupt_mode: InterruptMode = "signal"
    resource_dir: Path | None = None
    kernel_name: str = ""
    #: The kernel binds its own ports and registers them (JEP 66 handshake).
    handshake: bool = False
    #: Modules a fork server imports once, so that the kernel can be forked from
    #: it instead of spawned (see :mod:`kernelyard.provisioning.forkserver`).
    preload: tuple[str, ...] = ()
    #: The kernel takes CurveZMQ keys (``"curve"`` in ``metadata.supported_encryption``).
    supports_curve: bool = False
    #: The provisioner the kernelspec names (``metadata.kernel_provisioner``, the shape
    #: jupyter_client and Enterprise Gateway use), "" for the caller's own, and its config.
    provisioner: str = ""
    provisioner_config: Mapping[str, object] = field(default_factory=dict)


def format_argv(
    argv: Sequence[str],
    *,
    connection_file: str,
    resource_dir: Path | None = None,
    launch_params: Mapping[str, object] | None = None,
) -> list[str]:
    """Fill ``{connection_file}``, ``{resource_dir}``, ``{prefix}`` and launch params.

    A bare ``python`` (or ``python3``, ``python3.X`` of this interpreter) as the
    program means this interpreter, as jupyter_client does it. Unknown fields
    are left as they are.
    """
    values: dict[str, str] = {"connection_file": connection_file, "prefix": sys.prefix}
    if resource_dir is not None:
        values["resource_dir"] = str(resource_dir)
    for key, value in (launch_params or {}).items():
        values[key] = str(value)
    args = list(argv)
    if args and args[0] in _THIS_PYTHON:
        args[0] = sys.executable
    return [_FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), arg) for arg in args]


def kernel_env(
    base: Mapping[str, str], spec_env: Mapping[str, str], *, parent_pid: int | None
) -> dict[str, str]:
    """The kernel's environment: ``base``, then the spec's env with ``${VAR}`` from ``base``.

    ``JPY_PARENT_PID`` tells the kernel whose death should end it; ``parent_pid``
    None (a kernel that is to outlive its manager) sets none, and drops one the
    manager inherited.
    """
    env = dict(base)
    env.update({k: string.Template(v).safe_substitute(base) for k, v in spec_env.items()})
    if parent_pid is None:
        env.pop("JPY_PARENT_PID", None)
    else:
        env["JPY_PARENT_PID"] = str(parent_pid)
    return env
