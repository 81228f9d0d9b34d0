"""Shows pn.state.user and pn.state.user_info, as Panel apps written for Panel's auth do."""

import panel as pn

info = pn.state.user_info or {}
pn.pane.Str(f"user: {pn.state.user} email: {info.get('email', '-')}").servable()
