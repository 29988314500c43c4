"""Top-level exports of rmisr_monai: each name is the object its module defines, and neither ``import rmisr_monai``
nor ``rmisr --help`` imports torch (checked in a fresh interpreter)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import rmisr_monai


@pytest.mark.parametrize("name", sorted(rmisr_monai.EXPORTS))
def test_each_export_is_its_modules_object(name):
    module = importlib.import_module(rmisr_monai.EXPORTS[name])
    assert getattr(rmisr_monai, name) is getattr(module, name)
    assert name in rmisr_monai.__all__ and name in dir(rmisr_monai)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'upscale_volumes'"):
        rmisr_monai.upscale_volumes  # noqa: B018


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, io, contextlib\n"
        "import rmisr_monai\n"
        "from rmisr_monai import __version__\n"
        "assert 'torch' not in sys.modules, 'import rmisr_monai imported torch'\n"
        "from rmisr_monai.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0\n"
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
