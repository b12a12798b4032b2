"""Every registered ModelAdmin, walked: add, change, delete and each action.

For each admin (read from the admin site, so one registered later is walked
without touching this file):

- a *viewer* (every model permission of a governance lead, but only the view
  right on acme; it may change its own workspace, initech) and a *stranger*
  (a governance lead of globex only) try to add an acme object, change and
  delete one, and run every action on one, with valid data: each is refused
  (a form error, a 403, or the object is not theirs to find) and nothing
  in the database changes, no audit event is written;
- a *permitted* user (acme's governance lead where the role allows the
  write, else the superuser) makes the same writes: the database changes and
  the audit events are exactly those the write implies.

Valid form data is read from the admin's own form (the add or change page the
permitted user gets), every required field filled from its type, and
``OVERRIDES`` below where a model needs particular values.
"""

import json
import uuid

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.db import models
from django.forms import (
    BooleanField,
    ChoiceField,
    DateTimeField,
    DecimalField,
    EmailField,
    IntegerField,
    ModelChoiceField,
    ModelMultipleChoiceField,
    MultipleChoiceField,
    SlugField,
    SplitDateTimeField,
    URLField,
)
from django.test import Client
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from governance.permissions import is_governed
from governance.roles import GOVERNANCE_LEADS, ROLES
from governance.services import permission_grant
from tests import factories
from tests.conftest import _persona
from tests.governance.admin_world import make_generic, site_objects, world

ADMINS = sorted(model._meta.label for model in admin.site._registry)

# Tables a refused write may still touch: sessions and messages, Django's own
# admin log, sign-in records, the audit chain (counted on its own).
UNWATCHED = {"sessions.Session", "admin.LogEntry", "audit.AuditEvent", "axes.AccessAttempt", "axes.AccessLog",
             "axes.AccessFailureLog", "audit.ChainHead"}  # fmt: skip

# Values a model's form needs beyond "any valid value of the field's type".
OVERRIDES = {
    "governance.ChangePolicy": lambda w: {
        "pipeline": w["pipelines.Pipeline"].pk,
        "workspace": w["governance.Workspace"].pk,
    },  # fmt: skip
    "pipelines.EvaluationCase": lambda w: {"input": json.dumps({"subject": "Walked"})},
    "pipelines.PipelineSchedule": lambda w: {
        "cron": "0 9 * * 1",
        "timezone": "UTC",
        "input": json.dumps({"subject": "Walked", "draft": "x"}),
    },
    "pipelines.Budget": lambda w: {
        "workspace": w["governance.Workspace"].pk,
        "pipeline": "",
        "soft_limit": "5",
        "hard_limit": "9",
        "unit": "money",
    },  # fmt: skip
    "pipelines.ServiceToken": lambda w: {"workspace": w["governance.Workspace"].pk, "pipeline": ""},
    "pipelines.PromptTemplate": lambda w: {"body": "Walked {{ subject }}", "variables": '["subject"]'},
    "pipelines.ModelConfig": lambda w: {"provider": "builtin", "model_name": "keyword-classifier", "credential": ""},
    "governance.Credential": lambda w: {
        "source": "env",
        "env_name": f"TEST_WALK_{uuid.uuid4().hex[:6].upper()}",
        "file_name": "",
    },  # fmt: skip
    "auth.User": lambda w: {
        "username": f"walker-{uuid.uuid4().hex[:6]}",
        "password1": "Walk-pass-7731!",
        "password2": "Walk-pass-7731!",
        "usable_password": "true",
    },
    "django_celery_beat.PeriodicTask": lambda w: {
        "task": "pipelines.scheduled_run",
        "regtask": "",
        "interval": w["django_celery_beat.IntervalSchedule"].pk,
        "crontab": "",
        "solar": "",
        "clocked": "",
        "args": "[]",
        "kwargs": "{}",
        "headers": "{}",
    },  # fmt: skip
    "django_celery_beat.SolarSchedule": lambda w: {"event": "sunset"},
    "django_celery_beat.CrontabSchedule": lambda w: {
        "minute": "0",
        "hour": "9",
        "day_of_week": "*",
        "day_of_month": "*",
        "month_of_year": "*",
        "timezone": "UTC",
    },
}

