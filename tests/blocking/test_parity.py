"""Every public async method has a blocking twin with the same parameters."""

from __future__ import annotations

import inspect

import pytest

from kernelyard.blocking import (
    BlockingKernelClient,
    BlockingKernelManager,
    BlockingMultiKernelManager,
)
from kernelyard.client import KernelClient
from kernelyard.manager import KernelManager, MultiKernelManager

PAIRS = [
    (KernelClient, BlockingKernelClient),
    (KernelManager, BlockingKernelManager),
    (MultiKernelManager, BlockingMultiKernelManager),
]


def _public_async(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("async_cls", "blocking_cls"), PAIRS)
def test_every_async_method_has_a_blocking_twin(async_cls: type, blocking_cls: type) -> None:
    for name, signature in _public_async(async_cls).items():
        twin = getattr(blocking_cls, name, None)
        assert twin is not None, f"{blocking_cls.__name__} lacks {name}"
        assert not inspect.iscoroutinefunction(twin)
        assert list(inspect.signature(twin).parameters) == list(signature.parameters), name
        for param in signature.parameters.values():
            twin_param = inspect.signature(twin).parameters[param.name]
            assert twin_param.default == param.default, f"{name}({param.name})"
            assert twin_param.kind == param.kind, f"{name}({param.name})"


def test_the_parity_check_sees_async_methods() -> None:
    assert {"execute", "execute_interactive", "wait_for_ready"} <= set(_public_async(KernelClient))
    assert {"start", "shutdown", "restart"} <= set(_public_async(KernelManager))
