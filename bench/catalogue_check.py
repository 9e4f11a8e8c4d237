"""Check the model catalogue's shape beyond what the loader enforces; exit 1 on any problem.

Rules: every id carries its parameter count (`-8b-`, `-135m-`, or at the end), every figure
group names its source, exactly one default (a chat model), every quant has at least one
source, quant names are known to the estimate, sizes and hashes are either real or null, and
a chat model has the figures the memory estimate needs (or says they are unknown with null).
Headline on the last line.
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
        if s.type == "url" and not (isinstance(url, str) and url.startswith("https://")):
            found.append(f"{qwhere}: url source must be https")
    return found


def main() -> int:
    path = ROOT / "assets" / "catalogue.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    found = problems(raw)
    for line in found:
        print(f"catalogue: {line}")
    count = len(load_catalogue(path).models) if not found else len(raw.get("models", []))
    print(f"catalogue check: {count} models, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
