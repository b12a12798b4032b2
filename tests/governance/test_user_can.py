"""user_can asks guardian's tables in one query of its own; its answers must
be the ones guardian's has_perm gives, question by question."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from governance.models import Workspace
from governance.permissions import ACTIONS, PIPELINE_ONLY, _own_codename, _target, _workspace_codename, user_can
from tests import factories


def _guardian_says(user, action: str, obj) -> bool:
    """The rule as guardian's has_perm answers it, two queries per object."""
    target = _target(obj)
    if isinstance(target, Workspace):
        return user.has_perm(_workspace_codename(action, inside=target is not obj), target)
    own = _own_codename(type(target), action)
    if own and user.has_perm(own, target):
        return True
    if action in PIPELINE_ONLY and own is None:
        return False
    return user.has_perm(_workspace_codename(action, inside=True), target.workspace)


@pytest.fixture
def direct_holders(acme_config, globex_config):
    """Rights on one object rather than on a workspace: a user's own, and a group's."""
    solo = factories.UserFactory(username="solo", is_staff=False)
    assign_perm("pipelines.review_output", solo, globex_config["pipeline"])
    assign_perm("pipelines.view_prompttemplate", solo, acme_config["prompt"])
    member = factories.UserFactory(username="member", is_staff=False)
    group = Group.objects.create(name="globex-approvers")
    group.user_set.add(member)
    assign_perm("pipelines.approve_release", group, globex_config["pipeline"])
    assign_perm("pipelines.change_pipeline", group, globex_config["pipeline"])
    return [solo, member]


def test_it_answers_as_guardian_for_every_persona_action_and_object(
    personas, direct_holders, acme, globex, acme_config, globex_config
):
    objects = [acme, globex, *acme_config.values(), *globex_config.values(), acme_config["pipeline"].steps.first()]
    users = [*personas.values(), *direct_holders]
    asked = 0
    for user in users:
        for obj in objects:
            for action in ACTIONS:
                assert user_can(user, action, obj) == _guardian_says(user, action, obj), (user, action, obj)
                asked += 1
    assert asked == len(users) * len(objects) * len(ACTIONS)


def test_the_listing_filter_finds_what_guardian_grants_for_every_persona_action_and_model(
    personas, direct_holders, acme, globex, acme_config, globex_config
):
    from governance.permissions import filter_for_user

    objects = [acme, globex, *acme_config.values(), *globex_config.values(), acme_config["pipeline"].steps.first()]
    models = {type(obj) for obj in objects}
    found = 0
    for user in [*personas.values(), *direct_holders]:
        for model in models:
            for action in ACTIONS:
                listed = set(
                    filter_for_user(user, action, model.objects.all()).filter(
                        pk__in=[o.pk for o in objects if type(o) is model]
                    )
                )
                expected = {o for o in objects if type(o) is model and _guardian_says(user, action, o)}
                assert listed == expected, (user, action, model)
                found += len(listed)
    assert found  # some rights were held, some not (the personas differ)


def test_a_right_held_directly_or_through_a_group_is_seen_and_another_object_stays_closed(
    direct_holders, acme_config, globex_config
):
    solo, member = direct_holders
    assert user_can(solo, "review_output", globex_config["pipeline"])
    assert not user_can(solo, "review_output", acme_config["pipeline"])
    assert user_can(member, "approve_release", globex_config["pipeline"])
    assert not user_can(member, "approve_release", acme_config["pipeline"])
    assert not user_can(member, "review_output", globex_config["pipeline"])


def test_one_question_is_one_query(reviewer, acme_config):
    pipeline = acme_config["pipeline"]
    user_can(reviewer, "view", pipeline)  # content types cached
    with CaptureQueriesContext(connection) as queries:
        assert user_can(reviewer, "review_output", pipeline)
    assert len(queries) == 1


def test_prefetched_answers_are_user_cans_for_every_persona_action_and_object(
    personas, direct_holders, acme, globex, acme_config, globex_config
):
    from governance.permissions import permission_cache, user_can_prefetch

    objects = [acme, globex, *acme_config.values(), *globex_config.values()]
    for user in [*personas.values(), *direct_holders]:
        for obj in objects:
            expected = {action: user_can(user, action, obj) for action in ACTIONS}
            with permission_cache():
                user_can_prefetch(user, ACTIONS, obj)
                with CaptureQueriesContext(connection) as queries:
                    answers = {action: user_can(user, action, obj) for action in ACTIONS}
            assert answers == expected, (user, obj)
            assert len(queries) == 0  # every answer came from the one prefetch


def test_a_prefetch_asks_several_rights_in_one_query_and_nothing_outside_a_block(author, acme_config):
    from governance.permissions import permission_cache, user_can_prefetch

    pipeline = acme_config["pipeline"]
    user_can(author, "view", pipeline)  # content types cached
    with CaptureQueriesContext(connection) as outside:
        user_can_prefetch(author, ("view", "change"), pipeline)
    assert len(outside) == 0
    with permission_cache(), CaptureQueriesContext(connection) as inside:
        user_can_prefetch(author, ("view", "change", "approve_release"), pipeline)
        assert user_can(author, "view", pipeline) and user_can(author, "change", pipeline)
        assert not user_can(author, "approve_release", pipeline)
    assert len(inside) == 1


def test_rights_read_in_sql_are_user_cans_for_every_persona_action_and_pipeline(
    personas, direct_holders, acme_config, globex_config
):
    from django.contrib.auth import get_user_model

    from governance.permissions import rights_sql
    from pipelines.models import Pipeline

    q = connection.ops.quote_name
    columns, params = rights_sql(Pipeline, ACTIONS, user="u.id", key="p.id", workspace="p.workspace_id")
    sql = (
        f"SELECT {columns} FROM {q(get_user_model()._meta.db_table)} u, {q(Pipeline._meta.db_table)} p"
        " WHERE u.id = %s AND p.id = %s"
    )
    checked = 0
    for user in [*personas.values(), *direct_holders]:
        for pipeline in (acme_config["pipeline"], globex_config["pipeline"]):
            with connection.cursor() as cursor:
                cursor.execute(sql, [*params, user.pk, pipeline.pk])
                row = cursor.fetchone()
            assert {a: bool(v) for a, v in zip(ACTIONS, row, strict=True)} == {
                a: user_can(user, a, pipeline) for a in ACTIONS
            }, (user, pipeline)
            checked += 1
    assert checked == 2 * (len(personas) + len(direct_holders))


def test_rights_sql_refuses_what_it_cannot_answer():
    from governance.permissions import rights_sql

    with pytest.raises(ValueError, match="under a workspace"):
        rights_sql(Workspace, ("view",), user="u.id", key="w.id", workspace="w.id")
    from pipelines.models import Pipeline

    with pytest.raises(ValueError, match="unknown action"):
        rights_sql(Pipeline, ("fly",), user="u.id", key="p.id", workspace="p.workspace_id")
