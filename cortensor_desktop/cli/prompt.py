"""A prompt argument: the text itself, or `-` for standard input (`cat q.txt | ... ask -`)."""

from __future__ import annotations

import sys
from typing import TextIO

from cortensor_desktop.cli.exit_codes import UsageError

STDIN = "-"


def read_prompt(value: str, stdin: TextIO | None = None) -> str:
    """`value`, or all of standard input when it is `-`; an empty prompt is a usage error."""
    text = (stdin or sys.stdin).read() if value == STDIN else value
    text = text.strip()
    if not text:
        where = "standard input" if value == STDIN else "the command line"
        raise UsageError(f"the prompt from {where} is empty: give the text, or - and pipe it in")
    return text
