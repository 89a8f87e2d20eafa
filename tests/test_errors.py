from __future__ import annotations

import inspect

import pytest

import kernelyard.errors as errors


def test_every_error_is_a_kernelyard_error_and_listed() -> None:
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    assert set(classes) == set(errors.__all__)
    for cls in classes.values():
        assert issubclass(cls, errors.KernelyardError)
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.ReplyTimeout("t", msg_id="m"), TimeoutError),
        (errors.NoSuchKernel("k"), LookupError),
        (errors.NoSuchKernelSpec("k"), LookupError),
        (errors.InvalidState("s"), RuntimeError),
        (errors.LocalProtocolError("x"), ValueError),
        (errors.ConnectionInfoError("x"), ValueError),
    ],
)
def test_builtin_bases_where_the_meaning_matches(error: Exception, builtin: type) -> None:
    assert isinstance(error, builtin)


def test_errors_carry_context() -> None:
    assert errors.NoSuchKernel("abc").kernel_id == "abc"
    died = errors.KernelDied(kernel_id="k", exit_code=-9)
    assert (died.kernel_id, died.exit_code) == ("k", -9)
    launch = errors.LaunchError("exited", argv=["x"], exit_code=1, stderr_tail="Traceback")
    assert launch.stderr_tail == "Traceback"
    failed = errors.ExecutionError("NameError", "x", ["tb"], msg_id="m")
    assert (str(failed), failed.msg_type) == ("NameError: x", "execute_reply")
    http = errors.GatewayHTTPError(503, "down", url="http://g")
    assert (http.status_code, http.message, http.url) == (503, "down", "http://g")
    assert str(http) == "the gateway at http://g answered 503: down"
    bad = errors.GatewaySettingError("retry_max", -1, "must be a whole number >= 0")
    assert (bad.setting, bad.value) == ("retry_max", -1)
    assert str(bad) == "gateway setting retry_max=-1 must be a whole number >= 0"
    assert isinstance(errors.GatewayTimeout("slow"), TimeoutError)
    assert errors.ConnectionInfoError("bad", path="/f").path == "/f"
    assert str(errors.ConnectionInfoError("bad", path="/f")) == "/f: bad"
