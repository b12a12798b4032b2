"""Who may do what in the admin.

Every admin page and action of every governed configuration model, for every
persona, on an object in the persona's own workspace (acme) and on one in a
workspace where they hold nothing (globex). The tables below are the
specification: read a row as "this persona, on this kind of object, gets ...".

Personas (tests/conftest.py) and what they hold in acme:
    superuser  everything everywhere
    lead       Governance leads: view/add/change/delete config, view/add/change workspaces
    author     Prompt engineers: view/add/change pipelines, prompts, model configs; view policies, workspaces
    reviewer   Reviewers: review_output only, and not staff (the admin is not theirs)
    auditor    Auditors: view everything, view_audit
    operator   Operators: view pipelines and workspaces, deploy
    outsider   staff with no role and no rights
"""

import pytest
from django.urls import NoReverseMatch, reverse

from audit.selectors import audit_chain_verify
from governance.models import ApprovalPolicy, Workspace
from governance.services import permission_grant
from pipelines.models import ModelConfig, Pipeline, PromptTemplate
from tests import factories

# What a response may be.
OK = "200"
DENIED = "403"
NOT_FOUND = "404"
# As if it did not exist: the object is outside what the user may see. Django's
# object pages answer with a redirect to the admin index ("doesn't exist").
GONE = "gone"
LOGIN = "login"  # not staff: sent to the admin's login page
NO_PAGE = "no page"  # the model has no such page (a policy carries no rights of its own)

# Outcomes of the bulk delete action (POSTed as its confirmation page does).
DELETED = "deleted"  # 302 back to the list, the row is gone
UNOFFERED = "unoffered"  # the list does not offer the action to this user; the row stays
UNSELECTED = "unselected"  # 302, the row is not in the user's list so nothing was selected; the row stays

PERSONAS = ("superuser", "lead", "author", "reviewer", "auditor", "operator", "outsider")
MODELS = {
    "workspace": Workspace,
    "policy": ApprovalPolicy,
    "prompt": PromptTemplate,
    "model": ModelConfig,
    "pipeline": Pipeline,
}

# (acme, globex) shorthands for the object pages.
BOTH = (OK, OK)
OWN = (OK, GONE)
NEITHER = (GONE, GONE)
FORBIDDEN = (DENIED, DENIED)
TO_LOGIN = (LOGIN, LOGIN)

# Change lists: the status, and (below) which workspaces' objects are listed.
#                superuser lead author reviewer auditor operator outsider
CHANGELIST = {
    "workspace": (OK, OK, OK, LOGIN, OK, OK, DENIED),
    "policy": (OK, OK, OK, LOGIN, OK, DENIED, DENIED),
    "prompt": (OK, OK, OK, LOGIN, OK, DENIED, DENIED),
    "model": (OK, OK, OK, LOGIN, OK, DENIED, DENIED),
    "pipeline": (OK, OK, OK, LOGIN, OK, OK, DENIED),
}
LISTED = {"superuser": {"acme", "globex"}}  # everyone else who gets the list sees acme's only

ADD = {
    "workspace": (OK, OK, DENIED, LOGIN, DENIED, DENIED, DENIED),
    "policy": (OK, OK, DENIED, LOGIN, DENIED, DENIED, DENIED),
    "prompt": (OK, OK, OK, LOGIN, DENIED, DENIED, DENIED),
    "model": (OK, OK, OK, LOGIN, DENIED, DENIED, DENIED),
    "pipeline": (OK, OK, OK, LOGIN, DENIED, DENIED, DENIED),
}

# The change page (a view-only page for those who may view but not change).
# Django asks the model-level right first, so without it the answer is 403
# whether or not the object is within reach.
CHANGE = {
    "workspace": (BOTH, OWN, OWN, TO_LOGIN, OWN, OWN, FORBIDDEN),
    "policy": (BOTH, OWN, OWN, TO_LOGIN, OWN, FORBIDDEN, FORBIDDEN),
    "prompt": (BOTH, OWN, OWN, TO_LOGIN, OWN, FORBIDDEN, FORBIDDEN),
    "model": (BOTH, OWN, OWN, TO_LOGIN, OWN, FORBIDDEN, FORBIDDEN),
    "pipeline": (BOTH, OWN, OWN, TO_LOGIN, OWN, OWN, FORBIDDEN),
}

