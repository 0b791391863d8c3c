"""``python -m fsvae_sj.convert``: the ``convert`` command, :mod:`fsvae_sj.cli.convert`."""
from .cli.convert import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
