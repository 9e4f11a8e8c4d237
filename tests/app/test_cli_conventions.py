"""CLI conventions: an example in every command's --help, shell completion, `-` reads stdin."""

from __future__ import annotations

import io
import subprocess

import pytest

from cortensor_desktop.cli.commands.completion_cmd import script_for
from cortensor_desktop.cli.examples import EXAMPLES
from cortensor_desktop.cli.exit_codes import UsageError
from cortensor_desktop.cli.main import build_parser
from cortensor_desktop.cli.parser_tree import walk
from cortensor_desktop.cli.prompt import read_prompt


def test_every_command_has_an_example_in_its_help() -> None:
    paths = [" ".join(path) for path, _ in walk(build_parser()) if path]
    missing = [p for p in paths if p not in EXAMPLES]
    assert not missing, f"commands without an example in cli/examples.py: {missing}"
    stale = sorted(set(EXAMPLES) - set(paths))
    assert not stale, f"examples for commands that do not exist: {stale}"
    for path, parser in walk(build_parser()):
        if path:
            text = parser.format_help()
            assert "examples:\n" in text and "  $ cortensor-desktop " in text, path


def _bash_complete(words: list[str]) -> list[str]:
    script = script_for("bash", build_parser())
    line = " ".join(words)
    probe = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        '_cortensor_desktop; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completion_completes_commands_subcommands_and_flags() -> None:
    assert {"run", "models", "completion"} <= set(_bash_complete(["cortensor-desktop", "''"]))
    assert _bash_complete(["cortensor-desktop", "mo"]) == ["models"]
    assert set(_bash_complete(["cortensor-desktop", "models", "''"])) >= {"list", "pull", "rm"}
    assert "--json" in _bash_complete(["cortensor-desktop", "models", "list", "--j"])
    assert set(_bash_complete(["cortensor-desktop", "completion", "''"])) >= {"bash", "fish"}


def test_zsh_script_runs_the_bash_logic_through_bashcompinit() -> None:
    script = script_for("zsh", build_parser())
    assert "bashcompinit" in script and "complete -o default -F _cortensor_desktop" in script


def test_fish_script_names_every_command() -> None:
    script = script_for("fish", build_parser())
    assert "complete -c cortensor-desktop -n __fish_use_subcommand -a " in script
    for path, _ in walk(build_parser()):
        if len(path) == 1:
            assert path[0] in script
    assert "__fish_seen_subcommand_from models" in script and "-l json" in script


def test_a_dash_reads_the_prompt_from_stdin() -> None:
    assert read_prompt("-", io.StringIO("Name three rivers.\n")) == "Name three rivers."
    assert read_prompt("as given") == "as given"
    with pytest.raises(UsageError, match="standard input is empty"):
        read_prompt("-", io.StringIO("\n"))


def test_completion_cli_prints_the_script(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("completion", "bash")
    assert result.returncode == 0 and "complete -o default -F _cortensor_desktop" in result.stdout
    bad = cli("completion", "tcsh")
    assert bad.returncode == 2
