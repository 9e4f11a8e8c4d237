"""The self-test's steps, in order: folders, assets, hardware, worker, llama, chain, ui.

Every step imports what it exercises inside its function, so a frozen build that misses a
library fails that step by name instead of failing to start, and `--help` stays fast.
When the engine's runtime and the chain client exist, `llama` and `chain` should call them
(a model load through the runtime, a transfer through the client) instead of the libraries.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import math
import os
import platform
from pathlib import Path
from typing import Any, ClassVar

from cortensor_desktop.selftest import SelfTestContext, SelfTestError, Step, StepOutcome

# What llama.cpp's system info calls a CPU feature -> the flag /proc/cpuinfo uses for it.
_LLAMA_FEATURE_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
}
_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


# --- folders ---------------------------------------------------------------------------------


def check_folders(ctx: SelfTestContext) -> StepOutcome:
    """The app's folders (or CORTENSOR_HOME) exist or can be created, and are writable."""
    from cortensor_desktop.paths import resolve_paths

    paths = resolve_paths()
    paths.ensure()
    for folder in (paths.config_dir, paths.data_dir, paths.cache_dir, paths.log_dir):
        probe = folder / f".selftest-{os.getpid()}"
        probe.write_text("ok", encoding="utf-8")
        if probe.read_text(encoding="utf-8") != "ok":
            raise SelfTestError(f"{folder} does not read back what was written")
        probe.unlink()
    where = str(paths.home) if paths.home else str(paths.data_dir)
    return StepOutcome(
        f"writable: {where}",
        {
            "home": str(paths.home) if paths.home else None,
            "config_dir": str(paths.config_dir),
            "data_dir": str(paths.data_dir),
        },
    )


# --- assets ----------------------------------------------------------------------------------


