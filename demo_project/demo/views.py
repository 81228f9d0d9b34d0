"""Django pages of the demo site that embed Bokeh apps."""

import random

from django.shortcuts import render

from bokehserve_django.embed import pull_session


def embed_page(request):
    """A Django template that embeds the sliders app with the {% bokeh_app %} tag."""
    return render(request, "demo/embed.html", {})


def custom_session_page(request):
    """The user guide's recipe: pull a session, change it in Python, then show it in the page."""
    with pull_session(request, "button") as session:
        output = session.document.get_model_by_name("output")
        if output is not None:
            output.text = f"Prepared by a Django view for {request.user}"
        session_id = session.id
    return render(request, "demo/custom_session.html", {"session_id": session_id})


def readings_page(request):
    """A form that saves a Reading (CSRF-protected); the live plot below gets it at once."""
    added = None
    if request.method == "POST":
        from .models import Reading

        try:
            value = float(request.POST["value"])
        except (KeyError, ValueError):
            return render(request, "demo/readings.html", {"suggestion": 0, "error": "a number, please"}, status=400)
        added = Reading.objects.create(value=value)
    return render(request, "demo/readings.html", {"added": added, "suggestion": round(random.uniform(0, 10), 2)})
