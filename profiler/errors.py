"""Errors of the profiler, each with a message written for the user."""


class ProfilerError(Exception):
    """Base of the profiler's errors."""


class HardwareFileError(ProfilerError):
    """A recorded hardware file (`--hardware FILE`) is missing, unreadable or malformed."""


class GGUFReadError(ProfilerError):
    """A GGUF file's header cannot be read (corrupt, truncated, not GGUF)."""


class DoesNotFitError(ProfilerError):
    """The machine cannot run what was asked for (exit code 7)."""
