"""Bad settings stop `manage.py check` and `runbokeh` at start-up, before any page is served."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.live import ROOT, free_port

BAD_VALUES = [
    ("BOKEH_SIGN_SESSIONS", "maybe"),
    ("BOKEH_SESSION_TOKEN_EXPIRATION", "soon"),
    ("BOKEH_SESSION_TOKEN_EXPIRATION", "-5"),
    ("BOKEH_RESOURCES", "nowhere"),
]


def manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    full_env.pop("BOKEHSERVE_RUN_OVERRIDES", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args, "--settings", "tests.settings"],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_check_fails_naming_the_variable_and_value(variable: str, value: str) -> None:
    result = manage("check", env={variable: value})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "bokehserve_django.E006" in output
    assert f"{variable}={value!r} is not valid" in output
    assert f"HINT: Give {variable} a valid value or unset it" in output
    # bokeh's own warning about BOKEH_SECRET_KEY (which we do not need) does not muddy the report.
    assert "BOKEH_SECRET_KEY must be set" not in output


def test_a_value_fatal_to_bokeh_import_is_reported_first() -> None:
    """bokeh parses BOKEH_MINIFIED when imported and dies with a bare ValueError; we speak first."""
    result = manage("check", env={"BOKEH_MINIFIED": "sometimes"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "InvalidEnvironmentVariable: BOKEH_MINIFIED='sometimes' is not valid" in output
    assert "Give BOKEH_MINIFIED a valid value or unset it" in output
    assert "Cannot convert sometimes to boolean value" not in output


def test_check_is_quiet_about_bokeh_secret_key_for_a_valid_value() -> None:
    result = manage("check", env={"BOKEH_SIGN_SESSIONS": "false"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BOKEH_SECRET_KEY" not in result.stdout + result.stderr


def test_runbokeh_refuses_to_start() -> None:
    result = manage("runbokeh", "--port", str(free_port()), env={"BOKEH_SIGN_SESSIONS": "maybe"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "BOKEH_SIGN_SESSIONS='maybe' is not valid" in output
    assert "ready" not in output
    assert "Starting Bokeh server" not in output
