"""The one TOML config file: typed, validated, every key defaulted, unknown keys refused.

Each section is a frozen dataclass. A field's metadata may carry `choices`, `min`/`max`, `secret`
(masked by `config show`) and `help` (written as a comment by `config init`). Environment
variables `CORTENSOR_<SECTION>__<KEY>` override the file; a few `CORTENSOR_*` names are reserved
for things that are not config keys (home folder, passphrase sources).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.host.policies import PolicySettings
    from profiler.fit import FitSettings

ENV_PREFIX = "CORTENSOR_"
RESERVED_ENV = frozenset({"CORTENSOR_HOME", "CORTENSOR_PASSPHRASE", "CORTENSOR_PASSPHRASE_FILE"})
MASK = "********"


class ConfigError(Exception):
    """A config problem, phrased for the user in one line (exit code 3)."""


def _opt(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class NetworkSection:
    profile: str = _opt(
        "embedded",
        "Network profile: 'embedded' (in-process chain), 'local' (written by `devnet up`) "
        "or the name of a file in the config folder's networks/",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )


@dataclass(frozen=True)
class ModelsSection:
    dir: str = _opt("", "Model folder shared by every home; empty means the user cache folder")


@dataclass(frozen=True)
class InferenceSection:
    threads: int = _opt(
        0,
        "CPU threads for llama.cpp; 0 means half the logical CPUs (at least 1). Use 1 when "
        "several nodes share a machine",
        min=0,
        max=512,
    )
    context: int = _opt(
        2048, "Context length (tokens) when no fit decision gives one", min=256, max=1_048_576
    )
    max_tokens: int = _opt(256, "New tokens per `generate` unless --max-tokens", min=1)
    deadline_s: float = _opt(
        300.0, "A one-off `generate` is stopped after this many seconds", min=1.0
    )


@dataclass(frozen=True)
class LoggingSection:
    level: str = _opt("info", "Log level", choices=("debug", "info", "warning", "error"))
    format: str = _opt(
        "text", "Log line format: text, or json (one object a line)", choices=("text", "json")
    )
    file_max_bytes: int = _opt(5_000_000, "Rotate the log file at this size", min=10_000)
    file_backups: int = _opt(3, "Rotated log files kept", min=0, max=100)


QUANT_FLOORS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16")


@dataclass(frozen=True)
class FitSection:
    """How the profiler chooses model, quant, context, offload and threads (docs/PROFILER.md)."""

    ram_buffer_pct: float = _opt(
        20.0, "Share of *available* RAM kept free as a buffer, in percent", min=0.0, max=90.0
    )
    gpu_margin_mib: int = _opt(1024, "VRAM kept free on the GPU, in MiB", min=0)
    speed_floor_tps: float = _opt(
        5.0, "Reject choices expected to generate fewer tokens/s than this (0: no floor)", min=0.0
    )
    quant_floor: str = _opt("Q4_0", "Lowest quant class chosen automatically", choices=QUANT_FLOORS)
    thread_budget: int = _opt(
        0, "Most CPU threads this node may use (several nodes per host); 0: no budget", min=0
    )
    model: str = _opt("", "Override: catalogue model id to run (empty: choose)")
    quant: str = _opt("", "Override: quant to run, e.g. Q4_K_M (empty: choose)")
    ctx: int = _opt(0, "Override: context size (0: choose, 2048-8192)", min=0)
    gpu_layers: int = _opt(-1, "Override: layers offloaded to the GPU (-1: choose, 0: CPU)", min=-1)
    threads: int = _opt(0, "Override: CPU threads (0: choose from physical cores)", min=0)
    gpu_index: int = _opt(
        -1, "Override: which GPU to use (-1: the one with most free VRAM)", min=-1
    )
    ram_cap_gib: float = _opt(0.0, "Cap on the RAM the model may take, in GiB (0: none)", min=0.0)
    vram_cap_gib: float = _opt(0.0, "Cap on the VRAM the model may take, in GiB (0: none)", min=0.0)
    load_anyway: bool = _opt(
        False, "Load the chosen or overridden model even when the estimate says it does not fit"
    )
    extra_models: list[str] = _opt(  # noqa: RUF009 (_opt gives lists a default_factory)
        [],
        "Catalogue chat models a miner also serves, loaded on demand within the memory budget "
        "(least recently used unloaded first)",
    )

    def to_fit_settings(self) -> FitSettings:
        """The profiler's pure-data settings (the profiler does not read config files)."""
        from profiler.fit import FitSettings

        gib = 1024**3
        return FitSettings(
            ram_buffer_pct=self.ram_buffer_pct,
            gpu_margin_bytes=self.gpu_margin_mib * 1024**2,
            speed_floor_tps=self.speed_floor_tps,
            quant_floor=self.quant_floor,
            thread_budget=self.thread_budget,
            model=self.model or None,
            quant=self.quant or None,
            n_ctx=self.ctx or None,
            n_gpu_layers=None if self.gpu_layers < 0 else self.gpu_layers,
            n_threads=self.threads or None,
            gpu_index=None if self.gpu_index < 0 else self.gpu_index,
            ram_cap_bytes=int(self.ram_cap_gib * gib) if self.ram_cap_gib else None,
            vram_cap_bytes=int(self.vram_cap_gib * gib) if self.vram_cap_gib else None,
            load_anyway=self.load_anyway,
        )