# History (governance/admin_history.py): whoever may view an object may read
# its history; an object outside the user's reach is a 404.
_READS = (OK, NOT_FOUND)
_NO_HISTORY = (DENIED, NOT_FOUND)  # sees acme's object exists but may not view this kind
HISTORY = {
    "workspace": (BOTH, _READS, _READS, TO_LOGIN, _READS, _READS, (NOT_FOUND, NOT_FOUND)),
    "policy": (BOTH, _READS, _READS, TO_LOGIN, _READS, _NO_HISTORY, (NOT_FOUND, NOT_FOUND)),
    "prompt": (BOTH, _READS, _READS, TO_LOGIN, _READS, _NO_HISTORY, (NOT_FOUND, NOT_FOUND)),
    "model": (BOTH, _READS, _READS, TO_LOGIN, _READS, _NO_HISTORY, (NOT_FOUND, NOT_FOUND)),
    "pipeline": (BOTH, _READS, _READS, TO_LOGIN, _READS, _READS, (NOT_FOUND, NOT_FOUND)),
}

# Only leads delete, and never a workspace (no role holds delete_workspace).
DELETE = {
    "workspace": (BOTH, FORBIDDEN, FORBIDDEN, TO_LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "policy": (BOTH, OWN, FORBIDDEN, TO_LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "prompt": (BOTH, OWN, FORBIDDEN, TO_LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "model": (BOTH, OWN, FORBIDDEN, TO_LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "pipeline": (BOTH, OWN, FORBIDDEN, TO_LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
}

# Object permissions: superusers, and governance leads who may change the object.
_MANAGED = (BOTH, (OK, NOT_FOUND), (DENIED, NOT_FOUND), TO_LOGIN, (DENIED, NOT_FOUND), (DENIED, NOT_FOUND))
PERMISSIONS = {
    "workspace": (*_MANAGED, (NOT_FOUND, NOT_FOUND)),
    "policy": ((NO_PAGE, NO_PAGE),) * len(PERSONAS),
    "prompt": (*_MANAGED, (NOT_FOUND, NOT_FOUND)),
    "model": (*_MANAGED, (NOT_FOUND, NOT_FOUND)),
    "pipeline": (*_MANAGED, (NOT_FOUND, NOT_FOUND)),
}

_LEAD_DELETES = (DELETED, UNSELECTED)
_VIEWS_ONLY = (UNOFFERED, UNOFFERED)
DELETE_SELECTED = {
    "workspace": ((DELETED, DELETED), _VIEWS_ONLY, _VIEWS_ONLY, TO_LOGIN, _VIEWS_ONLY, _VIEWS_ONLY, FORBIDDEN),
    "policy": ((DELETED, DELETED), _LEAD_DELETES, _VIEWS_ONLY, TO_LOGIN, _VIEWS_ONLY, FORBIDDEN, FORBIDDEN),
    "prompt": ((DELETED, DELETED), _LEAD_DELETES, _VIEWS_ONLY, TO_LOGIN, _VIEWS_ONLY, FORBIDDEN, FORBIDDEN),
    "model": ((DELETED, DELETED), _LEAD_DELETES, _VIEWS_ONLY, TO_LOGIN, _VIEWS_ONLY, FORBIDDEN, FORBIDDEN),
    "pipeline": ((DELETED, DELETED), _LEAD_DELETES, _VIEWS_ONLY, TO_LOGIN, _VIEWS_ONLY, _VIEWS_ONLY, FORBIDDEN),
}

OBJECT_PAGES = {"change": CHANGE, "history": HISTORY, "delete": DELETE, "permissions": PERMISSIONS}


def _cases(table: dict, *, places: bool):
    for model, row in table.items():
        for persona, expected in zip(PERSONAS, row, strict=True):
            if places:
                for place, outcome in zip(("acme", "globex"), expected, strict=True):
                    yield pytest.param(model, persona, place, outcome, id=f"{model}-{persona}-{place}")
            else:
                yield pytest.param(model, persona, expected, id=f"{model}-{persona}")


@pytest.fixture
def as_persona(request, client):
    """Sign in as the named persona (creating only that one)."""

    def sign_in(name: str):
        user = request.getfixturevalue(name)
        client.force_login(user)
        return user

    return sign_in


@pytest.fixture
def objects(acme_config, globex_config, acme, globex) -> dict:
    """(model key, place) -> the object the pages are asked about."""
    found = {("workspace", "acme"): acme, ("workspace", "globex"): globex}
    for key in ("policy", "prompt", "model", "pipeline"):
        found[(key, "acme")] = acme_config[key]
        found[(key, "globex")] = globex_config[key]
    return found


def _url(model: str, page: str, *args) -> str:
    opts = MODELS[model]._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{page}", args=args)


def _assert_response(response, expected: str) -> None:
    if expected == LOGIN:
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
    elif expected == GONE:
        assert response.status_code == 302
        assert response.url == reverse("admin:index")
    else:
        assert str(response.status_code) == expected


@pytest.mark.parametrize(("model", "persona", "expected"), list(_cases(CHANGELIST, places=False)))
def test_changelist(client, as_persona, objects, model, persona, expected):
    as_persona(persona)
    response = client.get(_url(model, "changelist"))
    _assert_response(response, expected)
    if expected == OK:
        listed = {obj.pk for obj in response.context["cl"].result_list}
        places = LISTED.get(persona, {"acme"})
        assert listed == {objects[(model, place)].pk for place in places}


@pytest.mark.parametrize(("model", "persona", "expected"), list(_cases(ADD, places=False)))
def test_add_page(client, as_persona, acme, model, persona, expected):
    as_persona(persona)
    _assert_response(client.get(_url(model, "add")), expected)


def _object_page_cases():
    for page, table in OBJECT_PAGES.items():
        for case in _cases(table, places=True):
            yield pytest.param(page, *case.values, id=f"{page}-{case.id}")


@pytest.mark.parametrize(("page", "model", "persona", "place", "expected"), list(_object_page_cases()))
def test_object_page(client, as_persona, objects, page, model, persona, place, expected):
    as_persona(persona)
    obj = objects[(model, place)]
    if expected == NO_PAGE:
        with pytest.raises(NoReverseMatch):
            _url(model, page, obj.pk)
        return
    before = MODELS[model].objects.count()
    _assert_response(client.get(_url(model, page, obj.pk)), expected)
    assert MODELS[model].objects.count() == before


def _deletable(model: str, workspace: Workspace, superuser):
    """An object nothing else refers to, so a delete is decided by rights alone."""
    from audit.context import acting_as

    if model == "workspace":
        return workspace  # left empty in these tests
    factory = {
        "policy": factories.ApprovalPolicyFactory,
        "prompt": factories.PromptTemplateFactory,
        "model": factories.ModelConfigFactory,
        "pipeline": factories.PipelineFactory,
    }[model]
    with acting_as(superuser):
        return factory(workspace=workspace)


@pytest.mark.parametrize(("model", "persona", "place", "expected"), list(_cases(DELETE_SELECTED, places=True)))
def test_delete_selected_action(request, client, as_persona, superuser, model, persona, place, expected):
    as_persona(persona)
    obj = _deletable(model, request.getfixturevalue(place), superuser)
    changelist = _url(model, "changelist")
    response = client.post(changelist, {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    still_there = MODELS[model].objects.filter(pk=obj.pk).exists()
    if expected == DELETED:
        assert response.status_code == 302
        assert not still_there
        return
    assert still_there
    if expected == UNOFFERED:
        # The list is shown again, or redirects to itself with "no action selected".
        assert response.status_code in (200, 302)
        action_form = client.get(changelist).context["action_form"]
        assert action_form is None or "delete_selected" not in dict(action_form.fields["action"].choices)
    elif expected == UNSELECTED:
        assert response.status_code == 302
    else:
        _assert_response(response, expected)


def test_delete_selected_spares_objects_the_lead_may_only_view(client, lead, superuser, globex):
    """A lead of acme who may read globex (an auditor there) still cannot delete
    globex's objects in bulk: deleting needs the change right, as on the page."""
    permission_grant(actor=superuser, obj=globex, permission="view_workspace", user=lead)
    client.force_login(lead)
    pipeline = _deletable("pipeline", globex, superuser)
    assert client.get(_url("pipeline", "change", pipeline.pk)).status_code == 200  # readable
    response = client.post(
        _url("pipeline", "changelist"), {"action": "delete_selected", "_selected_action": [pipeline.pk], "post": "yes"}
    )
    assert response.status_code == 403
    assert Pipeline.objects.filter(pk=pipeline.pk).exists()
    assert client.get(_url("pipeline", "delete", pipeline.pk)).status_code == 403


# Changes posted through the change form.


def _prompt_form(prompt: PromptTemplate, **changes) -> dict:
    data = {
        "workspace": prompt.workspace_id,
        "slug": prompt.slug,
        "name": prompt.name,
        "body": prompt.body,
        "variables": '["subject", "body"]',
        "owner": prompt.owner_id,
        "description": prompt.description,
    }
    return {**data, **changes}


def test_a_prompt_engineer_changes_a_prompt_in_acme(client, author, acme_config):
    prompt = acme_config["prompt"]
    client.force_login(author)
    response = client.post(_url("prompt", "change", prompt.pk), _prompt_form(prompt, name="Sharper classifier"))
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert prompt.name == "Sharper classifier"
    assert prompt.history.latest().history_user == author
    assert audit_chain_verify().ok


def test_a_prompt_engineer_cannot_change_a_prompt_in_globex(client, author, acme, globex_config):
    prompt = globex_config["prompt"]
    client.force_login(author)
    response = client.post(_url("prompt", "change", prompt.pk), _prompt_form(prompt, workspace=acme.pk, name="Mine"))
    _assert_response(response, GONE)
    prompt.refresh_from_db()
    assert (prompt.name, prompt.workspace_id) == (globex_config["prompt"].name, globex_config["prompt"].workspace_id)
    assert prompt.history.count() == 1


def test_a_view_only_auditor_cannot_change_a_prompt(client, auditor, acme_config):
    prompt = acme_config["prompt"]
    client.force_login(auditor)
    response = client.post(_url("prompt", "change", prompt.pk), _prompt_form(prompt, name="Audited away"))
    assert response.status_code == 403
    prompt.refresh_from_db()
    assert prompt.name == acme_config["prompt"].name
    assert prompt.history.count() == 1


def test_a_prompt_engineer_cannot_move_a_prompt_into_globex(client, author, acme_config, globex):
    prompt = acme_config["prompt"]
    client.force_login(author)
    response = client.post(_url("prompt", "change", prompt.pk), _prompt_form(prompt, workspace=globex.pk))
    assert response.status_code == 200
    assert "workspace" in response.context["adminform"].form.errors
    prompt.refresh_from_db()
    assert prompt.workspace_id == acme_config["prompt"].workspace_id


def test_an_operator_cannot_change_a_pipeline(client, operator, acme_config):
    pipeline = acme_config["pipeline"]
    client.force_login(operator)
    response = client.post(_url("pipeline", "change", pipeline.pk), {"name": "Renamed"})
    assert response.status_code == 403
    pipeline.refresh_from_db()
    assert pipeline.name == acme_config["pipeline"].name


def test_a_prompt_engineer_cannot_delete_a_prompt(client, author, acme_config):
    prompt = acme_config["prompt"]
    client.force_login(author)
    assert client.post(_url("prompt", "delete", prompt.pk), {"post": "yes"}).status_code == 403
    assert PromptTemplate.objects.filter(pk=prompt.pk).exists()
