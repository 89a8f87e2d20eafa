"""JupyterLab's own client library against our server: ``@jupyterlab/services`` 7.x (npm,
the line JupyterLab 4 ships) drives a kernel through ``kernelyard serve --gateway-url``
in front of an upstream ``kernelyard serve``, and directly against the upstream.

The scenario (``jlab_services/scenario.mjs``, run by Node) uses the library as
JupyterLab does: ServerConnection settings (the ``ws`` package as WebSocket, Node's
fetch), KernelSpecManager, KernelManager and KernelConnection; it lists kernelspecs,
starts the default kernel, asks for kernel info, executes (iopub stream and result),
completes, inspects, answers ``input()`` on stdin, interrupts a running
``time.sleep(30)``, restarts and executes again, shuts down; it prints one JSON line.

Framing: KernelConnection always offers ``v1.kernel.websocket.jupyter.org`` and speaks
whatever the server accepts; it has no option to choose. ``legacy`` gives it a
WebSocket class that offers no subprotocol, which is what it falls back to against a
server without v1 support.

``npm ci`` installs the library once per module (the lock file pins it); it needs the
npm registry (or npm's cache) and Node 20.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .serverutil import Server, gateway_front, running_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCENARIO_DIR = Path(__file__).parent / "jlab_services"
V1 = "v1.kernel.websocket.jupyter.org"
SCENARIO_TIMEOUT = 170  # s; the scenario bounds each of its steps, and itself at 150 s


def _text(output: str | bytes | None) -> str:
    """What a subprocess that timed out wrote (bytes, despite ``text=True``)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
    if found is None:
        pytest.fail(f"{name} is not installed (Node 20 and npm are needed for this test)")
    return found


@pytest.fixture(scope="module")
def scenario_dir() -> Path:
    """The scenario's folder with its node_modules installed (``npm ci``, once)."""
    npm = _tool("npm")
    locked = (SCENARIO_DIR / "package-lock.json").exists()
    argv = [npm, "ci" if locked else "install", "--no-audit", "--no-fund"]
    env = {**os.environ, "npm_config_update_notifier": "false"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=SCENARIO_DIR, capture_output=True, text=True, timeout=150, env=env
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{' '.join(argv)} took more than 150 s:\n{_text(exc.stdout)}\n{_text(exc.stderr)}"
        )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    print(f"npm {argv[1]}: {time.monotonic() - started:.1f} s")
    return SCENARIO_DIR


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jlab-services")


@pytest.fixture(scope="module")
def upstream(home: Path) -> Iterator[Server]:
    (home / "up").mkdir()
    with running_server(home / "up") as server:
        yield server


@pytest.fixture(scope="module")
def front(home: Path, upstream: Server) -> Iterator[Server]:
    """Our server in gateway mode, in front of ``upstream``."""
    with gateway_front(home / "front", upstream) as server:
        yield server


def run_scenario(scenario_dir: Path, server: Server, framing: str) -> dict[str, Any]:
    """Run the scenario against ``server``; its results, or a failure with its stderr."""
    argv = [_tool("node"), "scenario.mjs", server.url, server.token, "--framing", framing]
    try:
        done = subprocess.run(
            argv, cwd=scenario_dir, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the scenario took more than {SCENARIO_TIMEOUT} s:\n{_text(exc.stderr)}")
    if done.returncode != 0:
        pytest.fail(f"the scenario failed ({done.returncode}):\n{done.stderr[-6000:]}")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout: {done.stdout!r}"
    results: dict[str, Any] = json.loads(lines[0])
    return results


def check_results(results: dict[str, Any], framing: str) -> None:
    assert results["framing"] == framing
    # Kernelspecs and start: no name in the POST, the server's default.
    assert results["defaultKernel"] == "kernelyard"
    assert "kernelyard" in results["kernelspecs"]
    assert results["kernelName"] == "kernelyard"
    info = results["kernelInfo"]
    assert info["status"] == "ok"
    assert info["protocol_version"].startswith("5.")
    assert info["language"] == "python"
    assert results["connectionStatus"] == "connected"
    # Execute: the printed line on iopub, and the result.
    execute = results["execute"]
    assert execute["status"] == "ok"
    assert execute["stdout"] == "hello from jupyterlab services\n"
    assert {"status", "execute_input", "stream", "execute_result"} <= set(execute["iopub"])
    # Complete and inspect.
    complete = results["complete"]
    assert complete["status"] == "ok"
    assert {"path", "pathsep"} <= set(complete["matches"])
    code = "import os\nos.pa"
    assert (complete["cursor_start"], complete["cursor_end"]) == (len(code) - 2, len(code))
    inspect = results["inspect"]
    assert inspect["status"] == "ok"
    assert inspect["found"] is True
    assert "Return the number of items" in inspect["text"]
    # input() answered on the stdin channel.
    assert results["input"] == {
        "status": "ok",
        "prompts": ["who are you? "],
        "stdout": "hello, jlab\n",
    }
    # Interrupt.
    assert results["interrupt"]["status"] == "error"
    assert results["interrupt"]["ename"] == "KeyboardInterrupt"
    # Restart: a fresh namespace (no x) and execution count.
    restart = results["restart"]
    assert restart["kernelInfo"] == "ok"
    assert restart["status"] == "ok"
    assert restart["stdout"] == "False after restart\n"
    assert restart["execution_count"] == 1
    assert restart["connectionStatus"] == "connected"
    # Shutdown.
    assert results["shutdown"] == {"disposed": True, "status": "dead"}
    assert results["kernelId"] not in results["runningAfterShutdown"]
    # Every socket (the first, those after the restart) spoke the framing asked for.
    expected = V1 if framing == "v1" else ""
    assert len(results["subprotocols"]) >= 2
    assert set(results["subprotocols"]) == {expected}


def _remote_kernels(server: Server) -> list[Any]:
    headers = {"Authorization": f"token {server.token}"}
    response = httpx.get(server.url + "api/kernels", headers=headers, timeout=30)
    assert response.status_code == 200
    listed: list[Any] = response.json()
    return listed


@pytest.mark.parametrize("framing", ["v1", "legacy"])
@pytest.mark.parametrize("target", ["front", "upstream"])
def test_jupyterlab_services(
    scenario_dir: Path, front: Server, upstream: Server, target: str, framing: str
) -> None:
    server = front if target == "front" else upstream
    try:
        results = run_scenario(scenario_dir, server, framing)
        check_results(results, framing)
        if target == "upstream":
            # One `status: restarting` notice per restart; JupyterLab copes (an extra
            # reconnect) without a hitch.
            assert results["restartingNotices"] == 1
            assert results["unhandledRejections"] == []
    except BaseException:
        print("--- front ---", *front.log, "--- upstream ---", *upstream.log)
        raise
    assert _remote_kernels(upstream) == []
    assert _remote_kernels(front) == []


def test_one_restarting_notice_through_the_front(
    scenario_dir: Path, front: Server, upstream: Server
) -> None:
    """JupyterLab takes each notice for a restart the server did on its own: it clears
    its state and reconnects once per notice, besides the reconnect its restart makes
    (four sockets in all; two against jupyter_server, which sends no notice for a
    POST restart). The second clearing cancels the kernel_info_request of the
    connection before: an unhandled rejection ("Canceled future for
    kernel_info_request message before replies were done") on most runs.
    """
    results = run_scenario(scenario_dir, front, "v1")
    check_results(results, "v1")
    assert _remote_kernels(upstream) == []
    assert results["restartingNotices"] == 1
