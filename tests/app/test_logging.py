"""Nothing shaped like a key, passphrase or bearer token reaches any log, proven with a real key."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eth_account import Account

from cortensor_desktop.logs import LOG_FILE_NAME, REDACTED, redact, register_secret, setup_logging


def _real_private_key() -> str:
    return Account.create().key.hex()  # 64 hex digits, no 0x


def test_real_private_key_never_reaches_the_log_file(tmp_path: Path, capsys) -> None:
    key = _real_private_key()
    setup_logging("debug", "text", tmp_path)
    log = logging.getLogger("tests.secret")
    log.info("loaded key %s", key)
    log.info("with prefix 0x%s", key)
    log.warning("passphrase=%s", "correct horse battery staple")
    log.info("Authorization: Bearer abcdefgh12345678")
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        log.exception("failure")
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = (tmp_path / LOG_FILE_NAME).read_text(encoding="utf-8")
    shown = capsys.readouterr().err
    for text in (written, shown):
        assert key not in text
        assert key[:40] not in text
        assert "correct horse" not in text
        assert "abcdefgh12345678" not in text
        assert text.count(REDACTED) >= 5
    assert "failure" in written


def test_json_lines_format_is_one_object_per_line(tmp_path: Path) -> None:
    setup_logging("info", "json", tmp_path)
    logging.getLogger("tests.json").info("hello %s", "world")
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = (tmp_path / LOG_FILE_NAME).read_text(encoding="utf-8").strip().splitlines()
    entry = json.loads(lines[-1])
    assert entry["msg"] == "hello world"
    assert entry["level"] == "info"


def test_registered_secret_is_redacted_even_if_it_has_no_shape() -> None:
    register_secret("hunter2-but-longer")
    assert "hunter2" not in redact("the word is hunter2-but-longer ok")


def test_ordinary_text_is_untouched() -> None:
    text = "block 1234 mined, 42 tokens/s, address 0x" + "ab" * 20
    assert redact(text) == text


def test_json_log_lines_carry_an_events_fields_as_fields(tmp_path: Path) -> None:
    from cortensor_desktop.hosting.headless import log_event
    from engine.protocol import NetworkStage, NodeRole, TaskRole
    from engine.state.events import NetworkTaskStage, TxStatus

    key = _real_private_key()
    setup_logging("info", "json", tmp_path)
    log_event(
        NetworkTaskStage(
            node="0xminer",
            role=NodeRole.MINER,
            session_id=7,
            stage=NetworkStage.COMMIT,
            task_role=TaskRole.ANSWERER,
            status=TxStatus.FAILED,
            detail=f"reverted (key {key})",
        )
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    entry = json.loads((tmp_path / LOG_FILE_NAME).read_text(encoding="utf-8").splitlines()[-1])
    fields = entry["event"]
    assert fields["type"] == "network_task"
    assert (fields["node"], fields["session_id"], fields["stage"]) == ("0xminer", 7, "commit")
    assert fields["status"] == "failed"
    assert key not in json.dumps(entry) and REDACTED in fields["detail"]
