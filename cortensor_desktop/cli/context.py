"""What every command gets: resolved paths, the loaded config, the database and output helpers.

Heavy things (config, database, network profile) load on first use, so `--help` and `--version`
stay instant and a command that does not need the database never creates one.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from cortensor_desktop.config import Config, LoadedConfig, load_config
from cortensor_desktop.networks import NetworkProfile, load_profile
from cortensor_desktop.paths import AppPaths
from engine.state.database import Database


@dataclass
class AppContext:
    paths: AppPaths
    config_path: Path
    network_override: str | None = None
    json_output: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)

    @cached_property
    def loaded_config(self) -> LoadedConfig:
        return load_config(self.config_path)

    @property
    def config(self) -> Config:
        return self.loaded_config.config

    @property
    def network_name(self) -> str:
        return self.network_override or self.config.network.profile

    @cached_property
    def network(self) -> NetworkProfile:
        return load_profile(self.paths.profiles_dir, self.network_name)

    @property
    def models_dir(self) -> Path:
        configured = self.config.models.dir.strip()
        return Path(configured).expanduser() if configured else self.paths.default_models_dir

    @cached_property
    def database(self) -> Database:
        self.paths.ensure()
        return Database(self.paths.database_file)

    def chain_options(self) -> dict[str, Any]:
        """`connect()` keywords from `[chain]`: the log page size and the fee policy."""
        from chain.transactions import GasPolicy

        section = self.config.chain
        gas = GasPolicy(max_fee_wei=section.max_fee_wei, priority_fee_wei=section.priority_fee_wei)
        return {"log_span": section.log_range_blocks, "gas": gas}

    def emit_json(self, document: Any) -> None:
        """With --json, stdout carries exactly this one document and nothing else."""
        self.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
        self.stdout.flush()

    def echo(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def close(self) -> None:
        if "database" in self.__dict__:
            self.database.close()
