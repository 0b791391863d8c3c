"""``python -m fsvae_sj.evaluate``: the ``evaluate`` command, :mod:`fsvae_sj.cli.evaluate`."""
from .cli.evaluate import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
