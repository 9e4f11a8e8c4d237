"""Errors of the engine, each with a message written for the user.

Everything a model or the inference runtime can go wrong with is a `ModelError` (exit code 6,
"restart with backoff"); the subclasses let callers react to the cause without parsing text.
"""


class EngineError(Exception):
    """Base of the engine's errors."""


class ModelError(EngineError):
    """A model cannot be found, downloaded, verified, loaded or run (exit code 6)."""


class ModelNotFoundError(ModelError):
    """No file at the path, or no source could provide the catalogue entry."""


class CorruptModelError(ModelError):
    """The file is not a readable GGUF: wrong magic, truncated, tensor data past the end."""


class UnsupportedModelError(ModelError):
    """A valid GGUF this llama.cpp build cannot run (unknown architecture, wrong kind of model)."""


class ModelLoadError(ModelError):
    """llama.cpp refused to load a file that looked valid, for a reason other than memory."""


class OutOfMemoryError(ModelError):
    """The model does not load even at the smallest context and with no GPU layers."""


class DownloadError(ModelError):
    """Every source of a model failed (network, HTTP status, connection dropped)."""


class HashMismatchError(DownloadError):
    """The bytes arrived but their sha256 is not the catalogue's."""


class InsufficientDiskError(ModelError):
    """The models folder's disk has less free space than the file needs."""


class ConversionFailedError(ModelError):
    """Converting a package-shipped model to GGUF failed or gave wrong vectors."""


class WorkerCrashedError(ModelError):
    """The inference worker process died (native crash, out-of-memory kill, hard stop)."""


class DeadlineExceededError(ModelError):
    """The worker did not answer within the request's deadline and was stopped."""


class InferenceRequestError(ModelError):
    """A request the loaded model cannot serve (embedding on a chat model, prompt too long)."""
