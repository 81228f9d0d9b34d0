"""Shows curdoc().session_context.token_payload, which request_handler.py's process_request fills."""

from bokeh.io import curdoc
from bokeh.models import Div

payload = curdoc().session_context.token_payload
curdoc().add_root(Div(text=f"{payload.get('handled_by')} {payload.get('path')}", name="payload"))
