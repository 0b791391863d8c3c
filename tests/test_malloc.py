"""The CLIs' tcmalloc re-execution: opt-out and no loops."""
import os
import subprocess
import sys

from fsvae_sj.cli import malloc as _malloc


def test_opt_out_and_already_preloaded_do_not_exec(monkeypatch):
    monkeypatch.setattr(os, "execve", lambda *a: (_ for _ in ()).throw(AssertionError("exec")))
    monkeypatch.setenv("FSVAE_SJ_TCMALLOC", "0")
    _malloc.reexec_with_tcmalloc()
    monkeypatch.setenv("FSVAE_SJ_TCMALLOC", "1")
    monkeypatch.setenv("LD_PRELOAD", "/x/libtcmalloc_minimal.so.4")
    _malloc.reexec_with_tcmalloc()


def test_cli_runs_under_tcmalloc_when_present():
    lib = _malloc.find_tcmalloc()
    code = "import os; from fsvae_sj.cli.malloc import reexec_with_tcmalloc as r; r(); print(os.environ.get('LD_PRELOAD', ''))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}).stdout.strip()
    assert out == (lib or "")
