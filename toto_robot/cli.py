"""``toto-robot``: one command, one subcommand per job; each job is a hydra entry point in ``train/``.

    toto-robot --help
    toto-robot pretrain model=toto_tiny data=sim_default trainer.max_steps=200
    toto-robot pretrain --help          # hydra's own help: config groups and overrides

Every argument after the subcommand is passed to hydra unchanged.

Errors. A mistake the user can fix prints one line, ``error: <what is wrong>``, on stderr and exits
with status 2; ``HYDRA_FULL_ERROR=1`` shows its full traceback instead. These are

* the project's own errors, every class derived from ``toto_robot.errors.UserError`` (a config value
  out of range, a missing or mismatched checkpoint, a corrupt video, a demo folder in the wrong
  format, ...), raised anywhere in the job;
* hydra's config errors (``user_config_errors``): an unknown key without ``+``, a group option that
  does not exist, an override that does not parse, a mandatory ``???`` value left unset.

Any other exception is a bug and keeps its full traceback (exit status 1).

How. ``@hydra.main`` runs the job inside hydra's ``run_and_report``, which prints its own shortened
traceback and calls ``sys.exit(1)`` for every exception, unless the environment variable
``HYDRA_FULL_ERROR=1`` is set, in which case it re-raises the exception unchanged. ``run_command``
sets that variable (hydra's documented switch) while the job runs and restores it afterwards, so the
exception reaches this module, which sorts it with a plain ``except``. The train/*.py entry points stay
ordinary ``@hydra.main`` functions (hydra's output folders, ``--help``, ``--cfg`` and ``-m`` sweeps work
as before) and hold no error handling; run directly (``python -m toto_robot.train.pretrain``,
torchrun) they report errors the way hydra does. For an error raised inside a job hydra itself first
writes ``Error executing job with overrides: [...]``, so such a report is two lines.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from typing import Iterator

from toto_robot.errors import UserError, one_line

FULL_ERROR = "HYDRA_FULL_ERROR"  # hydra re-raises a job's exception when this is "1"

# subcommand -> (module in toto_robot.train with a hydra ``main``, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("toto_robot.train.collect", "scripted-expert demonstrations and videos from the MuJoCo tasks"),
    "import-demos": ("toto_robot.train.import_demos", "rosbag2 (MCAP/sqlite3), LeRobot v3 or RLDS recordings -> a demo folder"),
    "export-demos": ("toto_robot.train.export_demos", "a demo folder -> rosbag2 (ros2 bag play), LeRobot v3 or RLDS"),
    "real-frames": ("toto_robot.train.real_frames", "frozen encoders on your real video (DAVIS-layout) and robot episodes, beside no-training baselines"),
    "probe": ("toto_robot.train.probe", "layer sweep of a frozen encoder: classification probes, label propagation J, ridge R^2"),
    "train-policy": ("toto_robot.train.train_policy", "behaviour cloning or PPO on a frozen encoder"),
    "evaluate": ("toto_robot.train.evaluate", "success rate of a saved policy in a MuJoCo task"),
    "ood": ("toto_robot.train.ood", "out-of-distribution scores of recorded frames against a policy's training frames, plotted over time"),
    "compare": ("toto_robot.train.compare", "compare encoders with BC on the same tasks, seeds and budget"),
    "compare-ppo": ("toto_robot.train.compare_ppo", "compare encoders by PPO learning curves on the same tasks, seeds and env steps"),
    "benchmark": ("toto_robot.train.benchmark", "CortexBench's MetaWorld protocol on frozen encoders: best/last-epoch success table"),
    "tokenize": ("toto_robot.train.tokenize", "train a visual tokenizer (dVAE, VQ, patches) and write token shards"),
    "demo": ("toto_robot.train.demo", "the whole pipeline on simulated robot videos, ending in a report"),
    "study": ("toto_robot.train.study", "the recipe study: the demo once per recipe (tokenizer, steps, read-out, ...) in one page"),
    "scaling": ("toto_robot.train.scaling", "scaling sweep of small Totos and the power-law fit L(C) = a * C^b"),
    "pretrain": ("toto_robot.train.pretrain", "next-token pre-training of Toto on token shards (torchrun for multi-GPU)"),
}


def usage() -> str:
    width = max((len(c) for c in COMMANDS), default=8)
    lines = [
        "usage: toto-robot <command> [hydra overrides ...]",
        "",
        "Toto: autoregressive video pre-training as a frozen visual encoder for robots.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in sorted(COMMANDS.items())]
    lines += ["", "`toto-robot <command> --help` lists that command's config groups and options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from toto_robot import __version__

        print(f"toto-robot {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"toto-robot: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # hydra reads sys.argv itself; show the subcommand as the program name in its help.
    sys.argv = [f"toto-robot {name}", *rest]
    return run_command(module.main)


def user_config_errors() -> tuple[type[BaseException], ...]:
    """hydra's and omegaconf's exceptions for a config the user got wrong (not for a bug in a job)."""
    from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    # ConfigCompositionException covers MissingConfigException (a group option that does not exist)
    return (ConfigCompositionException, OverrideParseException, SearchPathException,
            MissingMandatoryValue, InterpolationToMissingValueError)


def error_line(exc: BaseException) -> str:
    """The one line that reports ``exc``: ``error: <message>``."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    if isinstance(exc, OverrideParseException):
        return f"error: cannot parse the override {exc.override!r}: {one_line(exc.message)}"
    if isinstance(exc, MissingConfigException):
        # "In 'probe': Could not find 'encoder/x'", then the group's options and hydra's search path
        head = str(exc).splitlines()[0]
        options = f"; available: {', '.join(exc.options)}" if exc.options else ""
        return f"error: {head}{options}"
    key = None
    if isinstance(exc, MissingMandatoryValue):
        key = exc.full_key  # the dotted path from the root, "encoder.checkpoint"
    elif isinstance(exc, InterpolationToMissingValueError):  # "... interpolation: Missing mandatory value: <key>"
        found = re.search(r"Missing mandatory value: (\S+)", str(exc))
        key = found.group(1) if found else None
    if key:
        return f"error: missing mandatory value {key} (set it on the command line: {key}=...)"
    if isinstance(exc, (MissingMandatoryValue, InterpolationToMissingValueError)):
        return f"error: {str(exc).splitlines()[0]}"  # omegaconf's "full_key: / object_type=" lines add nothing
    return f"error: {one_line(str(exc))}"


