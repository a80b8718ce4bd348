"""``aptray <command> --help`` on an 80-column terminal shows every option whole.

Typer's rich help tables cut what did not fit their columns: ``aptray score --help`` showed
``--allow-format-misma…`` and folded choices (``audit`` / ``d``). Each case runs the console script in this
process, as a user's terminal of 80 columns would.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption

from aptray.cli import app


def _commands() -> dict[str, Any]:
    """Every command of ``aptray``, by its path (the group itself as ``aptray``)."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return {"aptray": group, **{f"aptray {name}": cmd for name, cmd in group.commands.items()}}


def _help(path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    from aptray.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "argv", [*path.split(), "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("path", list(_commands()))
def test_every_option_is_whole_at_80_columns(path: str, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = _help(path, capsys, monkeypatch)
    assert "…" not in text
    assert "``" not in text, f"reST markup shown as is in `{path} --help`:\n{text}"
    options = text.partition("\nOptions:")[2]
    assert "list[" not in options, f"a Python type as an option's value in `{path} --help` (give it a metavar):\n{text}"
    for param in _commands()[path].params:
        if not isinstance(param, TyperOption):
            continue
        for name in (*param.opts, *param.secondary_opts):
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} cut in `{path} --help`:\n{text}"
        choices = getattr(param.type_descriptor, "choices", None) or ()
        for choice in choices:  # enums' values, each whole (not folded across lines)
            value = str(getattr(choice, "value", choice))
            assert re.search(rf"[<|]{re.escape(value)}[|>]", text), f"{path} {param.opts[0]} choice {value}:\n{text}"


def test_the_command_list_gives_each_command_whole(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """click's plain list cut each command's sentence at the first line ("Score every event; rows read = ...")."""
    text = _help("aptray", capsys, monkeypatch)
    assert max(len(line) for line in text.splitlines()) <= 80
    listed = " ".join(text.split("Commands:")[1].split())
    assert "..." not in listed and "…" not in listed
    for name, cmd in _commands().items():
        if name != "aptray":
            assert cmd.get_short_help_str(1 << 16) in listed, name
