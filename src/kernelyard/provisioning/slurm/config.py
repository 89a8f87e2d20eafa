"""SlurmConfig: a Slurm kernelspec's ``kernel_provisioner.config``, validated.

Every field is optional; an unknown key or a value of the wrong type is a
KernelSpecError naming the kernelspec and the key, at start.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from kernelyard.errors import KernelSpecError
from kernelyard.provisioning.encryption import ENCRYPTION_MODES

__all__ = ["NAME", "SlurmConfig", "job_name"]

#: The provisioner's name in kernelspecs and in the kernelyard.provisioners entry points.
NAME = "kernelyard-slurm"


def job_name(kernel_id: str) -> str:
    """The job's name, our marker in ``squeue``: ``kernelyard-`` and the kernel id."""
    return f"kernelyard-{kernel_id}"


@dataclass(frozen=True, slots=True)
class SlurmConfig:
    """``metadata.kernel_provisioner.config`` of a Slurm kernelspec; every field optional."""

    partition: str = ""
    account: str = ""
    time: str = ""  # sbatch --time: minutes, or [D-]HH:MM:SS
    cpus: int = 0  # --cpus-per-task; 0: Slurm's default
    memory: str = ""  # --mem, "2G"
    extra_args: tuple[str, ...] = ()  # more sbatch arguments
    #: The Python on the nodes that runs the node launcher (default: ours).
    python: str = sys.executable
    #: Where on the node the connection file is written (removed once read).
    workdir: str = "/tmp"
    #: The address the nodes reach this manager at (default: this host's name's).
    callback_ip: str = ""
    #: Seconds a job may stay PENDING before the start gives up.
    queue_timeout: float = 300.0
    #: Seconds between the ``squeue`` calls that watch a running kernel.
    poll_interval: float = 2.0
    #: ``SLURM_CONF`` for the commands, when not the default one.
    slurm_conf: str = ""
    #: Where the job's stdout and stderr go on the node (``%j``: the job id).
    output: str = "/tmp/kernelyard-%j.out"
    #: The least CurveZMQ these kernels get: their connection leaves the machine, so
    #: ``auto`` (when the kernelspec supports it and libzmq has Curve) unless the
    #: kernelspec says ``disabled``; the launch options may ask for more, never less.
    transport_encryption: str = "auto"

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any]) -> SlurmConfig:
        """Validate a kernelspec's config; KernelSpecError names the bad key."""
        known = {item.name: item for item in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in config.items():
            if key not in known:
                raise KernelSpecError(
                    f"kernelspec {name!r}: {NAME} has no setting {key!r} "
                    f"(it has {', '.join(sorted(known))})",
                    name=name,
                )
            default = getattr(cls(), key)
            if key == "extra_args":
                if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                    raise KernelSpecError(
                        f"kernelspec {name!r}: {key} must be a list of strings", name=name
                    )
                value = tuple(value)
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                    raise KernelSpecError(
                        f"kernelspec {name!r}: {key} must be a positive number", name=name
                    )
                value = float(value)
            elif not isinstance(value, type(default)) or isinstance(value, bool):
                raise KernelSpecError(
                    f"kernelspec {name!r}: {key} must be a {type(default).__name__}, not {value!r}",
                    name=name,
                )
            if key == "transport_encryption" and value not in ENCRYPTION_MODES:
                raise KernelSpecError(
                    f"kernelspec {name!r}: {key} must be one of {', '.join(ENCRYPTION_MODES)}, "
                    f"not {value!r}",
                    name=name,
                )
            values[key] = value
        return cls(**values)

    def sbatch_args(self, kernel_id: str) -> list[str]:
        """The job's ``sbatch`` arguments: its name (our marker), output and resources;
        never requeued (a rerun would start a kernel that nobody waits for).
        """
        args = [f"--job-name={job_name(kernel_id)}", f"--output={self.output}", "--no-requeue"]
        for flag, value in (
            ("--partition", self.partition),
            ("--account", self.account),
            ("--time", self.time),
            ("--mem", self.memory),
        ):
            if value:
                args.append(f"{flag}={value}")
        if self.cpus:
            args.append(f"--cpus-per-task={self.cpus}")
        return [*args, *self.extra_args]
