"""runbokeh takes panel serve's flags that mean something here, and refuses its sign-in flags
with Django's way. No Panel needed: these are about the command."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from bokehserve_django.static_dirs import StaticDirs
from tests.unit.test_runbokeh import APPS, recorder, run  # noqa: F401  (recorder is a fixture)

ASSETS = Path(__file__).resolve().parent / "assets"


@pytest.mark.parametrize(
    ("flags", "advice"),
    [
        (["--oauth-provider", "github"], "django-allauth"),
        (["--oauth-key", "k", "--oauth-secret", "s"], "django-allauth"),
        (["--oauth-optional"], "access policy"),
        (["--basic-auth", "secret"], "'access': 'login'"),
        (["--login-endpoint", "/login"], "access policy"),
        (["--cookie-path", "/x"], "SESSION_COOKIE_PATH"),
        (["--root-path", "/x"], "--prefix"),
        (["--admin"], "Django admin"),
        (["--admin-endpoint", "/admin"], "Django admin"),
        (["--rest-provider", "tranquilizer"], "Django view"),
        (["--setup", "setup.py"], r"AppConfig\.ready\(\)"),
        (["--num-threads", "4"], "run_in_thread"),
        (["--reuse-sessions"], "own session"),
        (["--liveness"], "/healthz"),
        (["--profiler", "pyinstrument"], "py-spy"),
        (["--plugins", "x"], "URLconf"),
    ],
)
def test_panel_sign_in_flags_are_refused_with_django_s_way(recorder, flags, advice) -> None:  # noqa: F811
    with pytest.raises(CommandError, match=advice) as info:
        run(str(APPS / "echo.py"), *flags)
    assert flags[0] in str(info.value)
    assert recorder.instances == []  # nothing was served


def test_autoreload_is_dev(recorder, monkeypatch) -> None:  # noqa: F811
    from django.utils import autoreload

    reloaded: list[dict] = []
    monkeypatch.setattr(autoreload, "run_with_reloader", lambda main, **options: reloaded.append(options))
    call_command("runbokeh", str(APPS / "echo.py"), "--autoreload")
    assert reloaded and reloaded[0]["dev"] is True


def test_global_loading_spinner_switches_on_panel_s(recorder) -> None:  # noqa: F811
    pytest.importorskip("panel")
    from panel.config import config

    try:
        run(str(APPS / "echo.py"), "--global-loading-spinner")
        assert config.global_loading_spinner is True
    finally:
        config.global_loading_spinner = False


def test_static_dirs_wrap_the_application(recorder) -> None:  # noqa: F811
    kwargs = run(str(APPS / "echo.py"), "--static-dirs", f"assets={ASSETS}", f"media/docs={ASSETS}")
    application = kwargs["application"]
    assert isinstance(application, StaticDirs)
    assert application.roots == {"/assets/": str(ASSETS), "/media/docs/": str(ASSETS)}
    # Under --prefix (tested live in test_runbokeh_panel.py) the URLs move below it.
    assert StaticDirs(None, {"assets": str(ASSETS)}, prefix="bokeh").roots == {"/bokeh/assets/": str(ASSETS)}


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("assets", "not URL=PATH"),
        (f"echo={ASSETS}", "already served"),
        (f"static={ASSETS}", "already served"),
        ("assets=/no/such/dir", "not a directory"),
    ],
)
def test_bad_static_dirs_are_refused(recorder, item, problem) -> None:  # noqa: F811
    with pytest.raises(CommandError, match=problem):
        run(str(APPS / "echo.py"), "--static-dirs", item)


async def call(application: StaticDirs, path: str, method: str = "GET") -> tuple[int, bytes]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await application({"type": "http", "method": method, "path": path}, None, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_static_dirs_serve_files_and_nothing_outside() -> None:
    async def downstream(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"the site"})

    application = StaticDirs(downstream, {"assets": str(ASSETS)})
    assert await call(application, "/assets/hello.txt") == (200, b"static hello\n")
    assert await call(application, "/assets/hello.txt", "HEAD") == (200, b"")
    assert (await call(application, "/assets/../test_runbokeh_flags.py"))[0] == 404
    assert (await call(application, "/assets/"))[0] == 404  # no listing
    assert (await call(application, "/assets/hello.txt", "POST"))[0] == 405
    assert await call(application, "/other") == (299, b"the site")


def test_index_titles_name_the_apps_on_the_index(recorder) -> None:  # noqa: F811
    from django.test import Client

    from bokehserve_django.conf import bokeh_settings

    run(str(APPS / "echo.py"), str(APPS / "shout.py"), "--index-titles", "echo=Echo chamber", "/shout=Loud app")
    assert bokeh_settings.INDEX_TITLES == {"echo": "Echo chamber", "shout": "Loud app"}
    html = Client().get("/").content.decode()
    assert ">Echo chamber</a>" in html and ">Loud app</a>" in html


def test_an_index_title_without_a_name_is_refused(recorder) -> None:  # noqa: F811
    with pytest.raises(CommandError, match="NAME=TITLE"):
        run(str(APPS / "echo.py"), "--index-titles", "Echo chamber")