# The audit events an admin write implies, where the admin saves through a
# service of its own instead of the generic object_save / object_delete.
# None: not governed data (accounts, sign-in records, second factors, beat's
# tables): only superusers write them; identity events are asserted by the
# identity tests.
EVENTS = {
    # A lead who creates a workspace leads it: the role's rights are granted on it.
    "governance.Workspace": {
        "add": ["workspace.created", *["permission.granted"] * len(ROLES[GOVERNANCE_LEADS][1])],
        "change": ["workspace.changed"],
        "delete": [*["permission.revoked"] * len(ROLES[GOVERNANCE_LEADS][1]), "workspace.deleted"],
    },
    # fmt: skip
    "pipelines.PipelineSchedule": {
        "add": ["schedule.saved"],
        "change": ["schedule.saved"],
        "delete": ["schedule.deleted"],
    },  # fmt: skip
    "pipelines.Budget": {"add": ["budget.saved"], "change": ["budget.saved"], "delete": ["budget.deleted"]},
    "pipelines.ServiceToken": {"add": ["token.created"], "change": None, "delete": None},
}

# Filled into every action's intermediate form, so that an action the walk
# is not refused carries through to its service.
ACTION_FORM = {"apply": "1", "post": "yes", "reason": "Walked", "notes": "Walked", "share": "10", "sources": "",
               "to": "1"}  # fmt: skip


def _watched_models():
    return [m for m in apps.get_models() if m._meta.label not in UNWATCHED and not m._meta.proxy and m._meta.managed]


def snapshot() -> dict:
    """Every row of every watched table, to tell whether anything changed."""
    state = {}
    for model in _watched_models():
        # A sign-in (the walk's own) moves last_login; it is no write of the admin's.
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if not isinstance(f, models.BinaryField) and f.attname != "last_login"
        ]
        state[model._meta.label] = list(model._base_manager.order_by("pk").values_list(*fields))
    return state


def changed_tables(before: dict, after: dict) -> list[str]:
    return [label for label in before if before[label] != after[label]]


def _last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def _new_events(since: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=since).order_by("seq"))


def _noun(model) -> str:
    return getattr(model, "audit_noun", model._meta.model_name)


