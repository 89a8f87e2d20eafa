"""The ``kernelyard`` command line; the only place that reads the environment and flags."""

from kernelyard.cli.main import main

__all__ = ["main"]
