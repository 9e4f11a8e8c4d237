"""Exit codes, the same for every command. A service manager stops restarting on 2, 3 and 4."""

from __future__ import annotations

from enum import IntEnum

from cortensor_desktop.service.errors import NodeNotRunningError


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFIG = 3
    WALLET = 4
    CHAIN = 5
    MODEL = 6
    DOES_NOT_FIT = 7
    NOT_RUNNING = 8


class UsageError(Exception):
    """A request the command line cannot honour as given (exit code 2)."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map a typed error from any layer to its documented exit code."""
    from chain.errors import ChainError, WalletError
    from chain.network_profile import ProfileInvalid
    from cortensor_desktop.config import ConfigError
    from engine.errors import ModelError
    from engine.state.database import DatabaseError
    from profiler.errors import DoesNotFitError, GGUFReadError, HardwareFileError

    table: list[tuple[type[BaseException], ExitCode]] = [
        (UsageError, ExitCode.USAGE),
        (NodeNotRunningError, ExitCode.NOT_RUNNING),
        (ConfigError, ExitCode.CONFIG),
        (HardwareFileError, ExitCode.CONFIG),
        (DatabaseError, ExitCode.CONFIG),
        (WalletError, ExitCode.WALLET),
        (ProfileInvalid, ExitCode.CONFIG),  # a bad profile file, before ChainError (its base)
        (ChainError, ExitCode.CHAIN),
        (ModelError, ExitCode.MODEL),
        (GGUFReadError, ExitCode.MODEL),
        (DoesNotFitError, ExitCode.DOES_NOT_FIT),
    ]
    for error_type, code in table:
        if isinstance(exc, error_type):
            return code
    return ExitCode.UNEXPECTED
