"""`--self-test` from source: every step passes here, the JSON has its shape, failures are named."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cortensor_desktop.selftest import (
    SelfTestContext,
    SelfTestError,
    Step,
    StepOutcome,
    run_self_test,
    run_step,
)
from cortensor_desktop.selftest.steps import (
    DEFAULT_STEPS,
    missing_cpu_features,
    summarise_probe,
)

STEP_NAMES = ["folders", "assets", "hardware", "worker", "spawn", "llama", "chain", "ui"]
AVX2_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 0 |"


def test_self_test_json_from_source_passes_every_step(cli, home: Path) -> None:
    result = cli("--self-test", "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert document["ok"] is True
    assert document["failed"] == []
    assert document["frozen"] is False
    assert [step["name"] for step in document["steps"]] == STEP_NAMES
    for step in document["steps"]:
        assert set(step) == {
            "name",
            "description",
            "ok",
            "status",
            "duration_s",
            "detail",
            "facts",
        }
        assert step["ok"] is True and step["status"] == "ok", step
        assert step["duration_s"] >= 0
    by_name = {step["name"]: step for step in document["steps"]}
    assert by_name["folders"]["facts"]["home"] == str(home.resolve())
    assert (home / "data").is_dir()
    assert by_name["assets"]["facts"]["models"], "the catalogue lists no model"
    assert len(by_name["llama"]["facts"]["generated_tokens"]) == 8
    assert by_name["llama"]["facts"]["log_likelihood"] < 0
    assert by_name["llama"]["facts"]["embedding_dim"] == 64
    assert by_name["chain"]["facts"]["gas_used"] == 21000
    assert by_name["ui"]["facts"]["table_rows"] == 1
    # the driver a real terminal gets is in the build, not only the headless one
    assert by_name["ui"]["facts"]["driver"] in ("LinuxDriver", "WindowsDriver")
    # progress lines go to stderr so stdout stays parseable
    assert "ok      chain" in result.stderr


def test_a_forced_failure_is_named_and_exits_1(cli) -> None:
    result = cli("--self-test", "--json", env={"CORTENSOR_SELFTEST_FAIL": "chain"}, timeout=300)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["failed"] == ["chain"]
    statuses = {step["name"]: step["status"] for step in document["steps"]}
    # a failure does not stop the steps after it
    assert statuses == {
        "folders": "ok",
        "assets": "ok",
        "hardware": "ok",
        "worker": "ok",
        "spawn": "ok",
        "llama": "ok",
        "chain": "failed",
        "ui": "ok",
    }
    assert "self-test failed at step chain" in result.stderr


def test_text_output_names_the_failed_step(cli) -> None:
    result = cli("--self-test", env={"CORTENSOR_SELFTEST_FAIL": "folders,ui"}, timeout=300)
    assert result.returncode == 1
    assert "self-test failed: folders, ui" in result.stdout
    assert result.stdout.startswith("failed  folders")


def test_self_test_refuses_a_command_beside_it(cli) -> None:
    result = cli("--self-test", "config", "path")
    assert result.returncode == 2
    assert "without a command" in result.stderr


def _ctx(tmp_path: Path) -> SelfTestContext:
    return SelfTestContext(scratch=tmp_path, home=None)


def test_a_step_that_hangs_times_out_and_the_run_goes_on(tmp_path: Path) -> None:
    def hang(ctx: SelfTestContext) -> StepOutcome:
        time.sleep(30)
        return StepOutcome("never")

    def fine(ctx: SelfTestContext) -> StepOutcome:
        return StepOutcome("fine", {"n": 1})

    start = time.perf_counter()
    report = run_self_test(
        [Step("slow", "hangs", hang, timeout_s=0.2), Step("fast", "passes", fine)], environ={}
    )
    assert time.perf_counter() - start < 5
    assert report.failed == ("slow",)
    assert report.steps[0].status == "timeout"
    assert "0.2s" in report.steps[0].detail
    assert report.steps[1].ok and report.steps[1].facts == {"n": 1}


def test_an_unexpected_exception_is_reported_with_its_type(tmp_path: Path) -> None:
    def broken(ctx: SelfTestContext) -> StepOutcome:
        raise KeyError("missing")

    def explained(ctx: SelfTestContext) -> StepOutcome:
        raise SelfTestError("the receipt has status 0")

    assert run_step(Step("x", "", broken), _ctx(tmp_path)).detail == "KeyError: 'missing'"
    assert run_step(Step("y", "", explained), _ctx(tmp_path)).detail == "the receipt has status 0"


def test_an_empty_step_list_does_not_pass() -> None:
    assert run_self_test([], environ={}).ok is False


def test_step_names_must_be_unique() -> None:
    step = DEFAULT_STEPS[0]
    with pytest.raises(ValueError, match="unique"):
        run_self_test([step, step], environ={})


@pytest.mark.parametrize(
    ("flags", "machine", "missing"),
    [
        ({"pni", "ssse3", "avx", "avx2", "f16c", "fma"}, "x86_64", []),
        ({"pni", "ssse3", "avx"}, "x86_64", ["AVX2", "F16C", "FMA"]),
        (None, "x86_64", []),  # flags unknown: no false alarm
        (set(), "arm64", []),  # not x86: the x86 baseline does not apply
    ],
)
def test_missing_cpu_features_against_an_avx2_build(
    flags: set[str] | None, machine: str, missing: list[str]
) -> None:
    frozen_flags = None if flags is None else frozenset(flags)
    assert missing_cpu_features(AVX2_BUILD, frozen_flags, machine) == missing


def test_the_profiler_probe_summary_tolerates_missing_fields() -> None:
    facts = {
        "cpu": {"brand": "AMD EPYC", "logical_cores": 2},
        "memory": {"total_bytes": 8 * 2**30},
        "gpus": [{"name": "RTX 3060"}],
    }
    assert (
        summarise_probe(facts) == "profiler.probe: AMD EPYC, 2 logical CPUs, 8.0 GiB RAM, 1 GPU(s)"
    )
    assert summarise_probe({"cpu": None}) == "profiler.probe: 0 GPU(s)"
