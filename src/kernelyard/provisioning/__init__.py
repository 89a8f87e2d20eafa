"""Starting and stopping kernel processes: ports, connection files, argv, env, process groups.

Provisioning knows processes and files, not messages.
"""

from kernelyard.provisioning.connection_file import read_connection_file, write_connection_file
from kernelyard.provisioning.forkserver import ForkServers
from kernelyard.provisioning.launch import LaunchSpec, format_argv, kernel_env
from kernelyard.provisioning.local import connection_file_path, launch, new_connection_info
from kernelyard.provisioning.ports import PortReservation
from kernelyard.provisioning.process import KernelProcess, StderrSink, forward_to_stderr
from kernelyard.provisioning.runtime import OWNER_FIELD, sweep_stale_connection_files

__all__ = [
    "OWNER_FIELD",
    "ForkServers",
    "KernelProcess",
    "LaunchSpec",
    "PortReservation",
    "StderrSink",
    "connection_file_path",
    "format_argv",
    "forward_to_stderr",
    "kernel_env",
    "launch",
    "new_connection_info",
    "read_connection_file",
    "sweep_stale_connection_files",
    "write_connection_file",
]
