"""The inference worker's side: a process that holds one llama.cpp model and serves requests.

Started by `engine.inference.runtime.InferenceWorker` through multiprocessing's 'spawn' context
with one
duplex pipe and a shared cancel slot. The protocol is tuples of plain values:

parent -> worker                            worker -> parent
("load", path, settings, kind, ...)         ("ready", pid) once; ("log", level, text) any time
("generate", rid, prompt, params, raw)      ("loaded", LoadReport) or ("error", None, kind, msg)
("score", rid, prompt, answer, raw)         ("tokens", rid, [(index, id, text)]) while generating
("score_many", rid, prompt, answers, raw)
("embed", rid, texts) / ("bench", ...)      ("done", rid, result) or ("error", rid, kind, msg)
("memory", rid) / ("shutdown",)

Error kinds: "oom" (load ran out of memory: the parent retries smaller), "corrupt", "unsupported",
"load", "request". Cancellation: the parent writes the request id into the shared slot; the
generation loop reads it after every token (and between prefill chunks), so a cancel costs at
most one decode step. The worker configures no logging of its own: llama.cpp's log callback and a
root-logger handler forward lines over the pipe, and the parent logs them.

Generation uses llama.cpp's low-level API: decode with `llama_batch_get_one` and sample with a
native sampler chain (`llama_sampler_sample`), so no logits are copied into Python per token and
the loop can check cancel, deadline and stop strings between tokens. `bench/inference_overhead.py`
compares it with llama-cpp-python's `Llama.generate`: on par (ratio 0.99 on the 2-core dev VM),
so the gain is control, not speed.
"""

from __future__ import annotations

import codecs
import ctypes
import errno
import hashlib
import logging
import os
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine import failpoints
from engine.errors import CorruptModelError, ModelError, ModelNotFoundError
from engine.inference.types import (
    BenchResult,
    GenerationFigures,
    GenerationResult,
    LikelihoodResult,
    LoadReport,
    SamplingParams,
    TokenScore,
)
from engine.models.gguf_check import check_gguf
from profiler.load_settings import LoadSettings

CHECKSUM_TOKENS = 64
# Scoring re-splits an answer's text where the validator's top token spells it another way
# (`_aligned_rows`). A split the model never chose scores 5-12 nats below the top (measured);
# near-ties between builds sit under 0.5 (docs/VALIDATION.md): only gaps past this are tried.
RESPLIT_MIN_GAP = 1.0
# Each try costs a prefill of the answer's tail; an honest answer needs one per place its
# decode split a word unlike the tokenizer (seldom more than one or two).
MAX_RESPLITS = 4
STREAM_FLUSH_S = 0.025
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "jina-bert-v2", "modern-bert"})
_GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2, "bf16": 30}


def load_arguments(settings: LoadSettings) -> dict[str, Any]:
    """llama.cpp's load arguments for `settings`: the one place they are spelled out, so the
    runtime loads exactly what the memory estimate assumed (and bench/fit_accuracy.py measures
    that same load)."""
    kv_type = _GGML_TYPES[settings.kv_type]
    return {
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_ubatch,
        "n_threads": settings.n_threads,
        "n_threads_batch": settings.n_threads,
        "n_gpu_layers": settings.n_gpu_layers,
        "use_mmap": settings.use_mmap,
        "flash_attn": settings.flash_attn,
        "swa_full": settings.swa_full,
        "type_k": kv_type,
        "type_v": kv_type,
    }


_OOM_HINTS = ("alloc", "out of memory", "cannot allocate", "bad_alloc", "mmap", "memory")


class _RequestFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Forwarder(logging.Handler):
    """Sends Python log records of the worker to the parent (the only logging set up here)."""

    def __init__(self, worker: _Worker) -> None:
        super().__init__(logging.DEBUG)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        self.worker.send(("log", record.levelno, f"{record.name}: {record.getMessage()}"))


