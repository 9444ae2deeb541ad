"""What every entry point shares about failure: the error types, the exit codes, and one-line messages.

A user never sees a traceback (unless ``HYDRA_FULL_ERROR=1``): bad input is one ``bench: error: ...`` line
and exit code 2 before any work; a run that started and failed is exit 1; an interrupted one 128 + the
signal's number: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP). See docs/architecture.md, "Failure".
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
from typing import NoReturn

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: the message names what is wrong and how to fix it."""


class ConfigError(UsageError, ValueError):
    """A config value is out of range or not one of the allowed choices."""


class DeviceUnavailable(UsageError, RuntimeError):
    """The configured device does not exist on this machine."""


class DatasetUnavailable(UsageError, RuntimeError):
    """The dataset cannot be read or fetched."""


class Refused(BaseException):
    """Bad input found inside a Hydra callback. A BaseException because Hydra turns a callback's ordinary
    exception into a warning and carries on, and a refused folder must stop the run before it starts."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived. A KeyboardInterrupt, so that no ``except Exception`` on the way out
    mistakes it for a failed run (and a DataLoader worker exits quietly); the run records it as
    ``interrupted`` and re-raises it, and the entry point exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def one_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def os_error_line(err: OSError) -> str:
    """``cannot write /x/y: Permission denied``: what failed and why, without errno noise."""
    where = err.filename if err.filename is not None else ""
    reason = err.strerror or one_line(err)
    return f"{where}: {reason}" if where else reason


def failure_reason(err: BaseException) -> str:
    """Why a command could not finish writing, after "could not ...: ": a filesystem error's path and reason; a
    bug's type and first line."""
    return os_error_line(err) if isinstance(err, OSError) else f"{type(err).__name__}: {one_line(err)}"


#: Hydra's one-line messages that name no fix, and the line bench prints instead ({0}: what the message names)
HYDRA_LINES = (
    (r"Could not append to config\. An item is already at '(.+)'\.$",
     "+{0}: {0} is a key already; set it without the +, as {0}=..."),
    (r"Could not delete from config\. '(.+)' does not exist\.$",
     "~{0}: there is no {0} to remove (not a key, or it holds no value)"),
    (r"Config group override must be a string or a list\. Got NoneType$",
     "a config group cannot be set to null (as in model=null): drop the override, or choose one of the group's "
     "options (python -m bench --help lists them)"),
    (r"provider=hydra\.searchpath in command-line, path=(.+) is not available\.$",
     "hydra.searchpath: {0} is not available here; name a folder of configs as file://DIR, DIR relative to where "
     "the command runs (file://my_conf) or absolute, or a package as pkg://NAME"),
    (r"(Cannot find primary config '.+'\.) Check that it's in your config search path\.",
     "{0} bench's own is config; another goes with --config-path DIR --config-name NAME"),
)  # fmt: skip


#: Hydra's two messages for a config group given an option twice (+model=small on top of its default)
GROUP_TWICE = (
    r"(?:Multiple values for (\S+)\. To override a value use 'override .+'|(\S+) appears more than once in "
    r"the final defaults list)$"
)


def _typed_with_plus(group: str) -> str | None:
    """The override of the command line that added an option of ``group`` with + (+model=small), if any."""
    return next((arg for arg in sys.argv[1:] if re.match(rf"\+\+?{re.escape(group)}=", arg)), None)


def describe(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, cut down to the one line a user needs."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, OverrideParseException):
        return f"cannot parse the override {err.override!r}: write key=value, and quote a value with special characters"

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        if err.options:
            return f"unknown {group} '{option}'; choose one of: {', '.join(sorted(err.options))}"
    cause = err.__cause__ if err.__cause__ is not None else err
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        parent = getattr(cause, "parent_node", None)
        if key and parent is not None and ("not in '" in msg or "is not in struct" in msg):  # an unknown key
            from bench.schema import unknown_key  # lazily: schema imports this module

            line = unknown_key(key, parent)
            if line:
                return line
        if key and "is not in struct" in msg:  # a component's YAML lacks the key (model.width): say how to add it
            msg += f" (a key its YAML does not list, such as an argument of the class, is added with +{key}=...)"
        return f"{key}: {msg}" if key and not msg.startswith(f"{key}:") else msg
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    ambiguous = re.match(r"Ambiguous value for argument '(.+)'$", lines[0]) if lines else None
    first = lines[0] if lines else ""
    target = re.match(r"Error locating target '(.+?)'", first)
    if target:  # Hydra's import of a _target_ failed: why is in the innermost cause (a module, or its own import)
        inner = err
        while inner.__cause__ is not None:
            inner = inner.__cause__
        return f"_target_={target[1]} cannot be imported ({one_line(inner) if inner is not err else 'no such name'})"
    twice = re.match(GROUP_TWICE, first)
    typed = _typed_with_plus(twice[1] or twice[2]) if twice else None
    if twice and typed:
        # +model=small: Hydra's advice is for a defaults list in YAML; on the command line the fix is to drop the
        # +. (The same message for a preset's defaults list without `override` keeps Hydra's words: right there.)
        group = twice[1] or twice[2]
        return (f"{typed}: {group} has an option chosen already (its default); choose another without the +, as "
                f"{typed.lstrip('+')}")  # fmt: skip
    for pattern, line in HYDRA_LINES:  # Hydra's own messages that say what is wrong but not what to do
        found = re.match(pattern, first)
        if found:
            return line.format(*found.groups())
    if ambiguous and ambiguous[1].startswith("experiment="):
        return several_experiments(ambiguous[1].partition("=")[2])
    if ambiguous:  # Hydra's three numbered hints on three more lines, in one
        return (f"{ambiguous[1]} is several values, and a run takes one: sweep them with python -m bench -m "
                f"{ambiguous[1]}, or write a list as key=[a,b]")  # fmt: skip
    if isinstance(err, MissingConfigException) and len(lines) > 1:
        return " ".join(lines[:2])
    return lines[0] if lines else type(err).__name__


def several_experiments(parts: str) -> str:
    """The one line for several lab parts (``experiment=a,b``) in one command, run or sweep: each part is a sweep of
    its own (its file's ``hydra.sweeper.params``), and a sweep over parts composes each job with its part's fixed
    values only, dropping the part's own sweep without a word (part 2 ran batch 64 alone)."""
    first = parts.split(",")[0]
    return (f"experiment={parts}: each lab part is a sweep of its own, which a sweep over parts would drop; run one "
            f"part per command (python -m bench experiment={first}), or make lab for all of them")  # fmt: skip


def fail(message: str, code: int) -> NoReturn:
    """Print the one line and exit."""
    print(f"bench: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def exit_interrupted(stop: Interrupted, detail: str) -> NoReturn:
    """The one line for SIGINT, SIGTERM or SIGHUP, and exit 130, 143 or 129 (128 + the signal's number)."""
    with contextlib.suppress(OSError):  # SIGHUP: the terminal is gone; what was kept is on disk all the same
        print(f"bench: interrupted by {stop.name}: {detail}", file=sys.stderr, flush=True)
    sys.exit(stop.exit_code)


class OneLineParser(argparse.ArgumentParser):
    """argparse for bench's commands: a bad argument is one ``bench: error:`` line and exit 2, not a usage
    screen."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", EXIT_USAGE)
