"""``python -m fsvae_sj.data``: the ``data`` command, :mod:`fsvae_sj.cli.data`."""
from .cli.data import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
