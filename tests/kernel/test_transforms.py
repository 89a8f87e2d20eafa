"""The kernel's transformer manager transforms every cell exactly as IPython's does."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from IPython.core.inputtransformer2 import TokenTransformBase, TransformerManager

from kernelyard.kernel.shell import KernelTransformerManager

# Cells built from pieces IPython's transforms care about, and plain Python around them.
PIECES = [
    "x = 1",
    "print(x)",
    "%time x",
    "%%timeit\n",
    "a = %who_ls",
    "b = !ls",
    "!echo hi",
    "x?",
    "x??",
    "?x",
    ",f a b",
    ";f a b",
    "/f x",
    "    indented",
    ">>> y = 2",
    "... z = 3",
    "In [1]: w = 4",
    "   ...: v = 5",
    "",
    "def f():\n    return 1",
    "s = '%s' % x",
    "t = x != 1",
    "(1,\n ,2)",
    "# a comment with ? and %",
    "async def g(): await h()",
]

cells = st.lists(st.sampled_from(PIECES), max_size=6).map("\n".join)


@given(cells)
@example("pass")
@example("x = 1\ny = x + 2\nprint(y)")
@example("def f():\n    return 1\n   ...: v = 5")
def test_same_result_as_ipython(cell: str) -> None:
    ours, theirs = KernelTransformerManager(), TransformerManager()
    try:
        expected = theirs.transform_cell(cell)
    except Exception as exc:
        # A cell IPython's tokenizer cannot read fails here too: in the transform, or,
        # where the tokenizer was skipped, when it is compiled (a SyntaxError).
        try:
            kept = ours.transform_cell(cell)
        except type(exc):
            return
        with pytest.raises(SyntaxError):
            compile(kept, "<cell>", "exec")
        return
    assert ours.transform_cell(cell) == expected


def test_an_added_token_transformer_still_runs() -> None:
    class Shout(TokenTransformBase):  # type: ignore[misc]
        @classmethod
        def find(cls, tokens_by_line: list[list[object]]) -> Shout | None:
            for line in tokens_by_line:
                for token in line:
                    if getattr(token, "string", "") == "quiet":
                        return cls(token.start)  # type: ignore[attr-defined]
            return None

        def transform(self, lines: list[str]) -> list[str]:
            return [line.replace("quiet", "LOUD") for line in lines]

    manager = KernelTransformerManager()
    manager.token_transformers.append(Shout)
    assert manager.transform_cell("quiet = 1") == "LOUD = 1\n"