def check_assets(ctx: SelfTestContext) -> StepOutcome:
    """The shipped data is there (a frozen build finds it under sys._MEIPASS) and parses."""
    import json

    from assets import assets_dir
    from profiler.catalogue import load_catalogue

    root = assets_dir()
    documents = sorted(root.rglob("*.json"))
    for document in documents:
        try:
            json.loads(document.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SelfTestError(f"{document}: {exc}") from None
    catalogue = load_catalogue()
    contracts = [d.stem for d in documents if d.parent.name == "contracts"]
    return StepOutcome(
        f"{len(catalogue.models)} catalogue models, {len(contracts)} contract artifacts",
        {
            "assets_dir": str(root),
            "models": [m.id for m in catalogue.models],
            "contracts": contracts,
            "json_files": len(documents),
        },
    )


# --- hardware --------------------------------------------------------------------------------


def read_cpu_flags() -> frozenset[str] | None:
    """CPU feature flags in /proc/cpuinfo spelling, or None where this OS does not say."""
    system = platform.system()
    try:
        if system == "Linux":
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
            return None
        if system == "Darwin" and platform.machine().lower() in _X86:
            import subprocess

            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            flags = {f.lower().replace(".", "_") for f in out.split()}
            if "sse3" in flags:
                flags.add("pni")
            if "avx1_0" in flags:
                flags.add("avx")
            return frozenset(flags)
        if system == "Windows":
            import ctypes

            present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
            # PF_SSE3 = 13, PF_SSSE3 = 36, PF_AVX = 39, PF_AVX2 = 40, PF_AVX512F = 41.
            known = {"pni": 13, "ssse3": 36, "avx": 39, "avx2": 40, "avx512f": 41}
            reported = frozenset(name for name, code in known.items() if present(code))
            # Windows before 10 2004 does not know codes 39-41 and answers False for all three:
            # treat that as unknown rather than claim a capable CPU lacks AVX.
            return reported if reported & {"avx", "avx2", "avx512f"} else None
    except (OSError, ValueError, AttributeError):
        return None
    return None


def missing_cpu_features(
    llama_system_info: str, cpu_flags: frozenset[str] | None, machine: str
) -> list[str]:
    """The CPU features this llama.cpp build was compiled for that this CPU lacks (pure).

    Empty when nothing is missing or when the CPU's flags are unknown (no false alarms).
    Flags Windows cannot report (F16C, FMA, BMI2) are not held against it.
    """
    if cpu_flags is None or machine.lower() not in _X86:
        return []
    compiled = {
        part.split("=")[0].strip()
        for part in llama_system_info.split("|")
        if part.strip().endswith("= 1")
    }
    checkable = (
        {"SSE3", "SSSE3", "AVX", "AVX2", "AVX512"}
        if platform.system() == "Windows"
        else set(_LLAMA_FEATURE_FLAGS)
    )
    return sorted(
        feature
        for feature in compiled & checkable
        if _LLAMA_FEATURE_FLAGS.get(feature, "") not in cpu_flags
    )


def _basic_probe() -> dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    flags = read_cpu_flags()
    facts: dict[str, Any] = {
        "source": "psutil",
        "system": platform.system(),
        "machine": platform.machine(),
        "logical_cpus": psutil.cpu_count(logical=True),
        "physical_cpus": psutil.cpu_count(logical=False),
        "memory_total_bytes": memory.total,
        "memory_available_bytes": memory.available,
        "avx2": None if flags is None else "avx2" in flags,
    }
    if not facts["logical_cpus"] or memory.total <= 0:
        raise SelfTestError(f"the hardware probe returned nonsense: {facts}")
    return facts


def summarise_probe(facts: dict[str, Any]) -> str:
    """One line from the profiler's Hardware.to_json(), tolerant of fields it may not have."""
    raw_cpu, raw_memory = facts.get("cpu"), facts.get("memory")
    cpu: dict[str, Any] = raw_cpu if isinstance(raw_cpu, dict) else {}
    memory: dict[str, Any] = raw_memory if isinstance(raw_memory, dict) else {}
    parts = ["profiler.probe:"]
    if cpu.get("brand"):
        parts.append(str(cpu["brand"]))
    if cpu.get("logical_cores"):
        parts.append(f"{cpu['logical_cores']} logical CPUs")
    if isinstance(memory.get("total_bytes"), int):
        parts.append(f"{memory['total_bytes'] / 2**30:.1f} GiB RAM")
    parts.append(f"{len(facts.get('gpus') or [])} GPU(s)")
    return ", ".join([parts[0] + " " + parts[1], *parts[2:]])


def check_hardware(ctx: SelfTestContext) -> StepOutcome:
    """The profiler's probe when it exists, else a basic psutil probe."""
    try:
        probe_module = importlib.import_module("profiler.probe")
    except ImportError:
        probe_module = None
    if probe_module is not None and hasattr(probe_module, "probe"):
        hardware = probe_module.probe()
        facts = hardware.to_json() if hasattr(hardware, "to_json") else {"repr": repr(hardware)}
        warnings: list[str] = []
        with contextlib.suppress(ImportError, AttributeError):
            hardware_module = importlib.import_module("profiler.hardware")
            warnings = list(hardware_module.hardware_warnings(hardware))
        facts = {"source": "profiler.probe", "warnings": warnings, **facts}
        detail = summarise_probe(facts)
        if facts.get("warnings"):
            detail += f"; warnings: {'; '.join(map(str, facts['warnings']))}"
        return StepOutcome(detail, facts)
    facts = _basic_probe()
    gib = facts["memory_total_bytes"] / 2**30
    return StepOutcome(
        f"{facts['logical_cpus']} logical CPUs, {gib:.1f} GiB RAM, "
        f"{facts['system']} {facts['machine']}, AVX2 "
        f"{ {True: 'yes', False: 'no', None: 'unknown'}[facts['avx2']] }",
        facts,
    )


# --- worker process --------------------------------------------------------------------------


def _report_from_child(queue: Any) -> None:
    """Runs in the spawned child: say who we are. Module-level, so 'spawn' can import it."""
    import sys

    queue.put({"pid": os.getpid(), "frozen": bool(getattr(sys, "frozen", False))})


def check_worker_process(ctx: SelfTestContext) -> StepOutcome:
    """A 'spawn' child process starts and reports back, as the inference worker and py-cpuinfo
    need. In a frozen build this only works when __main__ calls multiprocessing.freeze_support().
    """
    import multiprocessing
    import queue as queue_module
    import time

    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    start = time.perf_counter()
    child = context.Process(target=_report_from_child, args=(channel,), daemon=True)
    child.start()
    try:
        report = channel.get(timeout=60)
    except queue_module.Empty:
        child.kill()
        raise SelfTestError(
            "a spawned child process did not report back within 60s "
            "(a frozen build whose entry point lacks multiprocessing.freeze_support()?)"
        ) from None
    child.join(10)
    took = time.perf_counter() - start
    if child.exitcode != 0:
        raise SelfTestError(f"the spawned child process exited with {child.exitcode}")
    if report["pid"] == os.getpid():
        raise SelfTestError("the 'child' reported the parent's process id")
    return StepOutcome(
        f"spawned a child process that reported back in {took:.2f}s",
        {"child_pid": report["pid"], "child_frozen": report["frozen"], "seconds": round(took, 3)},
    )


# --- llama.cpp -------------------------------------------------------------------------------


_llama_log_callbacks: list[object] = []  # llama.cpp keeps only the pointer: hold the callback


def _route_llama_logs(llama_cpp: Any) -> None:
    """llama.cpp's own lines go to the debug log, not to the CLI's stderr (the worker does the
    same for its process); `--log-level debug` shows them."""
    if _llama_log_callbacks:
        return
    logger = logging.getLogger("llama.cpp")

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace").rstrip("\n")
        if line.strip(". "):
            logger.debug("%s", line)

    _llama_log_callbacks.append(callback)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def check_llama(ctx: SelfTestContext) -> StepOutcome:
    """Write a tiny GGUF, generate greedily, read the logits back as likelihoods, embed."""
    import llama_cpp
    import numpy as np

    from cortensor_desktop.selftest.tiny_gguf import write_tiny_llama

    system_info = llama_cpp.llama_print_system_info()
    if isinstance(system_info, bytes):
        system_info = system_info.decode("utf-8", "replace")
    missing = missing_cpu_features(system_info, read_cpu_flags(), platform.machine())
    if missing:
        raise SelfTestError(
            f"this CPU lacks {', '.join(missing)}, which this llama.cpp build needs "
            "(loading a model would crash); see docs/INSTALL.md, 'CPU baseline'"
        )

    _route_llama_logs(llama_cpp)
    model_path = write_tiny_llama(ctx.scratch / "selftest-tiny.gguf")
    llm = llama_cpp.Llama(
        model_path=str(model_path), n_ctx=128, n_threads=1, seed=7, logits_all=True, verbose=False
    )
    prompt = llm.tokenize(b"hello world, the node")
    generated: list[int] = []
    for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        generated.append(int(token))
        if len(generated) == 8:
            break
    if len(generated) < 8:
        raise SelfTestError(f"generation stopped after {len(generated)} of 8 tokens")

    # Likelihood: the logits of every evaluated position; greedy picks must be their argmax.
    evaluated = llm.n_tokens
    scores = np.asarray(llm.scores[:evaluated], dtype=np.float64)
    sequence = [*prompt, *generated][: evaluated + 1]
    log_likelihood = 0.0
    for position in range(1, len(sequence)):
        row = scores[position - 1]
        peak = row.max()
        log_likelihood += float(row[sequence[position]] - peak - np.log(np.exp(row - peak).sum()))
    for i, token in enumerate(generated[:-1]):
        best = int(scores[len(prompt) - 1 + i].argmax())
        if best != token:
            raise SelfTestError(f"greedy token {i} is {token} but the logits' argmax is {best}")
    if not math.isfinite(log_likelihood) or log_likelihood >= 0:
        raise SelfTestError(f"log-likelihood {log_likelihood} is not a finite negative number")
    llm.close()

    embedder = llama_cpp.Llama(
        model_path=str(model_path),
        n_ctx=128,
        n_threads=1,
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        verbose=False,
    )
    first, second, again = (
        np.asarray(embedder.embed(text), dtype=np.float64)
        for text in ("hello world", "the node", "hello world")
    )
    embedder.close()
    if first.shape != (64,) or not np.all(np.isfinite(first)) or np.linalg.norm(first) == 0:
        raise SelfTestError(f"the embedding is malformed: shape {first.shape}")
    if not np.allclose(first, again):
        raise SelfTestError("the same text embedded twice gave different vectors")
    cosine = float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second)))
    if cosine > 0.999999:
        raise SelfTestError("two different texts gave the same embedding")
    return StepOutcome(
        f"tiny GGUF: generated {len(generated)} tokens, log-likelihood "
        f"{log_likelihood:.2f} over {len(sequence) - 1} tokens, embedding dim {first.shape[0]}",
        {
            "llama_cpp_version": getattr(llama_cpp, "__version__", None),
            "system_info": system_info.strip(),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "generated_tokens": generated,
            "log_likelihood": round(log_likelihood, 4),
            "embedding_dim": int(first.shape[0]),
            "embedding_cosine": round(cosine, 6),
        },
    )


