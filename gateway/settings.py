"""Settings read from the environment with the ``HUNCH_`` prefix (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every key has a default that runs the embedded mode on one laptop."""

    model_config = SettingsConfigDict(env_prefix="HUNCH_", env_file=".env", extra="ignore")

    # Where the embedded state lives: the SQLite event store and trained model artifacts.
    home: Path = Path(".hunch")
    # The SQLite event store (WAL mode); defaults to <home>/events.sqlite3.
    db_path: Path | None = None

    @property
    def events_db(self) -> Path:
        return self.db_path or self.home / "events.sqlite3"


def load_settings() -> Settings:
    return Settings()
