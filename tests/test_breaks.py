"""tests/breaks.py keeps finding its code: each break matches exactly one place, also after a
reformat, and changes it (running the breaks themselves takes minutes: see its docstring)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import breaks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name, path, old, new, test", breaks.BREAKS, ids=[b[0] for b in breaks.BREAKS])
def test_each_break_finds_its_code_once(name, path, old, new, test):
    source = (ROOT / path).read_text()
    broken = breaks.apply(source, old, new)
    assert broken != source and new.strip() in broken
    assert (ROOT / test.split()[0]).is_file()


def test_a_reformatted_line_is_still_found():
    old = "torch.var_mean(x.to(torch.float64), dim=(0, 1), correction=0)"
    reformatted = "    v = torch.var_mean(\n        x.to(torch.float64),\n        dim=(0, 1),\n        correction=0,\n    )\n"
    assert breaks.apply(reformatted, old, "torch.var_mean(x, dim=(0, 1), correction=0)") == \
        "    v = torch.var_mean(x, dim=(0, 1), correction=0)\n"
    indented = "if a:\n    return total / count\nreturn total / count / n\n"
    assert breaks.apply(indented, "    return total / count\n", "    return 0\n") == \
        "if a:\n    return 0\nreturn total / count / n\n"
    with pytest.raises(LookupError, match="found 0 times"):
        breaks.apply("x = 1\n", "y = 2", "y = 3")
    with pytest.raises(LookupError, match="found 2 times"):
        breaks.apply("x = 1\nx = 1\n", "x = 1", "x = 2")
