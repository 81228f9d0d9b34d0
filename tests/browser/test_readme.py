"""The README's "Use it in your project" works word for word, on a fresh ``startproject`` site.

The test reads README.md itself: the code blocks under "Use it in your project" and "Users,
permissions and security", found by the sentence that introduces each (``settings.py``:,
``mysite/asgi.py``:, ...). It applies them as a reader would, to a new ``mysite`` project in a
temporary directory, and then:

- ``manage.py check`` passes, ``migrate`` runs, a superuser is created;
- the README's run command (``python manage.py runbokeh``, plus ``--port``/``--address``) serves
  every app the settings name (each one a Button whose Python callback sets a Div's text);
- in Chromium, every public app does its round trip for an anonymous visitor; every other app
  sends the visitor to the login page, and after logging in the app opens and does its round
  trip, with the Django user visible to the app's callback.

How a block is applied (kept small on purpose; a block these rules cannot apply is a README bug):

- ``mysite/asgi.py`` and ``mysite/urls.py`` replace the generated files;
- a block that adds a line to ``urls.py`` (``path(...),``) goes at the end of ``urlpatterns``;
- settings blocks are statements added to ``settings.py``. An assignment to a name the file
  already has is merged: a list written with ``...`` becomes the items before ``...``, the file's
  items, then the items after ``...`` (each name once, in the order shown); a dict is merged key
  by key (dicts inside it likewise, e.g. ``BOKEHSERVE["APPS"]``); anything else replaces the value.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser.helpers import PageWatcher
from tests.live import ROOT, free_port

pytestmark = pytest.mark.browser

README = ROOT / "README.md"
DJANGO_ADMIN = Path(sys.executable).with_name("django-admin")
PASSWORD = "readme-Pa55word"
USER = "reader"

HELLO_APP = '''\
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import Button, Div

output = Div(text="clicks: 0", name="output")
button = Button(label="Press me", name="button")
clicks = 0


def on_click():
    global clicks
    clicks += 1
    output.text = f"clicks: {clicks} by {curdoc().session_context.user}"


button.on_event("button_click", on_click)
curdoc().add_root(column(button, output))
'''

LOGIN_TEMPLATE = """\
<!doctype html>
<title>Sign in</title>
<form method="post">
  {% csrf_token %}
  {{ form.as_p }}
  <input type="hidden" name="next" value="{{ next }}">
  <button type="submit">Sign in</button>
</form>
"""


# --- reading the README ---------------------------------------------------------------------------


def readme_blocks() -> dict[str, list[tuple[str, str]]]:
    """Each ``## `` section's fenced code blocks, as (the paragraph just before it, the code)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    fence = re.compile(r"^```[\w-]*\n(.*?)^```\n", re.S | re.M)
    for section in re.split(r"^## ", README.read_text(), flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        blocks, start = [], 0
        for match in fence.finditer(body):
            before = body[start:match.start()].strip().split("\n\n")[-1]
            blocks.append((" ".join(before.split()), match.group(1)))
            start = match.end()
        sections[title.strip()] = blocks
    return sections


def block(sections: dict[str, list[tuple[str, str]]], section: str, label: str) -> str:
    """The code block of ``section`` whose introducing paragraph contains ``label``."""
    found = [code for before, code in sections[section] if label in before]
    assert len(found) == 1, f"README section {section!r}: expected one block introduced by {label!r}, " \
                            f"found {len(found)} among {[before[-60:] for before, _ in sections[section]]}"
    return found[0]


# --- applying it --------------------------------------------------------------------------------


def merge(old: ast.expr, new: ast.expr) -> ast.expr:
    """A README value merged into the file's value (see the module docstring)."""
    if isinstance(new, ast.List) and any(isinstance(e, ast.Constant) and e.value is Ellipsis for e in new.elts):
        assert isinstance(old, ast.List), f"README shows a '...' list for {ast.unparse(old)}"
        dots = next(i for i, e in enumerate(new.elts) if isinstance(e, ast.Constant) and e.value is Ellipsis)
        before, after = new.elts[:dots], new.elts[dots + 1:]
        shown = {ast.unparse(e) for e in before + after}
        middle = [e for e in old.elts if ast.unparse(e) not in shown]
        return ast.List(elts=[*before, *middle, *after], ctx=ast.Load())
    if isinstance(new, ast.Dict) and isinstance(old, ast.Dict):
        merged = {ast.unparse(k): (k, v) for k, v in zip(old.keys, old.values, strict=True)}
        for key, value in zip(new.keys, new.values, strict=True):
            previous = merged.get(ast.unparse(key))
            merged[ast.unparse(key)] = (key, merge(previous[1], value) if previous else value)
        return ast.Dict(keys=[k for k, _ in merged.values()], values=[v for _, v in merged.values()])
    return new


def apply_settings(settings_py: Path, *blocks: str) -> None:
    """Add the README's settings statements to the generated settings.py, merging as a reader would."""
    text = settings_py.read_text()
    tree = ast.parse(text)
    existing = {stmt.targets[0].id: stmt for stmt in tree.body
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)}
    replaced: dict[str, ast.expr] = {}   # names of the generated file, merged
    added: dict[str, str | ast.expr] = {}  # statements the README adds (a name's value, or source)
    for code in blocks:
        for stmt in ast.parse(code).body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                if name in added:
                    added[name] = merge(added[name], stmt.value)
                elif name in existing:
                    replaced[name] = merge(replaced.get(name, existing[name].value), stmt.value)
                else:
                    added[name] = stmt.value
            else:
                added[f"#{len(added)}"] = ast.get_source_segment(code, stmt)
    lines = text.splitlines()
    for name, stmt in sorted(((n, existing[n]) for n in replaced), key=lambda item: -item[1].lineno):
        lines[stmt.lineno - 1:stmt.end_lineno] = [f"{name} = {ast.unparse(replaced[name])}"]
    for name, value in added.items():
        lines.append(value if isinstance(value, str) else f"{name} = {ast.unparse(value)}")
    settings_py.write_text("\n".join(lines) + "\n")


