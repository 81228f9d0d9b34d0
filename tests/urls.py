from django.urls import include, path

urlpatterns = [path("", include("bokehserve_django.urls"))]
