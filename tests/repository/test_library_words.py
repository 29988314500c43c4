"""Library messages in library words (issue 35): what ``rmisr_monai`` raises or logs names its options as the
Python API does (``model='bicubic'``, ``RunOptions.tile``), never as the ``rmisr`` command's flags (``--model``).
The CLI's words go in the error's ``cli=`` text (``cli_reason`` of the file errors; ``extra={"cli": ...}`` of a log
call), which the CLI prints instead.

Checked on the source: every string literal (f-string parts included) in the arguments of a ``raise X(...)`` or a
``logger.<level>(...)`` / ``warnings.warn(...)`` call outside the command-line modules (``cli.py`` and the
``__main__.py`` of ``python -m`` entry points, whose words are the flags).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "rmisr_monai"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
FILE_ERRORS = {"InputFileError", "OutputFileError"}  # (path, reason, cli_reason): the third is the CLI's words


def library_files() -> list[Path]:
    return sorted(
        p for p in PACKAGE_DIR.rglob("*.py") if p.name != "__main__.py" and p.relative_to(PACKAGE_DIR).as_posix()
        != "cli.py"
    )  # fmt: skip


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _library_arguments(call: ast.Call) -> list[ast.expr]:
    """The arguments of a message call that are in library words: all but ``cli=`` / ``cli_reason=`` / ``extra=``
    and the third positional argument of the file errors."""
    args = list(call.args[:2] if _name(call.func) in FILE_ERRORS else call.args)
    return args + [k.value for k in call.keywords if k.arg not in ("cli", "cli_reason", "extra")]


def _message_calls(tree: ast.AST) -> list[ast.Call]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            calls.append(node.exc)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS:
            owner = node.func.value
            owner_name = _name(owner) if not isinstance(owner, ast.Call) else _name(owner.func)
            if owner_name in ("logger", "log", "logging", "getLogger", "warnings", "_log", "LOG"):
                calls.append(node)
    return calls


def flag_words(source: str) -> list[tuple[int, str]]:
    """``(line, flag)`` for each ``--flag`` in library words of a raise or log call of ``source``."""
    found = []
    for call in _message_calls(ast.parse(source)):
        for argument in _library_arguments(call):
            for node in ast.walk(argument):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found += [(node.lineno, flag) for flag in FLAG.findall(node.value)]
    return found


def test_the_check_sees_flags_in_messages_and_not_in_cli_texts():
    bad = 'raise ConfigurationError(f"got {x}; use --model bicubic")\nlogger.warning("add --tile %s", 3)\n'
    assert flag_words(bad) == [(1, "--model"), (2, "--tile")]
    good = (
        'raise ConfigurationError(f"use model={m!r}", cli=f"use --model {m}")\n'
        'raise InputFileError(path, "stack=N", "--stack N")\n'
        'logger.error("error: %s", line, extra={"cli": "--tile"})\n'
        'x = "--help is not a message"\n'
    )
    assert flag_words(good) == []


@pytest.mark.parametrize("path", library_files(), ids=lambda p: p.relative_to(PACKAGE_DIR).as_posix())
def test_library_messages_name_no_cli_flag(path):
    found = flag_words(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(PACKAGE_DIR.parent)}: {found}: name the option in library words and give the CLI's "
        "words as cli= (rmisr_monai/errors.py)"
    )