@dataclass(frozen=True)
class ApiSection:
    """The local status API (docs/HEADLESS.md), always on 127.0.0.1."""

    port: int = _opt(
        -1,
        "Status API port on 127.0.0.1: -1 picks a free port (written to api.json in the data "
        "folder), 0 turns the API off, any other number is that fixed port",
        min=-1,
        max=65535,
    )


@dataclass(frozen=True)
class RouterSection:
    """The OpenAI-compatible router `run` serves on the embedded network (docs/ROUTER.md)."""

    port: int = _opt(
        8787,
        "Port of the router on 127.0.0.1 that `run` serves on the embedded network (OpenAI base "
        "URL http://127.0.0.1:PORT/v1); 0 turns it off",
        min=0,
        max=65535,
    )
    redundancy: int = _opt(3, "Miners that answer each router request (k)", min=1, max=16)


@dataclass(frozen=True)
class PolicySection:
    """Polite mining: when the node pauses itself (0 turns a temperature limit off)."""

    cpu_pause_above_c: float = _opt(0.0, "Pause above this CPU temperature, in °C", min=0.0)
    cpu_resume_below_c: float = _opt(
        0.0, "Resume only below this CPU temperature (0: the pause figure)", min=0.0
    )
    gpu_pause_above_c: float = _opt(0.0, "Pause above this GPU temperature, in °C", min=0.0)
    gpu_resume_below_c: float = _opt(
        0.0, "Resume only below this GPU temperature (0: the pause figure)", min=0.0
    )
    pause_on_battery: bool = _opt(False, "Pause while the machine runs on battery")
    active_hours: list[str] = _opt(  # noqa: RUF009 (_opt gives lists a default_factory)
        [], 'Mine only in these local-time windows, e.g. ["22:00-07:00"] (empty: always)'
    )
    sample_interval_s: float = _opt(
        30.0, "How often temperatures and battery are read", min=1.0, max=3600.0
    )
    nodes_on_host: int = _opt(
        1,
        "How many nodes share this machine: each gets an even share of the physical cores",
        min=1,
        max=256,
    )
    thread_cap: int = _opt(0, "Most llama.cpp threads this node may use (0: no cap)", min=0)

    def __post_init__(self) -> None:
        try:
            self.to_policy_settings()
        except ValueError as exc:
            raise ConfigError(f"[policy]: {exc}") from None

    def to_policy_settings(self) -> PolicySettings:
        """The engine's pure-data settings; raises ValueError on a bad window or ordering."""
        from engine.host.policies import HourWindow, PolicySettings

        return PolicySettings(
            cpu_pause_above_c=self.cpu_pause_above_c or None,
            cpu_resume_below_c=self.cpu_resume_below_c or None,
            gpu_pause_above_c=self.gpu_pause_above_c or None,
            gpu_resume_below_c=self.gpu_resume_below_c or None,
            pause_on_battery=self.pause_on_battery,
            active_hours=tuple(HourWindow.parse(w) for w in self.active_hours),
        )