class _Worker:
    def __init__(self, conn: Connection, cancel_slot: Any, forward_level: int) -> None:
        self.conn = conn
        self.cancel_slot = cancel_slot
        self.forward_level = forward_level
        self.recent_logs: deque[str] = deque(maxlen=80)
        self.llm: Any = None
        self.report: LoadReport | None = None
        self._log_callback: Any = None
        self._piece_buf = ctypes.create_string_buffer(256)
        # The tokens whose keys and values the chat context's cache holds, position by position.
        self.cached: list[int] = []
        self.prefilled = 0  # prompt tokens the last prefill decoded (the rest were cached)

    # -- plumbing -------------------------------------------------------------------------
    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, OSError):
            os._exit(0)  # the parent is gone; nothing left to serve

    def install_log_forwarding(self) -> None:
        import llama_cpp

        # ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continues the last line
        levels = {
            0: logging.INFO,
            1: logging.DEBUG,
            2: logging.INFO,
            3: logging.WARNING,
            4: logging.ERROR,
        }
        last = [logging.INFO]

        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
        def callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
            py_level = last[0] if level == 5 else levels.get(level, logging.INFO)
            last[0] = py_level
            line = text.decode("utf-8", "replace").rstrip("\n")
            if not line.strip(". "):  # progress dots
                return
            self.recent_logs.append(line)
            if py_level >= self.forward_level:
                self.send(("log", py_level, f"llama.cpp: {line}"))

        self._log_callback = callback  # keep a reference: llama.cpp holds only the pointer
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        root = logging.getLogger()
        root.addHandler(_Forwarder(self))
        root.setLevel(self.forward_level)

    def serve(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return
            op = message[0]
            if op == "shutdown":
                self.unload()
                return
            if op == "load":
                self.handle_load(*message[1:])
                continue
            rid = message[1]
            try:
                result = getattr(self, f"op_{op}")(rid, *message[2:])
            except _RequestFailed as exc:
                self.send(("error", rid, exc.kind, str(exc)))
            except ModelError as exc:
                self.send(("error", rid, "request", str(exc)))
            except Exception as exc:  # a bad request must not take the loaded model down
                self.send(("error", rid, "request", f"{type(exc).__name__}: {exc}"))
            else:
                self.send(("done", rid, result))

    # -- loading --------------------------------------------------------------------------
    def unload(self) -> None:
        self.cached.clear()
        if self.llm is not None:
            self.llm.close()
            self.llm = None
            self.report = None

    def handle_load(
        self,
        path: str,
        settings: LoadSettings,
        kind: str,
        requested: LoadSettings,
        adjustments: tuple[str, ...],
    ) -> None:
        try:
            report = self.load(path, settings, kind, requested, adjustments)
        except _RequestFailed as exc:
            self.send(("error", None, exc.kind, str(exc)))
        except MemoryError as exc:
            self.send(("error", None, "oom", f"{path}: out of memory while loading ({exc})"))
        except OSError as exc:
            kind_of = "oom" if exc.errno == errno.ENOMEM else "load"
            self.send(("error", None, kind_of, f"{path}: cannot read the model file ({exc})"))
        except ModelError as exc:
            error_kind = "corrupt" if isinstance(exc, CorruptModelError) else "load"
            if isinstance(exc, ModelNotFoundError):
                error_kind = "missing"
            self.send(("error", None, error_kind, str(exc)))
        except Exception as exc:
            self.send(("error", None, "load", f"{path}: {type(exc).__name__}: {exc}"))
        else:
            self.send(("loaded", report))

    def load(
        self,
        path: str,
        settings: LoadSettings,
        kind: str,
        requested: LoadSettings,
        adjustments: tuple[str, ...],
    ) -> LoadReport:
        import llama_cpp

        summary = check_gguf(Path(path))  # before the old model goes: a bad file changes nothing
        is_embedding = summary.architecture in EMBEDDING_ARCHITECTURES
        actual_kind = "embedding" if is_embedding else "chat"
        if kind not in ("auto", actual_kind):
            raise _RequestFailed(
                "unsupported",
                f"{path}: a {actual_kind} model ({summary.architecture}), not a {kind} model",
            )
        previous = self.report
        self.unload()
        self.recent_logs.clear()
        started = time.perf_counter()
        try:
            llm = llama_cpp.Llama(
                model_path=path,
                **load_arguments(settings),
                embedding=is_embedding,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN if is_embedding else -1,
                seed=0,
                verbose=False,
            )
        except MemoryError as exc:
            self._restore(previous)
            raise _RequestFailed("oom", f"out of memory while loading: {exc}") from None
        except (ValueError, RuntimeError, OSError) as exc:
            failure = self._classify_load_failure(path, summary.architecture, exc)
            self._restore(previous)
            raise failure from None
        self.llm = llm
        n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(llm._model.model))
        self.report = LoadReport(
            model_path=path,
            kind=actual_kind,
            architecture=summary.architecture,
            requested=requested,
            used=settings,
            adjustments=adjustments,
            has_chat_template="tokenizer.chat_template" in llm.metadata,
            load_s=time.perf_counter() - started,
            n_ctx_train=n_ctx_train,
        )
        return self.report

    def _restore(self, previous: LoadReport | None) -> None:
        """After a failed load, bring the model that was loaded before back (best effort)."""
        if previous is None:
            return
        try:
            self.load(
                previous.model_path,
                previous.used,
                previous.kind,
                previous.requested,
                previous.adjustments,
            )
        except (_RequestFailed, ModelError):
            self.llm = None
            self.report = None

    def _classify_load_failure(self, path: str, arch: str, exc: Exception) -> _RequestFailed:
        logs = " | ".join(self.recent_logs)
        lowered = logs.lower()
        detail = next(
            (
                line
                for line in reversed(self.recent_logs)
                if "error" in line.lower() or "failed" in line.lower()
            ),
            str(exc),
        )
        if "unknown model architecture" in lowered:
            return _RequestFailed(
                "unsupported",
                f"{path}: this llama.cpp build cannot run architecture '{arch}' ({detail})",
            )
        if any(hint in lowered for hint in _OOM_HINTS) or "llama_context" in str(exc):
            return _RequestFailed("oom", f"{path}: not enough memory to load ({detail})")
        return _RequestFailed("load", f"{path}: llama.cpp could not load the model ({detail})")

    # -- helpers --------------------------------------------------------------------------
    def _require(self, kind: str) -> Any:
        if self.llm is None or self.report is None:
            raise _RequestFailed("request", "no model is loaded in the worker")
        if self.report.kind != kind:
            raise _RequestFailed(
                "request", f"the loaded model is a {self.report.kind} model; this needs {kind}"
            )
        return self.llm

    def _prompt_tokens(
        self, llm: Any, prompt: str | Sequence[dict[str, str]], raw: bool
    ) -> list[int]:
        has_template = bool(self.report and self.report.has_chat_template)
        return prompt_token_ids(llm, prompt, raw=raw, has_template=has_template)

    def _piece(self, llm: Any, token: int, special: bool = False) -> str:
        return token_piece(llm, token, special)

    def _piece_bytes(self, vocab: Any, token: int, special: bool) -> bytes:
        import llama_cpp

        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
        return bytes(buf.raw[:n])

    def _cancelled(self, rid: int) -> bool:
        return bool(self.cancel_slot.value == rid)

    def _prefill(
        self, llm: Any, tokens: list[int], rid: int, deadline: float | None, reuse: bool = True
    ) -> bool:
        """Decode the prompt in n_batch chunks; False when cancelled or past the deadline.

        The key-value cache keeps what it holds in common with the prompt (`reuse`): every chat
        prompt opens with the same template and system text (24 of a 35-token prompt for
        SmolLM2), which a miner and a validator otherwise decode again for each task. A
        position's keys and values depend only on the tokens up to it, so what is kept equals
        what a fresh decode computes. The last token is always decoded: its logits are needed.
        """
        import llama_cpp

        ctx = llm._ctx.ctx
        n_ctx = llama_cpp.llama_n_ctx(ctx)
        if len(tokens) >= n_ctx:
            raise _RequestFailed(
                "request", f"the prompt has {len(tokens)} tokens; the context holds {n_ctx}"
            )
        kept = self._keep_cached(ctx, tokens, max(0, len(tokens) - 1) if reuse else 0)
        self.prefilled = len(tokens) - kept
        step = self.report.used.n_batch if self.report else 512
        for start in range(kept, len(tokens), step):
            chunk = tokens[start : start + step]
            self._decode(ctx, chunk)
            if self._cancelled(rid) or (deadline is not None and time.monotonic() > deadline):
                return False
        return True

    def _keep_cached(self, ctx: Any, tokens: list[int], most: int) -> int:
        """Drop the cache's positions past its common prefix with `tokens` (at most `most`
        kept); how many were kept."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(ctx)
        common = min(_common_prefix(self.cached, tokens), most)
        if common == 0 or not llama_cpp.llama_memory_seq_rm(memory, 0, common, -1):
            llama_cpp.llama_memory_clear(memory, True)
            common = 0
        del self.cached[common:]
        return common

    def _decode(self, ctx: Any, tokens: list[int]) -> None:
        """Decode tokens at the cache's end (logits of the last only); `cached` follows."""
        import llama_cpp

        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(array, len(tokens)))
        if rc != 0:
            self.cached.clear()  # what the cache holds after a failed decode is not known
            raise _RequestFailed("request", f"llama_decode failed with code {rc}")
        self.cached.extend(tokens)

    def _sampler(self, llm: Any, params: SamplingParams) -> Any:
        import llama_cpp

        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(chain_params)
        add = llama_cpp.llama_sampler_chain_add
        if params.repeat_penalty != 1.0:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    params.repeat_last_n, params.repeat_penalty, 0.0, 0.0
                ),
            )
        if params.greedy:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(params.seed))
        return chain

    # -- requests -------------------------------------------------------------------------
    def op_generate(  # noqa: PLR0912, PLR0915 - the per-token hot loop stays in one frame
        self,
        rid: int,
        prompt: str | Sequence[dict[str, str]],
        params: SamplingParams,
        raw: bool,
        stream: bool = True,
        reuse: bool = True,
    ) -> GenerationResult:
        import llama_cpp

        llm = self._require("chat")
        started = time.monotonic()
        deadline = started + params.deadline_s if params.deadline_s else None
        tokens = self._prompt_tokens(llm, prompt, raw)
        ctx = llm._ctx.ctx
        vocab = llm._model.vocab
        n_ctx = llama_cpp.llama_n_ctx(ctx)
        max_new = min(params.max_tokens, n_ctx - len(tokens))
        finish = "length"
        generated: list[int] = []
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text_parts: list[str] = []
        first_at = started
        prefill_s = 0.0
        if not self._prefill(llm, tokens, rid, deadline, reuse):
            finish = "cancelled" if self._cancelled(rid) else "deadline"
            max_new = 0
        prefill_s = time.monotonic() - started
        sampler = self._sampler(llm, params)
        stop_strings = params.stop
        tail_keep = max((len(s) for s in stop_strings), default=0) + 8
        tail = ""
        pending: list[tuple[int, int, str]] = []
        flushed_at = 0.0
        try:
            for index in range(max_new):
                token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
                if index == 0:
                    first_at = time.monotonic()
                if not params.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated.append(token)
                piece = decoder.decode(self._piece_bytes(vocab, token, False))
                text_parts.append(piece)
                if stream:
                    # Tokens go out in small batches (the first at once): one parent wake-up per
                    # STREAM_FLUSH_S instead of per token matters when cores are shared.
                    pending.append((index, token, piece))
                    now = time.monotonic()
                    if now - flushed_at >= STREAM_FLUSH_S:
                        self.send(("tokens", rid, pending))
                        pending, flushed_at = [], now
                if stop_strings:
                    tail = (tail + piece)[-tail_keep:]
                    if any(s in tail for s in stop_strings):
                        finish = "stop"
                        break
                if self._cancelled(rid):
                    finish = "cancelled"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    finish = "deadline"
                    break
                if index == max_new - 1:
                    break
                self._decode(ctx, [token])
        finally:
            llama_cpp.llama_sampler_free(sampler)
        ended = time.monotonic()
        if pending:
            self.send(("tokens", rid, pending))
        text = "".join(text_parts) + decoder.decode(b"", final=True)
        if stop_strings and finish == "stop":
            cut = min((text.find(s) for s in stop_strings if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        n = len(generated)
        gen_span = ended - first_at
        figures = GenerationFigures(
            prompt_tokens=len(tokens),
            generated_tokens=n,
            ttft_s=(first_at - started) if n else 0.0,
            # Of the tokens decoded: a prompt the cache mostly held is not a fast prefill.
            prompt_tokens_per_s=self.prefilled / prefill_s if prefill_s > 0 else 0.0,
            tokens_per_s=(n - 1) / gen_span if n > 1 and gen_span > 0 else 0.0,
            total_s=ended - started,
            prompt_cached_tokens=len(tokens) - self.prefilled,
        )
        assert self.report is not None
        return GenerationResult(
            text=text,
            token_ids=tuple(generated),
            finish_reason=finish,
            figures=figures,
            model=self.report.model_path,
        )

    def op_score(
        self, rid: int, prompt: str | Sequence[dict[str, str]], answer: str, raw: bool
    ) -> LikelihoodResult:
        result = self.op_score_many(rid, prompt, [answer], raw, strict=True)[0]
        assert result is not None  # strict: an answer that cannot be scored raised
        return result

    def op_score_many(
        self,
        rid: int,
        prompt: str | Sequence[dict[str, str]],
        answers: Sequence[str],
        raw: bool,
        strict: bool = False,
    ) -> list[LikelihoodResult | None]:
        """Score several answers to one prompt; None for an answer without tokens or one that
        does not fit the context with the prompt (`strict`: an error for those instead).

        The prompt is prefilled once, and each answer reuses the key-value cache and the logit
        rows of the tokens it shares with the answer scored before it: identical answers (miners
        of one build) cost one prefill, answers that drift apart late cost only their tails.
        """
        import llama_cpp

        llm = self._require("chat")
        failpoints.hit("worker-score")  # crash tests: the validator's worker dies mid-validation
        prompt_tokens = self._prompt_tokens(llm, prompt, raw)
        n_ctx = llama_cpp.llama_n_ctx(llm._ctx.ctx)
        if not self._prefill(llm, prompt_tokens[:-1], rid, None):
            raise _RequestFailed("request", "cancelled")
        cache = _ScoredPrefix(prompt_tokens)
        results: list[LikelihoodResult | None] = []
        # Scoring is a function of the prompt and the text: a second miner of one build gets
        # the first one's result. Scoring it again was not free: a re-split try leaves the
        # cache holding its split, so the same text paid its tail's prefill and the try again.
        done: dict[str, LikelihoodResult | None] = {}
        for answer in answers:
            if answer in done:
                results.append(done[answer])
                continue
            tokens = list(llm.tokenize(answer.encode("utf-8"), add_bos=False, special=False))
            if not tokens or len(prompt_tokens) + len(tokens) >= n_ctx:
                if strict:
                    raise _RequestFailed(
                        "request",
                        "the answer is empty"
                        if not tokens
                        else "prompt and answer do not fit in the context",
                    )
                results.append(done.setdefault(answer, None))
                continue
            room = n_ctx - len(prompt_tokens)
            tokens, rows = self._aligned_rows(llm, cache, tokens, room)
            results.append(
                done.setdefault(answer, self._likelihood(llm, len(prompt_tokens), tokens, rows))
            )
            if self._cancelled(rid):
                raise _RequestFailed("request", "cancelled")
        return results

    def _aligned_rows(
        self, llm: Any, cache: _ScoredPrefix, tokens: list[int], room: int
    ) -> tuple[list[int], Any]:
        """The answer's tokens split as the validator's own decode would spell its text, and
        their log-probability rows.

        The chain carries text, so the validator tokenizes it again, and the tokenizer's split
        is not always the one a greedy decode produced: SmolLM2 decodes "Il Coriobella" as
        " Cor" "io" "b" "ella", the tokenizer splits it " Cor" "i" "ob" "ella", and a split the
        model never chose scores 6 and 12 nats below its top token for an honest answer. Where
        the validator's top token spells the text's next bytes too, the text is split from
        there starting with that token, and the new split is kept when its tokens from there
        are nearer the validator's top in total (the sum of gaps, the ending's included). The
        bytes never change, only where the token boundaries fall.
        """
        import llama_cpp

        vocab = llm._model.vocab
        eog = _eog_tokens(llm, vocab, llama_cpp.llama_vocab_n_tokens(vocab))

        def piece(token: int) -> bytes:
            return self._piece_bytes(vocab, token, False)

        rows = self._logprob_rows(llm, cache, tokens)
        pieces = [piece(t) for t in tokens]
        start = 0
        for _ in range(MAX_RESPLITS):
            found = _resplit_at(rows, tokens, pieces, start, piece)
            if found is None:
                break
            at, top, top_piece = found
            rest = b"".join(pieces[at:])
            tail = rest[len(top_piece) :]
            tail_tokens = list(llm.tokenize(tail, add_bos=False, special=False)) if tail else []
            tail_pieces = [piece(t) for t in tail_tokens]
            split = [*tokens[:at], top, *tail_tokens]
            start = at + 1
            if top_piece + b"".join(tail_pieces) != rest or len(split) >= room:
                continue  # the tokenizer spells the tail otherwise (a space prefix): keep ours
            split_rows = self._logprob_rows(llm, cache, split)
            if _gap_sum(split_rows, split, at, eog) < _gap_sum(rows, tokens, at, eog):
                tokens, rows = split, split_rows
                pieces = [*pieces[:at], top_piece, *tail_pieces]
        return tokens, rows

    def _logprob_rows(self, llm: Any, cache: _ScoredPrefix, answer_tokens: list[int]) -> Any:
        """Log-probability rows for the last prompt token and every answer token (row i predicts
        answer token i; the last row, what follows the answer), reusing the cached prefix."""
        import llama_cpp
        import numpy as np

        ctx = llm._ctx.ctx
        n_vocab = llama_cpp.llama_vocab_n_tokens(llm._model.vocab)
        inputs = [cache.prompt_tokens[-1], *answer_tokens]
        common = cache.common_prefix(inputs)
        if common < len(inputs):
            start_pos = len(cache.prompt_tokens) - 1 + common
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, start_pos, -1)
            del self.cached[start_pos:]  # the prompt and the answer's shared head stay
            step = llm._batch.n_tokens_max if hasattr(llm._batch, "n_tokens_max") else 512
            step = min(step, self.report.used.n_batch if self.report else 512)
            fresh: list[Any] = []
            rest = inputs[common:]
            for offset in range(0, len(rest), step):
                chunk = rest[offset : offset + step]
                llm._batch.set_batch(batch=chunk, n_past=start_pos + offset, logits_all=True)
                rc = llama_cpp.llama_decode(ctx, llm._batch.batch)
                if rc != 0:
                    self.cached.clear()
                    raise _RequestFailed("request", f"llama_decode failed with code {rc}")
                self.cached.extend(chunk)
                # Every token of the chunk is an output, so its rows lie in batch order.
                pointer = llama_cpp.llama_get_logits(ctx)
                fresh.append(np.ctypeslib.as_array(pointer, shape=(len(chunk), n_vocab)).copy())
            logprobs = _log_softmax(np.concatenate(fresh) if len(fresh) > 1 else fresh[0])
            kept = logprobs if common == 0 else np.concatenate([cache.rows[:common], logprobs])
            cache.keep(inputs, kept)
        return cache.rows[: len(inputs)]

    def _likelihood(
        self, llm: Any, n_prompt: int, answer_tokens: list[int], logprobs: Any
    ) -> LikelihoodResult:
        import llama_cpp
        import numpy as np

        vocab = llm._model.vocab
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        n = len(answer_tokens)
        best = logprobs.argmax(axis=1)
        top = logprobs[np.arange(n + 1), best]
        own = logprobs[np.arange(n), answer_tokens]
        # Rank 1 is the top token; ties with the answer's token do not push it down.
        ranks = 1 + (logprobs[:n] > own[:, None]).sum(axis=1)
        scores = tuple(
            TokenScore(
                token_id=token,
                text=self._piece(llm, token),
                logprob=float(own[i]),
                top1=bool(best[i] == token),
                top_token_id=int(best[i]),
                top_logprob=float(top[i]),
                rank=int(ranks[i]),
            )
            for i, token in enumerate(answer_tokens)
        )
        last = logprobs[n]
        eog_ids = list(_eog_tokens(llm, vocab, n_vocab))
        end_logprob = float(max(last[t] for t in eog_ids)) if eog_ids else float("-inf")
        return LikelihoodResult(
            prompt_tokens=n_prompt,
            tokens=scores,
            ends_properly=bool(llama_cpp.llama_vocab_is_eog(vocab, int(best[n]))),
            end_logprob=end_logprob,
            end_top_logprob=float(top[n]),
        )

    def op_embed(self, rid: int, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        llm = self._require("embedding")
        if not texts:
            return []
        vectors = np.asarray(
            llm.embed(list(texts), normalize=False, truncate=True), dtype=np.float64
        )
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: list[list[float]] = (vectors / norms).tolist()
        return result

    def op_bench(self, rid: int, prompt: str, runs: int, gen_tokens: int) -> BenchResult:
        import llama_cpp

        self._require("chat")
        assert self.report is not None
        prompt_tps: list[float] = []
        gen_tps: list[float] = []
        ttfts: list[float] = []
        # The checksum run has a fixed length, so checksums compare across --tokens values.
        checksum_run = self.op_generate(
            rid, prompt, SamplingParams(max_tokens=CHECKSUM_TOKENS), False, stream=False
        )
        timed = SamplingParams(max_tokens=gen_tokens, ignore_eos=True)
        # Each timed run decodes the whole prompt: the cache holds it from the run before.
        last: GenerationResult | None = None
        for _ in range(runs):
            if self._cancelled(rid):
                raise _RequestFailed("request", "cancelled")
            last = self.op_generate(rid, prompt, timed, False, stream=False, reuse=False)
            prompt_tps.append(last.figures.prompt_tokens_per_s)
            gen_tps.append(last.figures.tokens_per_s)
            ttfts.append(last.figures.ttft_s)
        digest = hashlib.sha256()
        digest.update(",".join(map(str, checksum_run.token_ids)).encode())
        digest.update(b"\0" + checksum_run.text.encode("utf-8"))
        peak = _peak_rss_bytes()
        return BenchResult(
            model=self.report.model_path,
            runs=runs,
            prompt_tokens=last.figures.prompt_tokens if last else 0,
            gen_tokens=gen_tokens,
            prompt_tokens_per_s=statistics.median(prompt_tps),
            gen_tokens_per_s=statistics.median(gen_tps),
            prompt_tokens_per_s_runs=tuple(prompt_tps),
            gen_tokens_per_s_runs=tuple(gen_tps),
            peak_rss_bytes=peak,
            output_sha256=digest.hexdigest(),
            output_text=checksum_run.text,
            settings=self.report.used,
            system_info=llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            extra={"ttft_s": statistics.median(ttfts)} if ttfts else {},
        )

    def op_memory(self, rid: int) -> dict[str, int]:
        """Virtual and resident sizes of the worker (peak too), read from /proc/self/status."""
        figures: dict[str, int] = {}
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmPeak", "VmSize", "VmHWM", "VmRSS"):
                    figures[key] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return figures


class _ScoredPrefix:
    """The tokens after the prompt that the key-value cache holds, with their logprob rows."""

    def __init__(self, prompt_tokens: list[int]) -> None:
        self.prompt_tokens = prompt_tokens
        self.inputs: list[int] = []
        self.rows: Any = None

    def common_prefix(self, inputs: list[int]) -> int:
        return _common_prefix(inputs, self.inputs)

    def keep(self, inputs: list[int], rows: Any) -> None:
        self.inputs, self.rows = list(inputs), rows


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _log_softmax(logits: Any) -> Any:
    """Rows of logits (float32, changed in place) as log-probabilities. float32 is plenty: a
    gap is a difference within one row, and the normaliser's rounding (about 1e-5 nats over a
    49k vocabulary) is far below the near-tie margin; it halves the time of float64 rows."""
    import numpy as np

    logits -= logits.max(axis=1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits


def _resplit_at(
    rows: Any, tokens: list[int], pieces: list[bytes], start: int, piece: Callable[[int], bytes]
) -> tuple[int, int, bytes] | None:
    """The first answer token from `start` that is far below the validator's top token where
    the top token's bytes begin the rest of the text: (index, top token, its bytes)."""
    best = rows[: len(tokens)].argmax(axis=1)
    offset = sum(len(p) for p in pieces[:start])
    text = b"".join(pieces)
    for i in range(start, len(tokens)):
        top = int(best[i])
        if top != tokens[i] and rows[i, top] - rows[i, tokens[i]] > RESPLIT_MIN_GAP:
            top_piece: bytes = piece(top)
            if top_piece and text.startswith(top_piece, offset):
                return i, top, top_piece
        offset += len(pieces[i])
    return None


def _gap_sum(rows: Any, tokens: list[int], start: int, eog: list[int]) -> float:
    """Nats below the validator's top token, summed over the tokens from `start` and the
    ending after the last one (row i predicts token i; row n, what follows the answer)."""
    import numpy as np

    n = len(tokens)
    picked = rows[np.arange(start, n), tokens[start:]]
    total = float((rows[start:n].max(axis=1) - picked).sum())
    if eog:
        total += float(rows[n].max() - rows[n, eog].max())
    return total


def prompt_token_ids(
    llm: Any, prompt: str | Sequence[dict[str, str]], *, raw: bool, has_template: bool
) -> list[int]:
    """The tokens a prompt is prefilled as: text as it is (raw, or a model without a chat
    template), or the messages (a string is one user message) through the model's template.
    The router counts usage with the same function, so its figures are the workers'."""
    if isinstance(prompt, str) and (raw or not has_template):
        return list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    text = render_chat(llm, messages)
    bos = token_piece(llm, llm.token_bos(), special=True) if llm.token_bos() >= 0 else ""
    add_bos = not (bos and text.startswith(bos))
    return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))


def render_chat(llm: Any, messages: list[dict[str, str]]) -> str:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return "\n".join(m["content"] for m in messages)
    eos = token_piece(llm, llm.token_eos(), special=True) if llm.token_eos() >= 0 else ""
    bos = token_piece(llm, llm.token_bos(), special=True) if llm.token_bos() >= 0 else ""
    formatter = Jinja2ChatFormatter(
        template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True
    )
    return str(formatter(messages=messages).prompt)  # type: ignore[arg-type]


def token_piece(llm: Any, token: int, special: bool = False) -> str:
    import llama_cpp

    vocab = llm._model.vocab
    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    return bytes(buf.raw[:n]).decode("utf-8", "replace")


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows: psutil's peak working set
        import psutil

        return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _eog_tokens(llm: Any, vocab: Any, n_vocab: int) -> list[int]:
    import llama_cpp

    candidates = {llm.token_eos()}
    eot = llama_cpp.llama_vocab_eot(vocab)
    candidates.add(eot)
    return [t for t in candidates if 0 <= t < n_vocab and llama_cpp.llama_vocab_is_eog(vocab, t)]


def worker_main(conn: Connection, cancel_slot: Any, options: dict[str, Any]) -> None:
    """Entry point of the worker process (a 'spawn' child: nothing inherited but arguments)."""
    # OpenMP spins while waiting by default; with several processes on few cores that collapses
    # throughput, so wait passively (must be set before llama.cpp's OpenMP runtime starts).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Ctrl-C reaches the whole foreground process group; the parent owns shutdown (it cancels,
    # closes or kills this worker), so a worker must not die of it with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = options.get("address_space_limit")
    worker = _Worker(conn, cancel_slot, int(options.get("forward_log_level", logging.WARNING)))
    worker.install_log_forwarding()
    if limit:
        import resource  # POSIX only, like RLIMIT_AS itself

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    worker.send(("ready", os.getpid()))
    worker.serve()
