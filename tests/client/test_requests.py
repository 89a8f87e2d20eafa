from __future__ import annotations

import pytest

from kernelyard.client.requests import (
    complete_content,
    execute_content,
    history_content,
    inspect_content,
)


def test_execute_defaults_and_silent_implies_no_history() -> None:
    assert execute_content("1") == {
        "code": "1",
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    assert execute_content("1", silent=True)["store_history"] is False
    with pytest.raises(TypeError, match="code must be a string"):
        execute_content(b"1")  # type: ignore[arg-type]


def test_cursor_defaults_to_the_end_in_code_points() -> None:
    assert complete_content("é = 1; é", None)["cursor_pos"] == 8
    assert inspect_content("abc", 1, 1) == {"code": "abc", "cursor_pos": 1, "detail_level": 1}
    with pytest.raises(ValueError, match="detail_level"):
        inspect_content("abc", None, 2)


def test_history_kinds() -> None:
    assert history_content()["hist_access_type"] == "range"
    assert history_content(hist_access_type="tail")["n"] == 10
    search = history_content(hist_access_type="search", pattern="imp*", unique=True)
    assert (search["pattern"], search["unique"]) == ("imp*", True)
    with pytest.raises(ValueError, match="hist_access_type"):
        history_content(hist_access_type="everything")
