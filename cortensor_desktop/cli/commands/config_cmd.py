"""`config path | show | init`: where the config lives, what it resolves to, a commented default."""

from __future__ import annotations

import argparse
import os
from typing import Any

from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.config import (
    ConfigError,
    config_as_dict,
    default_config_text,
    env_name,
    set_config_value,
)
from cortensor_desktop.networks import list_profiles


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from cortensor_desktop.cli.main import add_json_flag

    parser = subparsers.add_parser(
        "config",
        help="show or create the config file",
        description="Inspect and create the TOML config file.",
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)

    path = actions.add_parser("path", parents=[common], help="print the config file's path")
    add_json_flag(path)
    path.set_defaults(handler=_path, needs_config=False)

    show = actions.add_parser(
        "show",
        parents=[common],
        help="print the resolved config (file, environment, defaults)",
        description="Print every key with its resolved value: the file, "
        "then CORTENSOR_<SECTION>__<KEY> overrides, then "
        "defaults. Secrets are masked.",
    )
    add_json_flag(show)
    show.set_defaults(handler=_show)

    init = actions.add_parser(
        "init",
        parents=[common],
        help="write a config file with every key at its default, explained",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=_init, needs_config=False)

    set_ = actions.add_parser(
        "set",
        parents=[common],
        help="set one key in the config file (checked, written atomically)",
        description="Set SECTION.KEY to VALUE in the config file: the value is checked by the "
        "key's own rules and the whole file with it before anything is written; comments and "
        "the other keys stay. Numbers, true/false and lists are read as TOML values.",
    )
    set_.add_argument("key", metavar="SECTION.KEY", help="e.g. fit.ctx")
    set_.add_argument("value", metavar="VALUE", help='e.g. 4096, true, ["22:00-07:00"]')
    add_json_flag(set_)
    set_.set_defaults(handler=_set, needs_config=False)


def _path(ctx: AppContext, args: argparse.Namespace) -> int:
    if ctx.json_output:
        ctx.emit_json({"path": str(ctx.config_path), "exists": ctx.config_path.exists()})
    else:
        ctx.echo(str(ctx.config_path))
    return 0


def _show(ctx: AppContext, args: argparse.Namespace) -> int:
    values = config_as_dict(ctx.config)
    document: dict[str, Any] = {
        "source": str(ctx.loaded_config.source) if ctx.loaded_config.source else None,
        "config": values,
        "network": {"active": ctx.network_name, "available": list_profiles(ctx.paths.profiles_dir)},
        "paths": {
            "config_file": str(ctx.config_path),
            "data_dir": str(ctx.paths.data_dir),
            "cache_dir": str(ctx.paths.cache_dir),
            "log_dir": str(ctx.paths.log_dir),
            "models_dir": str(ctx.models_dir),
            "database": str(ctx.paths.database_file),
        },
    }
    if ctx.json_output:
        ctx.emit_json(document)
        return 0
    ctx.echo(
        f"# config file: {document['source'] or str(ctx.config_path) + ' (not created; defaults)'}"
    )
    for section, keys in values.items():
        ctx.echo(f"[{section}]")
        for key, value in keys.items():
            ctx.echo(f"{key} = {value!r}")
        ctx.echo()
    ctx.echo("# paths")
    for name, value in document["paths"].items():
        ctx.echo(f"{name}: {value}")
    return 0


def _init(ctx: AppContext, args: argparse.Namespace) -> int:
    target = ctx.config_path
    if target.exists() and not args.force:
        raise ConfigError(f"{target} already exists; use --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(default_config_text(), encoding="utf-8")
    ctx.echo(f"wrote {target}")
    return 0


def _set(ctx: AppContext, args: argparse.Namespace) -> int:
    loaded = set_config_value(ctx.config_path, args.key, args.value)
    section, _, key = args.key.partition(".")
    value = config_as_dict(loaded.config)[section][key]
    env = env_name(args.key)
    if ctx.json_output:
        ctx.emit_json({"path": str(ctx.config_path), "key": args.key, "value": value})
        return 0
    ctx.echo(f"{args.key} = {value!r} in {ctx.config_path}")
    if env in os.environ:
        ctx.echo(f"note: {env} is set and overrides the file")
    return 0
