"""GatewaySettings, the CLI's reading of flags and JUPYTER_GATEWAY_*, cookies, token renewal."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from kernelyard.cli import gateway as cli_gateway
from kernelyard.errors import GatewaySettingError
from kernelyard.gateway import GatewaySettings, start_env
from kernelyard.gateway.cookies import CookieJar
from kernelyard.gateway.renewer import TokenRenewal, load_renewer


def parse(argv: list[str], environ: dict[str, str]) -> GatewaySettings | None:
    parser = argparse.ArgumentParser()
    cli_gateway.add_arguments(parser)
    return cli_gateway.gateway_settings(parser.parse_args(argv), environ)


def test_defaults_are_jupyter_servers() -> None:
    s = GatewaySettings(url="http://gw:8888/")
    assert s.url == "http://gw:8888"
    assert s.ws_url == "ws://gw:8888"
    assert (s.kernels_endpoint, s.kernelspecs_endpoint) == ("/api/kernels", "/api/kernelspecs")
    assert (s.connect_timeout, s.request_timeout, s.launch_timeout_pad) == (40.0, 42.0, 2.0)
    assert s.kernel_launch_timeout == 40.0
    assert (s.retry_interval, s.retry_interval_max, s.retry_max) == (1.0, 30.0, 5)
    assert (s.max_request_retries, s.validate_cert, s.accept_cookies) == (2, True, False)
    assert s.auth_header == ""
    assert GatewaySettings(url="http://gw", auth_token="abc").auth_header == "token abc"
    assert GatewaySettings(url="http://gw", auth_token="abc", auth_scheme="").auth_header == "abc"


def test_ws_url_changes_only_the_scheme() -> None:
    # jupyter_server lower-cases the whole URL and replaces every "http" in it.
    s = GatewaySettings(url="https://Host.example/proxy/http-gw")
    assert s.ws_url == "wss://Host.example/proxy/http-gw"
    assert GatewaySettings(url="http://a", ws_url="ws://b/").ws_url == "ws://b"


def test_request_and_launch_timeouts_are_kept_consistent() -> None:
    assert GatewaySettings(url="http://a", request_timeout=10).request_timeout == 42.0
    longer = GatewaySettings(url="http://a", request_timeout=100)
    assert longer.kernel_launch_timeout == 98.0
    assert start_env(longer, {}, None, None)["KERNEL_LAUNCH_TIMEOUT"] == "98"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("url", "", "is required"),
        ("url", "ftp://gw", "must start with http or https://"),
        ("url", "http://", "names no host"),
        ("url", "http://gw:99999", "is not a URL"),
        ("ws_url", "http://gw", "must start with ws or wss://"),
        ("kernels_endpoint", "api/kernels", "must be a path starting with '/'"),
        ("connect_timeout", 0, "must be a number > 0"),
        ("retry_interval", -1, "must be a number >= 0"),
        ("retry_max", -1, "must be a whole number >= 0"),
        ("max_request_retries", 11, "must be at most 10"),
        ("client_key", "/k.pem", "needs client_cert too"),
    ],
)
def test_bad_values_name_the_setting(field: str, value: Any, words: str) -> None:
    values: dict[str, Any] = {"url": "http://gw", field: value}
    with pytest.raises(GatewaySettingError) as caught:
        GatewaySettings(**values)
    assert caught.value.setting == field
    assert words in str(caught.value)


def test_cli_reads_flags_then_environment() -> None:
    assert parse([], {}) is None  # no URL: not gateway mode
    env = {
        "JUPYTER_GATEWAY_URL": "http://env:1",
        "JUPYTER_GATEWAY_AUTH_TOKEN": "from-env",
        "JUPYTER_GATEWAY_VALIDATE_CERT": "no",
        "JUPYTER_GATEWAY_HEADERS": '{"X-A": "1"}',
        "JUPYTER_GATEWAY_ALLOWED_ENVS": "A, B",
        "JUPYTER_GATEWAY_RETRY_MAX": "7",
        "KERNEL_LAUNCH_TIMEOUT": "60",
    }
    s = parse(["--gateway-url", "http://flag:2", "--gateway-retry-max", "3"], env)
    assert s is not None
    assert (s.url, s.auth_token, s.retry_max) == ("http://flag:2", "from-env", 3)
    assert (s.validate_cert, dict(s.headers), s.allowed_envs) == (
        False,
        {"X-A": "1"},
        frozenset({"A", "B"}),
    )
    assert (s.kernel_launch_timeout, s.request_timeout) == (60.0, 62.0)


def test_the_deprecated_whitelist_is_read_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        s = parse([], {"JUPYTER_GATEWAY_URL": "http://a", "JUPYTER_GATEWAY_ENV_WHITELIST": "X"})
    assert s is not None
    assert s.allowed_envs == frozenset({"X"})
    assert "deprecated" in caplog.text


@pytest.mark.parametrize(
    ("env", "value", "words"),
    [
        ("JUPYTER_GATEWAY_RETRY_MAX", "many", "must be a number"),
        ("JUPYTER_GATEWAY_VALIDATE_CERT", "maybe", "must be yes/true/1 or no/false/0"),
        ("JUPYTER_GATEWAY_HEADERS", "[1]", "must be a JSON object"),
        ("JUPYTER_GATEWAY_HEADERS", "{", "is not JSON"),
    ],
)
def test_bad_environment_names_the_variable(env: str, value: str, words: str) -> None:
    with pytest.raises(GatewaySettingError) as caught:
        parse([], {"JUPYTER_GATEWAY_URL": "http://a", env: value})
    assert env in str(caught.value)
    assert words in str(caught.value)


def test_start_env_forwards_kernel_and_allowed_variables() -> None:
    s = GatewaySettings(url="http://a", allowed_envs=frozenset({"LANG"}), http_user="ann")
    environ = {"KERNEL_X": "1", "LANG": "C", "SECRET": "no"}
    env = start_env(s, environ, {"KERNEL_Y": "2"}, "/work")
    assert env == {
        "KERNEL_X": "1",
        "LANG": "C",
        "KERNEL_USERNAME": "ann",
        "KERNEL_Y": "2",
        "KERNEL_WORKING_DIR": "/work",
        "KERNEL_LAUNCH_TIMEOUT": "40",
    }


def test_cookies_expire_and_merge() -> None:
    now = [1000.0]
    jar = CookieJar(clock=lambda: now[0], wall=lambda: 1_700_000_000.0)
    jar.update(["lb=node-1; Max-Age=10", "keep=yes", "gone=x; Max-Age=0"])
    assert jar.header("mine=1") == "mine=1; lb=node-1; keep=yes"
    now[0] += 11
    assert jar.header() == "keep=yes"
    jar.update(["d=1; Expires=Tue, 14 Nov 2023 22:13:30 GMT"])  # 10 s after the wall clock
    assert "d=1" in jar.header()
    now[0] += 11
    assert "d=1" not in jar.header()
    jar.update(["bad cookie ;;; = ="])  # ignored, not an error
    assert len(jar) == 1


class Renewer:
    calls = 0

    def get_token(self, key: str, scheme: str | None, token: str, **kwargs: Any) -> str:
        Renewer.calls += 1
        if Renewer.calls == 2:
            raise RuntimeError("token service down")
        return f"renewed-{Renewer.calls}"


def test_token_renewal_keeps_the_old_token_when_it_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    renewer = load_renewer(f"{__name__}:Renewer")
    assert isinstance(renewer, Renewer)
    renewal = TokenRenewal(renewer, "first", header_key="Authorization", scheme="token")
    with caplog.at_level(logging.ERROR):
        assert renewal.token() == "renewed-1"
        assert renewal.token() == "renewed-1"  # the failure keeps it
        assert renewal.token() == "renewed-3"
    assert caplog.text.count("token renewal failed") == 1
    assert load_renewer("jupyter_server.gateway.gateway_client.NoOpTokenRenewer") is None
    with pytest.raises(GatewaySettingError, match="cannot be loaded"):
        load_renewer("no_such_module.Renewer")
    with pytest.raises(GatewaySettingError, match="has no get_token"):
        load_renewer("collections:OrderedDict")


def test_odd_remote_models_do_not_break_the_listing() -> None:
    """A gateway's model with a bad date or count still reads (as 'unknown')."""
    from kernelyard.gateway.bodies import _count, _parse_time

    assert _parse_time("") is None
    assert _parse_time("yesterday") is None
    assert _parse_time(5) is None
    assert _parse_time("2026-12-04T01:02:03Z") is not None
    assert [_count(v) for v in (3, "2", "x", None, True, -1, 2.0)] == [3, 2, 0, 0, 0, 0, 2]
