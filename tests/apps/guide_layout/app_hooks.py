"""The guide's app_hooks.py: lifecycle callbacks only; process_request lives in request_handler.py."""


def on_session_created(session_context):
    pass
