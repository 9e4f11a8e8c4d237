"""Errors of the engine, each with a message written for the user."""


class EngineError(Exception):
    """Base of the engine's errors."""


class ModelError(EngineError):
    """A model cannot be found, downloaded, verified, loaded or run (exit code 6)."""
