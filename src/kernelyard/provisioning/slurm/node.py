"""The node side of a Slurm kernel: the job's batch script, with nothing but the stdlib.

:class:`~kernelyard.provisioning.slurm.SlurmProvisioner` submits this file as
the batch script (its first line made ``#!`` + the node's Python), so a node
needs neither kernelyard nor a shared home directory. Everything secret comes
through the job's environment, never its command line or script, which Slurm
shows to every user:

* ``KERNELYARD_KERNEL`` (JSON): kernel id, argv template, callback
  ``host:port``, signature scheme, node-side directory;
* ``KERNELYARD_KEY``: the HMAC key; ``KERNELYARD_CURVE_PUBLIC`` and
  ``KERNELYARD_CURVE_SECRET``: the CurveZMQ pair, when encrypted.

It writes a 0600 connection file with ``ip 0.0.0.0`` and every port 0, forks a
reporter, and execs the kernel in its own place (so that the batch step's
signals, ``scancel --batch --signal=INT``, reach the kernel). The kernel binds
ports of its choosing and rewrites the file with them (ipykernel and ours
both do); the reporter waits for that, removes the file, and sends the node's
name, its address on the route to the manager, the kernel's pid and ports to
the callback, signed with the HMAC key, then exits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import sys
import time
import traceback

#: Seconds the reporter waits for the kernel to write its ports.
PORTS_TIMEOUT = 120.0
PORT_FIELDS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
SECRET_VARIABLES = ("KERNELYARD_KEY", "KERNELYARD_CURVE_PUBLIC", "KERNELYARD_CURVE_SECRET")


def _address_towards(host: str, port: int) -> str:
    """This node's source address on its route to ``host`` (no packet is sent)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, port))
        return str(probe.getsockname()[0])
    finally:
        probe.close()


def signature(key: bytes, body: bytes) -> str:
    """The report's HMAC-SHA256, hex; the manager checks it with the same key."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _report(path: str, kernel_pid: int, job: dict[str, object], key: bytes) -> None:
    try:
        _report_ports(path, kernel_pid, job, key)
    finally:  # the file holds the keys: never left behind, whatever happened
        if os.path.exists(path):
            os.unlink(path)


def _report_ports(path: str, kernel_pid: int, job: dict[str, object], key: bytes) -> None:
    deadline = time.monotonic() + PORTS_TIMEOUT
    ports: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            with open(path) as handle:
                written = json.load(handle)
            ports = {name: int(written.get(name) or 0) for name in PORT_FIELDS}
        except (OSError, ValueError):
            ports = {}
        if ports and all(ports.values()):
            break
        try:
            os.kill(kernel_pid, 0)
        except ProcessLookupError:
            return  # the kernel died first: the manager learns it from Slurm
        time.sleep(0.01)
    else:
        print("kernelyard node: the kernel wrote no ports in time", file=sys.stderr)
        return
    os.unlink(path)  # read once by the kernel; the ports are reported, the key was given
    host, port = str(job["callback"]).rsplit(":", 1)
    body = json.dumps(
        {
            "kernel_id": job["kernel_id"],
            "nonce": job.get("nonce", ""),
            "job_id": os.environ.get("SLURM_JOB_ID", ""),
            "node": os.environ.get("SLURMD_NODENAME", socket.gethostname()),
            "address": _address_towards(host.strip("[]"), int(port)),
            "pid": kernel_pid,
            "ports": ports,
        },
        sort_keys=True,
    ).encode()
    message = json.dumps({"body": body.decode(), "signature": signature(key, body)}).encode()
    with socket.create_connection((host.strip("[]"), int(port)), timeout=30) as conn:
        conn.sendall(message + b"\n")


def main() -> None:
    job = json.loads(os.environ["KERNELYARD_KERNEL"])
    key = os.environ["KERNELYARD_KEY"].encode()
    directory = str(job.get("workdir") or "/tmp")
    path = os.path.join(directory, f"kernel-{job['kernel_id']}-{os.getpid()}.json")
    info = {
        "transport": "tcp",
        "ip": "0.0.0.0",
        "key": key.decode(),
        "signature_scheme": job.get("signature_scheme", "hmac-sha256"),
        "kernel_name": job.get("kernel_name", ""),
        **dict.fromkeys(PORT_FIELDS, 0),
    }
    if os.environ.get("KERNELYARD_CURVE_SECRET"):
        info["curve_publickey"] = os.environ["KERNELYARD_CURVE_PUBLIC"]
        info["curve_secretkey"] = os.environ["KERNELYARD_CURVE_SECRET"]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(info, handle)
    argv = [arg.replace("{connection_file}", path) for arg in job["argv"]]
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the node's Python, which runs this script
    kernel_pid = os.getpid()
    child = os.fork()
    if child == 0:
        # Forked twice, so that the reporter is nobody's child once this one is reaped:
        # the kernel, which never reaps children it did not make, keeps no zombie.
        if os.fork() == 0:
            code = 0
            try:
                _report(path, kernel_pid, job, key)
            except BaseException:  # to the job's output, which a failed start cites
                traceback.print_exc()
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        os._exit(0)
    os.waitpid(child, 0)
    for name in (*SECRET_VARIABLES, "KERNELYARD_KERNEL", "JPY_PARENT_PID"):
        os.environ.pop(name, None)  # the kernel's parent is on another machine
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
