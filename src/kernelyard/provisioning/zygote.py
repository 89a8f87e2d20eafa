"""The fork server's process: import a kernel's modules once, then fork a kernel per request.

Run as a script by :mod:`kernelyard.provisioning.forkserver`, never imported
by the rest of kernelyard: it uses the standard library only, so that what a
forked kernel finds in ``sys.modules`` is what it asked to preload and nothing
of the launcher.

    python zygote.py CONTROL_FD MODULE [MODULE ...]

imports every MODULE (an import error, or an import that starts a thread,
ends the process with a report, since forking a threaded process is unsafe),
says ``{"ready": pid}`` on the control socket, then serves requests until the
control socket closes (the launcher closed it, or died).

The control socket is an ``AF_UNIX`` ``SOCK_SEQPACKET`` inherited from the
launcher, so only the launcher can ask for a kernel. A request is one JSON
message ``{"module", "args", "env", "cwd"}`` carrying three descriptors: the
reply socket for this kernel, and the kernel's stdout and stderr. For each
request the server forks; the child makes itself what ``python -m MODULE
ARGS`` started in ``cwd`` with ``env`` would be (its own session, stdio,
working directory, environment, ``sys.argv``, ``sys.path[0]``), says
``{"started": pid}`` (or ``{"error": why}``) on its reply socket and runs
the module as ``__main__``; when it is reaped, the server says
``{"exit": code}`` (``os.waitstatus_to_exitcode``) there and closes it. The
child's message always comes first: it is sent before the child can exit.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Any

_MAX_REQUEST = 1 << 20  # an environment of a megabyte is already absurd
_FDS_PER_REQUEST = 3


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the launcher may have given up on this kernel
        sock.send(json.dumps(message).encode())


class _Child:
    """What a forked child runs once it has left the server's loop."""

    def __init__(self, module: str, args: list[str]) -> None:
        self.module = module
        self.args = args

    def run(self) -> None:
        sys.argv = [self.module, *self.args]  # run_module puts the module's file in argv[0]
        runpy.run_module(self.module, run_name="__main__", alter_sys=True)


class _Server:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.replies: dict[int, socket.socket] = {}  # child pid -> its reply socket
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup fd does the work
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ, self._on_request)
        self.selector.register(self.wake_r, selectors.EVENT_READ, self._on_signal)

    def serve(self) -> _Child | None:
        """Serve until the control socket closes; a forked child returns its job instead."""
        while True:
            for key, _ in self.selector.select():
                try:
                    outcome = key.data()
                except _Stop:
                    return None
                if outcome is not None:
                    return outcome  # type: ignore[no-any-return]

    def _on_signal(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.wake_r.recv(4096)
        self._reap()
        return

    def _reap(self) -> None:
        while self.replies:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reply = self.replies.pop(pid, None)
            if reply is not None:
                _send(reply, {"exit": os.waitstatus_to_exitcode(status)})
                reply.close()

    def _on_request(self) -> _Child | None:
        try:
            data, fds, flags, _ = socket.recv_fds(self.control, _MAX_REQUEST, _FDS_PER_REQUEST)
        except OSError:
            raise _Stop from None
        if not data and not fds:
            raise _Stop  # the launcher closed its end, or died
        if len(fds) != _FDS_PER_REQUEST or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            print("kernelyard fork server: malformed request ignored", file=sys.stderr)
            return None
        reply = socket.socket(fileno=fds[0])
        stdio = fds[1:]
        try:
            request = json.loads(data)
            module, args = str(request["module"]), [str(a) for a in request["args"]]
            env = {str(k): str(v) for k, v in request["env"].items()}
            cwd = str(request["cwd"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            _send(reply, {"error": f"malformed request: {exc!r}"})
            reply.close()
            for fd in stdio:
                os.close(fd)
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            _send(reply, {"error": f"fork failed: {exc}"})
            reply.close()
            for fd in stdio:
                os.close(fd)
            return None
        if pid == 0:
            return self._become(reply, stdio, module, args, env, cwd)
        self.replies[pid] = reply
        for fd in stdio:
            os.close(fd)
        self._reap()  # a child may already be gone
        return None

    def _become(
        self,
        reply: socket.socket,
        stdio: list[int],
        module: str,
        args: list[str],
        env: dict[str, str],
        cwd: str,
    ) -> _Child:
        """In the child: leave the server behind and look like ``python -m module``."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        for sock in (self.control, self.wake_r, self.wake_w, *self.replies.values()):
            sock.close()
        self.replies.clear()
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDONLY)
            for target, fd in ((0, devnull), (1, stdio[0]), (2, stdio[1])):
                os.dup2(fd, target)
            for fd in (devnull, *stdio):
                if fd > 2:
                    os.close(fd)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            time.tzset()
            sys.path.insert(0, os.getcwd())  # what ``-m`` puts first
        except OSError as exc:
            _send(reply, {"error": f"cannot start in {cwd!r}: {exc.strerror or exc}"})
            os._exit(127)
        _send(reply, {"started": os.getpid()})
        reply.close()
        return _Child(module, args)


class _Stop(Exception):
    pass


def main(argv: list[str]) -> _Child | None:
    """Preload, report, serve; returns a job only in a forked child."""
    control = socket.socket(fileno=int(argv[1]))
    del sys.path[0]  # this script's directory: preload from the installed packages only
    for name in argv[2:]:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a broken preload ends the server, not the launcher
            _send(control, {"error": f"cannot preload {name}: {exc!r}"})
            return None
    if threading.active_count() > 1:
        _send(control, {"error": f"preloading {argv[2:]} started a thread; forking is unsafe"})
        return None
    _send(control, {"ready": os.getpid()})
    return _Server(control).serve()


if __name__ == "__main__":
    child = main(sys.argv)
    if child is not None:
        child.run()