def apply_urls(urls_py: Path, line: str) -> None:
    """Add a README ``path(...),`` line at the end of urlpatterns."""
    text = urls_py.read_text()
    end = text.rindex("]")
    urls_py.write_text(text[:end] + "    " + line.strip() + "\n" + text[end:])


# --- the site -----------------------------------------------------------------------------------


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{shlex.join(command)} failed ({result.returncode}):\n" \
                                   f"{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def start(command: list[str], cwd: Path, env: dict[str, str], log_path: Path, url: str,
          timeout: float = 30) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller's stop()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"runbokeh exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(url + "/favicon.ico", timeout=2).read()
            return process
        except OSError:
            time.sleep(0.1)
    stop(process)
    raise AssertionError(f"runbokeh did not answer within {timeout} s:\n{log_path.read_text()}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.mark.timeout(90)
def test_readme_site(page) -> None:
    sections = readme_blocks()
    use = "Use it in your project"
    security = "Users, permissions and security"
    settings_blocks = [
        block(sections, use, "`settings.py`:"),
        block(sections, security, "Policies go into the `BOKEHSERVE` setting above"),
        block(sections, security, "`templates/registration/login.html`"),  # TEMPLATES DIRS
    ]
    asgi_py = block(sections, use, "`mysite/asgi.py`:")
    urls_py = block(sections, use, "`mysite/urls.py`:")
    auth_urls = block(sections, security, "Either add Django's auth views to `urls.py`")
    run_line = block(sections, use, "Run it:").splitlines()[0].split("#")[0]

    with tempfile.TemporaryDirectory(prefix="readme-site-") as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT),
               "DJANGO_SUPERUSER_PASSWORD": PASSWORD}
        for name in ("DJANGO_SETTINGS_MODULE", "BOKEHSERVE_RUN_OVERRIDES"):
            env.pop(name, None)
        run([str(DJANGO_ADMIN), "startproject", "mysite"], Path(tmp), env)
        site = Path(tmp) / "mysite"
        package = site / "mysite"

        apply_settings(package / "settings.py", *settings_blocks)
        (package / "asgi.py").write_text(asgi_py)
        (package / "urls.py").write_text(urls_py)
        apply_urls(package / "urls.py", auth_urls)
        login_template = site / "templates" / "registration" / "login.html"
        login_template.parent.mkdir(parents=True)
        login_template.write_text(LOGIN_TEMPLATE)

        # The apps the resulting settings.py names (BASE_DIR there is the site).
        bokehserve = runpy.run_path(str(package / "settings.py"))["BOKEHSERVE"]
        apps, default_access = bokehserve["APPS"], bokehserve.get("DEFAULT_ACCESS", "public")
        assert apps, "the README's settings name no Bokeh apps"
        public = []
        for name, entry in apps.items():
            path = Path(entry["app"] if isinstance(entry, dict) else entry)
            access = entry.get("access", default_access) if isinstance(entry, dict) else default_access
            if path.suffix == ".py":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(HELLO_APP)
            else:  # a directory app: its main.py is enough
                path.mkdir(parents=True, exist_ok=True)
                (path / "main.py").write_text(HELLO_APP)
            if access == "public":
                public.append(name)
        protected = [name for name in apps if name not in public]
        assert public and protected, f"expected public and protected apps in the README, got {apps}"

        python = [sys.executable, "manage.py"]
        check = run([*python, "check"], site, env)
        print("manage.py check:", check)
        run([*python, "migrate", "--noinput"], site, env)
        run([*python, "createsuperuser", "--noinput", "--username", USER, "--email", "reader@example.com"],
            site, env)

        command = shlex.split(run_line)
        assert command[:3] == ["python", "manage.py", "runbokeh"], f"README run command: {run_line!r}"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # Django's login view, where the README's line puts the auth URLs: path("accounts/", ...),
        (path_call,) = ast.parse(auth_urls).body[0].value.elts
        login_url = f"{url}/{ast.literal_eval(path_call.args[0])}login/"
        log_path = Path(tmp) / "runbokeh.log"
        server = start([sys.executable, *command[1:], "--port", str(port), "--address", "127.0.0.1"],
                       site, env, log_path, url)
        try:
            watch = PageWatcher(page, server_log=log_path.read_text)
            for name in public:
                watch.open(f"{url}/{name}")
                watch.click("button")
                watch.wait_prop("output", "text", "clicks: 1 by AnonymousUser")

            first = protected[0]
            response = page.goto(f"{url}/{first}")
            assert response is not None and response.status == 200, (
                f"GET {url}/{first} ended at {page.url} with {response and response.status}\n{watch.report()}")
            assert page.url.startswith(login_url), f"{first} did not send to {login_url}: {page.url}"
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.url.split("?")[0] == f"{url}/{first}", f"after login: {page.url}\n{watch.report()}"
            for name in protected:
                watch.open(f"{url}/{name}")
                watch.click("button")
                watch.wait_prop("output", "text", f"clicks: 1 by {USER}")
            watch.assert_clean()
        finally:
            stop(server)
        log = log_path.read_text()
        assert " ERROR " not in log and "Traceback" not in log, log
