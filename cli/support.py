"""What the command-line modules share."""

from __future__ import annotations

import click

from stepstream.streams.settings import Settings, SettingsError


def load_settings() -> Settings:
    """The settings from the environment; a bad value is a usage error naming its variable."""
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
