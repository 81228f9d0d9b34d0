"""views.page_bundle: bokeh's page bundle, made once per resources and set of model classes."""

from __future__ import annotations

import pytest
from bokeh.embed.bundle import Script
from bokeh.model import Model

from bokehserve_django import views
from bokehserve_django.resources import bundle_for, resources_for


@pytest.fixture
def counted(monkeypatch):
    """Count the bundles bokeh builds; start with an empty cache."""
    made: list[object] = []

    def counting_bundle_for(resources):
        made.append(resources)
        return bundle_for(resources)

    monkeypatch.setattr(views, "bundle_for", counting_bundle_for)
    views._bundles.clear()
    yield made
    views._bundles.clear()


def test_the_same_bundle_as_bokehs_made_once(counted) -> None:
    first = views.page_bundle(resources_for())
    second = views.page_bundle(resources_for())
    assert list(first) == list(second) == list(bundle_for(resources_for()))
    assert len(counted) == 1


def test_a_callers_changes_stay_in_its_copy(counted) -> None:
    views.page_bundle(resources_for()).add(Script("window.only_this_page = 1"))
    assert "only_this_page" not in "".join(views.page_bundle(resources_for()))


def test_a_new_model_class_makes_a_new_bundle(counted) -> None:
    views.page_bundle(resources_for())

    class DefinedByAnApp(Model):  # registers itself with bokeh's model classes
        pass

    views.page_bundle(resources_for())
    assert len(counted) == 2


def test_other_resources_get_their_own_and_the_cache_stays_bounded(counted) -> None:
    urls = [f"https://embed{n}.example.com" for n in range(views._BUNDLES_KEPT + 5)]
    for url in urls:
        views.page_bundle(resources_for(url))
    assert len(counted) == len(urls)
    assert len(views._bundles) == views._BUNDLES_KEPT
    views.page_bundle(resources_for(urls[-1]))  # the latest are kept
    assert len(counted) == len(urls)


def test_a_settings_change_empties_the_cache(counted, settings) -> None:
    views.page_bundle(resources_for())
    settings.STATIC_URL = "/elsewhere/"
    bundle = views.page_bundle(resources_for())
    assert len(counted) == 2
    assert any("/elsewhere/" in str(url) for url in bundle.js_files)
