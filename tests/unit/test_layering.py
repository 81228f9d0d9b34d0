"""Layering rules: the protocol layer imports no Django or Channels."""

from __future__ import annotations

import subprocess
import sys


def test_protocol_module_imports_no_django_or_channels() -> None:
    code = (
        "import sys, bokehserve_django.protocol\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'channels', 'daphne')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
