"""``python -m fsvae_sj.ops``: the ``ops`` command, :mod:`fsvae_sj.cli.ops`."""
from .cli.ops import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