ADDRESS_PATTERN = r"^(0x[0-9a-fA-F]{40})?$"


@dataclass(frozen=True)
class WalletSection:
    payout: str = _opt(
        "",
        "Address the node's earnings are paid to (0x + 40 hex digits; empty: the node's own "
        "address). Set on chain with NodeRegistry.setPayout when the node registers",
        pattern=ADDRESS_PATTERN,
    )
    price_floor_wei_per_token: int = _opt(
        0,
        "The least a user task must pay this node per answer token, in wei (0: any price the "
        "network's minimum allows). Published on chain at start (NodeRegistry.setPriceFloor): "
        "the leader cannot assign this node a cheaper task",
        min=0,
        max=2**88 - 1,
    )


@dataclass(frozen=True)
class AlertsSection:
    """Thresholds of the alerts the engine raises (docs/CONFIG.md)."""

    low_gas_eth: float = _opt(
        0.01,
        "Raise the low_gas alert when a miner's gas balance (the ether on its account that pays "
        "for its transactions) falls below this many ETH; it clears once topped up. 0: never",
        min=0.0,
    )

    @property
    def low_gas_wei(self) -> int:
        """The threshold in wei, exact for any decimal written in the file."""
        from decimal import Decimal

        return int(Decimal(str(self.low_gas_eth)) * 10**18)


@dataclass(frozen=True)
class ChainSection:
    """How the node talks to a public chain: log paging and the fee cap (docs/CONFIG.md)."""

    log_range_blocks: int = _opt(
        1000,
        "Most blocks one eth_getLogs request covers; public RPCs cap it (often at 1000 or less). "
        "A smaller cap the RPC enforces is learnt at run time",
        min=1,
        max=1_000_000,
    )
    max_fee_gwei: float = _opt(
        0.0,
        "Most a transaction may pay per gas, in gwei (EIP-1559 max fee), also when a stuck "
        "transaction is replaced with a higher fee; 0: no cap",
        min=0.0,
    )
    priority_fee_gwei: float = _opt(
        1.0, "Tip per gas for the block producer, in gwei (EIP-1559 priority fee)", min=0.0
    )

    @property
    def max_fee_wei(self) -> int | None:
        return _gwei(self.max_fee_gwei) if self.max_fee_gwei > 0 else None

    @property
    def priority_fee_wei(self) -> int:
        return _gwei(self.priority_fee_gwei)


def _gwei(value: float) -> int:
    from decimal import Decimal

    return int(Decimal(str(value)) * 10**9)


