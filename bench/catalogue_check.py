"""Check the model catalogue's shape beyond what the loader enforces; exit 1 on any problem.

Rules: every id carries its parameter count (`-8b-`, `-135m-`, or at the end), every figure
group names its source, exactly one default (a chat model), every quant has at least one
source, quant names are known to the estimate, sizes and hashes are either real or null, a
chat model has the figures the memory estimate needs (or says they are unknown with null), and
a URL on a moving branch (`/resolve/main/`) is pinned by the quant's sha256 or says in
`unpinned` why not (profiler.catalogue.moving_revision). Headline on the last line: how many
quants have a known size and sha256 and how many URLs are pinned to a commit.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profiler.catalogue import (  # noqa: E402
    CatalogueError,
    QuantVariant,
    load_catalogue,
    moving_revision,
    parse_catalogue,
)
from profiler.estimate import QUANTS  # noqa: E402

PARAM_IN_ID = re.compile(r"-\d+(\.\d+)?[mb](-|$)")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def problems(raw: dict[str, object]) -> list[str]:
    found: list[str] = []
    try:
        catalogue = parse_catalogue(raw)
    except CatalogueError as exc:
        return [str(exc)]
    defaults = [m for m in catalogue.models if m.default]
    if len(defaults) != 1 or defaults[0].kind != "chat":
        found.append("exactly one default model, of kind chat, is needed")
    if not catalogue.of_kind("embedding"):
        found.append("no embedding model (Proof of Useful Work needs one)")
    for m in catalogue.models:
        where = m.id
        if not PARAM_IN_ID.search(m.id):
            found.append(f"{where}: id does not carry a parameter count like -8b- or -135m-")
        if not m.parameters_source.strip():
            found.append(f"{where}: parameters without a source")
        if not m.architecture.source.strip():
            found.append(f"{where}: architecture figures without a source")
        if m.kind != "embedding" and m.architecture.n_layer is None:
            found.append(f"{where}: n_layer unknown; the fit cannot place layers")
        for q in m.quants:
            found.extend(_quant_problems(f"{where} {q.quant}", q))
    return found


def _quant_problems(qwhere: str, q: QuantVariant) -> list[str]:
    found: list[str] = []
    if not q.sources:
        found.append(f"{qwhere}: no download source")
    if q.quant.upper() not in QUANTS:
        found.append(f"{qwhere}: quant unknown to profiler.estimate.QUANTS")
    if q.sha256 is not None and not HEX64.match(q.sha256):
        found.append(f"{qwhere}: sha256 is not 64 lower-case hex digits")
    if not q.file_name.endswith(".gguf"):
        found.append(f"{qwhere}: file name does not end in .gguf")
    for s in q.sources:
        url = s.get("url")
        if s.type != "url":
            continue
        if not (isinstance(url, str) and url.startswith("https://")):
            found.append(f"{qwhere}: url source must be https")
            continue
        branch = moving_revision(url)
        reason = s.get("unpinned")
        if branch is not None and q.sha256 is None and not (isinstance(reason, str) and reason):
            found.append(
                f"{qwhere}: {url} reads the moving branch '{branch}' and no sha256 pins the "
                "bytes: put a commit hash in the URL, or the sha256, or say why in 'unpinned'"
            )
    return found


def pinning(raw: dict[str, object]) -> dict[str, int]:
    """How much of the catalogue is pinned: quants with size, with sha256; URLs on a commit."""
    catalogue = parse_catalogue(raw)
    quants = [q for m in catalogue.models for q in m.quants]
    urls = [str(s.get("url")) for q in quants for s in q.sources if s.type == "url"]
    return {
        "quants": len(quants),
        "sized": sum(1 for q in quants if q.size_bytes is not None),
        "hashed": sum(1 for q in quants if q.sha256 is not None),
        "urls": len(urls),
        "pinned_urls": sum(1 for u in urls if moving_revision(u) is None),
    }


def main() -> int:
    path = ROOT / "assets" / "catalogue.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    found = problems(raw)
    for line in found:
        print(f"catalogue: {line}")
    count = len(load_catalogue(path).models) if not found else len(raw.get("models", []))
    if not found:
        p = pinning(raw)
        print(
            f"pinning: {p['sized']}/{p['quants']} quants with a known size, {p['hashed']}/"
            f"{p['quants']} with a sha256, {p['pinned_urls']}/{p['urls']} URLs on a commit "
            "(the rest record the sha256 of their first download)"
        )
    print(f"catalogue check: {count} models, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
