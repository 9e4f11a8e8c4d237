"""The real llama.cpp worker with the bundled SmolLM2: determinism, streaming, cancel, crashes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from engine.errors import (
    CorruptModelError,
    DeadlineExceededError,
    InferenceRequestError,
    UnsupportedModelError,
)
from engine.inference.runtime import (
    InferenceWorker,
    SamplingParams,
    WorkerOptions,
    smaller_settings,
)
from profiler.load_settings import LoadSettings

pytestmark = pytest.mark.llama

STORY = "Write a long story about a dragon who learns to bake bread."


def test_generation_twice_gives_the_same_text(chat_worker: InferenceWorker) -> None:
    first = chat_worker.generate("What is the capital of France? Answer in one sentence.")
    second = chat_worker.generate("What is the capital of France? Answer in one sentence.")
    assert first.text == second.text
    assert "Paris" in first.text
    assert first.finish_reason == "stop"
    figures = first.figures
    assert figures.prompt_tokens > 10
    assert figures.generated_tokens == len(first.token_ids) > 3
    assert 0 < figures.ttft_s < figures.total_s
    assert figures.tokens_per_s > 5 and figures.prompt_tokens_per_s > 5


def test_stream_yields_the_tokens_of_the_result(chat_worker: InferenceWorker) -> None:
    stream = chat_worker.stream(STORY, SamplingParams(max_tokens=24))
    events = list(stream)
    result = stream.result
    assert result.finish_reason == "length"
    assert [e.token_id for e in events] == list(result.token_ids)
    assert "".join(e.text for e in events) == result.text
    assert [e.index for e in events] == list(range(24))


def test_cancel_mid_stream_ends_the_stream_promptly(chat_worker: InferenceWorker) -> None:
    stream = chat_worker.stream(STORY, SamplingParams(max_tokens=1000))
    seen = 0
    cancelled_at = 0.0
    for _ in stream:
        seen += 1
        if seen == 5:
            cancelled_at = time.monotonic()
            chat_worker.cancel()
    ended_after = time.monotonic() - cancelled_at
    assert stream.result.finish_reason == "cancelled"
    assert ended_after < 2.0
    assert seen < 50
    # the worker serves the next request normally
    assert chat_worker.generate("Say hello.", SamplingParams(max_tokens=8)).text


def test_cancel_from_another_thread(chat_worker: InferenceWorker) -> None:
    timer = threading.Timer(0.3, chat_worker.cancel)
    timer.start()
    started = time.monotonic()
    result = chat_worker.generate(STORY, SamplingParams(max_tokens=2000, ignore_eos=True))
    assert result.finish_reason == "cancelled"
    assert time.monotonic() - started < 2.3


def test_deadline_ends_generation_with_what_was_made(chat_worker: InferenceWorker) -> None:
    # 2000 tokens take about 30 s here; a 2 s deadline cuts them, and leaves a loaded machine
    # time for the prompt and the first tokens (at 0.4 s a busy CI core produced none).
    params = SamplingParams(max_tokens=2000, ignore_eos=True, deadline_s=2.0)
    result = chat_worker.generate(STORY, params)
    assert result.finish_reason == "deadline"
    assert 0 < result.figures.generated_tokens < 2000
    assert result.figures.total_s < 3.5


def test_sampling_with_a_seed_is_reproducible(chat_worker: InferenceWorker) -> None:
    params = SamplingParams(max_tokens=24, temperature=0.9, seed=7)
    assert chat_worker.generate(STORY, params).text == chat_worker.generate(STORY, params).text


def test_stop_strings_cut_the_text(chat_worker: InferenceWorker) -> None:
    result = chat_worker.generate(STORY, SamplingParams(max_tokens=200, stop=(".",)))
    assert result.finish_reason == "stop"
    assert "." not in result.text


def test_likelihood_of_the_model_s_own_answer_and_of_a_canned_one(
    chat_worker: InferenceWorker,
) -> None:
    prompt = "What is the capital of France? Answer in one sentence."
    answer = chat_worker.generate(prompt)
    own = chat_worker.score_likelihood(prompt, answer.text)
    assert [t.token_id for t in own.tokens] == list(answer.token_ids)
    assert own.top1_rate >= 0.8
    assert own.ends_properly
    assert all(t.logprob <= 0 for t in own.tokens)
    # The top token's log-probability and the answer token's rank come with every score.
    for token in own.tokens:
        assert token.top_logprob >= token.logprob
        assert (token.rank == 1) == token.top1 == (token.gap == 0.0)
    assert own.end_top_logprob >= own.end_logprob
    canned = chat_worker.score_likelihood(prompt, "Bananas are yellow and trains run on time")
    assert canned.top1_rate < 0.5
    assert canned.mean_logprob < own.mean_logprob
    misses = [t for t in canned.tokens if not t.top1]
    assert all(t.rank >= 2 and t.gap > 0 for t in misses)
    assert max(t.gap for t in misses) > 1.0  # another text than the model's: far from the top
    truncated = chat_worker.score_likelihood(prompt, "The capital of France")
    assert not truncated.ends_properly


def test_scoring_several_answers_shares_the_prompt_and_common_prefixes(
    chat_worker: InferenceWorker,
) -> None:
    prompt = "Name three colours of the rainbow."
    own = chat_worker.generate(prompt).text
    words = own.split()
    drifted = " ".join([*words[: len(words) // 2], "and", "also", "purple."])
    alone = [chat_worker.score_likelihood(prompt, text) for text in (own, drifted)]
    together = chat_worker.score_many(prompt, [own, "", own, drifted])
    assert together[1] is None  # nothing to score
    first, _, again, shared = together
    assert first is not None and again is not None and shared is not None
    assert again == first  # a second miner of the same build costs nothing more
    for separate, batched in ((alone[0], first), (alone[1], shared)):
        assert [t.token_id for t in batched.tokens] == [t.token_id for t in separate.tokens]
        assert [t.top_token_id for t in batched.tokens] == [t.top_token_id for t in separate.tokens]
        for a, b in zip(batched.tokens, separate.tokens, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
            assert a.rank == b.rank
        assert batched.end_logprob == pytest.approx(separate.end_logprob, abs=1e-3)


def test_embedding_on_a_chat_model_is_a_typed_error(chat_worker: InferenceWorker) -> None:
    with pytest.raises(InferenceRequestError, match="chat model"):
        chat_worker.embed(["hello"])


def test_bad_files_give_typed_errors_and_the_worker_keeps_serving(
    chat_worker: InferenceWorker, smollm_path: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm_path.read_bytes()[:30_000_000])
    random_bytes = tmp_path / "random.gguf"
    random_bytes.write_bytes(os.urandom(1_000_000))
    with pytest.raises(CorruptModelError, match="truncated"):
        chat_worker.load(truncated)
    with pytest.raises(CorruptModelError, match="not a GGUF"):
        chat_worker.load(random_bytes)
    assert chat_worker.load_report is not None
    assert chat_worker.load_report.model_path == str(smollm_path)
    assert chat_worker.generate("Say hello.", SamplingParams(max_tokens=8)).text


def test_wrong_architecture_is_unsupported(
    chat_worker: InferenceWorker, tmp_path: Path, smollm_path: Path
) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(str(path), "no-such-architecture")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match="no-such-architecture"):
        chat_worker.load(path)
    assert chat_worker.generate("Say hello.", SamplingParams(max_tokens=4)).text


def test_a_worker_that_dies_is_restarted_and_the_death_reported(smollm_path: Path) -> None:
    options = WorkerOptions(backoff_initial_s=0.1)
    with InferenceWorker(smollm_path, LoadSettings(n_ctx=512), options=options) as worker:
        first_pid = worker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGSEGV)
        time.sleep(0.2)
        result = worker.generate("Say hello.", SamplingParams(max_tokens=4))
        assert result.text
        assert worker.pid != first_pid
        assert worker.deaths[-1].signal_name == "SIGSEGV"
        assert "SIGSEGV" in worker.deaths[-1].describe()

        # a hard stop mid-stream ends the stream at once with "killed", then it restarts
        stream = worker.stream(STORY, SamplingParams(max_tokens=1000, ignore_eos=True))
        for index, _ in enumerate(stream):
            if index == 3:
                worker.kill()
        assert stream.result.finish_reason == "killed"
        assert worker.generate("Say hello.", SamplingParams(max_tokens=4)).text
        assert len(worker.deaths) == 1  # a deliberate stop is not a death


def test_capped_address_space_fails_first_load_and_retries_smaller(smollm_path: Path) -> None:
    with InferenceWorker(smollm_path, LoadSettings(n_ctx=512)) as probe:
        baseline = probe.memory()["VmPeak"]
    options = WorkerOptions(address_space_limit=baseline + 64 * 2**20)
    with InferenceWorker(smollm_path, LoadSettings(n_ctx=8192), options=options) as worker:
        report = worker.load_report
        assert report is not None
        assert report.requested.n_ctx == 8192
        assert report.used.n_ctx < 8192
        assert report.adjustments and "out of memory" in report.adjustments[0]
        assert worker.generate("Say hello.", SamplingParams(max_tokens=4)).text


def test_smaller_settings_ladder() -> None:
    settings = LoadSettings(n_ctx=1024, n_gpu_layers=4)
    steps = []
    current: LoadSettings | None = settings
    while current is not None:
        step = smaller_settings(current, 256)
        if step is None:
            break
        current, _reason = step
        steps.append((current.n_ctx, current.n_gpu_layers))
    assert steps == [(512, 4), (256, 4), (256, 2), (256, 1), (256, 0)]


def test_abandoning_a_stream_stops_the_worker_and_the_next_request_is_clean(
    chat_worker: InferenceWorker,
) -> None:
    stream = chat_worker.stream(STORY, SamplingParams(max_tokens=2000, ignore_eos=True))
    for index, _ in enumerate(stream):
        if index == 2:
            break
    started = time.monotonic()
    del stream  # closes the generator: cancel + drain
    result = chat_worker.generate("Say hello.", SamplingParams(max_tokens=6))
    assert time.monotonic() - started < 2.0
    assert result.figures.generated_tokens <= 6 and result.finish_reason in ("stop", "length")


def test_bad_requests_are_typed_errors_and_the_model_stays(chat_worker: InferenceWorker) -> None:
    with pytest.raises(InferenceRequestError, match="empty"):
        chat_worker.score_likelihood("Hi", "")
    with pytest.raises(InferenceRequestError, match="context"):
        chat_worker.generate("word " * 3000, SamplingParams(max_tokens=4))
    pid = chat_worker.pid
    assert chat_worker.generate("Say hello.", SamplingParams(max_tokens=4)).text
    assert chat_worker.pid == pid


def test_a_stuck_worker_is_stopped_at_its_deadline(smollm_path: Path) -> None:
    options = WorkerOptions(request_grace_s=0.3, backoff_initial_s=0.1)
    with InferenceWorker(smollm_path, LoadSettings(n_ctx=512), options=options) as worker:
        # The deadline leaves a loaded machine time for the first tokens; the worker is then
        # stopped (SIGSTOP) well before it, so only the parent's kill can end the request.
        stream = worker.stream(STORY, SamplingParams(max_tokens=4000, deadline_s=3.0))
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            for index, _ in enumerate(stream):
                if index == 2:
                    assert worker.pid is not None
                    os.kill(worker.pid, signal.SIGSTOP)  # stuck, as if in native code
        assert time.monotonic() - started < 6.0
        assert worker.generate("Say hello.", SamplingParams(max_tokens=4)).text


def test_ctrl_c_to_the_process_group_leaves_the_worker_serving(
    chat_worker: InferenceWorker,
) -> None:
    """A terminal's Ctrl-C signals every process of the group; the parent decides the shutdown."""
    pid = chat_worker.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    result = chat_worker.generate("Say hello.", SamplingParams(max_tokens=4))
    assert chat_worker.pid == pid and result.figures.generated_tokens > 0


