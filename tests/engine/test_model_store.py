"""The model store against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from engine.errors import DownloadError, HashMismatchError, InsufficientDiskError
from engine.models.gguf_check import check_gguf
from engine.models.store import ModelStore, PullProgress, scoring_copy_path
from profiler.catalogue import Catalogue, parse_catalogue


@dataclass
class Behaviour:
    """What the test server does. It speaks enough HTTP/1.1 range semantics to be honest:
    a strong ETag, `Range`, and `If-Range` (a validator that is not the current ETag gets the
    whole current file with 200, as RFC 9110 says)."""

    body: bytes
    drop_first: bool = False  # the first full request closes the connection mid-file
    wrong: bool = False  # serve different bytes of the same length
    slow_s: float = 0.0  # spread the body over this many seconds
    etag: bool = True  # send a strong ETag (without one a resume cannot be proved safe)
    ignore_range: bool = False  # answer every request with 200 and the whole file
    changed_body: bytes | None = None  # after the first request the file is this (new ETag)
    content_range_off_by: int = 0  # a 206 whose Content-Range starts this many bytes off
    requests: list[str | None] = field(default_factory=list)  # the Range header of each
    if_ranges: list[str | None] = field(default_factory=list)  # the If-Range header of each

    def current(self) -> bytes:
        if self.changed_body is not None and self.requests:
            return self.changed_body
        return bytes(reversed(self.body)) if self.wrong else self.body


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour  # type: ignore[attr-defined]
        body = b.current()
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        b.requests.append(rng)
        b.if_ranges.append(if_range)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        honour = rng is not None and not b.ignore_range
        if honour and if_range is not None and if_range != _etag(body):
            honour = False  # the file changed since the validator: send all of it
        if not honour:
            start = 0
        chunk = body[start:]
        self.send_response(206 if honour else 200)
        if b.etag:
            self.send_header("ETag", _etag(body))
        if honour:
            shown = start + b.content_range_off_by
            self.send_header("Content-Range", f"bytes {shown}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if b.drop_first and len(b.requests) == 1:
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if b.slow_s:
            step = max(1, len(chunk) // 20)
            for offset in range(0, len(chunk), step):
                self.wfile.write(chunk[offset : offset + step])
                time.sleep(b.slow_s / 20)
            return
        self.wfile.write(chunk)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(behaviour: Behaviour) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.behaviour = behaviour  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/model.gguf"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/model.gguf"


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small but structurally complete GGUF (about 3 MB of random weights)."""
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    rng = np.random.default_rng(0)
    for name in ("token_embd.weight", "output.weight", "blk.0.attn_q.weight"):
        writer.add_tensor(name, rng.standard_normal((256, 1024)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def catalogue(
    sources: list[dict[str, Any]], body: bytes, size: int | None = None, *, hashed: bool = True
) -> Catalogue:
    return parse_catalogue(
        {
            "schema_version": 1,
            "models": [
                {
                    "id": "tiny",
                    "name": "Tiny",
                    "kind": "chat",
                    "family": "llama",
                    "default": True,
                    "parameters": None,
                    "parameters_source": "test",
                    "architecture": {"source": "test"},
                    "quants": [
                        {
                            "quant": "F32",
                            "file_name": "tiny.F32.gguf",
                            "size_bytes": len(body) if size is None else size,
                            "sha256": hashlib.sha256(body).hexdigest() if hashed else None,
                            "sources": sources,
                        }
                    ],
                }
            ],
        }
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_dropped_connection_resumes_with_range(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes, drop_first=True)
    url = serve(behaviour)
    events: list[PullProgress] = []
    store = ModelStore(
        tmp_path, catalogue([{"type": "url", "url": url}], model_bytes), backoff_s=0.01
    )
    path = store.pull("tiny", progress=events.append)
    assert path.read_bytes() == model_bytes
    assert behaviour.requests[0] is None
    assert behaviour.requests[1] is not None and behaviour.requests[1].startswith("bytes=")
    assert int(behaviour.requests[1].split("=")[1].rstrip("-")) > 0
    # hashed while streaming: no separate "verify" pass reads the file again
    assert {e.phase for e in events} == {"download", "done"}
    assert leftovers(tmp_path) == ["tiny.F32.gguf"]
    check_gguf(path)


def test_wrong_bytes_fail_over_to_the_next_mirror(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    bad = serve(Behaviour(model_bytes, wrong=True))
    good = serve(Behaviour(model_bytes))
    sources = [{"type": "url", "url": bad}, {"type": "url", "url": good}]
    store = ModelStore(tmp_path, catalogue(sources, model_bytes), backoff_s=0.01)
    assert store.pull("tiny").read_bytes() == model_bytes


def test_only_wrong_bytes_is_a_hash_error_and_leaves_nothing(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    bad = serve(Behaviour(model_bytes, wrong=True))
    store = ModelStore(
        tmp_path, catalogue([{"type": "url", "url": bad}], model_bytes), backoff_s=0.01
    )
    with pytest.raises(HashMismatchError, match="sha256"):
        store.pull("tiny")
    assert leftovers(tmp_path) == []


def test_a_mirror_that_is_down_fails_over(serve: Any, model_bytes: bytes, tmp_path: Path) -> None:
    good = serve(Behaviour(model_bytes))
    sources = [{"type": "url", "url": closed_port_url()}, {"type": "url", "url": good}]
    store = ModelStore(tmp_path, catalogue(sources, model_bytes), backoff_s=0.01)
    assert store.pull("tiny").read_bytes() == model_bytes


def test_ipfs_gateways_are_tried_in_turn(serve: Any, model_bytes: bytes, tmp_path: Path) -> None:
    good = serve(Behaviour(model_bytes)).removesuffix("/model.gguf")
    source = {"type": "ipfs", "cid": "bafytest", "gateways": [closed_port_url(), good + "/ipfs/"]}
    store = ModelStore(tmp_path, catalogue([source], model_bytes), backoff_s=0.01)
    assert store.pull("tiny").read_bytes() == model_bytes


def test_every_source_down_is_a_clear_error(model_bytes: bytes, tmp_path: Path) -> None:
    sources = [{"type": "url", "url": closed_port_url()}, {"type": "file", "path": "/no/such"}]
    store = ModelStore(tmp_path, catalogue(sources, model_bytes), retries=2, backoff_s=0.01)
    with pytest.raises(DownloadError, match="every source failed") as info:
        store.pull("tiny")
    assert "cannot connect" in str(info.value) and "/no/such" in str(info.value)
    assert leftovers(tmp_path) == []


def test_not_enough_disk_is_refused_before_downloading(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes)
    url = serve(behaviour)
    huge = catalogue([{"type": "url", "url": url}], model_bytes, size=1 << 60)
    with pytest.raises(InsufficientDiskError, match="MiB free"):
        ModelStore(tmp_path, huge).pull("tiny")
    assert behaviour.requests == []


def test_two_processes_pulling_at_once_download_once(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes, slow_s=1.0)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes)
    catalogue_file = tmp_path / "catalogue.json"
    catalogue_file.write_text(json.dumps(_raw_catalogue(cat)), encoding="utf-8")
    models = tmp_path / "models"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from engine.models.store import ModelStore\n"
        "from profiler.catalogue import load_catalogue\n"
        "store = ModelStore(Path(sys.argv[1]), load_catalogue(Path(sys.argv[2])))\n"
        "print(store.pull('tiny'))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(models), str(catalogue_file)],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert (models / "tiny.F32.gguf").read_bytes() == model_bytes
    assert behaviour.requests == [None]  # one download; the other waited on the lock


def _raw_catalogue(cat: Catalogue) -> dict[str, Any]:
    entry = cat.models[0]
    variant = entry.quants[0]
    return {
        "schema_version": 1,
        "models": [
            {
                "id": entry.id,
                "name": entry.name,
                "kind": entry.kind,
                "family": entry.family,
                "default": True,
                "parameters": None,
                "parameters_source": "test",
                "architecture": {"source": "test"},
                "quants": [
                    {
                        "quant": variant.quant,
                        "file_name": variant.file_name,
                        "size_bytes": variant.size_bytes,
                        "sha256": variant.sha256,
                        "sources": [{"type": s.type, **dict(s.details)} for s in variant.sources],
                    }
                ],
            }
        ],
    }


def test_local_file_copy_verify_and_remove(model_bytes: bytes, tmp_path: Path) -> None:
    source = tmp_path / "elsewhere.gguf"
    source.write_bytes(model_bytes)
    models = tmp_path / "models"
    store = ModelStore(models, catalogue([{"type": "file", "path": str(source)}], model_bytes))
    path = store.pull("tiny")
    assert not path.is_symlink() and path.read_bytes() == model_bytes
    assert [r.ok for r in store.verify()] == [True]
    path.write_bytes(model_bytes[:-10] + b"0123456789")
    (result,) = store.verify()
    assert not result.ok and "sha256" in result.message
    assert store.remove("tiny") == [path]
    assert store.installed() == []


def test_package_models_are_linked_and_converted(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    chat = store.pull("smollm2-135m-instruct")
    assert chat.is_symlink()
    embedding = store.pull("all-minilm-l6-v2-22m")
    assert not embedding.is_symlink()
    assert check_gguf(embedding).architecture == "bert"
    assert {m.model_id for m in store.installed()} == {
        "smollm2-135m-instruct",
        "all-minilm-l6-v2-22m",
    }
    assert all(r.ok for r in store.verify())
    assert store.default_chat_model().id == "smollm2-135m-instruct"
    target = chat.resolve()
    scoring = scoring_copy_path(chat)
    scoring.write_bytes(b"a validator's float16 copy")  # engine.inference.scoring_copy's file
    store.remove("smollm2-135m-instruct")
    assert not chat.exists() and not chat.is_symlink()
    assert not scoring.exists()  # it would be 2 bytes per parameter left behind
    assert target.is_file()  # removing the model removed only the link, not the package's file


def test_a_package_link_left_dangling_by_a_removed_environment_is_relinked(
    tmp_path: Path,
) -> None:
    """The models folder is shared by every environment of a user: a link into a venv that was
    deleted (a reinstall, another clone) dangles, and the package installed here heals it."""
    store = ModelStore(tmp_path / "models")
    chat = store.pull("smollm2-135m-instruct")
    package_file = chat.resolve()
    chat.unlink()
    chat.symlink_to(tmp_path / "gone" / ".venv" / package_file.name)
    assert not store.is_installed("smollm2-135m-instruct")
    (result,) = store.verify("smollm2-135m-instruct")
    assert result.ok and result.message.startswith("relinked to its package"), result
    assert chat.is_symlink() and chat.resolve() == package_file


def test_a_dangling_link_whose_package_is_not_installed_is_reported(
    model_bytes: bytes, tmp_path: Path
) -> None:
    source = {"type": "python_package", "package": "no_such_model_package", "path": "t.gguf"}
    store = ModelStore(tmp_path / "models", catalogue([source], model_bytes))
    link = tmp_path / "models" / "tiny.F32.gguf"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "gone.gguf")
    (result,) = store.verify()
    assert not result.ok and "dangling link" in result.message
    assert link.is_symlink()  # nothing is deleted behind the user's back


def other_version(model_bytes: bytes) -> bytes:
    """The same GGUF with different weights: what a moving branch may serve tomorrow."""
    tail = bytes((b + 1) % 256 for b in model_bytes[-4096:])
    return model_bytes[:-4096] + tail


def test_resume_sends_if_range_with_the_first_etag(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes, drop_first=True)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes, hashed=False)
    path = ModelStore(tmp_path, cat, backoff_s=0.01).pull("tiny")
    assert path.read_bytes() == model_bytes
    assert behaviour.if_ranges == [None, _etag(model_bytes)]
    assert behaviour.requests[1] == f"bytes={len(model_bytes) // 2}-"
    assert leftovers(tmp_path) == ["tiny.F32.gguf", "tiny.F32.gguf.sha256"]  # no .part.meta


def test_a_file_changed_upstream_mid_resume_is_fetched_whole_not_spliced(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    newer = other_version(model_bytes)
    behaviour = Behaviour(model_bytes, drop_first=True, changed_body=newer)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes, hashed=False)
    path = ModelStore(tmp_path, cat, backoff_s=0.01).pull("tiny")
    assert behaviour.if_ranges[1] == _etag(model_bytes)  # the validator of the first answer
    assert path.read_bytes() == newer  # the whole new file, not old head + new tail


def test_a_server_that_ignores_range_restarts_from_zero(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes, drop_first=True, ignore_range=True)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes, hashed=False)
    path = ModelStore(tmp_path, cat, backoff_s=0.01).pull("tiny")
    assert behaviour.requests[1] is not None  # it asked for the rest, got the whole file
    assert path.read_bytes() == model_bytes


def test_a_wrong_content_range_start_restarts_from_zero(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes, drop_first=True, content_range_off_by=-4096)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes, hashed=False)
    path = ModelStore(tmp_path, cat, backoff_s=0.01).pull("tiny")
    assert behaviour.requests[2] is None  # the 206 did not start where the file ends: from 0
    assert path.read_bytes() == model_bytes


def test_no_etag_means_no_blind_resume(serve: Any, model_bytes: bytes, tmp_path: Path) -> None:
    behaviour = Behaviour(model_bytes, drop_first=True, etag=False)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes, hashed=False)
    path = ModelStore(tmp_path, cat, backoff_s=0.01).pull("tiny")
    assert behaviour.requests == [None, None]  # nothing proves the half file is current
    assert path.read_bytes() == model_bytes


