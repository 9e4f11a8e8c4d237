"""The CLI's contract: --version, --help everywhere, --json purity, exit code 2 on bad usage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cortensor_desktop import __version__
from cortensor_desktop.cli.main import build_parser


def test_version_prints_the_package_version_and_the_llama_cpp_build(cli) -> None:
    import llama_cpp

    result = cli("--version")
    assert result.returncode == 0
    line = result.stdout.strip()
    assert line.startswith(f"cortensor-desktop {__version__} (llama-cpp-python ")
    assert f"llama-cpp-python {llama_cpp.__version__}, " in line
    # This machine's build is CPU-only: the backend says so rather than naming a GPU.
    assert line.endswith(")") and ", CPU" in line


def test_python_dash_m_matches_console_script_help(cli) -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    assert "CORTENSOR_HOME" in result.stdout


def _all_subcommand_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(parser, prefix):  # type: ignore[no-untyped-def]
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return paths


# One fresh interpreter runs the real entry point for every path (a process per path costs
# minutes on a loaded 2-core machine as the command tree grows).
_HELP_OF_EVERY_PATH = """
import contextlib, io, json, sys
from cortensor_desktop.cli.main import main
out = {}
for path in json.loads(sys.argv[1]):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = main([*path, "--help"])
        except SystemExit as exc:
            code = exc.code
    out[" ".join(path)] = [code, buffer.getvalue()]
print(json.dumps(out))
"""


def test_every_subcommand_has_help_that_explains(home: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT, cli_env

    paths = _all_subcommand_paths()
    proc = subprocess.run(
        [sys.executable, "-c", _HELP_OF_EVERY_PATH, json.dumps(paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(home),
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    helps = json.loads(proc.stdout)
    assert len(helps) == len(paths)
    for path, (code, text) in helps.items():
        assert code in (0, None), (path, code)
        assert "usage:" in text, path
        # the help explains: more than a usage line
        assert len(text.strip().splitlines()) >= 3, path


def test_unknown_command_is_usage_error(cli) -> None:
    result = cli("no-such-command")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_is_usage_error(cli) -> None:
    result = cli("config", "show", "--no-such-flag")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_global_options_work_after_the_subcommand(cli, home: Path) -> None:
    result = cli("config", "show", "--json", "--network", "embedded", "--log-level", "debug")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["network"]["active"] == "embedded"


def test_config_show_json_is_exactly_one_document(cli) -> None:
    result = cli("config", "show", "--json", "--log-level", "debug")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # raises if anything else is on stdout
    assert document["config"]["network"]["profile"] == "embedded"


def test_every_file_written_lands_under_home(cli, home: Path, tmp_path: Path) -> None:
    before = set(tmp_path.rglob("*"))
    assert cli("config", "init").returncode == 0
    assert cli("config", "show", "--json").returncode == 0
    written = set(tmp_path.rglob("*")) - before
    assert written, "the commands wrote nothing at all"
    assert all(home in p.parents or p == home for p in written)
    assert (home / "config" / "config.toml").is_file()


def test_env_override_is_applied_and_reported(cli) -> None:
    result = cli("config", "show", "--json", env={"CORTENSOR_LOGGING__LEVEL": "debug"})
    assert json.loads(result.stdout)["config"]["logging"]["level"] == "debug"


def test_config_init_refuses_to_overwrite(cli) -> None:
    assert cli("config", "init").returncode == 0
    again = cli("config", "init")
    assert again.returncode == 3
    assert re.search(r"already exists; use --force", again.stderr)
    assert cli("config", "init", "--force").returncode == 0


def test_run_on_a_recorded_cpu_without_avx2_stops_with_exit_7_before_loading_llama(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Recorded probe (a Xeon E5 v2 without AVX2): this machine has AVX2, so the CPU is fed in."""
    import profiler.probe
    from cortensor_desktop.cli.main import main
    from profiler.hardware import load_hardware_file

    recorded = Path(__file__).parents[1] / "profiler/recorded/xeon_e5_no_avx2_recorded.json"
    monkeypatch.setattr(profiler.probe, "probe", lambda **_: load_hardware_file(recorded))
    code = main(["run", "--headless"])
    err = capsys.readouterr().err
    assert code == 7
    assert "this CPU lacks" in err and "AVX2" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
