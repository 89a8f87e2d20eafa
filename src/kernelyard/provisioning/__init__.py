"""Starting and stopping kernel processes: the provisioner seam and its local implementations.

A :class:`Provisioner` starts a kernel from a :class:`LaunchSpec` (what to
run) and :class:`LaunchOptions` (the caller's choices) and returns a
:class:`ProvisionedKernel` to drive it. Provisioning knows processes, ports
and files, not messages. ``transport_encryption`` decides whether a new
kernel's connection gets CurveZMQ keys (:mod:`.encryption`).
"""

from kernelyard.provisioning.connection_file import read_connection_file, write_connection_file
from kernelyard.provisioning.encryption import ENCRYPTION_MODES, TransportEncryption
from kernelyard.provisioning.forkserver import ForkServers
from kernelyard.provisioning.launch import connection_file_path, new_connection_info
from kernelyard.provisioning.local import ForkServerProvisioner, SubprocessProvisioner
from kernelyard.provisioning.options import LaunchOptions, StderrSink, forward_to_stderr
from kernelyard.provisioning.ports import PortReservation
from kernelyard.provisioning.process import KernelProcess
from kernelyard.provisioning.provisioner import (
    Adopting,
    AttachInfo,
    ProvisionedKernel,
    Provisioner,
)
from kernelyard.provisioning.runtime import OWNER_FIELD, sweep_stale_connection_files
from kernelyard.provisioning.spec import LaunchSpec, format_argv, kernel_env

__all__ = [
    "ENCRYPTION_MODES",
    "OWNER_FIELD",
    "Adopting",
    "AttachInfo",
    "ForkServerProvisioner",
    "ForkServers",
    "KernelProcess",
    "LaunchOptions",
    "LaunchSpec",
    "PortReservation",
    "ProvisionedKernel",
    "Provisioner",
    "StderrSink",
    "SubprocessProvisioner",
    "TransportEncryption",
    "connection_file_path",
    "format_argv",
    "forward_to_stderr",
    "kernel_env",
    "new_connection_info",
    "read_connection_file",
    "sweep_stale_connection_files",
    "write_connection_file",
]
