"""The blocking facade mirrors the async API: methods, constructors and the hl functions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from kernelyard.blocking import (
    BlockingKernelClient,
    BlockingKernelManager,
    BlockingMultiKernelManager,
    run_kernel_blocking,
    start_kernel_blocking,
)
from kernelyard.client import KernelClient
from kernelyard.manager import KernelManager, MultiKernelManager, run_kernel, start_kernel

PAIRS = [
    (KernelClient, BlockingKernelClient),
    (KernelManager, BlockingKernelManager),
    (MultiKernelManager, BlockingMultiKernelManager),
]
#: Async names whose blocking twin is called differently (a blocking ``aclose`` would lie).
RENAMED = {"aclose": "close"}


def _public_async(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


def _assert_same_parameters(twin: Callable[..., Any], original: Callable[..., Any]) -> None:
    """Same names in the same order, with the same defaults and kinds."""
    theirs, ours = inspect.signature(original).parameters, inspect.signature(twin).parameters
    assert list(ours) == list(theirs), twin.__qualname__
    for param in theirs.values():
        assert ours[param.name].default == param.default, f"{twin.__qualname__}({param.name})"
        assert ours[param.name].kind == param.kind, f"{twin.__qualname__}({param.name})"


@pytest.mark.parametrize(("async_cls", "blocking_cls"), PAIRS)
def test_every_async_method_has_a_blocking_twin(async_cls: type, blocking_cls: type) -> None:
    for name in _public_async(async_cls):
        twin = getattr(blocking_cls, RENAMED.get(name, name), None)
        assert twin is not None, f"{blocking_cls.__name__} lacks {name}"
        assert not inspect.iscoroutinefunction(twin)
        _assert_same_parameters(twin, getattr(async_cls, name))


@pytest.mark.parametrize(("async_cls", "blocking_cls"), PAIRS)
def test_constructors_take_the_same_parameters(async_cls: type, blocking_cls: type) -> None:
    _assert_same_parameters(blocking_cls.__init__, async_cls.__init__)


@pytest.mark.parametrize(
    ("original", "twin"),
    [
        (start_kernel, start_kernel_blocking),
        (run_kernel, run_kernel_blocking),
        (KernelManager.client, BlockingKernelManager.client),
    ],
)
def test_module_functions_take_the_same_parameters(
    original: Callable[..., Any], twin: Callable[..., Any]
) -> None:
    _assert_same_parameters(twin, original)


def test_multi_client_takes_the_manager_client_parameters_after_the_id() -> None:
    ours = list(inspect.signature(BlockingMultiKernelManager.client).parameters)
    assert ours == [
        "self",
        "kernel_id",
        *list(inspect.signature(KernelManager.client).parameters)[1:],
    ]


def test_no_blocking_method_is_named_aclose() -> None:
    for _, blocking_cls in PAIRS:
        assert not hasattr(blocking_cls, "aclose"), blocking_cls.__name__


def test_the_parity_check_sees_async_methods() -> None:
    assert {"execute", "execute_interactive", "wait_for_ready"} <= set(_public_async(KernelClient))
    assert {"start", "shutdown", "restart"} <= set(_public_async(KernelManager))
    assert "aclose" in _public_async(KernelClient)