def test_scoring_follows_the_split_the_decode_produced(chat_worker: InferenceWorker) -> None:
    """The decode spells this answer " Cor" "io" "b" "ella", the tokenizer " Cor" "i" "ob"
    "ella": scored on the tokenizer's split, an honest answer looked like another model's."""
    prompt = "What is the capital of Italy?"
    answer = chat_worker.generate(prompt, SamplingParams(max_tokens=128))
    scored = chat_worker.score_likelihood(prompt, answer.text)
    assert [t.token_id for t in scored.tokens] == list(answer.token_ids)
    assert "".join(t.text for t in scored.tokens) == answer.text
    assert all(t.gap <= 0.2 for t in scored.tokens)
    assert scored.ends_properly


def test_a_prompt_reuses_the_cached_template_head_and_answers_as_a_fresh_worker_does(
    chat_worker: InferenceWorker, smollm_path: Path
) -> None:
    first, second = "Name a planet.", "Give one tip about sleep."
    chat_worker.generate(first)
    reused = chat_worker.generate(second, SamplingParams(max_tokens=24))
    # The chat template's system text opens both prompts: only the question is decoded again.
    assert reused.figures.prompt_cached_tokens >= 20
    assert reused.figures.prompt_cached_tokens < reused.figures.prompt_tokens
    answer = reused.text
    reused_score = chat_worker.score_likelihood(second, answer)
    with InferenceWorker(smollm_path, LoadSettings(n_ctx=1024, n_threads=1)) as fresh:
        fresh_answer = fresh.generate(second, SamplingParams(max_tokens=24))
        fresh_score = fresh.score_likelihood(second, answer)
    assert fresh_answer.figures.prompt_cached_tokens == 0
    # Kept keys and values are what a fresh decode computes: the same tokens, the same scores.
    assert reused.token_ids == fresh_answer.token_ids
    assert [t.logprob for t in reused_score.tokens] == [t.logprob for t in fresh_score.tokens]
    assert reused_score.end_logprob == fresh_score.end_logprob
