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


def test_cluster_package_imports_no_consumers_views_or_auth() -> None:
    """The cross-process layer sits below the transport and auth: apps.py plugs those in."""
    code = (
        "import os, sys\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "import django\n"
        "from django.conf import settings\n"
        "settings.INSTALLED_APPS  # configure, without running apps.ready (which imports auth)\n"
        "import bokehserve_django.cluster\n"
        "bad = [m for m in ('bokehserve_django.consumers', 'bokehserve_django.views', 'bokehserve_django.auth',\n"
        "       'bokehserve_django.routing') if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