def _url(model, name: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{name}", args=args)


def _text(field, name: str) -> str:
    if isinstance(field, SlugField):
        return f"walk-{uuid.uuid4().hex[:8]}"
    if isinstance(field, EmailField):
        return "walk@example.com"
    if isinstance(field, URLField):
        return "https://walk.example.com/"
    value = f"walk-{uuid.uuid4().hex[:8]}"  # valid as a name, a username or a code
    return value[: field.max_length] if getattr(field, "max_length", None) else value


def _fill(field, name: str, value, data: dict) -> None:
    """``data[name]`` (and its parts) for one form field, kept from ``value``
    (the form's own, prepared for display) where it has one."""
    if isinstance(field, SplitDateTimeField):
        moment = value if value not in (None, "") else "2031-01-01 09:00:00"
        text = str(moment)
        data[f"{name}_0"], data[f"{name}_1"] = text[:10], text[11:19] or "09:00:00"
        return
    if isinstance(field, BooleanField):
        if value:
            data[name] = "on"
        return
    if isinstance(value, list | tuple):
        data[name] = [str(v) for v in value]
        return
    if value not in (None, ""):
        data[name] = str(value)
        return
    if not field.required:
        if not isinstance(field, MultipleChoiceField | ModelMultipleChoiceField):
            data[name] = ""
    elif isinstance(field, ModelMultipleChoiceField):
        data[name] = [str(field.queryset.first().pk)]
    elif isinstance(field, ModelChoiceField):
        first = field.queryset.order_by("pk").first()
        data[name] = str(first.pk) if first else ""
    elif isinstance(field, MultipleChoiceField):
        data[name] = [str(field.choices[0][0])]
    elif isinstance(field, ChoiceField):
        data[name] = next((str(k) for k, _ in field.choices if k not in ("", None)), "")
    elif isinstance(field, IntegerField | DecimalField):
        data[name] = str(max(1, field.min_value or 1)) if hasattr(field, "min_value") else "1"
    elif isinstance(field, DateTimeField):
        data[name] = "2031-01-01 09:00:00"
    elif field.__class__.__name__ == "JSONField":
        data[name] = "{}"
    else:
        data[name] = _text(field, name)


def form_data(response, *, label: str, objects: dict) -> dict:
    """What the page's form would post: its values, every required field
    filled, the model's overrides, and each inline as it stands."""
    context = response.context
    form = context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        _fill(field, name, form[name].value(), data)
    for inline in context.get("inline_admin_formsets", []):
        formset = inline.formset
        prefix = formset.prefix
        forms = list(formset.initial_forms)
        data.update({f"{prefix}-TOTAL_FORMS": str(len(forms)), f"{prefix}-INITIAL_FORMS": str(len(forms)),
                     f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})  # fmt: skip
        for inline_form in forms:
            for name, field in inline_form.fields.items():
                _fill(field, inline_form.add_prefix(name), inline_form[name].value(), data)
    data.update(OVERRIDES.get(label, lambda w: {})(objects))
    return {key: value for key, value in data.items() if key in _names(form, context) or "-" in key}


def _names(form, context) -> set[str]:
    names = set()
    for name, field in form.fields.items():
        names |= {name, f"{name}_0", f"{name}_1"} if isinstance(field, SplitDateTimeField) else {name}
    return names


def _edited(data: dict, form) -> dict:
    """``data`` with one descriptive text field changed, where the form has
    one, else one number moved within its bounds: a save that changes nothing
    makes no version and no event, so the walk's edit must change something."""
    for name in ("description", "name", "first_name"):
        field = form.fields.get(name)
        if field is not None and type(field).__name__ == "CharField" and name in data:
            return {**data, name: _text(field, name)}
    for name, field in form.fields.items():
        if type(field).__name__ == "IntegerField" and str(data.get(name, "")).isdigit():
            value = int(data[name])
            bigger = field.max_value is None or value + 1 <= field.max_value
            return {**data, name: str(value + 1 if bigger else value - 1)}
    return data


# Personas of the walk.


@pytest.fixture
def initech(superuser):
    return factories.WorkspaceFactory(name="Initech", slug="initech", owner=superuser)


@pytest.fixture
def viewer(acme, initech, superuser):
    """Every model permission a governance lead has, the lead's rights on
    initech, and only the view right on acme."""
    user = _persona("viewer", GOVERNANCE_LEADS, initech, superuser)
    with acting_as(superuser):
        permission_grant(actor=superuser, obj=acme, permission="view_workspace", user=user)
    return user


@pytest.fixture
def stranger(globex, superuser):
    return _persona("stranger", GOVERNANCE_LEADS, globex, superuser)


@pytest.fixture
def walk(superuser, acme, globex, lead, viewer, stranger) -> dict:
    objects = {**world(acme, superuser=superuser), **site_objects(superuser=superuser)}
    for model in admin.site._registry:
        if model._meta.label not in objects:
            objects[model._meta.label] = make_generic(model)
    return objects


@pytest.fixture
def own(initech, superuser) -> dict:
    """The viewer's own objects: initech's, which they may change."""
    return world(initech, superuser=superuser)


_clients: dict[int, Client] = {}


@pytest.fixture(autouse=True)
def _signed_in(lead, superuser, viewer, stranger):
    """Each walker signs in once, before anything is counted: a sign-in may be
    an audit event of its own, which no write implies."""
    _clients.clear()
    for user in (lead, superuser, viewer, stranger):
        client = Client(raise_request_exception=True)
        client.force_login(user)
        _clients[user.pk] = client
    yield
    _clients.clear()


def _client(user) -> Client:
    return _clients[user.pk]


def _writer(model, action: str, lead, superuser, obj):
    """acme's lead where the admin lets them, else the superuser, else nobody."""
    from django.test import RequestFactory

    model_admin = admin.site._registry[model]
    for user in (lead, superuser):
        request = RequestFactory().get("/")
        request.user = user
        if action == "add":
            allowed = model_admin.has_add_permission(request)
        elif action == "change":
            allowed = model_admin.has_change_permission(request, obj)
        else:
            allowed = model_admin.has_delete_permission(request, obj)
        if allowed:
            return user
    return None


def _page_data(model, user, url: str, label: str, objects: dict) -> dict | None:
    response = _client(user).get(url)
    if response.status_code != 200 or "adminform" not in (response.context or {}):
        return None
    return form_data(response, label=label, objects=objects), response.context["adminform"].form


def _points_into_governed(form) -> bool:
    return any(
        isinstance(field, ModelChoiceField) and is_governed(field.queryset.model) for field in form.fields.values()
    )


def _refused(client, method: str, url: str, data: dict) -> int:
    response = getattr(client, method)(url, data)
    return response.status_code


def _assert_nothing_changed(before: dict, seq: int, what: str) -> None:
    assert changed_tables(before, snapshot()) == [], what
    assert _new_events(seq) == [], what


def _actions(model, user) -> list[str]:
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return list(admin.site._registry[model].get_actions(request))


def _pointed_at(form, data: dict, targets: dict) -> dict | None:
    """``data`` with every governed foreign key pointed at the object of the
    same model in ``targets``; None when the form has none to point."""
    pointed = dict(data)
    for name, field in form.fields.items():
        target = targets.get(field.queryset.model._meta.label) if isinstance(field, ModelChoiceField) else None
        if target is not None and is_governed(type(target)):
            pointed[name] = [str(target.pk)] if isinstance(field, ModelMultipleChoiceField) else str(target.pk)
    return pointed if pointed != data else None


@pytest.mark.parametrize("label", ADMINS)
def test_it_refuses_to_point_ones_own_object_at_one_the_user_may_only_view(label, walk, own, viewer):
    """The viewer changes their own (initech) object, pointing each of its
    foreign keys at acme, where they may only view: refused, nothing changes."""
    model = apps.get_model(label)
    obj = own.get(label)
    if obj is None:
        return  # not governed: the viewer owns none
    page = _page_data(model, viewer, _url(model, "change", quote(obj.pk)), label, own)
    if page is None:
        return  # a read-only record
    data = _pointed_at(page[1], page[0], walk)
    if data is None:
        return  # nothing to point elsewhere
    before, seq = snapshot(), _last_seq()
    status = _client(viewer).post(_url(model, "change", quote(obj.pk)), data).status_code
    assert status in (200, 403), status
    _assert_nothing_changed(before, seq, f"{label} pointed at acme")


@pytest.mark.parametrize("label", ADMINS)
def test_a_view_only_user_or_one_of_another_workspace_can_write_nothing(label, walk, lead, superuser, viewer, stranger):
    model = apps.get_model(label)
    obj = walk[label]
    add_writer = _writer(model, "add", lead, superuser, obj)
    attempts = []  # (method, url, data)
    if add_writer is not None:
        page = _page_data(model, add_writer, _url(model, "add"), label, walk)
        # An add is a write into acme when its form points at a governed object;
        # one that points at none (a new workspace) is the role's to make.
        if page is not None and _points_into_governed(page[1]):
            attempts.append(("post", _url(model, "add"), page[0]))
    change_writer = _writer(model, "change", lead, superuser, obj)
    if change_writer is not None:
        page = _page_data(model, change_writer, _url(model, "change", quote(obj.pk)), label, walk)
        if page is not None:
            attempts.append(("post", _url(model, "change", quote(obj.pk)), _edited(*page)))
    attempts.append(("post", _url(model, "delete", quote(obj.pk)), {"post": "yes"}))
    actions = set(_actions(model, superuser)) | set(_actions(model, viewer)) | set(_actions(model, stranger))
    for action in sorted(actions):
        data = {**ACTION_FORM, "action": action, ACTION_CHECKBOX_NAME: [str(obj.pk)], "new_owner": str(viewer.pk)}
        attempts.append(("post", _url(model, "changelist"), data))
    for persona in (viewer, stranger):
        client = _client(persona)
        for method, url, data in attempts:
            before, seq = snapshot(), _last_seq()
            status = _refused(client, method, url, data)
            assert status in (200, 302, 403, 404), f"{persona} {url} {data.get('action', '')}: {status}"
            _assert_nothing_changed(before, seq, f"{persona} {url} {data.get('action', '')}")


def _expected(label: str, model, write: str) -> list[str] | None:
    if label in EVENTS:
        return EVENTS[label][write]
    admin_class = admin.site._registry[model]
    from governance.admin_base import GovernedModelAdmin

    if not isinstance(admin_class, GovernedModelAdmin):
        return None
    return [f"{_noun(model)}.{ {'add': 'created', 'change': 'changed', 'delete': 'deleted'}[write] }"]


@pytest.mark.parametrize("label", ADMINS)
def test_a_permitted_user_writes_through_the_admin_with_exactly_its_audit_events(label, walk, lead, superuser):
    model = apps.get_model(label)
    model_admin = admin.site._registry[model]
    added = None
    # Add.
    writer = _writer(model, "add", lead, superuser, None)
    if writer is not None:
        page = _page_data(model, writer, _url(model, "add"), label, walk)
        if page is not None:
            before = set(model._base_manager.values_list("pk", flat=True))
            seq = _last_seq()
            response = _client(writer).post(_url(model, "add"), page[0])
            errors = (
                response.context["adminform"].form.errors
                if response.status_code == 200 and response.context and "adminform" in response.context
                else None
            )
            assert response.status_code in (200, 302), response.status_code
            assert response.status_code == 302 or response.templates[0].name != "admin/change_form.html", errors
            new = set(model._base_manager.values_list("pk", flat=True)) - before
            assert len(new) == 1, (label, errors)
            added = model._base_manager.get(pk=new.pop())
            _assert_events(label, model, "add", seq, writer, added)
    # Change (the object just added, else acme's).
    obj = added or walk[label]
    writer = _writer(model, "change", lead, superuser, obj)
    if writer is not None:
        page = _page_data(model, writer, _url(model, "change", quote(obj.pk)), label, walk)
        if page is not None:
            seq = _last_seq()
            data = _edited(*page)
            response = _client(writer).post(_url(model, "change", quote(obj.pk)), data)
            errors = (
                response.context["adminform"].form.errors
                if response.status_code == 200 and response.context and "adminform" in response.context
                else None
            )
            assert response.status_code == 302, (label, errors)
            _assert_events(label, model, "change", seq, writer, obj)
    # Delete (the object just added: nothing else refers to it).
    if added is not None:
        writer = _writer(model, "delete", lead, superuser, added)
        if writer is not None:
            seq = _last_seq()
            response = _client(writer).post(_url(model, "delete", quote(added.pk)), {"post": "yes"})
            assert response.status_code == 302, label
            assert not model._base_manager.filter(pk=added.pk).exists(), label
            _assert_events(label, model, "delete", seq, writer, added)
    # Each action on acme's object: whatever it changes is on the record, as done by its user.
    for action in _actions(model, lead) or _actions(model, superuser):
        user = lead if action in _actions(model, lead) else superuser
        target = walk[label]
        if not model._base_manager.filter(pk=target.pk).exists():
            continue
        before, seq = snapshot(), _last_seq()
        data = {**ACTION_FORM, "action": action, ACTION_CHECKBOX_NAME: [str(target.pk)], "new_owner": str(lead.pk)}
        response = _client(user).post(_url(model, "changelist"), data)
        assert response.status_code in (200, 302, 403), (label, action, response.status_code)
        changed = [t for t in changed_tables(before, snapshot()) if t != "django_celery_beat.PeriodicTasks"]
        events = _new_events(seq)
        if changed and model_admin.__class__.__module__.split(".")[0] in ("governance", "pipelines", "reviews"):
            assert events, f"{label} {action} changed {changed} without an audit event"
        assert all(e.actor_id in (user.pk, None) for e in events), (label, action)


def _form_errors(response):
    """The errors of the admin form a refused save shows again, for the failure message."""
    context = response.context if response.status_code == 200 else None
    return context["adminform"].form.errors if context and "adminform" in context else None


def _assert_events(label: str, model, write: str, seq: int, writer, obj) -> None:
    expected = _expected(label, model, write)
    if expected is None:
        return
    events = _new_events(seq)
    assert [e.action for e in events] == expected, (label, write)
    assert all(e.actor_id == writer.pk for e in events), (label, write)
    assert str(obj.pk) in {str(e.object_id) for e in events}, (label, write)
