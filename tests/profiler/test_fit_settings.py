"""The [fit] config section becomes the fit's settings; benchmark rows become measured figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cortensor_desktop.config import ConfigError, load_config
from profiler.fit import Benchmark, FitSettings, benchmarks_from_rows
from profiler.hardware import GIB


def test_defaults_match_the_documented_rules(tmp_path: Path) -> None:
    settings = load_config(tmp_path / "absent.toml", environ={}).config.fit.to_fit_settings()
    assert settings == FitSettings()
    assert settings.ram_buffer_pct == 20 and settings.speed_floor_tps == 5
    assert settings.gpu_margin_bytes == GIB and settings.quant_floor == "Q4_0"
    assert (
        settings.load.n_batch == 512 and settings.load.kv_type == "f16" and settings.load.use_mmap
    )


def test_overrides_from_the_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[fit]\nmodel = 'llama-3.2-3b-instruct'\nquant = 'Q8_0'\nctx = 4096\ngpu_layers = 0\n"
        "threads = 3\ngpu_index = 1\nram_cap_gib = 6\nvram_cap_gib = 7.5\nload_anyway = true\n",
        encoding="utf-8",
    )
    env = {"CORTENSOR_FIT__RAM_BUFFER_PCT": "35", "CORTENSOR_FIT__THREAD_BUDGET": "2"}
    s = load_config(path, environ=env).config.fit.to_fit_settings()
    assert (s.model, s.quant, s.n_ctx, s.n_gpu_layers, s.n_threads, s.gpu_index) == (
        "llama-3.2-3b-instruct",
        "Q8_0",
        4096,
        0,
        3,
        1,
    )
    assert s.ram_cap_bytes == 6 * GIB and s.vram_cap_bytes == int(7.5 * GIB)
    assert s.load_anyway and s.ram_buffer_pct == 35 and s.thread_budget == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fit]\nquant_floor = 'Q1'\n", "expected one of"),
        ("[fit]\nram_buffer_pct = 95\n", "expected at most 90"),
        ("[fit]\ngpu_layers = -2\n", "expected at least -1"),
        ("[fit]\nturbo = true\n", "unknown key"),
    ],
)
def test_bad_fit_values_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_benchmark_rows_latest_wins_and_junk_is_skipped() -> None:
    rows = [
        ("llama-3.2-1b-instruct", "q4_k_m", json.dumps({"gen_tokens_per_s": 9.0})),
        ("llama-3.2-1b-instruct", "Q4_K_M", json.dumps({"gen_tokens_per_s": 11.5})),
        ("smollm2-135m-instruct", "Q4_1", "not json"),
        ("smollm2-135m-instruct", "Q4_1", json.dumps({"prompt_tokens_per_s": 150})),
        ("gemma-3-4b-it", "Q6_K", {"gen_tokens_per_s": 4.2}),
    ]
    assert set(benchmarks_from_rows(rows)) == {
        Benchmark("llama-3.2-1b-instruct", "Q4_K_M", 11.5),
        Benchmark("gemma-3-4b-it", "Q6_K", 4.2),
    }
