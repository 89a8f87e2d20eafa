"""The library and the CLI against real gateways: ``run_kernel(..., gateway=...)``,
``run_kernel_blocking``, ``kernelyard run --gateway-url`` and ``kernelyard kernelspecs
--gateway-url``.

Upstreams, each a process on 127.0.0.1: ``kernelyard serve`` (our kernel),
jupyter_server with its own kernels (ipykernel), jupyter-kernel-gateway (our
kernel as ``python3``) and Enterprise Gateway in its local mode (ipykernel).
Enterprise Gateway 3.3 needs jupyter_client < 7 and jupyter_server < 2, so it
lives in a venv of its own, made once inside ours (``.venv/enterprise-gateway``,
about 35 s). jupyter_client has no way to reach a kernel behind any of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import orjson
import pytest

from kernelyard.blocking import run_kernel_blocking
from kernelyard.errors import GatewayHTTPError, NoSuchKernelSpec
from kernelyard.gateway import GatewaySettings, hl
from kernelyard.manager.hl import run_kernel
from kernelyard.wire import Message

from .serverutil import (
    Server,
    free_port,
    running_jupyter_server,
    running_on_port,
    running_server,
    server_env,
)
from .test_gateway_mode import KG_TOKEN, kernel_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(180)]

__all__ = ["kernel_gateway"]  # a fixture, used below through ``gateway``

JS_TOKEN = "js-token"
EG_TOKEN = "eg-token"
#: upstream -> the kernel type the tests start there.
KERNELS = {
    "kernelyard": "kernelyard",
    "jupyter_server": "python3",
    "kernel_gateway": "python3",
    "enterprise_gateway": "python3",
}
#: upstream -> the env of a start (Enterprise Gateway refuses the user root, as we run in CI).
START_ENV = {"enterprise_gateway": {"KERNEL_USERNAME": "kernelyard-test"}}
EG_VENV = Path(sys.prefix) / "enterprise-gateway"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-client")


@pytest.fixture(scope="module")
def kernelyard_upstream(home: Path) -> Iterator[Server]:
    (home / "ky").mkdir()
    with running_server(home / "ky") as server:
        yield server


@pytest.fixture(scope="module")
def jupyter_server_upstream(home: Path) -> Iterator[Server]:
    (home / "js").mkdir()
    with running_jupyter_server(home / "js", token=JS_TOKEN) as server:
        yield server


def _enterprise_gateway_venv() -> Path:
    """The venv of Enterprise Gateway (made once; ``installed`` marks it complete)."""
    marker = EG_VENV / "installed"
    if not marker.exists():
        venv.create(EG_VENV, with_pip=True, clear=True)
        pip = [str(EG_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run(
            [*pip, "jupyter_enterprise_gateway>=3.2,<4", "ipykernel"], check=True, timeout=600
        )
        marker.touch()
    return EG_VENV


@pytest.fixture(scope="module")
def enterprise_gateway(home: Path) -> Iterator[Server]:
    bin_dir = _enterprise_gateway_venv() / "bin"
    port = free_port()
    env = server_env(home / "eg")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"  # its kernelspec runs "python"
    argv = [
        str(bin_dir / "jupyter"),
        "enterprisegateway",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port_retries=0",
        f"--EnterpriseGatewayApp.auth_token={EG_TOKEN}",
        "--EnterpriseGatewayApp.list_kernels=True",
    ]
    with running_on_port(argv, env, port, EG_TOKEN, name="Enterprise Gateway") as server:
        yield server


@pytest.fixture(scope="module", params=list(KERNELS))
def gateway(request: pytest.FixtureRequest) -> tuple[str, Server]:
    fixture = {
        "kernelyard": "kernelyard_upstream",
        "jupyter_server": "jupyter_server_upstream",
        "kernel_gateway": "kernel_gateway",
        "enterprise_gateway": "enterprise_gateway",
    }[request.param]
    server: Server = request.getfixturevalue(fixture)
    return request.param, server


def settings_of(server: Server, **knobs: object) -> GatewaySettings:
    values: dict[str, object] = {"url": server.url.rstrip("/"), "auth_token": server.token}
    return GatewaySettings(**{**values, **knobs})  # type: ignore[arg-type]


def text_of(outputs: list[Message]) -> str:
    return "".join(m.content["text"] for m in outputs if m.msg_type == "stream")


async def remote_kernels(server: Server) -> list[object]:
    async with server.http() as http:
        listed: list[object] = (await http.get("api/kernels")).json()
        return listed


async def test_run_kernel_drives_a_kernel_behind_each_gateway(gateway: tuple[str, Server]) -> None:
    name, server = gateway
    outputs: list[Message] = []
    try:
        async with hl.running_kernel(
            KERNELS[name], settings_of(server), env=START_ENV.get(name)
        ) as (kernel, client):
            reply = await client.execute_interactive(
                "print('via', 'gateway')", output_hook=outputs.append, timeout=30
            )
            assert reply.content["status"] == "ok"
            assert text_of(outputs) == "via gateway\n"
            outputs.clear()
            await client.execute_interactive(
                "print(input('who? ') * 2)",
                output_hook=outputs.append,
                stdin_hook=lambda request: "ab",
                timeout=30,
            )
            assert text_of(outputs) == "abab\n"
            complete = await client.complete("import o", 8, timeout=30)
            assert "os" in complete.content["matches"]

            async with client.iopub() as iopub, anyio.create_task_group() as tg:
                replies: list[Message] = []

                async def sleeper() -> None:
                    code = "import time\nprint('go', flush=True)\ntime.sleep(30)"
                    replies.append(await client.execute(code, timeout=40))

                tg.start_soon(sleeper)
                with anyio.fail_after(30):
                    while (await iopub.receive()).msg_type != "stream":
                        pass
                await kernel.interrupt()
            assert replies[0].content["ename"] == "KeyboardInterrupt"
            assert (await client.execute("x = 41 + 1", timeout=30)).content["status"] == "ok"
    except BaseException:
        print(f"--- {name} ---", *server.log)
        raise
    assert await remote_kernels(server) == []


async def test_an_unknown_kernel_type_is_no_such_kernelspec(gateway: tuple[str, Server]) -> None:
    """jupyter_server and Kernel Gateway answer 500 for an unknown name; we say what it is."""
    _, server = gateway
    with pytest.raises(NoSuchKernelSpec, match="no-such-kernel"):
        async with run_kernel("no-such-kernel", gateway=settings_of(server)):
            pass
    assert await remote_kernels(server) == []


async def test_a_restart_through_each_gateway(gateway: tuple[str, Server]) -> None:
    """The first execute after the restart is answered by the new kernel: nothing to retry
    (the upstream socket is reopened, as JupyterLab does; Kernel Gateway's old one is deaf).
    """
    name, server = gateway
    async with hl.running_kernel(KERNELS[name], settings_of(server), env=START_ENV.get(name)) as (
        kernel,
        client,
    ):
        await client.execute("x = 1", timeout=30)
        for _ in range(3):
            await kernel.restart()
            reply = await client.execute("print(x)\nx = 1", timeout=30)
            assert reply.content["ename"] == "NameError", name  # a fresh namespace


def test_the_blocking_helper_against_kernelyard(kernelyard_upstream: Server) -> None:
    with run_kernel_blocking("kernelyard", gateway=settings_of(kernelyard_upstream)) as client:
        outputs: list[Message] = []
        reply = client.execute_interactive("print(6 * 7)", output_hook=outputs.append, timeout=30)
        assert reply.content["status"] == "ok"
        assert text_of(outputs) == "42\n"
    assert (
        httpx.get(
            kernelyard_upstream.url + "api/kernels",
            headers={"Authorization": f"token {kernelyard_upstream.token}"},
        ).json()
        == []
    )


async def test_a_wrong_token_is_the_gateways_refusal(kernelyard_upstream: Server) -> None:
    with pytest.raises(GatewayHTTPError) as caught:
        async with run_kernel(
            "kernelyard", gateway=settings_of(kernelyard_upstream, auth_token="x")
        ):
            pass
    assert caught.value.status_code == 403
    assert "POST /api/kernels" in str(caught.value)


def _cli(
    server: Server, home: Path, *args: str, stdin: str = "", token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``kernelyard ARGS --gateway-url`` the server, its Jupyter paths under ``home``."""
    env = server_env(home)
    env["JUPYTER_GATEWAY_AUTH_TOKEN"] = server.token if token is None else token
    return subprocess.run(
        [sys.executable, "-m", "kernelyard", *args, "--gateway-url", server.url.rstrip("/")],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_kernelyard_run_and_kernelspecs_with_a_gateway(
    kernel_gateway: Server, tmp_path: Path
) -> None:
    done = _cli(
        kernel_gateway, tmp_path, "run", "python3", "-c", "print('on kg', input())", stdin="yes\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("on kg yes\n")
    failed = _cli(kernel_gateway, tmp_path, "run", "python3", "-c", "1/0")
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stdout + failed.stderr

    listed = _cli(kernel_gateway, tmp_path, "kernelspecs", "--json")
    assert listed.returncode == 0, listed.stderr
    body = orjson.loads(listed.stdout)
    assert body["default"] == "python3"
    assert "python3" in body["kernelspecs"]
    table = _cli(kernel_gateway, tmp_path, "kernelspecs")
    assert kernel_gateway.url.rstrip("/") in table.stdout

    refused = _cli(kernel_gateway, tmp_path, "run", "python3", "-c", "1", token="wrong")
    assert refused.returncode == 1
    assert "kernelyard: error:" in refused.stderr
    assert "401" in refused.stderr or "403" in refused.stderr
    assert (
        httpx.get(
            kernel_gateway.url + "api/kernels", headers={"Authorization": f"token {KG_TOKEN}"}
        ).json()
        == []
    )
