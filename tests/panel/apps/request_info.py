"""Shows what Panel apps read about their request: session_args, location, headers, base_url."""

import panel as pn

args = {k: [v.decode() for v in vs] for k, vs in pn.state.session_args.items()}
location = pn.state.location
lines = [
    f"args: {sorted(args.items())}",
    f"location: {location.hostname}|{location.pathname}|{location.search.replace('&', ' and ')}",
    f"agent: {pn.state.headers.get('User-Agent', '-')}",
    f"cookies: {sorted(pn.state.cookies)}",
    f"base_url: {pn.state.base_url}",
    f"rel_path: {pn.state.rel_path!r}",
]
pn.pane.Markdown("\n\n".join(lines)).servable()
