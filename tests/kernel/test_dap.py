"""DAP framing, cell names for the debugger and the variables panel's name filter (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ipykernel.compiler import murmur2_x86

from kernelyard.errors import MalformedMessage
from kernelyard.kernel.dap import HASH_SEED, CellNames, DapDecoder, encode_dap, murmur2
from kernelyard.kernel.variables import is_user_variable

# JSON-able DAP-ish messages.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)
_messages = st.dictionaries(st.text(), _json, max_size=5)
_cells = st.text(st.characters(exclude_categories=["Cs"]))  # notebooks hold no lone surrogates


@given(_cells, st.integers(0, 2**32 - 1))
def test_murmur2_is_ipykernels_and_jupyterlabs(code: str, seed: int) -> None:
    # ipykernel's murmur2_x86 is the same MurmurHash2 that JupyterLab's hash.ts computes.
    assert murmur2(code.encode("utf-8"), seed) == murmur2_x86(code, seed)


def test_murmur2_known_values() -> None:
    assert murmur2(b"", 0) == 0
    assert murmur2(b"pass", HASH_SEED) == murmur2_x86("pass", HASH_SEED)


def test_cell_names_are_what_jupyterlab_computes_from_debug_info() -> None:
    names = CellNames("/tmp/kernelyard_1")
    code = "def f(x):\n    return x\n"
    # JupyterLab: `${tmpFilePrefix}${murmur2(code, hashSeed)}${tmpFileSuffix}`
    expected = f"{names.prefix}{murmur2(code.encode(), names.seed)}{names.suffix}"
    assert (
        names.path_for(code) == expected == f"/tmp/kernelyard_1/{murmur2_x86(code, HASH_SEED)}.py"
    )
    assert names.path_for("\ud800").startswith(names.prefix)  # a lone surrogate does not crash


@given(st.lists(_messages, max_size=5), st.data())
def test_dap_frames_survive_any_chunking(
    messages: list[dict[str, object]], data: st.DataObject
) -> None:
    stream = b"".join(encode_dap(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = DapDecoder()
    got: list[dict[str, object]] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert got == messages


def test_dap_header_fields_beyond_content_length_are_ignored() -> None:
    body = b'{"seq": 1}'
    frame = b"Content-Type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    assert DapDecoder().feed(frame) == [{"seq": 1}]


@pytest.mark.parametrize(
    "stream",
    [
        b"Content-Type: x\r\n\r\n{}",  # no Content-Length
        b"Content-Length: many\r\n\r\n{}",
        b"Content-Length: -2\r\n\r\n{}",
        b"Content-Length: 999999999999\r\n\r\n",  # refused, not waited for
        b"Content-Length: 4\r\n\r\nnope",  # not JSON
        b"Content-Length: 2\r\n\r\n[]",  # not an object
        b"x" * 2000,  # a header that never ends
    ],
)
def test_bad_dap_streams_are_malformed_messages(stream: bytes) -> None:
    with pytest.raises(MalformedMessage):
        DapDecoder().feed(stream)


def test_a_partial_frame_waits_for_the_rest() -> None:
    decoder = DapDecoder()
    frame = encode_dap({"type": "event", "event": "stopped"})
    assert decoder.feed(frame[:-3]) == []
    assert decoder.feed(frame[-3:]) == [{"type": "event", "event": "stopped"}]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("x", True),
        ("data_1", True),
        ("_private", True),
        ("In", False),  # hidden by IPython
        ("_1", False),
        ("_i", False),
        ("_i3", False),
        ("_ii", False),
        ("_iii", False),
        ("_", False),
        ("___", False),
    ],
)
def test_the_variables_panel_shows_the_users_names(name: str, shown: bool) -> None:
    assert is_user_variable(name, hidden={"In", "Out", "get_ipython"}) is shown
