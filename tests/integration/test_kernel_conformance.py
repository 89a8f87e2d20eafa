"""jupyter_kernel_test's suite against the kernelyard kernel, driven by jupyter_client."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import jupyter_core.utils
import jupyter_kernel_test
import pytest

from kernelyard.discovery import install_kernelspec

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def kernelyard_on_jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Install our kernelspec where jupyter_client looks, for this module only."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = install_kernelspec(root / "kernels")
    data = json.loads((spec_dir / "kernel.json").read_text())
    data["env"] = {"IPYTHONDIR": str(root / "ipython")}
    (spec_dir / "kernel.json").write_text(json.dumps(data))
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root)
    yield
    # jupyter_client's blocking API ran on a loop jupyter_core made for this
    # thread; close it, or its self-pipe shows up as a leaked descriptor.
    loop = jupyter_core.utils._loop.get(None)
    if loop is not None and not loop.is_closed():
        loop.close()
        asyncio.set_event_loop(None)
    if saved is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = saved


class TestKernelyardKernel(jupyter_kernel_test.KernelTests):
    kernel_name = "kernelyard"
    language_name = "python"
    file_extension = ".py"
    support_iopub_welcome = True

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [  # the base class reads these attributes
        {"text": "zi", "matches": {"zip"}},
        {"text": "import itertoo", "matches": {"itertools"}},
    ]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n"]
    incomplete_code_samples = ['print("""hello', "for i in range(3):", "def f(x):"]
    invalid_code_samples = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "'ky' * 2", "result": "'kyky'"},
    ]
    code_display_data = [
        {"code": "from IPython.display import display; display(1)", "mime": "text/plain"},
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>x</b>'))",
            "mime": "text/html",
        },
    ]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "1?2*"
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"


def test_the_installed_spec_runs_this_python() -> None:
    root = Path(os.environ["JUPYTER_PATH"])
    data = json.loads((root / "kernels" / "kernelyard" / "kernel.json").read_text())
    assert data["argv"][:3] == [sys.executable, "-m", "kernelyard.kernel"]
    assert data["interrupt_mode"] == "message"
