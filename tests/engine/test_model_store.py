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
from engine.models.store import ModelStore, PullProgress
from profiler.catalogue import Catalogue, parse_catalogue


@dataclass
class Behaviour:
    body: bytes
    drop_first: bool = False  # the first full request closes the connection mid-file
    wrong: bool = False  # serve different bytes of the same length
    slow_s: float = 0.0  # spread the body over this many seconds
    requests: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour  # type: ignore[attr-defined]
        body = bytes(reversed(b.body)) if b.wrong else b.body
        rng = self.headers.get("Range")
        b.requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        chunk = body[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if b.drop_first and len(b.requests) == 1:
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if b.slow_s:
            step = max(1, len(chunk) // 20)
            for start in range(0, len(chunk), step):
                self.wfile.write(chunk[start : start + step])
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


def catalogue(sources: list[dict[str, Any]], body: bytes, size: int | None = None) -> Catalogue:
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
                            "sha256": hashlib.sha256(body).hexdigest(),
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
    assert {e.phase for e in events} >= {"download", "verify", "done"}
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
    store.remove("smollm2-135m-instruct")
    assert not chat.exists() and not chat.is_symlink()
    assert target.is_file()  # removing the model removed only the link, not the package's file
