"""Slurm's commands, run as asyncio subprocesses with timeouts, their output parsed.

Only what the provisioner needs: ``sbatch`` (the script on stdin, secrets in
the environment), ``squeue`` for states, ``scontrol show job`` for how a job
ended, ``scancel`` for signals. A command that fails, or hangs past its
timeout, is a :class:`~kernelyard.errors.LaunchError` with Slurm's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kernelyard.errors import LaunchError

__all__ = ["JobState", "SlurmCommands"]

log = logging.getLogger(__name__)

#: States after which a job runs no more (``squeue``'s and ``scontrol``'s names).
#: COMPLETING counts: its processes are gone, Slurm is only cleaning up after them.
ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "COMPLETING",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


@dataclass(frozen=True, slots=True)
class JobState:
    """What Slurm says of one job: its state, why (for PENDING), its nodes, its exit."""

    state: str  # PENDING, RUNNING, COMPLETED, ...
    reason: str = ""
    nodes: str = ""
    #: ``ExitCode=code:signal`` as scontrol shows it, once the job ended.
    exit_code: int | None = None
    exit_signal: int = 0

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def returncode(self) -> int | None:
        """As a process's: the exit code, or minus the signal that ended it."""
        if self.exit_code is None:
            return None
        return -self.exit_signal if self.exit_signal else self.exit_code


class SlurmCommands:
    """Runs Slurm's commands with ``env`` (``SLURM_CONF`` and the like) added to ours."""

    def __init__(self, env: Mapping[str, str] | None = None, *, timeout: float = 30.0) -> None:
        self.env = dict(env or {})
        self.timeout = timeout

    async def _run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> tuple[int, str, str]:
        """Run ``argv`` with our environment, ``self.env`` and ``env`` (``replace``: with
        ``env`` only); its status, stdout and stderr. LaunchError if it cannot run or
        hangs past the timeout (it is then killed, as when the caller is cancelled).
        """
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env or {}) if replace else {**os.environ, **self.env, **(env or {})},
            )
        except OSError as exc:
            raise LaunchError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), self.timeout)
        except BaseException as exc:  # a timeout, or our caller's cancellation: no orphan
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            await asyncio.shield(process.wait())
            if isinstance(exc, TimeoutError):
                raise LaunchError(f"{argv[0]} did not answer within {self.timeout} s") from None
            raise
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def submit(self, args: Sequence[str], script: bytes, env: Mapping[str, str]) -> str:
        """``sbatch --parsable ARGS`` with ``script`` on stdin and ``env`` as its whole
        environment (exported to the job, never on a command line); returns the job id.
        """
        code, out, err = await self._run(
            ["sbatch", "--parsable", "--export=ALL", *args], stdin=script, env=env, replace=True
        )
        if code != 0:
            raise LaunchError(f"sbatch refused the job: {err.strip() or out.strip()}")
        return out.strip().split(";")[0]

    async def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """One ``squeue`` for all of ``job_ids``; jobs it does not list are absent (ended,
        or, when one of the ids is unknown to it, any: ask :meth:`show`). LaunchError
        when squeue fails otherwise.
        """
        if not job_ids:
            return {}
        code, out, err = await self._run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r|%N"]
        )
        if code != 0 and "Invalid job id" not in err:
            raise LaunchError(f"squeue failed: {err.strip()}")
        found: dict[str, JobState] = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 4:
                job_id, state, reason, nodes = parts
                found[job_id] = JobState(state, reason if reason != "None" else "", nodes)
        return found

    async def show(self, job_id: str) -> JobState | None:
        """``scontrol show job``: the state and exit of a job, also one that ended (for
        ``MinJobAge`` seconds); None when Slurm has forgotten it; LaunchError when
        scontrol fails otherwise (a controller that does not answer).
        """
        code, out, err = await self._run(["scontrol", "show", "job", "-o", job_id])
        if code != 0:
            if "Invalid job id" in err:
                return None
            raise LaunchError(f"scontrol show job {job_id} failed: {err.strip()}")
        fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
        exit_code, _, exit_signal = fields.get("ExitCode", "").partition(":")
        ended = fields.get("JobState", "") in ENDED
        return JobState(
            fields.get("JobState", ""),
            fields.get("Reason", "") if fields.get("Reason") != "None" else "",
            fields.get("NodeList", "") if fields.get("NodeList") != "(null)" else "",
            int(exit_code) if ended and exit_code.isdigit() else None,
            int(exit_signal) if exit_signal.isdigit() else 0,
        )

    async def cancel(self, job_id: str, *, signum: int | None = None, batch: bool = False) -> None:
        """``scancel`` the job, or send it ``signum``; ``batch``: only its batch step (the
        kernel), which a plain ``scancel --signal`` does not reach.
        """
        argv = ["scancel"]
        if signum is not None:
            argv.append(f"--signal={signal.Signals(signum).name.removeprefix('SIG')}")
        if batch:
            argv.append("--batch")
        code, _, err = await self._run([*argv, job_id])
        if code != 0:
            log.warning("scancel %s failed: %s", job_id, err.strip())

    async def cancel_named(self, name: str) -> None:
        """``scancel --name=NAME``: the job whose id was never learnt (a start cancelled
        while ``sbatch`` ran).
        """
        code, _, err = await self._run(["scancel", f"--name={name}"])
        if code != 0:
            log.warning("scancel --name=%s failed: %s", name, err.strip())
