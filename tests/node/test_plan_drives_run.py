"""The fit drives the node: what `profile --json` recommends is what `run` loads and registers.

The machine is this one probed for real, with an RTX 3090 given to it through a fake NVML (this
machine has no NVIDIA GPU) and a llama.cpp build that says it can offload (a CUDA build this
machine cannot have); both go through the real probe, fit, plan, worker and registration. The
node runs on anvil, so the tier and memory are read back from the chain.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chain.client import connect
from chain.devnet import AnvilProcess, LocalDevnet, deploy_on_anvil
from chain.wrappers import Tier, model_id
from cortensor_desktop.cli.main import main
from profiler import probe as probe_module
from profiler.catalogue import load_catalogue
from tests.node.fake_nvml import fake_pynvml

BUNDLED = "smollm2-135m-instruct"  # the one chat model this offline machine can install


@pytest.fixture(scope="module")
def devnet() -> Iterator[LocalDevnet]:
    with AnvilProcess() as anvil:
        yield deploy_on_anvil(anvil, oracles=1)


@pytest.fixture
def fake_rtx3090(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake NVML with an RTX 3090's answers and a fake CUDA build, through the real probe."""
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    real = probe_module.probe_llama_build
    monkeypatch.setattr(
        probe_module, "probe_llama_build", lambda: replace(real(), gpu_offload=True)
    )


def _home(home: Path, models_dir: Path, devnet: LocalDevnet, fit: str = "") -> Path:
    config = home / "config"
    (config / "networks").mkdir(parents=True)
    contracts = ", ".join(f'{k} = "{v}"' for k, v in devnet.contracts.items())
    (config / "networks" / "local.toml").write_text(
        f'chain_id = {devnet.chain_id}\nrpc_urls = ["{devnet.rpc_url}"]\n'
        f"contracts = {{ {contracts} }}\n"
    )
    (config / "config.toml").write_text(
        f'[network]\nprofile = "local"\n\n[models]\ndir = "{models_dir}"\n\n'
        f"[api]\nport = 0\n\n[fit]\n{fit}"
    )
    passphrase = home / "passphrase"
    passphrase.write_text("plan drives the run")
    passphrase.chmod(0o600)
    return passphrase


def _messages(log: str) -> list[str]:
    """The messages of `run`'s log lines (time, level and logger cut off)."""
    line = re.compile(r"^\S+ \S+ (?:DEBUG|INFO|WARNING|ERROR)\s+[\w.]+: (.*)$")
    return [m.group(1) for m in map(line.match, log.splitlines()) if m]


