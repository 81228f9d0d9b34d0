"""URLs of the cluster tests: the Bokeh apps, a Django view that broadcasts to them, the admin."""

import os

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from bokehserve_django import broadcast


@csrf_exempt
@require_POST
def broadcast_view(request: HttpRequest) -> JsonResponse:
    """POST topic, text[, app]: broadcast {"text": text} from ordinary (sync) Django code."""
    broadcast.send(request.POST["topic"], {"text": request.POST["text"]}, app=request.POST.get("app") or None)
    return JsonResponse({"sent": True, "pid": os.getpid()})


def whoami(request: HttpRequest) -> JsonResponse:
    """Which process answered, and the scheme and absolute URL Django sees (proxy headers)."""
    return JsonResponse(
        {"pid": os.getpid(), "scheme": request.scheme, "absolute": request.build_absolute_uri("/")}
    )


urlpatterns = [
    path("cluster-test/whoami", whoami),
    path("cluster-test/broadcast", broadcast_view),
    path("admin/", admin.site.urls),
    path("", include("bokehserve_django.urls")),
]
