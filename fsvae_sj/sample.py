"""``python -m fsvae_sj.sample``: the ``sample`` command, :mod:`fsvae_sj.cli.sample`."""
from .cli.sample import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
