"""What crosses the line between the engine and its inference worker: frozen, picklable values.

The parent (`engine.inference.runtime`) and the worker process (`engine.inference.worker_process`)
both import this
module and nothing heavier, so the messages between them are plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiler.load_settings import LoadSettings

DEFAULT_SEED = 42


@dataclass(frozen=True)
class SamplingParams:
    """Sampling for one request. The default is greedy with a fixed seed: what verification needs.

    `temperature` 0 means greedy (argmax); above 0 the chain is top-k -> top-p -> min-p ->
    temperature -> a seeded draw, so a fixed seed still reproduces a sampled answer on one build.
    `deadline_s` bounds the whole request (prefill included): the answer ends with
    finish_reason "deadline" and whatever was generated so far.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int = DEFAULT_SEED
    stop: tuple[str, ...] = ()
    deadline_s: float | None = None
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError("deadline_s must be positive")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class TokenEvent:
    """One generated token as it streams: `text` is the newly decodable text (may be empty while a
    multi-byte character is split across tokens)."""

    index: int
    token_id: int
    text: str


@dataclass(frozen=True)
class GenerationFigures:
    """Per-request figures, measured inside the worker (no pipe latency in them)."""

    prompt_tokens: int
    generated_tokens: int
    ttft_s: float  # request start -> first token sampled (prefill included)
    prompt_tokens_per_s: float
    tokens_per_s: float  # generation only: tokens after the first / time after the first
    total_s: float
    # Prompt tokens whose keys and values the cache held from the request before (the chat
    # template's opening): not decoded again, and not in prompt_tokens_per_s.
    prompt_cached_tokens: int = 0


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop" (end-of-generation token or stop string), "length",
    # "cancelled", "deadline", "killed"
    figures: GenerationFigures
    model: str


@dataclass(frozen=True)
class TokenScore:
    """The scoring model's view of one answer token at its position.

    `top_logprob - logprob` is the token's gap to the model's own choice: 0 for the top token,
    small for a near-tie (which a differently ordered sum can flip), large for a token the model
    would not pick. `rank` is 1 for the top token, 2 for the second most likely, and so on.
    """

    token_id: int
    text: str
    logprob: float  # natural log of the model's probability for this token here
    top1: bool  # the model's own greedy choice at this position
    top_token_id: int
    top_logprob: float  # log-probability of the model's own top token here
    rank: int  # 1 + how many tokens the model finds strictly more likely here

    @property
    def gap(self) -> float:
        """How far (in nats) this token's log-probability is below the top token's (>= 0)."""
        return max(0.0, self.top_logprob - self.logprob)


@dataclass(frozen=True)
class LikelihoodResult:
    """How likely the model finds `answer` after `prompt`; the core of the Proof-of-Inference check.

    `ends_properly`: after the last answer token, the model's top-1 choice is an end-of-generation
    token, i.e. the answer stops where the model would stop.
    """

    prompt_tokens: int
    tokens: tuple[TokenScore, ...]
    ends_properly: bool
    end_logprob: float  # log-probability of the best end-of-generation token after the answer
    # Log-probability of the model's top token after the answer: the ending's gap is
    # end_top_logprob - end_logprob (0 when the model's own choice is to stop).
    end_top_logprob: float

    @property
    def top1_rate(self) -> float:
        return sum(t.top1 for t in self.tokens) / len(self.tokens) if self.tokens else 0.0

    @property
    def mean_logprob(self) -> float:
        return sum(t.logprob for t in self.tokens) / len(self.tokens) if self.tokens else 0.0


@dataclass(frozen=True)
class LoadReport:
    """What was loaded and with which settings; `adjustments` says what the retries changed."""

    model_path: str
    kind: str  # "chat" | "embedding"
    architecture: str
    requested: LoadSettings
    used: LoadSettings
    adjustments: tuple[str, ...] = ()
    has_chat_template: bool = False
    load_s: float = 0.0
    n_ctx_train: int = 0


@dataclass(frozen=True)
class BenchResult:
    model: str
    runs: int
    prompt_tokens: int
    gen_tokens: int
    prompt_tokens_per_s: float  # median over runs
    gen_tokens_per_s: float  # median over runs
    prompt_tokens_per_s_runs: tuple[float, ...]
    gen_tokens_per_s_runs: tuple[float, ...]
    peak_rss_bytes: int
    output_sha256: str  # sha256 of the greedy output's token ids and text, fixed prompt
    output_text: str
    settings: LoadSettings
    system_info: str = ""
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerDeath:
    """Why a worker process ended without being asked to."""

    exitcode: int | None
    signal_name: str | None
    during: str
    at: float

    def describe(self) -> str:
        how = f"killed by {self.signal_name}" if self.signal_name else f"exit code {self.exitcode}"
        return f"the inference worker died ({how}) during {self.during}"
