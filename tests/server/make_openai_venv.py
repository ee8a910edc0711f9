#!/usr/bin/env python3
"""ctest fixture of the kestrel-server test: a virtual environment in the build tree with
the official `openai` client from PyPI. Kept between runs (a second run only checks it).
When pip cannot reach PyPI, says so with the KESTREL-SKIP marker and succeeds: the test
that needs the client then skips with the same reason.

usage: make_openai_venv.py VENV_DIR
"""
import subprocess
import sys
import venv
from pathlib import Path


def has_openai(python: Path) -> bool:
    return python.exists() and subprocess.run([str(python), "-c", "import openai"],
                                              capture_output=True).returncode == 0


def main() -> int:
    root = Path(sys.argv[1])
    python = root / "bin" / "python"
    if has_openai(python):
        print(f"{root}: openai already installed")
        return 0
    venv.create(root, with_pip=True, clear=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                          "--timeout", "30", "openai"], capture_output=True, text=True)
    if pip.returncode != 0 or not has_openai(python):
        print("KESTREL-SKIP: pip could not install the openai client from PyPI:\n" + pip.stderr[-2000:])
        return 0
    print(f"{root}: openai installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
