"""``python -m fsvae_sj.train``: the ``train`` command, :mod:`fsvae_sj.cli.train`."""
from .cli.train import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
