"""Lifecycle hooks that append "<event> <pid> <session id>" lines to $BOKEHSERVE_TEST_HOOK_LOG."""

import os


def record(event, session_id="-"):
    path = os.environ.get("BOKEHSERVE_TEST_HOOK_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {os.getpid()} {session_id}\n")


def on_server_loaded(server_context):
    record("on_server_loaded")


def on_server_unloaded(server_context):
    record("on_server_unloaded")


def on_session_created(session_context):
    record("on_session_created", session_context.id)


def on_session_destroyed(session_context):
    record("on_session_destroyed", session_context.id)


def process_request(request):
    return {"seen_path": request.path}
