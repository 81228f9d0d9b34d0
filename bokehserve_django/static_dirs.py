"""Serves extra directories of files at URLs of their own, for ``runbokeh --static-dirs``.

``panel serve --static-dirs assets=./assets`` serves ./assets/ at /assets/; runbokeh does the
same in front of the project's ASGI application. It is a development convenience: a site
in production lists such folders in STATICFILES_DIRS or lets its proxy serve them.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
from collections.abc import Mapping
from typing import Any

from .views import _static_file_path

__all__ = ("StaticDirs", "parse_static_dirs")

#: One or more URL path segments (letters, digits, "_", "-", "."; no leading dot).
_URL_PATH = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]*(/[A-Za-z0-9_\-][A-Za-z0-9_\-.]*)*")
_CHUNK = 64 * 1024


def parse_static_dirs(items: list[str], taken: set[str]) -> dict[str, str]:
    """``URL=PATH`` items as {url: absolute directory}; ValueError saying what to give instead.

    ``taken`` holds the first path segments already served (app names, static, ...).
    """
    dirs: dict[str, str] = {}
    for item in items:
        url, sep, path = item.partition("=")
        url = url.strip("/")
        if not sep or not path or not _URL_PATH.fullmatch(url):
            raise ValueError(f"{item!r} is not URL=PATH; give e.g. assets=./assets (served at /assets/).")
        if url.split("/")[0] in taken:
            raise ValueError(f"{item!r}: /{url}/ is already served (an app or the server's own URLs); pick another URL.")
        if url in dirs:
            raise ValueError(f"{item!r}: /{url}/ is given twice.")
        directory = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(directory):
            raise ValueError(f"{item!r}: {directory} is not a directory.")
        dirs[url] = directory
    return dirs


class StaticDirs:
    """ASGI wrapper answering GET and HEAD below each ``/<prefix>/<url>/`` from its directory.

    Paths are checked as the apps' own static files are (views._static_file_path): nothing
    outside the directory, no directory listings; anything else gets a plain 404.
    """

    def __init__(self, application: Any, dirs: Mapping[str, str], prefix: str = "") -> None:
        self.application = application
        base = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        self.roots = {f"{base}/{url}/": directory for url, directory in dirs.items()}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for url, directory in self.roots.items():
                if scope["path"].startswith(url):
                    await self._answer(scope, send, directory, scope["path"][len(url):])
                    return
        await self.application(scope, receive, send)

    async def _answer(self, scope: dict[str, Any], send: Any, directory: str, path: str) -> None:
        if scope.get("method") not in ("GET", "HEAD"):
            await _plain(send, 405, b"Only GET and HEAD here.\n", [(b"allow", b"GET, HEAD")])
            return
        # File system calls in a thread: the loop keeps serving sessions meanwhile.
        found = await asyncio.to_thread(_find, directory, path)
        if found is None:
            await _plain(send, 404, b"No such static file.\n")
            return
        full_path, size = found
        content_type, encoding = mimetypes.guess_type(full_path)
        headers = [
            (b"content-type", (content_type or "application/octet-stream").encode()),
            (b"content-length", str(size).encode()),
        ]
        if encoding:
            headers.append((b"content-encoding", encoding.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        file = await asyncio.to_thread(open, full_path, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, _CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            file.close()
        await send({"type": "http.response.body", "body": b""})


def _find(directory: str, path: str) -> tuple[str, int] | None:
    """The file ``path`` names inside ``directory`` and its size; None for anything else."""
    relative = _static_file_path(directory, path)
    if relative is None:
        return None
    full_path = os.path.join(directory, relative)
    try:
        return full_path, os.path.getsize(full_path)
    except OSError:
        return None  # removed since the check


async def _plain(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