def test_run_loads_and_registers_what_profile_recommended_on_a_fake_nvml_rtx3090(
    home: Path,
    models_dir: Path,
    devnet: LocalDevnet,
    fake_rtx3090: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    passphrase = _home(home, models_dir, devnet, f'model = "{BUNDLED}"\n')
    assert main(["profile", "--json"]) == 0
    profiled = json.loads(capsys.readouterr().out)
    gpu = profiled["hardware"]["gpus"][0]
    assert gpu["name"] == "NVIDIA GeForce RTX 3090" and gpu["memory_bandwidth_bytes_per_s"] > 9e11
    rec = profiled["recommendation"]
    assert rec["model_id"] == BUNDLED and rec["n_gpu_layers"] == 31  # all 30 layers + output
    assert rec["tier"] == "gpu-quantized"

    args = ["run", "--headless", "--role", "miner", "--passphrase-file", str(passphrase)]
    assert main([*args, "--duration", "1"]) == 0
    lines = _messages(capsys.readouterr().err)
    headline = next(i for i, line in enumerate(lines) if line.startswith("plan (fit): "))
    assert headline < next(i for i, line in enumerate(lines) if "registered" in line)
    file_name = load_catalogue().require(BUNDLED).quant(rec["quant"])
    assert file_name is not None
    loaded = (
        f"loading {file_name.file_name} (ctx {rec['n_ctx']}, {rec['n_threads']} thread(s), "
        f"{rec['n_gpu_layers']} GPU layers)"
    )
    assert loaded in lines, [line for line in lines if line.startswith("loading")]
    steady = [r for r in rec["reasons"] if "GiB" not in r]  # free RAM moves between the two
    assert steady and all(f"  why: {reason}" in lines for reason in steady)

    client = connect(devnet.chain_id, [devnet.rpc_url], devnet.contracts)
    miners = [client.registry.miner_at(i) for i in range(client.registry.miner_count())]
    assert len(miners) == 1
    info = client.registry.node_info(miners[0])
    planned = lines[headline]
    assert info.tier == Tier.GPU_QUANTIZED
    assert f"registers tier gpu-quantized with {info.memory_mb} MiB" in planned
    gib = 1024**3
    assert 20 * gib < info.memory_mb * 1024**2 < 24 * gib  # the 3090's free VRAM less the margin
    assert client.registry.models_of(miners[0]) == [model_id(BUNDLED)]


def test_an_override_that_cannot_fit_is_exit_7_with_the_fits_reason(
    home: Path,
    models_dir: Path,
    devnet: LocalDevnet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    passphrase = _home(home, models_dir, devnet, f'model = "{BUNDLED}"\nctx = 16384\n')
    client = connect(devnet.chain_id, [devnet.rpc_url], devnet.contracts)
    before = client.registry.miner_count()
    args = ["run", "--headless", "--role", "miner", "--passphrase-file", str(passphrase)]
    assert main([*args, "--duration", "1"]) == 7
    err = capsys.readouterr().err
    assert "ctx 16384 is over smollm2-135m-instruct's context limit of 8192" in err
    assert "Traceback" not in err
    assert client.registry.miner_count() == before  # refused before anything registered


def test_a_plan_model_that_fails_verification_is_exit_6_and_nothing_registers(
    home: Path,
    tmp_path: Path,
    models_dir: Path,
    devnet: LocalDevnet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damaged_dir = tmp_path / "damaged-models"
    damaged_dir.mkdir()
    variant = load_catalogue().require(BUNDLED).quants[0]
    damaged = damaged_dir / variant.file_name
    shutil.copyfile((models_dir / variant.file_name).resolve(), damaged)
    with damaged.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 64)
    passphrase = _home(home, damaged_dir, devnet, f'model = "{BUNDLED}"\n')
    client = connect(devnet.chain_id, [devnet.rpc_url], devnet.contracts)
    before = client.registry.miner_count()
    args = ["run", "--headless", "--role", "miner", "--passphrase-file", str(passphrase)]
    assert main([*args, "--duration", "1"]) == 6
    err = capsys.readouterr().err
    assert "sha256" in err and "Traceback" not in err
    assert client.registry.miner_count() == before


def test_the_embedded_network_runs_the_bundled_model_and_registers_the_machines_plan(
    tmp_path: Path, models_dir: Path
) -> None:
    from engine.host.embedded_network import EmbeddedNetwork, EmbeddedNetworkSettings
    from engine.host.plan import PlanInputs, embedded_plan, make_plan
    from engine.state.database import Database
    from engine.state.events import EventBus
    from profiler.hardware import load_hardware_file

    catalogue = load_catalogue()
    recorded = Path(__file__).resolve().parents[1] / "profiler" / "recorded"
    rtx4090 = load_hardware_file(recorded / "workstation_64gb_rtx4090_recorded.json")
    machine = make_plan(PlanInputs(rtx4090, catalogue))  # llama-3.1-8b Q8_0 on the GPU
    plan = embedded_plan(machine, catalogue.require(BUNDLED), 1024)
    network = EmbeddedNetwork(
        Database(tmp_path / "node.sqlite3"),
        models_dir,
        EventBus(),
        EmbeddedNetworkSettings(miners=1, plan=plan),
    )
    network.start(threads=False)
    try:
        miner = network.miners[0]
        info = miner.client.registry.node_info(miner.address)
        assert (info.tier, info.memory_mb) == (machine.tier, machine.memory_mb)
        assert miner.client.registry.models_of(miner.address) == [model_id(BUNDLED)]
        assert [w.settings.n_ctx for _, w in network.workers][:2] == [1024, 1024]
        assert network.workers[0][1].settings.n_gpu_layers == 31  # the bundled model, on the GPU
        # A reload re-plans: another machine's tier and memory, the same bundled model.
        vps = load_hardware_file(recorded / "vps_4gb_2core_recorded.json")
        cpu_machine = make_plan(PlanInputs(vps, catalogue))
        assert network.replan(embedded_plan(cpu_machine, catalogue.require(BUNDLED), 1024))
        miner.step()  # takes the new spec between two steps
        info = miner.client.registry.node_info(miner.address)
        assert (info.tier, info.memory_mb) == (cpu_machine.tier, cpu_machine.memory_mb)
        assert network.plan is not None and network.plan.tier == cpu_machine.tier
    finally:
        network.stop()
