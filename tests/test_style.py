"""Style is part of the build: `ruff check`, `ruff format --check` and `mypy --strict` are clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed beside this Python (the test extra has it)")
        pytest.skip(f"{name} is not installed beside this Python")
    return str(path)


def _clean(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_check_is_clean():
    _clean(_tool("ruff"), "check", "--no-cache", str(ROOT))


def test_ruff_format_leaves_everything_as_it_is():
    _clean(_tool("ruff"), "format", "--check", "--no-cache", str(ROOT))


@pytest.mark.timeout(300)
def test_mypy_strict_is_clean_on_the_server_and_the_client():
    _clean(_tool("mypy"), "--strict", "--no-incremental", "chatd", "client")
