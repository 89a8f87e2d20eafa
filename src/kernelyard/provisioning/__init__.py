"""Starting and stopping kernel processes; for now, their connection files."""

from kernelyard.provisioning.connection_file import read_connection_file, write_connection_file

__all__ = ["read_connection_file", "write_connection_file"]
