"""Runs the calling script under .cache/llamacpp-venv's python (llama-cpp-python, numpy),
building it first with scripts/build-llamacpp.sh, when the current python lacks a module.

    import llamacpp_venv
    llamacpp_venv.require(__file__, "numpy", "llama_cpp")
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, ".cache", "llamacpp-venv", "bin", "python")


def require(script: str, *modules: str) -> None:
    """Returns when every module imports here; otherwise re-executes `script` (with the same
    arguments) under the venv's python, or raises the ImportError when already there."""
    try:
        for name in modules:
            importlib.import_module(name)
        return
    except ImportError:
        if os.path.abspath(sys.executable) == os.path.abspath(VENV_PY):
            raise
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "build-llamacpp.sh")], check=True, stdout=sys.stderr)
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(script), *sys.argv[1:]])
