"""The real CLI (a fresh interpreter each) for models, generate, embed and bench."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.state.database import Database

pytestmark = pytest.mark.llama


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # the models folder is shared by every home by default: keep the test's own
    return {"CORTENSOR_MODELS__DIR": str(tmp_path / "models"), "CORTENSOR_INFERENCE__THREADS": "1"}


def test_models_list_pull_verify_rm(cli, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    listed = cli("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)["models"]}
    assert rows["smollm2-135m-instruct"]["installed"] is False
    assert rows["smollm2-135m-instruct"]["quant"] == "Q4_1"
    assert rows["all-minilm-l6-v2-22m"]["kind"] == "embedding"
    assert "fits" in rows["smollm2-135m-instruct"]

    pulled = cli("models", "pull", "smollm2-135m-instruct", "--json", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["linked"] is True

    verified = cli("models", "verify", "--json", env=env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True

    text = cli("models", "list", env=env)
    (line,) = [x for x in text.stdout.splitlines() if x.startswith("smollm2-135m-instruct")]
    assert "yes, sha256" in line  # installed, checked against the catalogue's sha256

    removed = cli("models", "rm", "smollm2-135m-instruct", env=env)
    assert removed.returncode == 0 and "removed" in removed.stdout

    unknown = cli("models", "pull", "no-such-model", env=env)
    assert unknown.returncode == 6
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr


def test_models_list_has_a_row_per_quant_that_agrees_with_profile(  # type: ignore[no-untyped-def]
    cli, env: dict[str, str]
) -> None:
    from profiler.catalogue import load_catalogue

    listed = cli("models", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["models"]
    catalogue = load_catalogue()
    assert [(r["id"], r["quant"]) for r in rows] == [
        (m.id, q.quant) for m in catalogue.models for q in m.quants
    ]
    profile = json.loads(cli("profile", "--json", env=env).stdout)["recommendation"]
    by_key = {(r["id"], r["quant"]): r for r in rows}
    chosen = by_key[(profile["model_id"], profile["quant"])]
    assert chosen["fits"] is True and chosen["fast_enough"] is not False, chosen
    for reason in profile["reasons"]:  # what profile skipped for speed is not a plain "yes"
        if reason.startswith("skipped ") and "below the floor" in reason:
            skipped = reason.split()[1]
            assert not any(r["fits"] and r["fast_enough"] for r in rows if r["id"] == skipped), (
                skipped
            )
    text = cli("models", "list", env=env).stdout
    unknown = [r for r in rows if r["size_bytes"] is None]
    assert unknown and all(
        line.split()[3] == "unknown"
        for line in text.splitlines()
        for r in unknown
        if line.split()[:3] == [r["id"], r["kind"], r["quant"]]
    )
    assert "?" not in {line.split()[3] for line in text.splitlines()[1:-1]}


def test_generate_json_installs_the_default_and_is_deterministic(  # type: ignore[no-untyped-def]
    cli, env: dict[str, str]
) -> None:
    prompt = "What is the capital of France? Answer in one sentence."
    first = cli("generate", prompt, "--json", env=env)
    assert first.returncode == 0, first.stderr
    document = json.loads(first.stdout)
    assert "Paris" in document["text"]
    assert document["model"] == "smollm2-135m-instruct"
    assert document["figures"]["generated_tokens"] > 0
    assert document["figures"]["tokens_per_s"] > 0
    assert "using smollm2-135m-instruct" in first.stderr and "installing" in first.stderr
    # says why: the fit's recommendation, or that it is not installed and how to install it
    assert (
        "recommended for this machine" in first.stderr
        or "is recommended here but not installed" in first.stderr
    )
    second = cli("generate", prompt, "--json", env=env)
    assert json.loads(second.stdout)["text"] == document["text"]
    assert "installing" not in second.stderr


def test_bad_model_files_exit_6_with_one_line(  # type: ignore[no-untyped-def]
    cli, env: dict[str, str], tmp_path: Path, smollm_path: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm_path.read_bytes()[:20_000_000])
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(os.urandom(100_000))
    for path, words in ((truncated, "truncated"), (garbage, "not a GGUF")):
        result = cli("generate", "hi", "--model", str(path), env=env)
        assert result.returncode == 6, result.stderr
        assert words in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr


def test_embed_json(cli, env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result = cli("embed", "The capital of France is Paris.", "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["dim"] == len(document["embedding"]) == 384
    assert abs(sum(x * x for x in document["embedding"]) - 1.0) < 1e-6


def test_bench_stores_its_result(cli, env: dict[str, str], home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("bench", "--runs", "2", "--tokens", "16", "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["gen_tokens_per_s"] > 0 and document["prompt_tokens_per_s"] > 0
    assert len(document["output_sha256"]) == 64
    assert document["peak_rss_bytes"] > 50 * 2**20
    again = json.loads(cli("bench", "--runs", "1", "--tokens", "16", "--json", env=env).stdout)
    assert again["output_sha256"] == document["output_sha256"]
    from cortensor_desktop.paths import DATABASE_FILE_NAME

    database = Database(home / "data" / DATABASE_FILE_NAME)
    rows = database.query("SELECT model_id, quant, result FROM benchmarks ORDER BY id")
    database.close()
    assert [(r["model_id"], r["quant"]) for r in rows] == [("smollm2-135m-instruct", "Q4_1")] * 2
    stored = json.loads(rows[0]["result"])
    assert stored["gen_tokens_per_s"] == document["gen_tokens_per_s"]
