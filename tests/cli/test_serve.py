from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kernelyard.cli.main import build_parser
from kernelyard.cli.serve import resolve_token, settings_from
from kernelyard.server import ServerSettings


def parse(*argv: str) -> ServerSettings:
    args = build_parser().parse_args(["serve", *argv])
    return settings_from(args, {})


def test_every_setting_has_a_flag_with_help() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for item in dataclasses.fields(ServerSettings):
        assert "--" + item.name.replace("_", "-") in text
        assert item.metadata.get("help"), item.name


def test_flags_become_settings() -> None:
    settings = parse(
        "--port",
        "0",
        "--no-limit-rate",
        "--allowed-message-types",
        "a, b",
        "--base-url",
        "x/y",
        "--cull-idle-timeout",
        "5",
        "--kernel-ws-protocol",
        "",
    )
    assert settings.port == 0
    assert settings.limit_rate is False
    assert settings.allowed_message_types == frozenset({"a", "b"})
    assert settings.base_url == "/x/y/"
    assert settings.cull_idle_timeout == 5.0
    assert settings.kernel_ws_protocol == ""
    assert parse().default_kernel == "kernelyard"


def test_token_sources(tmp_path: Path) -> None:
    parser = build_parser()

    def token(argv: list[str], env: dict[str, str]) -> str:
        return resolve_token(parser.parse_args(["serve", *argv]), env)

    assert token(["--token", "t"], {"JUPYTER_TOKEN": "env"}) == "t"
    assert token([], {"JUPYTER_TOKEN": "env"}) == "env"
    file = tmp_path / "token"
    file.write_text("from-file\n")
    assert token([], {"JUPYTER_TOKEN_FILE": str(file)}) == "from-file"
    assert token(["--no-token"], {"JUPYTER_TOKEN": "env"}) == ""
    generated = token([], {})
    assert len(generated) >= 32
    assert generated != token([], {})
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--token", "a", "--no-token"])
