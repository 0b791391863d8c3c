"""Every command's --help explains every flag: what it does, and its effective default."""
import argparse
import importlib

import pytest

from fsvae_sj.cli import COMMANDS
from fsvae_sj.training import TrainConfig


def arguments(parser: argparse.ArgumentParser, path: str):
    """(command path, action) for every argument of ``parser`` and of its sub-commands; a
    sub-command itself comes as its pseudo-action (whose help is the sub-command's line)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield path, choice
            for name, sub in action.choices.items():
                yield from arguments(sub, f"{path} {name}")
        else:
            yield path, action


def all_arguments():
    for name, module in COMMANDS.items():
        yield from arguments(importlib.import_module(module).build_parser(), name)


def test_every_flag_has_help_that_states_its_default():
    seen, silent, no_default = 0, [], []
    for path, action in all_arguments():
        seen += 1
        name = f"{path} {'/'.join(action.option_strings) or action.dest}"
        text = action.help
        if not text or text == argparse.SUPPRESS:
            silent.append(name)
        elif "default None" in text or (action.option_strings and action.nargs != 0 and not action.required
                                        and "default" not in text):
            no_default.append(name)
    assert seen > 80, seen   # all eight commands were walked, sub-commands included
    assert not silent, f"flags without help: {silent}"
    assert not no_default, f"flags whose help does not state the effective default: {no_default}"


def test_the_walk_sees_a_flag_without_help(monkeypatch):
    """The walk above would notice a new flag without help, in a sub-command too."""
    from fsvae_sj.cli import zoo as zoo_cli
    real = zoo_cli.build_parser

    def with_a_silent_flag():
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["publish"].add_argument("--undocumented")
        return p
    monkeypatch.setattr(zoo_cli, "build_parser", with_a_silent_flag)
    with pytest.raises(AssertionError, match=r"without help: \['zoo publish --undocumented'\]"):
        test_every_flag_has_help_that_states_its_default()


def test_train_help_states_the_defaults_the_code_uses():
    from fsvae_sj.cli.train import build_parser
    helps = {a.dest: a.help for a in build_parser()._actions}
    assert "default 1e-3 x batch size x processes / 250" in helps["lr"]
    assert TrainConfig(batch_size=500).base_lr(world=2) == pytest.approx(1e-3 * 500 * 2 / 250)
    assert TrainConfig().base_lr() == pytest.approx(1e-3)
    from fsvae_sj.spiking.surrogate import Rect
    for preset, a in (("code", 1.0), ("paper", 0.2)):
        assert f"{preset} {a:g}" in helps["surrogate_a"]
        assert Rect.preset(preset, v_threshold=0.2).a == a   # what a None surrogate_a builds
    for field in ("epochs", "batch_size", "eval_samples", "mmd_reduction"):
        assert f"(default {getattr(TrainConfig(), field)})" in helps[field]


def test_the_command_list_is_kept_once():
    """setup.cfg's console scripts and the README's list of them follow ``fsvae_sj.cli.COMMANDS`` (so does
    tests/test_structure.py's command layer, read from it)."""
    import configparser
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    scripts = dict(line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].split("\n") if line)
    assert scripts == {f"fsvae-{name}": f"{module}:cli" for name, module in COMMANDS.items()}
    readme = (root / "README.md").read_text()
    assert set(re.findall(r"`(fsvae-[a-z]+)`", readme)) >= set(scripts), "the README names every console script"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_python_m_runs_the_command_of_the_list(name):
    """``python -m fsvae_sj.<tool>`` (``fsvae_sj/<tool>.py``, for the zoo ``fsvae_sj/zoo/__main__.py``)
    runs the very ``cli`` the console script runs."""
    entry = importlib.import_module(f"fsvae_sj.{name}.__main__" if name == "zoo" else f"fsvae_sj.{name}")
    command = importlib.import_module(COMMANDS[name])
    assert entry.cli is command.cli and entry.main is command.main
