"""Logging: a rotating file in the log folder plus stderr, text or JSON lines, always redacted.

Lower layers only call `logging.getLogger(__name__)`; the redaction filter sits on every handler
installed here, so whatever any module logs passes through it before it reaches a file or a
terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

LOG_FILE_NAME = "cortensor-desktop.log"
REDACTED = "[REDACTED]"

# 64 hex digits is the shape of a secp256k1 private key; we redact it even when it is a hash
# (a tx hash looks the same), because a leaked key costs more than a masked hash.
_PATTERNS = [
    re.compile(r"(?i)\b(?:0x)?[0-9a-f]{64}\b"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:passphrase|password|private[_ ]?key|secret|token)\s*[=:]\s*)(\S+)"),
]
_KNOWN_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Redact this exact string too (a passphrase read at start-up, an API token)."""
    if value and len(value) >= 4:
        _KNOWN_SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _PATTERNS[0].sub(REDACTED, text)
    text = _PATTERNS[1].sub(lambda m: m.group(1) + REDACTED, text)
    return _PATTERNS[2].sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Renders the record (message, args and traceback) and redacts the result in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _redact_fields(value: Any) -> Any:
    """Every string inside an event's fields redacted, the structure kept."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_fields(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_fields(item) for item in value]
    return value


# The LogRecord attribute (`extra={EVENT_FIELDS: event.to_dict()}`) that carries an event's fields.
EVENT_FIELDS = "event_fields"


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, EVENT_FIELDS, None)
        if isinstance(fields, dict):
            # An engine event's own fields, as fields: a log shipper filters on `event.type`,
            # `event.node` or `event.status` instead of parsing the sentence in `msg`.
            entry["event"] = _redact_fields(fields)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


QUIET_LIBRARIES = ("gguf", "urllib3")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(
    level: str, fmt: str, log_dir: Path | None, max_bytes: int = 5_000_000, backups: int = 3
) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    formatter: logging.Formatter = (
        JsonLinesFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        from cortensor_desktop.paths import private_dir

        private_dir(log_dir)  # what the node did is the user's business, whatever the umask
        log_file = log_dir / LOG_FILE_NAME
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        )
        with contextlib.suppress(OSError):
            os.chmod(log_file, 0o600)
    for handler in handlers:
        handler.addFilter(RedactingFilter())
        handler.setFormatter(formatter)
        root.addHandler(handler)
    logging.captureWarnings(True)
    # Libraries that narrate their work at INFO (gguf's writer lists every file it writes): their
    # lines are for debugging, not for a CLI user's stderr.
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.DEBUG if level.lower() == "debug" else logging.WARNING
        )
