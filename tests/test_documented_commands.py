"""Every ``toto-robot`` command in the README and docs/ composes its config as written: each key exists,
each group option exists, each override parses. hydra's compose API, the same composition ``--cfg job``
does, without running the job (paths in the docs need not exist here). docs/errors.md is left out: it
shows commands that are wrong on purpose."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {p.name for p in (ROOT / "configs").iterdir() if p.is_dir()}
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "errors.md")]


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command) for every ``toto-robot <job>`` line in a fenced code block, continuations joined."""
    out = []
    for path in DOCS:
        text = path.read_text()
        for block in re.finditer(r"```[^\n]*\n(.*?)```", text, re.S):
            start = text.count("\n", 0, block.start(1)) + 1
            lines = block.group(1).split("\n")
            i = 0
            while i < len(lines):
                first, line = i, lines[i]
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
                at = line.find("toto-robot ")
                if at >= 0 and not line.lstrip().startswith("#"):
                    out.append((f"{path.relative_to(ROOT)}:{start + first}", line[at:]))
    return out


def overrides_of(command: str) -> tuple[str, str | None, list[str]]:
    """``toto-robot <job> args # comment`` -> (job, --config-name or None, overrides); shell variables,
    command substitutions and <placeholders> become a plain word."""
    command = re.sub(r"\$\([^)]*\)", "x", command)
    command = re.sub(r"\$\{?\w+\}?", "x", command)
    command = re.sub(r"<[^<>]*>", "x", command)
    args = shlex.split(command, comments=True)
    job, args = args[1], args[2:]
    config_name, overrides = None, []
    while args:
        a = args.pop(0)
        if a == "--config-name":
            config_name = args.pop(0)
        elif a.startswith("--config-name="):
            config_name = a.split("=", 1)[1]
        elif a.startswith("hydra.") or a.startswith("-"):
            continue
        elif a.split("=", 1)[0] in GROUPS and a.endswith("=x"):
            continue  # a group option given by a shell variable (a loop over tasks): not knowable here
        else:
            overrides.append(a)
    return job, config_name, overrides


def job_config_name(job: str) -> str:
    from toto_robot.cli import COMMANDS

    assert job in COMMANDS, f"no such command: toto-robot {job}"
    source = Path(importlib.import_module(COMMANDS[job][0]).__file__).read_text()
    return re.search(r"config_name=\"(\w+)\"", source).group(1)


COMMANDS_IN_DOCS = documented_commands()


def test_the_docs_hold_commands_of_every_kind():
    jobs = {overrides_of(c)[0] for _, c in COMMANDS_IN_DOCS}
    assert len(COMMANDS_IN_DOCS) >= 60 and {"collect", "pretrain", "train-policy", "compare", "import-demos", "demo"} <= jobs


@pytest.mark.parametrize("where,command", COMMANDS_IN_DOCS, ids=[w for w, _ in COMMANDS_IN_DOCS])
def test_documented_command_composes(where, command):
    from hydra import compose, initialize_config_module

    job, config_name, overrides = overrides_of(command)
    with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
        compose(config_name=config_name or job_config_name(job), overrides=overrides)


def test_an_override_the_config_lacks_fails_to_compose():
    """The check above can fail: a key that is not in the config, and import-demos' old task= (now task_name=)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import ConfigCompositionException

    for command in ("toto-robot pretrain no_such_key=1", "toto-robot import-demos format=lerobot src=x task=real_pick"):
        job, config_name, overrides = overrides_of(command)
        with initialize_config_module(config_module="toto_robot.configs", version_base="1.3"):
            with pytest.raises(ConfigCompositionException):
                compose(config_name=config_name or job_config_name(job), overrides=overrides)