# --- chain -----------------------------------------------------------------------------------


def check_chain(ctx: SelfTestContext) -> StepOutcome:
    """One ETH transfer between two dev accounts on the in-process chain; check the receipt."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3

    w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    accounts = list(w3.eth.accounts)
    sender, receiver = accounts[0], accounts[1]
    value = w3.to_wei(1, "ether")
    before = w3.eth.get_balance(receiver)
    tx_hash = w3.eth.send_transaction(
        {"from": sender, "to": receiver, "value": value, "gas": 21000}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)
    if receipt["status"] != 1:
        raise SelfTestError(f"the transfer's receipt has status {receipt['status']}, not 1")
    received = w3.eth.get_balance(receiver) - before
    if received != value:
        raise SelfTestError(f"the receiver got {received} wei instead of {value}")
    return StepOutcome(
        f"transfer of 1 ETH mined in block {receipt['blockNumber']}, status 1",
        {
            "chain_id": w3.eth.chain_id,
            "block": receipt["blockNumber"],
            "gas_used": receipt["gasUsed"],
        },
    )


# --- UI --------------------------------------------------------------------------------------


def check_ui(ctx: SelfTestContext) -> StepOutcome:
    """Mount a Textual screen headless, with the widgets the dashboard uses (lazily imported)."""
    import asyncio

    from textual.app import App, ComposeResult
    from textual.binding import BindingType
    from textual.widgets import DataTable, Footer, Header, Log, ProgressBar, Static

    class SelfTestApp(App[None]):
        TITLE = "cortensor-desktop self-test"
        BINDINGS: ClassVar[list[BindingType]] = [("q", "quit", "Quit")]

        def compose(self) -> ComposeResult:
            yield Header()
            yield Static("self-test", id="banner")
            yield ProgressBar(total=4, id="progress")
            yield DataTable(id="table")
            yield Log(id="log")
            yield Footer()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("step", "status")
            table.add_row("ui", "ok")
            self.query_one(Log).write_line("mounted")
            self.query_one(ProgressBar).advance(4)

    async def drive() -> dict[str, Any]:
        app = SelfTestApp()
        async with app.run_test(headless=True, size=(80, 24)) as pilot:
            await pilot.pause()
            table = app.query_one(DataTable)
            facts = {
                "screen": type(app.screen).__name__,
                "widgets": len(list(app.screen.walk_children())),
                "table_rows": table.row_count,
                "progress": app.query_one(ProgressBar).percentage,
                "size": list(app.size),
            }
            await pilot.press("q")
        return facts

    facts = asyncio.run(drive())
    # run_test uses the headless driver; a real terminal needs the platform's driver, which
    # Textual imports only when the app starts, so check that this build carries it.
    facts["driver"] = SelfTestApp().get_driver_class().__name__
    if facts["table_rows"] != 1 or facts["progress"] != 1.0:
        raise SelfTestError(f"the screen did not render what it was given: {facts}")
    import textual

    facts["textual_version"] = getattr(textual, "__version__", None)
    return StepOutcome(f"headless screen mounted, {facts['widgets']} widgets", facts)


def check_self_spawn(ctx: SelfTestContext) -> StepOutcome:
    """The app starts itself as a child (devnet nodes, `--detach`), frozen build or not."""
    import subprocess

    from cortensor_desktop import APP_NAME, __version__
    from cortensor_desktop.launch import app_command, is_frozen

    command = app_command("--version")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    first = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not first.startswith(f"{APP_NAME} {__version__}"):
        raise SelfTestError(
            f"starting the app as a child failed ({' '.join(command)}: exit {proc.returncode}, "
            f"{(proc.stderr or proc.stdout).strip()[-200:]})"
        )
    return StepOutcome(first, {"frozen": is_frozen(), "argv": command[1:]})


DEFAULT_STEPS: list[Step] = [
    Step("folders", "the app's folders exist and are writable", check_folders, timeout_s=15),
    Step("assets", "the shipped catalogue and contract artifacts load", check_assets, 15),
    Step("hardware", "probe the CPU, memory and GPUs", check_hardware, timeout_s=30),
    Step("worker", "a worker process starts (multiprocessing spawn)", check_worker_process, 90),
    Step("spawn", "the app starts itself as a child process", check_self_spawn, timeout_s=90),
    Step("llama", "write a tiny GGUF; generate, score, embed", check_llama, timeout_s=120),
    Step("chain", "one transaction on the in-process chain", check_chain, timeout_s=90),
    Step("ui", "mount the Textual UI headless", check_ui, timeout_s=60),
]
