"""Django pages of the demo site that embed Bokeh apps."""

from django.shortcuts import render


def embed_page(request):
    """A Django template that embeds the sliders app with the {% bokeh_app %} tag."""
    return render(request, "demo/embed.html", {})
