"""Training recipes as data: one JSON file per training stage, read by ``python -m rmisr_monai.training --recipe``.

A recipe holds the options of one run of the training command under their option names (``network_kwargs`` for
``--network-kwargs``: the ``dest`` of each option), so the file is both the input of the run and its record:

.. code-block:: json

    {
      "format": "rmisr-monai/recipe/1",
      "description": "x4 stage 8: a warm restart of the shipped x4 model",
      "models": ["rmisr_bl64_ct_x4", "rmisr_bl64_mr_x4"],
      "network": "rmisr_bl", "network_kwargs": {"features": 64}, "scale": 4, "modality": "MR",
      "volumes": ["data/medical/mr/brain_t2w_int16.nii.gz"],
      "iterations": 5000, "lr": 5e-05, "seed": 9, "init": "rmisr_bl64_ct_x4",
      "checkpoint_dir": "runs/bl64_x4s8", "output": "runs/rmisr_bl64_x4s8.pt",
      "record": {"log": "benchmarks/campaign/bl64_x4s8/train.log"}
    }

``format``, ``description``, ``models`` (the registry entries the stage produced) and ``record`` (free-form
provenance: logs, commits, minutes) document the stage and are not options. The paths of ``volumes``, ``images`` and
``pictures`` are relative to the shared data folder (``--shared``, default ``$RMISR_SHARED`` or ``../shared``), so a
recipe names its data the same way on every machine. Options given on the command line after ``--recipe`` override
the recipe's (argparse keeps the last value of an option).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rmisr_monai.errors import InputFileError

__all__ = ["DATA_KEYS", "DOCUMENTATION_KEYS", "RECIPE_FORMAT", "default_shared", "load_recipe", "recipe_arguments"]

RECIPE_FORMAT = "rmisr-monai/recipe/1"
DOCUMENTATION_KEYS = frozenset({"format", "description", "models", "record"})
DATA_KEYS = frozenset({"volumes", "images", "pictures"})  # paths relative to the shared data folder
# options that choose or locate the recipe itself, or continue another run: never inside a recipe
_NOT_IN_A_RECIPE = frozenset({"help", "recipe", "shared", "resume"})


def default_shared() -> Path:
    """The shared data folder recipe paths are relative to: ``$RMISR_SHARED``, else ``../shared``."""
    return Path(os.environ.get("RMISR_SHARED", "../shared"))


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        action.dest: action for action in parser._actions  # noqa: SLF001 (argparse has no public list of options)
        if action.option_strings and action.dest not in _NOT_IN_A_RECIPE
    }


def load_recipe(path: str | os.PathLike, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read and check a recipe: a JSON object of ``parser``'s option names and the documentation keys.

    Args:
        path: the recipe file.
        parser: the training command's parser; its options (by ``dest``) are the keys a recipe may hold.

    Returns:
        The recipe as read (key order kept).

    Raises:
        InputFileError: naming the file: not JSON, not an object, another ``format``, an unknown key, or a value
            of the wrong kind (a list where one value goes, a nested list, an object outside ``*_kwargs``).
    """
    path = Path(path)
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputFileError(path, f"cannot read the recipe: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise InputFileError(path, f"not a JSON recipe: {error}") from error
    if not isinstance(recipe, dict):
        raise InputFileError(path, f"a recipe is a JSON object of training options, not a {type(recipe).__name__}")
    if recipe.get("format") != RECIPE_FORMAT:
        raise InputFileError(path, f"format {recipe.get('format')!r}, expected {RECIPE_FORMAT!r}")
    options = _options(parser)
    unknown = sorted(set(recipe) - set(options) - DOCUMENTATION_KEYS)
    if unknown:
        raise InputFileError(
            path, f"unknown recipe keys {unknown}; a recipe holds the training options by name "
            f"({', '.join(sorted(options))}) and {sorted(DOCUMENTATION_KEYS)}",
        )
    for key, value in recipe.items():
        if key in DOCUMENTATION_KEYS:
            continue
        reason = _kind_error(key, value, options[key])
        if reason:
            raise InputFileError(path, f"{key}: {reason}")
    return recipe


def _kind_error(key: str, value: Any, action: argparse.Action) -> str | None:
    scalar = (str, int, float)
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        return None if isinstance(value, bool) else f"true or false, not {value!r}"
    if key.endswith("_kwargs"):
        return None if isinstance(value, dict) else f"a JSON object of keyword arguments, not {value!r}"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        if not isinstance(value, list) or not all(isinstance(v, scalar) and not isinstance(v, bool) for v in value):
            return f"a list of values, not {value!r}"
        if isinstance(action.nargs, int) and len(value) != action.nargs:
            return f"{action.nargs} values, not {len(value)}"
        return None
    if isinstance(value, bool) or not isinstance(value, scalar):
        return f"one value, not {value!r}"
    return None


def recipe_arguments(
    recipe: Mapping[str, Any], parser: argparse.ArgumentParser, shared: str | os.PathLike | None = None
) -> list[str]:
    """The command-line arguments a checked recipe stands for, in the recipe's key order.

    Args:
        recipe: as returned by :func:`load_recipe`.
        parser: the parser the recipe was checked against (gives each key its option string).
        shared: the folder the data paths are relative to (default :func:`default_shared`).

    Returns:
        ``["--network", "rmisr_bl", "--network-kwargs", '{"features": 64}', ...]``: what the command parses.
    """
    root = Path(default_shared() if shared is None else shared)
    options = _options(parser)
    arguments: list[str] = []
    for key, value in recipe.items():
        if key in DOCUMENTATION_KEYS:
            continue
        action = options[key]
        flag = action.option_strings[0]
        if isinstance(value, bool):
            if isinstance(action, argparse.BooleanOptionalAction):
                arguments.append(flag if value else "--no-" + flag[2:])
            elif value:
                arguments.append(flag)
        elif isinstance(value, dict):
            arguments += [flag, json.dumps(value)]
        elif isinstance(value, list):
            values = [str(root / v) for v in value] if key in DATA_KEYS else [_text(v) for v in value]
            arguments += [flag, *values]
        else:
            arguments += [flag, _text(value)]
    return arguments


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else json.dumps(value)
