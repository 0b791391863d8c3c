"""``python -m fsvae_sj.zoo``: the ``zoo`` command, :mod:`fsvae_sj.cli.zoo`."""
from ..cli.zoo import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
