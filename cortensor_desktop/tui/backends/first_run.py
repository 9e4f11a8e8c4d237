"""What the first-run wizard does, without the screens: the same calls the CLI makes.

The wizard (cortensor_desktop.tui.screens.wizard) asks; this module answers and writes. It
recommends
with the profiler's fit (overrides included), installs the chosen model with the model store's
progress callback, creates or imports the keystore through chain.wallet (0600, scrypt, the key
never leaves it), stores the passphrase in a secure keyring only when asked, lists the network
profiles, and writes the config file once at the end. No textual here: the CLI could drive it too.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cortensor_desktop.config import (
    Config,
    ConfigError,
    NetworkSection,
    WalletSection,
    config_text,
    load_config,
)
from cortensor_desktop.logs import register_secret
from cortensor_desktop.networks import EMBEDDED, list_profiles, load_profile
from cortensor_desktop.paths import AppPaths
from engine.models.store import ModelStore, ProgressCallback, PullProgress
from profiler.catalogue import Catalogue, ModelEntry
from profiler.fit import Benchmark, FitSettings, Recommendation, recommend
from profiler.hardware import Hardware

if TYPE_CHECKING:  # chain.wallet imports eth_account (about a second): only when it is used
    from chain.wallet import WalletInfo


class Cancelled(Exception):
    """The user left the download step; the model store keeps the partial file to resume."""


@dataclass(frozen=True)
class Overrides:
    """What the user fixed instead of the fit's choice (None: the fit chooses at every start)."""

    model: str | None = None
    quant: str | None = None
    ctx: int | None = None
    gpu_layers: int | None = None
    threads: int | None = None

    def apply(self, settings: FitSettings) -> FitSettings:
        return dataclasses.replace(
            settings,
            model=self.model or settings.model,
            quant=self.quant or settings.quant,
            n_ctx=self.ctx or settings.n_ctx,
            n_gpu_layers=settings.n_gpu_layers if self.gpu_layers is None else self.gpu_layers,
            n_threads=self.threads or settings.n_threads,
        )


@dataclass(frozen=True)
class NetworkChoice:
    name: str
    embedded: bool
    text: str  # chain id and RPC URLs, or why the profile cannot be read
    usable: bool


@dataclass(frozen=True)
class Choices:
    """Everything the wizard decided; written to the config file by `FirstRun.write_config`."""

    overrides: Overrides | None = None  # None: accept the recommendation
    network: str = EMBEDDED
    payout_address: str = ""
    wallet_address: str | None = None  # None: no wallet yet (`wallet new` later)
    model_id: str | None = None
    quant: str | None = None


def parse_payout(text: str) -> str:
    """A checksummed address, or '' for "the node's own"; ValueError with a one-line reason."""
    from eth_utils.address import is_address, is_checksum_address, to_checksum_address

    value = text.strip()
    if not value:
        return ""
    if not value.startswith("0x") or len(value) != 42 or not is_address(value):
        raise ValueError("a payout address is 0x followed by 40 hex digits")
    digits = value[2:]
    mixed = digits != digits.lower() and digits != digits.upper()
    if mixed and not is_checksum_address(value):
        raise ValueError("that address has a bad checksum (a mistyped letter?): check it")
    return str(to_checksum_address(value))


