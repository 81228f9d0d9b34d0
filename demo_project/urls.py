"""URLs of the demo site: Django pages first, then the Bokeh apps at the root."""

from django.contrib import admin
from django.urls import include, path

from .demo import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("django/embed/", views.embed_page, name="embed"),
    path("django/custom/", views.custom_session_page, name="custom_session"),
    path("django/readings/", views.readings_page, name="readings"),
    path("", include("bokehserve_django.urls")),
]
