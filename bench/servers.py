"""Start and stop the servers under test, and read their memory and CPU from /proc.

Each server is one subprocess on 127.0.0.1 with a port picked here. If a server forks workers
(an autoreloader, daphne children), memory and CPU are summed over the process and its
descendants. Stopping sends SIGTERM to the started PID (then to any descendant seen earlier
that is still alive, matched by PID *and* start time), waits, and only then SIGKILLs those PIDs.
Nothing is ever signalled by name or by process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
HOST = "127.0.0.1"
#: The environment runbokeh runs in for the bench tools other than run.py (which has flags for it):
#: the demo site minus its apps, production mode.
RUNBOKEH_ENV = {"DJANGO_SETTINGS_MODULE": "bench.django_settings", "DJANGO_DEBUG": "0", "PYTHONUNBUFFERED": "1"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

KINDS = ("bokeh", "runbokeh")
#: Panel's own server, the reference for Panel apps (run.py --panel).
PANEL = "panel"
LABELS = {"bokeh": "bokeh serve", "runbokeh": "runbokeh", PANEL: "panel serve"}
RUNBOKEH_COMMAND_FILE = REPO / "bokehserve_django" / "management" / "commands" / "runbokeh.py"


def raise_file_limit(needed: int) -> None:
    """Raise this process's open-file limit (inherited by the servers it starts) to ``needed``."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"bench: {needed} open files are needed, but the hard limit is {hard}; "
            f"raise it (ulimit -Hn {needed}, or LimitNOFILE) or use --quick for fewer sessions"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def command_for(kind: str, app_path: Path, port: int, extra: list[str] | None = None) -> list[str]:
    common = ["--port", str(port), "--address", HOST, "--allow-websocket-origin", f"{HOST}:{port}"]
    if kind == "bokeh":
        cmd = [str(VENV_BIN / "bokeh"), "serve", str(app_path), *common]
    elif kind == PANEL:
        cmd = [str(VENV_BIN / "panel"), "serve", str(app_path), *common]
    elif kind == "runbokeh":
        cmd = [str(VENV_BIN / "python"), str(REPO / "manage.py"), "runbokeh", str(app_path), *common]
    else:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {(*KINDS, PANEL)}")
    return cmd + list(extra or [])


# ---------------------------------------------------------------------------------------------
# /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    children = _children_map()
    tree, stack = [], [pid]
    while stack:
        p = stack.pop()
        tree.append(p)
        stack.extend(children.get(p, []))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


# ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str
    app_path: Path
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    startup_seconds: float = 0.0
    _seen: dict[int, int] = field(default_factory=dict)  # pid -> start time, descendants seen
    _log = None

    @property
    def app(self) -> str:
        return self.app_path.stem

    @property
    def command(self) -> list[str]:
        return command_for(self.kind, self.app_path, self.port, self.extra_args)

    def start(self, timeout: float = 90.0) -> None:
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self._log.write(("$ " + " ".join(self.command) + "\n").encode())
        self._log.flush()
        env = {**os.environ, **self.env}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{LABELS[self.kind]} exited with code {self.proc.returncode} before listening.\n"
                    f"command: {' '.join(self.command)}\nlog ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    self.startup_seconds = time.perf_counter() - t0
                    self.remember_descendants()
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{LABELS[self.kind]} did not listen on {HOST}:{self.port} within {timeout:.0f} s.\n"
            f"command: {' '.join(self.command)}\nlog ({self.log_path}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def remember_descendants(self) -> None:
        if self.proc is None:
            return
        for pid in process_tree(self.proc.pid):
            start = _start_time(pid)
            if start is not None:
                self._seen.setdefault(pid, start)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        """Resident memory of the server and its descendants, in bytes."""
        if self.proc is None:
            return 0
        self.remember_descendants()
        return sum(rss_bytes(p) for p in process_tree(self.proc.pid))

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far by the server and its live descendants."""
        if self.proc is None:
            return 0.0
        return sum(cpu_seconds(p) for p in process_tree(self.proc.pid))

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        self.remember_descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        # Descendants we saw (workers, reloader children) that outlived the parent.
        for pid, start in self._seen.items():
            if pid == self.proc.pid or _start_time(pid) != start:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                if _start_time(pid) != start:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self._log is not None:
            self._log.close()
            self._log = None


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for mod in ("bokeh", "tornado", "django", "daphne", "channels", "twisted", "autobahn", "websockets", "numpy"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            pass
    out["cpus"] = str(os.cpu_count())
    return out