@dataclass
class FirstRun:
    """The machine, the catalogue and this home's folders: what the wizard works on."""

    hardware: Hardware
    catalogue: Catalogue
    paths: AppPaths
    config_path: Path
    models_dir: Path
    fit_settings: FitSettings = field(default_factory=FitSettings)
    benchmarks: tuple[Benchmark, ...] = ()
    running_model: str = "-"  # what the embedded network runs on every node
    scrypt_n: int | None = None  # None: chain.wallet's standard cost (tests pass a cheap one)

    # -- what to run ----------------------------------------------------------------------
    def hardware_text(self) -> str:
        from cortensor_desktop.reports import render_hardware

        return render_hardware(self.hardware)

    @staticmethod
    def recommendation_text(rec: Recommendation) -> str:
        from cortensor_desktop.reports import render_recommendation

        return render_recommendation(rec)

    def recommend(self, overrides: Overrides | None = None) -> Recommendation:
        """The fit's choice; raises profiler.errors.DoesNotFitError with the reason."""
        settings = overrides.apply(self.fit_settings) if overrides else self.fit_settings
        return recommend(self.hardware, self.catalogue, settings, self.benchmarks)

    def chat_models(self) -> list[ModelEntry]:
        return [m for m in self.catalogue.models if m.kind in ("chat", "vision-chat")]

    def bundled_model(self) -> ModelEntry:
        return ModelStore(self.models_dir, self.catalogue).default_chat_model()

    # -- the model ------------------------------------------------------------------------
    def store(self) -> ModelStore:
        return ModelStore(self.models_dir, self.catalogue)

    def installed_path(self, model_id: str, quant: str | None) -> Path | None:
        store = self.store()
        entry = self.catalogue.require(model_id)
        path = store.path_for(entry, quant)
        return path if path.is_file() else None

    def install(
        self,
        model_id: str,
        quant: str | None,
        progress: ProgressCallback,
        cancel: threading.Event,
    ) -> Path:
        """`models pull` with its progress; `cancel` stops it at the next block (Cancelled)."""

        def report(event: PullProgress) -> None:
            if cancel.is_set():
                raise Cancelled(f"{model_id}: cancelled")
            progress(event)

        return self.store().pull(model_id, quant, progress=report)

    # -- the wallet -----------------------------------------------------------------------
    def existing_wallet(self) -> WalletInfo | None:
        from chain.errors import WalletError
        from chain.wallet import wallet_info, wallet_path

        if not wallet_path(self.paths.keystore_dir).exists():
            return None
        try:
            return wallet_info(self.paths.keystore_dir)
        except WalletError:
            return None

    def keystore_file(self) -> Path:
        from chain.wallet import wallet_path

        return wallet_path(self.paths.keystore_dir)

    def keyring_available(self) -> bool:
        from chain.passphrase import secure_keyring

        return secure_keyring() is not None

    def create_wallet(self, passphrase: str, repeat: str, remember: bool) -> WalletInfo:
        from chain.wallet import create_wallet

        self._check_pair(passphrase, repeat)
        self.paths.ensure()  # the data folder is private (0700) before the key lands in it
        info = create_wallet(self.paths.keystore_dir, passphrase, self._scrypt_n())
        self._remember(info.address, passphrase, remember)
        return info

    def import_private_key(
        self, key: str, passphrase: str, repeat: str, remember: bool
    ) -> WalletInfo:
        from chain.wallet import import_private_key

        register_secret(key.strip())
        self._check_pair(passphrase, repeat)
        self.paths.ensure()
        info = import_private_key(self.paths.keystore_dir, key, passphrase, self._scrypt_n())
        self._remember(info.address, passphrase, remember)
        return info

    def import_keystore(self, source: str, passphrase: str, remember: bool) -> WalletInfo:
        """A V3 keystore file kept as it is: its own passphrase unlocks it (typed once)."""
        from chain.errors import WalletError
        from chain.wallet import import_keystore

        register_secret(passphrase)
        if not passphrase:
            raise WalletError("type the keystore file's passphrase")
        path = Path(source.strip()).expanduser()
        if not source.strip() or not path.is_file():
            raise WalletError(f"no keystore file at {path}")
        self.paths.ensure()
        info = import_keystore(self.paths.keystore_dir, path, passphrase)
        self._remember(info.address, passphrase, remember)
        return info

    def _scrypt_n(self) -> int:
        from chain.wallet import STANDARD_SCRYPT_N

        return self.scrypt_n or STANDARD_SCRYPT_N

    @staticmethod
    def _check_pair(passphrase: str, repeat: str) -> None:
        from chain.errors import WalletError

        register_secret(passphrase)
        if not passphrase:
            raise WalletError("an empty passphrase is not allowed")
        if passphrase != repeat:
            raise WalletError("the two passphrases differ: type the same one twice")

    @staticmethod
    def _remember(address: str, passphrase: str, remember: bool) -> None:
        if remember:
            from chain.passphrase import keyring_set

            keyring_set(address, passphrase)

    # -- the network ----------------------------------------------------------------------
    def networks(self) -> list[NetworkChoice]:
        choices = []
        for name in list_profiles(self.paths.profiles_dir):
            try:
                profile = load_profile(self.paths.profiles_dir, name)
            except ConfigError as exc:
                choices.append(NetworkChoice(name, False, f"cannot be used: {exc}", False))
                continue
            if profile.embedded:
                text = "a local test network in this process: chain, oracle and miners (default)"
            else:
                rpc = ", ".join(profile.rpc_urls)
                text = f"chain {profile.chain_id} via {rpc}"
                if profile.description:
                    text += f": {profile.description}"
            choices.append(NetworkChoice(name, profile.embedded, text, True))
        return choices

    # -- the config -----------------------------------------------------------------------
    def config_for(self, choices: Choices) -> Config:
        """The file's own values (no environment), with the wizard's choices on top."""
        base = load_config(self.config_path, environ={}).config
        fit = base.fit
        o = choices.overrides
        if o is not None:
            fit = dataclasses.replace(
                fit,
                model=o.model or "",
                quant=o.quant or "",
                ctx=o.ctx or 0,
                gpu_layers=-1 if o.gpu_layers is None else o.gpu_layers,
                threads=o.threads or 0,
            )
        return dataclasses.replace(
            base,
            fit=fit,
            network=NetworkSection(profile=choices.network),
            wallet=WalletSection(payout=choices.payout_address),
        )

    def write_config(self, choices: Choices) -> Path:
        """Write atomically, and only what loads back: the file is read again before it counts."""
        text = config_text(self.config_for(choices))
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_name(self.config_path.name + ".wizard")
        tmp.write_text(text, encoding="utf-8")
        try:
            load_config(tmp, environ={})
        except ConfigError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.config_path)
        return self.config_path
