from __future__ import annotations

import io

from kernelyard.client import TextOutput
from kernelyard.wire import Channel, MessageFactory

from ..strategies import FIXED_NOW

FACTORY = MessageFactory(clock=lambda: FIXED_NOW)


def test_text_output() -> None:
    out, err = io.StringIO(), io.StringIO()
    show = TextOutput(out, err)
    for msg_type, content in [
        ("stream", {"name": "stdout", "text": "a\n"}),
        ("stream", {"name": "stderr", "text": "b\n"}),
        ("execute_result", {"data": {"text/plain": "42", "text/html": "<b>"}}),
        ("display_data", {"data": {"image/png": "..."}}),
        ("error", {"ename": "E", "evalue": "v", "traceback": ["line 1", "line 2"]}),
        ("error", {"ename": "E", "evalue": "no traceback"}),
        ("status", {"execution_state": "idle"}),
    ]:
        show(FACTORY.message(msg_type, content, channel=Channel.IOPUB))
    assert out.getvalue() == "a\n42\n"
    assert err.getvalue() == "b\nline 1\nline 2\nE: no traceback\n"
    assert show.errors == 2
