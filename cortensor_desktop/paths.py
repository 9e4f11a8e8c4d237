"""Where the app keeps its files.

platformdirs gives the per-OS folders. `CORTENSOR_HOME` puts config, data, cache and logs under
one folder, so tests stay isolated and operators can run several nodes on one host; models stay
in the shared model directory unless the config names another, because they are large and the
same for every node.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from cortensor_desktop import APP_NAME

HOME_ENV = "CORTENSOR_HOME"
CONFIG_FILE_NAME = "config.toml"
DATABASE_FILE_NAME = "cortensor.sqlite3"


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path
    default_models_dir: Path
    home: Path | None = None

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_FILE_NAME

    @property
    def database_file(self) -> Path:
        return self.data_dir / DATABASE_FILE_NAME

    @property
    def keystore_dir(self) -> Path:
        return self.data_dir / "keystore"

    @property
    def profiles_dir(self) -> Path:
        """Network profiles (RPC URLs, chain id, contract addresses): never addresses in code."""
        return self.config_dir / "networks"

    def ensure(self) -> None:
        """Create the folders the app writes to, private to the user whatever the umask:
        data holds the journal (salts of unrevealed answers) and the keystore, config the
        network profiles (RPC URLs that may carry API keys), logs what the node did. A folder
        that already exists with looser permissions (made by an older version, or by hand)
        is tightened too."""
        for folder in (self.config_dir, self.cache_dir, self.log_dir, self.data_dir):
            private_dir(folder)


def private_dir(folder: Path) -> Path:
    """Make `folder` (and missing parents) and leave it readable by its owner only (POSIX)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        try:
            if stat.S_IMODE(folder.stat().st_mode) & 0o077:
                os.chmod(folder, 0o700)
        except OSError:
            pass  # not ours to change (a shared mount): the files inside are still 0600
    return folder


def shared_models_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "models"


def resolve_paths(environ: dict[str, str] | None = None) -> AppPaths:
    env = os.environ if environ is None else environ
    home_value = env.get(HOME_ENV, "").strip()
    if home_value:
        home = Path(home_value).expanduser().resolve()
        return AppPaths(
            config_dir=home / "config",
            data_dir=home / "data",
            cache_dir=home / "cache",
            log_dir=home / "logs",
            default_models_dir=shared_models_dir(),
            home=home,
        )
    return AppPaths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        default_models_dir=shared_models_dir(),
    )
