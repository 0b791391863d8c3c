"""The command layer: the tools and what they share; no library module imports it.

Each tool is a thin ``main(argv) -> int`` here (``sample``, ``reconstruct``, ``evaluate``,
``train``, ``zoo``, ``convert``, ``ops``, ``data``) on :mod:`fsvae_sj.cli.common` (shared flags, the
one error style, the runner). Each runs as ``python -m fsvae_sj.<tool>`` (an entry module of two
lines that calls in here) and as the console script ``fsvae-<tool>``.
"""

# The commands, kept here once: tool name -> the module that holds its ``main`` and ``cli``. Each is
# also the console script ``fsvae-<tool>`` (setup.cfg's entry points; tests/test_cli_help.py checks
# they agree) and ``python -m fsvae_sj.<tool>`` (fsvae_sj/<tool>.py, for zoo fsvae_sj/zoo/__main__.py).
COMMANDS = {"sample": "fsvae_sj.cli.sample", "reconstruct": "fsvae_sj.cli.reconstruct",
            "evaluate": "fsvae_sj.cli.evaluate", "train": "fsvae_sj.cli.train", "zoo": "fsvae_sj.cli.zoo",
            "convert": "fsvae_sj.cli.convert", "ops": "fsvae_sj.cli.ops", "data": "fsvae_sj.cli.data"}
