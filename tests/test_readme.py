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
