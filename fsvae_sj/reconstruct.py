"""``python -m fsvae_sj.reconstruct``: the ``reconstruct`` command, :mod:`fsvae_sj.cli.reconstruct`."""
from .cli.reconstruct import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
