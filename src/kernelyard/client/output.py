"""Showing a kernel's IOPub output as text, for terminals (``kernelyard run``, default hooks)."""

from __future__ import annotations

import sys
from typing import TextIO

from kernelyard.wire.message import Message

__all__ = ["TextOutput"]


class TextOutput:
    """Writes stream text, results and displays as text/plain, and tracebacks.

    Callable as an ``output_hook``; ``errors`` counts the error messages seen.
    """

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self.errors = 0

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    def __call__(self, msg: Message) -> None:
        content = msg.content
        kind = msg.msg_type
        if kind == "stream":
            out = self.stderr if content.get("name") == "stderr" else self.stdout
            out.write(str(content.get("text", "")))
            out.flush()
        elif kind in ("execute_result", "display_data", "update_display_data"):
            text = content.get("data", {}).get("text/plain")
            if text is not None:
                self.stdout.write(f"{text}\n")
                self.stdout.flush()
        elif kind == "error":
            self.errors += 1
            traceback = content.get("traceback") or [
                f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
            ]
            self.stderr.write("\n".join(str(line) for line in traceback) + "\n")
            self.stderr.flush()