@dataclass(frozen=True)
class Config:
    network: NetworkSection = field(default_factory=NetworkSection)
    models: ModelsSection = field(default_factory=ModelsSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    fit: FitSection = field(default_factory=FitSection)
    api: ApiSection = field(default_factory=ApiSection)
    router: RouterSection = field(default_factory=RouterSection)
    policy: PolicySection = field(default_factory=PolicySection)
    wallet: WalletSection = field(default_factory=WalletSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    chain: ChainSection = field(default_factory=ChainSection)


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: Path | None  # None when no file exists and defaults were used


def load_config(path: Path, environ: dict[str, str] | None = None) -> LoadedConfig:
    env = os.environ if environ is None else environ
    raw, source = _read_toml(path)
    locate = _KeyLocator(path, source)
    merged = _apply_env(raw, env)
    return LoadedConfig(config=_build(Config, merged, locate, ""), source=source)


def _read_toml(path: Path) -> tuple[dict[str, Any], Path | None]:
    if not path.exists():
        return {}, None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        return tomllib.loads(text), path
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


class _KeyLocator:
    """Finds the line of `section.key` so a semantic error can point at it like a syntax error."""

    def __init__(self, path: Path, source: Path | None) -> None:
        self.path = path
        self.lines = path.read_text(encoding="utf-8").splitlines() if source else []

    def where(self, dotted: str, from_env: bool) -> str:
        if from_env:
            return f"environment variable {env_name(dotted)}"
        line = self._line_of(dotted)
        suffix = f" (line {line})" if line else ""
        return f"{self.path}: key '{dotted}'{suffix}"

    def _line_of(self, dotted: str) -> int | None:
        section, _, key = dotted.rpartition(".")
        current = ""
        for number, text in enumerate(self.lines, start=1):
            header = re.match(r"^\s*\[([^\]]+)\]", text)
            if header:
                current = header.group(1).strip()
            elif re.match(rf"^\s*{re.escape(key)}\s*=", text) and current == section:
                return number
        return None


def env_name(dotted: str) -> str:
    section, _, key = dotted.partition(".")
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


_FROM_ENV = "__from_env__"


def _apply_env(raw: dict[str, Any], env: typing.Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        target = merged.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = value
            target.setdefault(_FROM_ENV, set()).add(key)
    return merged


def _build(cls: type, raw: Any, locate: _KeyLocator, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{locate.where(prefix, False)}: expected a table [{prefix}]")
    from_env: set[str] = raw.pop(_FROM_ENV, set())
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        dotted = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        allowed = ", ".join(sorted(fields))
        raise ConfigError(
            f"{locate.where(dotted, unknown[0] in from_env)}: unknown key; "
            f"{'[' + prefix + '] takes' if prefix else 'sections are'}: {allowed}"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        dotted = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, locate, dotted)  # type: ignore[arg-type]
        else:
            where = locate.where(dotted, name in from_env)
            values[name] = _coerce(hint, value, fields[name].metadata, where, name in from_env)
    return cls(**values)


def _coerce(
    hint: Any, value: Any, meta: typing.Mapping[str, Any], where: str, from_env: bool
) -> Any:
    if from_env:
        value = _parse_env_value(hint, value)
    checked = _check_type(hint, value)
    if checked is None:
        raise ConfigError(f"{where}: expected {_describe(hint)}, got {value!r}")
    _check_meta(checked, meta, where)
    return checked


def _parse_env_value(hint: Any, text: str) -> Any:
    """Environment values are strings; read them as TOML values where the type is not a string."""
    if hint is str:
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _check_type(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            checked = _check_type(option, value)
            if checked is not None:
                return checked
        return None
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            return None
        items = [_check_type(item, v) for v in value]
        return None if any(i is None for i in items) else items
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        return None
    return value if isinstance(value, hint) else None


def _describe(hint: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if typing.get_origin(hint) is list:
        item = _describe(typing.get_args(hint)[0]).removeprefix("a ").removeprefix("an ")
        return f"a list of {item}s"
    return names.get(hint, str(hint))


def _check_meta(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{where}: expected at least {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{where}: expected at most {meta['max']}, got {value!r}")
    pattern = meta.get("pattern")
    if pattern and not re.match(pattern, value):
        raise ConfigError(f"{where}: expected a value matching {pattern}, got {value!r}")


def config_as_dict(config: Config, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for section_field in dataclasses.fields(config):
        section = getattr(config, section_field.name)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            values[f.name] = (
                MASK if (mask_secrets and f.metadata.get("secret") and value) else value
            )
        result[section_field.name] = values
    return result


def default_config_text() -> str:
    """A config file with every key at its default, each explained, for `config init`."""
    return config_text(Config())


def config_text(config: Config) -> str:
    """A config file with every key at its value in `config`, each explained (the wizard's)."""
    lines = [
        "# cortensor-desktop configuration. Every key is optional; a key left at its default "
        "can be deleted.",
        "# Environment variables CORTENSOR_<SECTION>__<KEY> override this file.",
        "",
    ]
    for section_field in dataclasses.fields(config):
        section = getattr(config, section_field.name)
        lines.append(f"[{section_field.name}]")
        for f in dataclasses.fields(section):
            lines.append(f"# {f.metadata.get('help', '')}")
            lines.append(f"{f.name} = {_toml_literal(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def toml_literal(value: Any) -> str:
    """A value as TOML writes it (one line)."""
    return _toml_literal(value)


def _toml_literal(value: Any) -> str:
    """A value as TOML source; tomlkit escapes what a string needs (quotes, control characters)."""
    import tomlkit

    return str(tomlkit.item(value).as_string())


# -- editing one key (the dashboard's Settings screen, `config set`) --------------------------
def _key_field(dotted: str) -> tuple[Any, dataclasses.Field[Any]]:
    """The type hint and field of `section.key`; ConfigError for a key the config does not have."""
    section, _, key = dotted.partition(".")
    sections = typing.get_type_hints(Config)
    section_cls = sections.get(section)
    if section_cls is None or not key:
        raise ConfigError(f"unknown key '{dotted}'; sections are: {', '.join(sorted(sections))}")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    if key not in fields:
        raise ConfigError(f"unknown key '{dotted}'; [{section}] takes: {', '.join(sorted(fields))}")
    return typing.get_type_hints(section_cls)[key], fields[key]


def parse_value(dotted: str, text: str) -> Any:
    """A value typed by a person (as in an environment variable), checked by the key's own rules.

    Strings are taken as typed; numbers, booleans and lists are read as TOML values
    (`4096`, `true`, `["22:00-07:00"]`). Raises ConfigError with a one-line message.
    """
    hint, key_field = _key_field(dotted)
    return _coerce(hint, text.strip(), key_field.metadata, f"key '{dotted}'", from_env=True)


def set_config_value(
    path: Path, dotted: str, text: str, environ: dict[str, str] | None = None
) -> LoadedConfig:
    """Set one key in the config file: parsed, validated with the whole file, written atomically.

    Comments and the other keys stay as they are (the key's line is replaced, or added under its
    section). Nothing is written when the value or the resulting file is refused (ConfigError).
    Returns the config now in effect (the file, then environment overrides).
    """
    value = parse_value(dotted, text)
    old = path.read_text(encoding="utf-8") if path.exists() else default_config_text()
    new = _with_key(old, dotted, value)
    try:
        raw = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: the edit would not be valid TOML: {exc}") from None
    _build(Config, raw, _KeyLocator(path, None), "")  # the whole file, checked before writing
    write_atomically(path, new)
    return load_config(path, environ)


def _with_key(text: str, dotted: str, value: Any) -> str:
    """`text` with `section.key` set to `value`, edited as a TOML document (tomlkit), so comments
    (inline ones on the key too), multi-line arrays, dotted keys and the layout all survive."""
    import tomlkit
    from tomlkit.items import Item

    section, _, key = dotted.partition(".")
    document = tomlkit.parse(text)
    table = document.get(section)
    if table is None:
        table = tomlkit.table()
        document[section] = table
    item = tomlkit.item(value)
    old = table.get(key)
    if isinstance(old, Item) and old.trivia.comment:
        item.trivia.comment_ws = old.trivia.comment_ws or "  "
        item.trivia.comment = old.trivia.comment
    table[key] = item
    return str(tomlkit.dumps(document))


def write_atomically(path: Path, text: str) -> None:
    """A temporary file beside the target, flushed, then renamed: never a half-written config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
