"""Every admin URL, for every persona, answers 200, 302, 403 or 404: never a
500. The URLs are read from the admin site itself (its own views, and every
registered ModelAdmin's ``get_urls()``, custom views included), so a page
added later is crawled without touching this file."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, URLPattern, URLResolver, reverse
from simple_history.exceptions import NotHistoricalModelError
from simple_history.utils import get_history_manager_for_model

from tests.governance.admin_world import make_generic, site_objects, world

ANSWERS = {200, 302, 403, 404}
PERSONAS = ("superuser", "lead", "author", "reviewer", "auditor", "operator", "outsider")
# Views that end the session or change the crawler's own password: not crawled.
SKIPPED = {"logout", "password_change", "password_change_done"}
MISSING = "987654"


def _patterns(resolver_patterns, prefix=""):
    for entry in resolver_patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns, prefix)
        elif isinstance(entry, URLPattern) and entry.name:
            yield entry


def _history_ids(obj) -> list[int]:
    try:
        manager = get_history_manager_for_model(type(obj))
    except NotHistoricalModelError:
        return [1]
    return list(manager.filter(pk=obj.pk).values_list("history_id", flat=True)[:2]) or [1]


def _values(name: str, *, obj, persona, others) -> list:
    """The values a URL argument is tried with."""
    if name in ("object_id", "object_pk", "id", "pk"):
        return [o.pk for o in (obj, *others) if o is not None] + [MISSING]
    if name == "history_id":
        return _history_ids(obj) if obj is not None else [1]
    if name == "user_id":
        return [persona.pk, MISSING]
    if name == "group_id":
        return [1, MISSING]
    if name == "app_label":
        return sorted({m._meta.app_label for m in admin.site._registry})
    return [1, MISSING]


def _urls(model_admin, *, objects: list, persona) -> list[str]:
    """Every URL of ``model_admin``, its arguments filled from ``objects``."""
    urls = []
    obj, *others = objects
    for pattern in _patterns(model_admin.get_urls()):
        names = list(pattern.pattern.converters) or list(pattern.pattern.regex.groupindex)
        combos = [{}]
        for name in names:
            combos = [{**c, name: v} for c in combos for v in _values(name, obj=obj, persona=persona, others=others)]
        for kwargs in combos:
            try:
                urls.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))
            except NoReverseMatch:
                continue  # e.g. a text value for an <int:...> argument
    return urls


def _site_urls(persona) -> list[str]:
    urls = []
    for pattern in _patterns(admin.site.get_urls()):
        if pattern.name in SKIPPED or pattern.callback.__module__.startswith("django.contrib.admin.options"):
            continue
        names = list(pattern.pattern.converters) or list(pattern.pattern.regex.groupindex)
        if not names:
            urls.append(reverse(f"admin:{pattern.name}"))
        elif names == ["app_label"]:
            urls += [
                reverse(f"admin:{pattern.name}", kwargs={"app_label": a})
                for a in _values("app_label", obj=None, persona=persona, others=[])
            ]
    return urls


@pytest.fixture
def crawl_objects(superuser, acme, globex, personas) -> dict:
    """{model: [the acme object, the globex object]} for every registered model."""
    acme_world = world(acme, superuser=superuser)
    globex_world = world(globex, superuser=superuser)
    shared = site_objects(superuser=superuser)
    objects = {}
    for model in admin.site._registry:
        label = model._meta.label
        if label in acme_world:
            objects[model] = [acme_world[label], globex_world[label]]
        elif label in shared:
            objects[model] = [shared[label]]
        else:
            objects[model] = [make_generic(model)]
    return objects


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize("persona_name", PERSONAS)
def test_every_admin_url_answers_without_a_server_error(persona_name, request, crawl_objects):
    persona = request.getfixturevalue(persona_name)
    client = Client(raise_request_exception=False)
    client.force_login(persona)
    urls = _site_urls(persona)
    for model, model_admin in admin.site._registry.items():
        urls += _urls(model_admin, objects=crawl_objects[model], persona=persona)
    failures = []
    site_urls = set(_site_urls(persona))
    for url in urls:
        # The site's own views (index, app lists, autocomplete, jsi18n) answer GET only.
        for method in ("get",) if url in site_urls else ("get", "post"):
            response = getattr(client, method)(url)
            if response.status_code not in ANSWERS:
                error = response.exc_info[1] if response.exc_info else ""
                failures.append(f"{method.upper()} {url}: {response.status_code} {error!r}")
    assert not failures, "\n".join(failures)
