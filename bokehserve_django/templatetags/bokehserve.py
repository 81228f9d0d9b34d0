"""Template tags that embed registered Bokeh apps: ``{% load bokehserve %}``.

``{% bokeh_app "sliders" %}`` opens a new session (``server_document``);
``{% bokeh_app "sliders" N=5 %}`` passes request arguments to the app;
``{% bokeh_session "sliders" session_id %}`` shows an existing session (``server_session``).
The page's request (the ``request`` context processor) makes the URLs absolute.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from ..embed import app_script, session_script

register = template.Library()


@register.simple_tag(takes_context=True)
def bokeh_app(context: template.Context, app_name: str, **arguments: Any) -> SafeString:
    request = context.get("request")
    script = app_script(request, app_name, arguments={k: str(v) for k, v in arguments.items()} or None)
    # bokeh's server_document escapes every value it puts into the script.
    return mark_safe(script)


@register.simple_tag(takes_context=True)
def bokeh_session(context: template.Context, app_name: str, session_id: str) -> SafeString:
    return mark_safe(session_script(context.get("request"), app_name, str(session_id)))
