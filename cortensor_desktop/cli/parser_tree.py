"""The command tree as data: every command path with its parser, for examples and completion."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name (empty for a leaf command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command path, parser), the root first: ((), root), (("models",), ...), ..."""
    yield path, parser
    for name, child in subcommands(parser).items():
        yield from walk(child, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[str]:
    """The parser's long and short option strings, in declaration order."""
    return [flag for action in parser._actions for flag in action.option_strings]


def choices(parser: argparse.ArgumentParser) -> list[str]:
    """The values a positional argument with fixed choices takes (e.g. `completion SHELL`)."""
    out: list[str] = []
    for action in parser._actions:
        if (
            not action.option_strings
            and action.choices
            and not isinstance(action, argparse._SubParsersAction)
        ):
            out.extend(str(c) for c in action.choices)
    return out