def test_an_unknown_hash_is_recorded_at_first_download_and_holds_later(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes)
    url = serve(behaviour)
    store = ModelStore(
        tmp_path, catalogue([{"type": "url", "url": url}], model_bytes, hashed=False), retries=1
    )
    path = store.pull("tiny")
    digest = hashlib.sha256(model_bytes).hexdigest()
    assert (tmp_path / "tiny.F32.gguf.sha256").read_text() == f"{digest}  tiny.F32.gguf\n"
    assert [m.hash_source for m in store.installed()] == ["recorded"]
    (result,) = store.verify()
    assert result.ok and "unverified" in result.message and result.hash_source == "recorded"

    path.write_bytes(other_version(model_bytes))  # damaged or replaced on disk
    (result,) = store.verify()
    assert not result.ok and "first download" in result.message

    store.remove("tiny")  # the record stays: the next download must match the first
    behaviour.changed_body = other_version(model_bytes)
    with pytest.raises(HashMismatchError, match="first download"):
        store.pull("tiny")
    assert leftovers(tmp_path) == ["tiny.F32.gguf.sha256"]


def test_the_hash_is_taken_while_streaming_not_by_reading_the_file_again(
    serve: Any, model_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.models.store as store_module

    def no_second_read(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the downloaded file was read again to hash it")

    monkeypatch.setattr(store_module, "sha256_of", no_second_read)
    url = serve(Behaviour(model_bytes, drop_first=True))
    store = ModelStore(tmp_path, catalogue([{"type": "url", "url": url}], model_bytes))
    assert store.pull("tiny").read_bytes() == model_bytes


def test_a_resume_in_a_new_process_uses_the_kept_validator(
    serve: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    behaviour = Behaviour(model_bytes, drop_first=True)
    url = serve(behaviour)
    cat = catalogue([{"type": "url", "url": url}], model_bytes)
    with pytest.raises(DownloadError):  # one try only: the drop leaves the part file
        ModelStore(tmp_path, cat, retries=1).pull("tiny")
    assert sorted(leftovers(tmp_path)) == ["tiny.F32.gguf.part", "tiny.F32.gguf.part.meta"]
    path = ModelStore(tmp_path, cat, retries=1).pull("tiny")  # a fresh store: a new process
    assert behaviour.if_ranges[1] == _etag(model_bytes)
    assert path.read_bytes() == model_bytes


class _Hub(http.server.BaseHTTPRequestHandler):
    """A small Hugging Face: `/org/repo/resolve/<rev>/m.gguf`, where a branch redirects to the
    CDN with `X-Repo-Commit` (as the real one does) and a commit serves that commit's file."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        hub = self.server.hub  # type: ignore[attr-defined]
        hub["paths"].append(self.path)
        parts = self.path.strip("/").split("/")
        if parts[:3] == ["org", "repo", "resolve"] and parts[3] in hub["branches"]:
            commit = hub["branches"][parts[3]]
            self.send_response(302)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Location", f"/cdn/{commit}/{parts[4]}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        commit = parts[1] if parts[0] == "cdn" else parts[3]
        body = hub["files"].get(commit)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("ETag", _etag(body))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_moving_branch_is_pinned_to_the_commit_of_the_first_download(
    model_bytes: bytes, tmp_path: Path
) -> None:
    first, second = "a" * 40, "b" * 40
    hub: dict[str, Any] = {
        "branches": {"main": first},
        "files": {first: model_bytes},
        "paths": [],
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.hub = hub  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/org/repo/resolve/main/m.gguf"
        cat = catalogue([{"type": "url", "url": url}], model_bytes, hashed=False)
        store = ModelStore(tmp_path, cat, retries=1)
        store.pull("tiny")
        record = json.loads((tmp_path / "tiny.F32.gguf.revision").read_text())
        assert record == {"url": url, "commit": first}

        hub["branches"]["main"] = second  # upstream moves on to a different file
        hub["files"][second] = other_version(model_bytes)
        store.remove("tiny")
        path = store.pull("tiny")  # reads the pinned commit, not the branch
        assert path.read_bytes() == model_bytes
        assert hub["paths"][-1] == f"/org/repo/resolve/{first}/m.gguf"
    finally:
        server.shutdown()
        server.server_close()
