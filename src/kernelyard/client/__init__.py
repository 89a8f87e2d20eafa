"""Talking to one kernel: requests, reply matching, IOPub routing, stdin, comms, subshells."""

from kernelyard.client.client import KernelClient, OutputHook, StdinHook
from kernelyard.client.connection import KernelConnection
from kernelyard.client.output import TextOutput

__all__ = ["KernelClient", "KernelConnection", "OutputHook", "StdinHook", "TextOutput"]
