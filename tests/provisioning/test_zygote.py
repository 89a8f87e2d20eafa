"""The fork server's program on its own: its protocol, and bad requests that must not stop it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernelyard.provisioning.forked import fork_plan, read_report
from kernelyard.provisioning.forkserver import ZYGOTE
from kernelyard.provisioning.spec import LaunchSpec

pytestmark = pytest.mark.timeout(30)


class Zygote:
    def __init__(self, *preload: str) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control.settimeout(20)
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE), str(theirs.fileno()), *preload],
            pass_fds=(theirs.fileno(),),
            stderr=subprocess.PIPE,
        )
        theirs.close()

    def report(self) -> dict[str, Any]:
        return json.loads(self.control.recv(65536))  # type: ignore[no-any-return]

    def request(self, payload: bytes, fds: list[int]) -> None:
        socket.send_fds(self.control, [payload], fds)

    def close(self) -> tuple[int, str]:
        self.control.close()
        code = self.process.wait(timeout=20)
        assert self.process.stderr is not None
        err = self.process.stderr.read().decode()
        self.process.stderr.close()
        return code, err


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote("json")
    assert "ready" in z.report()
    yield z
    if z.process.poll() is None:
        z.close()


def _run(z: Zygote, request: dict[str, Any]) -> tuple[list[dict[str, Any]], bytes]:
    """Send ``request``; returns every report on its reply socket and what it printed."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.settimeout(20)
    out_r, out_w = os.pipe()
    try:
        z.request(json.dumps(request).encode(), [theirs.fileno(), out_w, out_w])
    finally:
        theirs.close()
        os.close(out_w)
    reports = []
    while data := ours.recv(65536):
        reports.append(json.loads(data))
    ours.close()
    with os.fdopen(out_r, "rb") as out:
        return reports, out.read()


def test_a_request_forks_a_module_as_main(zygote: Zygote, tmp_path: Path) -> None:
    (tmp_path / "hello_main.py").write_text(
        "import os, sys\n"
        "print(__name__, sys.argv[1:], os.getcwd(), os.environ.get('X'),\n"
        "      os.getsid(0) == os.getpid())\n"
        "sys.exit(3)\n"
    )
    env = {"X": "42", "PATH": os.environ.get("PATH", "")}
    reports, out = _run(
        zygote, {"module": "hello_main", "args": ["a", "b"], "env": env, "cwd": str(tmp_path)}
    )
    assert [next(iter(r)) for r in reports] == ["started", "exit"]
    assert reports[1] == {"exit": 3}
    assert out.decode().split() == ["__main__", "['a',", "'b']", str(tmp_path), "42", "True"]


def test_bad_requests_get_an_answer_or_are_dropped_and_the_server_carries_on(
    zygote: Zygote, tmp_path: Path
) -> None:
    zygote.request(b"no descriptors", [])  # dropped, with a note on stderr
    assert _run(zygote, {"module": "x"})[0][0]["error"].startswith("malformed request")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote.request(b"{not json", [theirs.fileno(), 1, 2])
    theirs.close()
    ours.settimeout(20)
    assert "malformed request" in json.loads(ours.recv(65536))["error"]
    ours.close()
    missing = {"module": "x", "args": [], "env": {}, "cwd": str(tmp_path / "missing")}
    reports, _ = _run(zygote, missing)
    assert "No such file or directory" in reports[0]["error"]
    assert reports[1] == {"exit": 127}
    (tmp_path / "fine.py").write_text("")
    ok = {"module": "fine", "args": [], "env": {}, "cwd": str(tmp_path)}
    started, exited = _run(zygote, ok)[0]
    assert started["started"] > 0
    assert exited == {"exit": 0}
    code, err = zygote.close()
    assert code == 0  # the launcher closed the control socket: the server leaves
    assert "malformed request ignored" in err


def test_a_preload_that_fails_is_reported() -> None:
    z = Zygote("no_such_module_for_the_zygote")
    report = z.report()
    assert "cannot preload no_such_module_for_the_zygote" in report["error"]
    assert z.close()[0] == 0


def test_fork_plan_needs_a_preload_and_dash_m() -> None:
    spec = LaunchSpec(argv=("python", "-m", "k"), preload=("k",))
    plan = fork_plan(spec, ["/py", "-m", "k", "-f", "c.json"])
    assert plan is not None
    assert (plan.python, plan.module, plan.args) == ("/py", "k", ("-f", "c.json"))
    assert fork_plan(LaunchSpec(argv=("python", "-m", "k")), ["/py", "-m", "k"]) is None
    assert fork_plan(spec, ["/py", "script.py", "-f", "c.json"]) is None
    assert fork_plan(spec, ["/py", "-m"]) is None


def test_an_unreadable_report_reads_as_an_error() -> None:
    assert read_report(b'{"ready": 7}') == {"ready": 7}
    for garbage in (b"not json", b"[1, 2]", b"\xff"):
        assert "unreadable report" in read_report(garbage)["error"]
