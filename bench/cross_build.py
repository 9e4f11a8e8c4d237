"""Honest answers from a second llama.cpp build, for bench/validation.py's cross-build row.

The validation bench judges everything with the project's own (portable) llama-cpp-python. Honest
miners on other hardware run other builds, whose answers drift from the validator's after a few
dozen tokens; the thresholds must survive that. This module is run by the *other* interpreter
(a venv with a differently built llama-cpp-python, e.g. -DGGML_NATIVE=ON) with the repository on
PYTHONPATH, so the answers come from the node's own inference code (`engine.inference.runtime`: chat
template, greedy, seed 42), only the native code under it differs:

    OTHER_PYTHON bench/cross_build.py REQUEST.json ANSWERS.json

REQUEST.json: {"model": path, "prompts": [...], "max_tokens": int, "n_ctx": int}.
ANSWERS.json: {"answers": [...], "llama_cpp_version": str, "system_info": str}, one answer per
prompt in order. `engine.inference.runtime` needs only the standard library, llama_cpp and gguf
(its file
check), so the other venv needs nothing of ours installed; `--check` tries those imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CrossBuildAnswers:
    answers: list[str]
    llama_cpp_version: str
    system_info: str

    def cpu_flags(self) -> list[str]:
        """The SIMD features the build was compiled with ("AVX512 = 1" in llama.cpp's info)."""
        return cpu_flags(self.system_info)


def cpu_flags(system_info: str) -> list[str]:
    """Feature names set to 1 in llama.cpp's system info ("CPU : SSE3 = 1 | AVX = 1 | ...")."""
    flags: list[str] = []
    for part in system_info.replace("\n", "|").split("|"):
        name, sep, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if sep and value.strip() == "1" and name and name not in flags:
            flags.append(name)
    return flags


def parse_answers(text: str, expected: int) -> CrossBuildAnswers:
    """Read the other build's answers file; ValueError (one line) when it is not what was asked."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"cross-build answers are not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("cross-build answers must be a JSON object")
    answers = data.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError("cross-build 'answers' must be a list of strings")
    if len(answers) != expected:
        raise ValueError(f"cross-build build gave {len(answers)} answers for {expected} prompts")
    version, info = data.get("llama_cpp_version", ""), data.get("system_info", "")
    if not isinstance(version, str) or not isinstance(info, str):
        raise ValueError("cross-build 'llama_cpp_version' and 'system_info' must be strings")
    return CrossBuildAnswers(list(answers), version, info)


class CrossBuild:
    """Runs the other interpreter in the background while the bench generates its own answers."""

    def __init__(
        self, python: str, model: Path, prompts: list[str], max_tokens: int, n_ctx: int, tmp: Path
    ) -> None:
        self.expected = len(prompts)
        self.request = tmp / "cross_build_request.json"
        self.output = tmp / "cross_build_answers.json"
        self.request.write_text(
            json.dumps(
                {"model": str(model), "prompts": prompts, "max_tokens": max_tokens, "n_ctx": n_ctx}
            )
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        script = str(Path(__file__).resolve())
        try:
            # Fail now, not after this build's half hour of answers, when a module is missing.
            check = subprocess.run(
                [python, script, "--check"], env=env, cwd=REPO, capture_output=True, text=True
            )
            if check.returncode != 0:
                last = (check.stderr.strip().splitlines() or ["no output"])[-1]
                raise SystemExit(f"error: the cross-build python {python} cannot run: {last}")
            self.process = subprocess.Popen(
                [python, script, str(self.request), str(self.output)],
                env=env,
                stdout=sys.stderr,
                cwd=REPO,
            )
        except OSError as exc:
            raise SystemExit(f"error: cannot run the cross-build python {python}: {exc}") from None

    def result(self) -> CrossBuildAnswers:
        code = self.process.wait()
        if code != 0:
            raise SystemExit(f"error: the cross-build answers failed (exit {code}); see above")
        try:
            return parse_answers(self.output.read_text(), self.expected)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def generate(request: dict[str, Any]) -> dict[str, Any]:
    """In the other interpreter: greedy answers with the node's own runtime, on this build."""
    import llama_cpp

    from engine.inference.runtime import InferenceWorker
    from engine.inference.types import SamplingParams
    from profiler.load_settings import LoadSettings

    prompts: list[str] = request["prompts"]
    params = SamplingParams(max_tokens=int(request["max_tokens"]))
    started = time.monotonic()
    answers: list[str] = []
    settings = LoadSettings(n_ctx=int(request["n_ctx"]), n_threads=1)
    with InferenceWorker(Path(request["model"]), settings) as worker:
        for i, prompt in enumerate(prompts):
            answers.append(worker.generate(prompt, params).text)
            if (i + 1) % 50 == 0:
                elapsed = time.monotonic() - started
                print(
                    f"  cross build: {i + 1}/{len(prompts)} answers ({elapsed:.0f} s)", flush=True
                )
    info = llama_cpp.llama_print_system_info()
    return {
        "answers": answers,
        "llama_cpp_version": llama_cpp.__version__,
        "system_info": info.decode() if isinstance(info, bytes) else str(info),
    }


def check() -> int:
    """Everything the answers need imports: llama_cpp, gguf (the runtime checks files), ours."""
    import gguf  # noqa: F401
    import llama_cpp  # noqa: F401

    import engine.inference.runtime
    import engine.inference.worker_process  # noqa: F401

    return 0


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        return check()
    if len(argv) != 2:
        print("usage: cross_build.py REQUEST.json ANSWERS.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(generate(request)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