@contextlib.contextmanager
def hydra_reraises() -> Iterator[None]:
    """Make ``@hydra.main`` re-raise a job's exception instead of printing it and exiting (see above)."""
    before = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = before


HYDRA_JOB_ERROR = "Error executing job with overrides:"  # hydra writes this line to stderr before re-raising a job's exception


class _StderrHoldingJobLine:
    """sys.stderr, except that hydra's "Error executing job with overrides" line is held back: a user error's
    ``error:`` line says what went wrong without it, a bug gets it back before its traceback (``release``)."""

    def __init__(self, stream):
        self._stream, self.held = stream, []

    def write(self, text: str) -> int:
        if text.startswith(HYDRA_JOB_ERROR):
            self.held.append(text)
            return len(text)
        return self._stream.write(text)

    def release(self) -> None:
        for text in self.held:
            self._stream.write(text)
        self.held.clear()

    def __getattr__(self, name):  # flush, isatty, fileno, encoding ...: the real stream's
        return getattr(self._stream, name)


def job_log_files() -> set[str]:
    """The log files the root logger writes to: hydra points one at ``<run folder>/<job>.log`` for each job."""
    import logging

    return {h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)}


def is_run_record(path) -> bool:
    """hydra's record of a run (``.hydra/``), the job's log, the config a job saves before it starts work
    (``config.yaml``, ``<job>_config.json``) and an import's ledger of inputs it could not read: what a run folder
    holds when the job failed before doing anything."""
    if path.is_dir():
        return path.name == ".hydra"
    return path.suffix == ".log" or path.name == "config.yaml" or (path.suffix == ".json" and path.stem.endswith(("config", "ledger")))


def remove_empty_run_dir(logs_before: set[str], cwd: str) -> None:
    """After a user error: the run folder hydra made for this job (``runs/<command>/<time>/``, found from the job's
    log file, one that was not open before the job) goes when it holds nothing but the run's record
    (``is_run_record``). A folder with anything else in it stays (a resumable run, an ``out_dir`` the user named)."""
    import shutil
    from pathlib import Path

    home = Path(cwd).resolve()
    for log_file in job_log_files() - logs_before:
        run_dir = Path(log_file).parent
        if not run_dir.is_dir() or not all(is_run_record(p) for p in run_dir.iterdir()):
            continue
        os.chdir(cwd)  # a job run with hydra.job.chdir=true is still inside the folder
        shutil.rmtree(run_dir, ignore_errors=True)
        for parent in run_dir.resolve().parents:  # runs/<command>/..., up to runs/, when this left them empty
            if home not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break


def run_command(hydra_main) -> int:
    """Call a ``@hydra.main`` function; a user error becomes one ``error:`` line and status 2."""
    full = os.environ.get(FULL_ERROR) == "1"
    stderr = sys.stderr
    hold = _StderrHoldingJobLine(stderr)
    logs_before, cwd = job_log_files(), os.getcwd()
    try:
        with hydra_reraises(), contextlib.redirect_stderr(stderr if full else hold):
            result = hydra_main()
    except (UserError, *user_config_errors()) as exc:
        remove_empty_run_dir(logs_before, cwd)
        if full:
            raise
        if int(os.environ.get("RANK", "0")) > 0:  # under torchrun every rank meets the same error: rank 0 reports it, and the
            import time  # others leave a moment later (torchrun stops every rank as soon as one has exited)

            time.sleep(5.0)
            return 2
        print(error_line(exc), file=sys.stderr)
        return 2
    except BaseException:
        hold.release()
        raise
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
