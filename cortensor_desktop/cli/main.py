"""Entry point: parse, load what the command needs, run it, map errors to exit codes.

Commands live one group per module in `cortensor_desktop.cli.commands`; each exposes
`register(subparsers, common)` and sets `handler` (and optionally `needs_config=False`) on its
parser. Command modules import heavy libraries inside their handlers, so `--help` stays fast
and the headless path never drags in a UI toolkit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cortensor_desktop import APP_NAME, __version__
from cortensor_desktop.cli.context import AppContext
from cortensor_desktop.cli.examples import attach_examples
from cortensor_desktop.cli.exit_codes import ExitCode, exit_code_for
from cortensor_desktop.logs import setup_logging
from cortensor_desktop.paths import resolve_paths

COMMAND_MODULES = [
    "cortensor_desktop.cli.commands.config_cmd",
    "cortensor_desktop.cli.commands.profile_cmd",
    "cortensor_desktop.cli.commands.models_cmd",
    "cortensor_desktop.cli.commands.inference_cmd",
    "cortensor_desktop.cli.commands.run_cmd",
    "cortensor_desktop.cli.commands.ask_cmd",
    "cortensor_desktop.cli.commands.router_cmd",
    "cortensor_desktop.cli.commands.wallet_cmd",
    "cortensor_desktop.cli.commands.devnet_cmd",
    "cortensor_desktop.cli.commands.network_cmd",
    "cortensor_desktop.cli.commands.status_cmd",
    "cortensor_desktop.cli.commands.attach_cmd",
    "cortensor_desktop.cli.commands.doctor_cmd",
    "cortensor_desktop.cli.commands.completion_cmd",
]

EPILOG = """\
exit codes: 0 ok, 1 unexpected error, 2 usage, 3 config, 4 wallet or passphrase,
5 chain or RPC, 6 model or inference, 7 this machine cannot run the requested model,
8 no running node answered (`status`).

environment: CORTENSOR_HOME puts config, data, cache and logs under one folder;
CORTENSOR_<SECTION>__<KEY> overrides a config key; CORTENSOR_PASSPHRASE(_FILE) unlocks the wallet.
"""

log = logging.getLogger(__name__)


def _common_options() -> argparse.ArgumentParser:
    """Global options, accepted before or after the subcommand (SUPPRESS keeps both places)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file to use (default: config.toml in the config folder)",
    )
    group.add_argument(
        "--network",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="network profile for this run (overrides [network] profile)",
    )
    group.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=argparse.SUPPRESS,
        help="log level for this run",
    )
    return common


class _VersionAction(argparse.Action):
    """`--version`: the app and the llama.cpp build it runs (imported only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from cortensor_desktop.reports import llama_backend
        from profiler.probe import probe_llama_build

        print(f"{APP_NAME} {__version__} ({llama_backend(probe_llama_build())})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=APP_NAME,
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a node of a decentralized LLM inference network on this machine: "
        "profile the hardware, pick a model that fits, keep the wallet key safe, "
        "mine, and watch it all.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="the app's version and its llama.cpp build"
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="check offline that this install works (folders, shipped data, hardware probe, "
        "llama.cpp, in-process chain, UI); exit 0 only if every step passed, "
        "1 naming the failed step",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="with --self-test: print one JSON document on stdout",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers, common)
    attach_examples(parser)
    return parser


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout (logs go to stderr)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.self_test:
        if getattr(args, "command", None):
            parser.error("--self-test runs on its own, without a command")
        from cortensor_desktop.cli.self_test import run_self_test_command

        args.handler, args.needs_config = run_self_test_command, False
    elif getattr(args, "command", None) is None and _on_terminal():
        # No command on a terminal: open the dashboard (`run`); piped or scripted: print help.
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "run"])
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    paths = resolve_paths()
    ctx = AppContext(
        paths=paths,
        config_path=Path(getattr(args, "config", None) or paths.config_file).expanduser(),
        network_override=getattr(args, "network", None),
        json_output=bool(getattr(args, "json", False)),
    )
    try:
        _setup_logging(ctx, args)
        return int(args.handler(ctx, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _report(exc, args)
    finally:
        ctx.close()
        if getattr(args, "fast_exit", False):
            _exit_now()


def _exit_now() -> None:
    """Leave without interpreter teardown (the dashboard's quit): kill worker processes, flush."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _setup_logging(ctx: AppContext, args: argparse.Namespace) -> None:
    level = getattr(args, "log_level", None)
    if getattr(args, "needs_config", True):
        cfg = ctx.config.logging
        setup_logging(
            level or cfg.level, cfg.format, ctx.paths.log_dir, cfg.file_max_bytes, cfg.file_backups
        )
    else:
        setup_logging(level or "warning", "text", None)


def _report(exc: Exception, args: argparse.Namespace) -> int:
    code = exit_code_for(exc)
    if code is ExitCode.UNEXPECTED:
        log.debug("unexpected error", exc_info=exc)
        if os.environ.get("CORTENSOR_DEBUG"):
            raise exc
        message = (
            f"unexpected error: {type(exc).__name__}: {exc} (set CORTENSOR_DEBUG=1 for details)"
        )
    else:
        message = str(exc)
    print(f"{APP_NAME}: error: {message}", file=sys.stderr)
    return int(code)
