"""cortensor-desktop: a desktop and headless node for a decentralized LLM inference network."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cortensor-desktop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"

APP_NAME = "cortensor-desktop"
