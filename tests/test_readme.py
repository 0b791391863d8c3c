"""The README's offline Python snippet runs as written and says what it does."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def test_use_it_snippet_runs_as_written():
    text = README.read_text()
    section = text[text.index("## Use it"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["images"].shape == (16, 1, 32, 32) and ns["z"].shape == (16, 16, 128)
    assert ns["recon"].shape == (16, 1, 32, 32)
    assert torch.allclose(ns["same"], ns["images"][:1], atol=1e-5)   # the comment's claim
    assert ns["images"].std(0).mean() > 0.1   # the default model's samples differ


def test_where_things_are_names_every_module():
    """The README's table of where things are names every module of the package by its file (the
    old addresses kept as re-exports are named together in one row)."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from test_structure import PACKAGE, SHIMS, module_name
    table = README.read_text().split("## Where things are")[1].split("\n## ")[0]
    unnamed = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
               if p.name not in ("__init__.py", "_version.py") and module_name(p) not in SHIMS
               and f"`fsvae_sj/{p.relative_to(PACKAGE).as_posix()}`" not in table
               and f"`{p.relative_to(PACKAGE).as_posix()}`" not in table]
    assert not unnamed, unnamed
