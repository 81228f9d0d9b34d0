"""App specs -> Bokeh applications: paths, directories, functions, import strings, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from bokeh.application import Application
from bokeh.application.handlers.directory import DirectoryHandler
from bokeh.document import Document

from bokehserve_django import registry
from bokehserve_django.exceptions import AppLoadError, AppNotRegistered, InvalidAppSpec

APPS = Path(__file__).resolve().parents[1] / "apps"


def make_doc(doc: Document) -> None:
    from bokeh.models import Div

    doc.add_root(Div(text="from a function", name="div"))


async def make_doc_async(doc: Document) -> None:
    from bokeh.models import Div

    doc.add_root(Div(text="from a coroutine", name="div"))


@pytest.fixture(autouse=True)
def fresh_registry():
    registry.reset()
    yield
    registry.reset()


class TestBuildApplication:
    def test_script_directory_function_and_application(self) -> None:
        assert registry.build_application(APPS / "echo.py").handlers[0].__class__.__name__ == "ScriptHandler"
        # bokeh's DirectoryHandler, also reading request_handler.py (registry.DirectoryAppHandler).
        assert isinstance(registry.build_application(str(APPS / "hooks")).handlers[0], DirectoryHandler)
        app = registry.build_application(make_doc)
        doc = Document()
        app.initialize_document(doc)
        assert doc.get_model_by_name("div").text == "from a function"
        given = Application()
        assert registry.build_application(given) is given

    def test_import_string(self) -> None:
        app = registry.build_application("tests.unit.test_registry:make_doc")
        doc = Document()
        app.initialize_document(doc)
        assert doc.roots

    def test_async_function_runs_to_completion(self) -> None:
        import threading

        app = registry.build_application(make_doc_async)
        doc = Document()
        # App code runs in a worker thread in the server; do the same here.
        worker = threading.Thread(target=app.initialize_document, args=(doc,))
        worker.start()
        worker.join(10)
        assert doc.get_model_by_name("div").text == "from a coroutine"

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("/no/such/app.py", "does not exist"),
            (str(APPS), "has no main.py"),
            ("nosuchmodule.func", "neither an existing file"),
            (42, "Cannot use 42"),
        ],
    )
    def test_bad_specs_say_what_is_wrong(self, spec, message) -> None:
        with pytest.raises(InvalidAppSpec, match=message):
            registry.build_application(spec)

    def test_notebook_without_nbconvert_says_what_to_install(self, tmp_path, monkeypatch) -> None:
        import builtins

        notebook = tmp_path / "nb.ipynb"
        notebook.write_text("{}")
        real_import = builtins.__import__

        def no_nbconvert(name, *args, **kwargs):
            if name == "nbconvert":
                raise ImportError("No module named 'nbconvert'")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_nbconvert)
        with pytest.raises(InvalidAppSpec, match="pip install nbconvert"):
            registry.build_application(notebook)


class TestRegistry:
    def test_names_and_lookup(self, settings) -> None:
        settings.BOKEHSERVE = {"APPS": {"echo": APPS / "echo.py", "fn": {"app": make_doc, "args": ["--x"]}}}
        apps = registry.registered_apps()
        assert sorted(apps) == ["echo", "fn"]
        assert apps["fn"].argv == ["--x"]
        with pytest.raises(AppNotRegistered):
            registry.get_app("nope")

    def test_broken_app_is_recorded_and_others_still_load(self, settings) -> None:
        settings.BOKEHSERVE = {"APPS": {"bad": APPS / "broken" / "syntax_error.py", "echo": APPS / "echo.py"}}
        apps = registry.registered_apps()
        assert apps["echo"].load_error is None
        with pytest.raises(AppLoadError) as info:
            apps["bad"].check_loaded()
        assert "SyntaxError" in info.value.details or "invalid syntax" in info.value.details

    @pytest.mark.parametrize("name", ["static", "ws", "../x", "a b", ""])
    def test_unusable_url_names_are_refused(self, settings, name) -> None:
        settings.BOKEHSERVE = {"APPS": {name: APPS / "echo.py"}}
        with pytest.raises(InvalidAppSpec):
            registry.registered_apps()

    def test_name_for_path_matches_bokeh_serve(self) -> None:
        assert registry.app_name_for_path(str(APPS / "echo.py")) == "echo"
        assert registry.app_name_for_path(str(APPS / "hooks") + "/") == "hooks"

    def test_glob_expands_and_reports_no_match(self) -> None:
        assert str(APPS / "echo.py") in registry.expand_app_paths([str(APPS / "*.py")], use_glob=True)
        with pytest.raises(InvalidAppSpec, match="matches no files"):
            registry.expand_app_paths([str(APPS / "*.nothing")], use_glob=True)


class TestRequestHandlerFile:
    """process_request of a directory app: from request_handler.py (the guide) or app_hooks.py (bokeh serve)."""

    def make_app(self, tmp_path: Path, **files: str) -> Path:
        app = tmp_path / "app"
        app.mkdir()
        (app / "main.py").write_text("")
        for name, source in files.items():
            (app / f"{name}.py").write_text(source)
        return app

    def test_request_handler_py_is_read(self, tmp_path) -> None:
        app = self.make_app(tmp_path, request_handler="def process_request(request):\n    return {'from': 'file'}\n")
        assert registry.build_application(app).process_request(None) == {"from": "file"}

    def test_app_hooks_py_is_still_read(self, tmp_path) -> None:
        app = self.make_app(tmp_path, app_hooks="def process_request(request):\n    return {'from': 'hooks'}\n",
                            request_handler='"""Nothing here."""\n')
        assert registry.build_application(app).process_request(None) == {"from": "hooks"}

    def test_both_defining_it_is_a_start_up_error(self, tmp_path) -> None:
        source = "def process_request(request):\n    return {}\n"
        app = self.make_app(tmp_path, app_hooks=source, request_handler=source)
        with pytest.raises(InvalidAppSpec, match="defines process_request in both app_hooks.py and request_handler.py"):
            registry.build_application(app)

    def test_a_broken_request_handler_py_fails_the_app(self, tmp_path, settings) -> None:
        app = self.make_app(tmp_path, request_handler="def process_request(request):\n    return {\n")
        settings.BOKEHSERVE = {"APPS": {"broken": app}}
        registry.reset()
        entry = registry.get_app("broken")
        with pytest.raises(AppLoadError):
            entry.check_loaded()
        assert "request_handler.py" in entry.load_error.details
