"""The error contract (fsvae_sj/errors.py): every refusal is an FsvaeError; a command prints only
those as one ``error:`` line with exit status 2, and anything else keeps its traceback."""
import ast
import builtins
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fsvae_sj"
# The raises of built-in exceptions that are no refusal of the user's input: a bug, or training's
# own outcome.
NOT_REFUSALS = {("training/loop.py", "FloatingPointError"),     # the loss diverged: train's exit status 3
                ("training/state.py", "FloatingPointError"),    # non-finite weights are never saved (status 3)
                ("models/config.py", "TypeError"),                      # a new config field of a type with no check
                ("spiking/sj.py", "RuntimeError"),               # FlexSN asked for on the legacy SpikingJelly
                ("spiking/surrogate.py", "NotImplementedError"),  # a CuPy dtype the code generator lacks
                ("cli/common.py", "RuntimeError"),               # image_sink given fewer images than announced
                ("training/distributed.py", "RuntimeError")}     # replicas diverged: a distribution bug


def builtin_raises():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name) and isinstance(getattr(builtins, node.exc.func.id, None), type):
                yield str(path.relative_to(PACKAGE)), node.exc.func.id, node.lineno


def test_every_refusal_is_an_fsvae_error():
    plain = [f"{f}:{line} raise {name}" for f, name, line in builtin_raises() if (f, name) not in NOT_REFUSALS]
    assert not plain, f"refusals that are not FsvaeError subclasses (errors.py): {plain}"


# a command in a child process: this checkout, glibc (no re-execution under tcmalloc)
ENV = dict(os.environ, FSVAE_SJ_TCMALLOC="0", PYTHONPATH=str(PACKAGE.parent))


def run_sample_with(raising: str) -> subprocess.CompletedProcess:
    """``fsvae-sample`` whose model loading raises ``raising`` (an expression)."""
    code = ("from fsvae_sj.cli import common, sample\n"
            "from fsvae_sj.errors import ConfigError\n"
            f"def load(*a, **k):\n    raise {raising}\n"
            "common.load_and_report = load\n"
            "sample.cli()\n")
    return subprocess.run([sys.executable, "-c", code, "-n", "1", "-o", os.devnull + ".png"], capture_output=True,
                          text=True, env=ENV, timeout=120)


def test_a_refusal_is_one_line_and_exit_2():
    r = run_sample_with('ConfigError("the setting x cannot work; use y")')
    assert (r.returncode, r.stderr) == (2, "error: the setting x cannot work; use y\n")


@pytest.mark.parametrize("bug", ['KeyError("hidden_dims")', 'ValueError("a bug, not a refusal")',
                                 'OSError(5, "I/O error")'])
def test_a_bug_keeps_its_traceback(bug):
    r = run_sample_with(bug)
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr, (r.returncode, r.stderr)
    assert r.stderr.rstrip().splitlines()[-1].startswith(bug.split("(")[0] + ":")


def test_a_reader_that_goes_away_ends_the_tool_quietly_with_141():
    # `python -m fsvae_sj.zoo list | head -1`: the pipe's reader is gone before the tool writes
    # (closed here at once, so the write surely fails), as Unix tools end on SIGPIPE.
    p = subprocess.Popen([sys.executable, "-m", "fsvae_sj.zoo", "list"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV, text=True)
    p.stdout.close()
    err = p.stderr.read()
    assert (p.wait(timeout=120), err) == (141, "")
