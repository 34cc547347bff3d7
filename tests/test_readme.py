"""The README's two set-up commands stay true: CI runs the same test command, the demo command's CLI exists."""

from __future__ import annotations

import re

from conftest import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_readme_has_exactly_two_setup_commands() -> None:
    demo, tests = _commands()
    assert demo.endswith("python run_live.py")
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _commands()
    install, run = tests.rsplit(" && ", 1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert install in ci.splitlines()
    assert run in ci.splitlines()
