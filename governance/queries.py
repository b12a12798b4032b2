"""governance's hand-written SQL: guardian's object-permission checks, several
at once in one statement. Building guardian's four-part ORM query for every
check cost more than running it, and a request that checks several rights (a
run's creation: view, then change) or reads them with a row it reads anyway
(the API's token read) asks the database once. What grants which right is
decided in governance/permissions.py; this module only asks the tables.
Tested against guardian's own answers on PostgreSQL and SQLite
(tests/governance/test_user_can.py).
"""

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.models import Model
from guardian.ctypes import get_content_type
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model


def grants_held(user_id: int, grants: list[tuple[int, type[Model], object, str]]) -> set[int]:
    """Of ``grants``, each (index, model, object key, permission codename), the
    indexes of those guardian holds for the user, directly or through one of
    their groups: what ``user.has_perm`` answers for each, asked in one query
    instead of two per object and permission. With one index among them, the
    first row found settles it."""
    parts, params = [], []
    for index, model, pk, codename in grants:
        content_type_id = get_content_type(model).pk
        for sql, generic in grant_selects(model):
            parts.append((index, sql))
            params += [content_type_id, codename, user_id, *([content_type_id, str(pk)] if generic else [pk])]
    if not parts:
        return set()
    indexes = {index for index, _ in parts}
    with connection.cursor() as cursor:
        if len(indexes) == 1:  # one answer wanted: the first row settles it
            cursor.execute(" UNION ALL ".join(sql for _, sql in parts) + " LIMIT 1", params)
            return indexes if cursor.fetchone() is not None else set()
        # Each part answers with its index (a constant: no parameter to type).
        cursor.execute(" UNION ".join(f"SELECT {index:d} FROM ({sql}) g" for index, sql in parts), params)
        return {row[0] for row in cursor.fetchall()}


def rights_columns(user: str, grants_by_column: list[list[tuple[type[Model], str, str]]]) -> tuple[str, list]:
    """Columns for a SELECT, one per list of grants (model, the column holding
    the object's key, permission codename), each true when guardian holds any
    of them for the user whose key is the column ``user``; with their
    parameters, in order. A column with no grants is false."""
    columns, params = [], []
    for grants in grants_by_column:
        parts = []
        for model, key_column, codename in grants:
            content_type_id = get_content_type(model).pk
            for sql, generic in grant_selects(model, user, key_column):
                parts.append(sql)
                params += [content_type_id, codename, *([content_type_id] if generic else [])]
        columns.append(f"EXISTS ({' UNION ALL '.join(parts)})" if parts else "1 = 0")
    return ", ".join(columns), params


def granted_keys(model: type[Model], codename: str, user_id: int) -> tuple[str, list]:
    """A SELECT of the keys of the ``model`` objects on which guardian holds
    the permission ``codename`` for the user, directly or through one of
    their groups (the objects ``get_objects_for_user`` finds, without global
    permissions), with its parameters. It names no table of an enclosing
    statement, so it serves as ``pk__in=RawSQL(...)`` in any query, a
    subquery's included."""
    content_type_id = get_content_type(model).pk
    sql, generics = _granted_keys_sql(model, connection.vendor)
    params = []
    for generic in generics:
        params += [content_type_id, codename, user_id, *([content_type_id] if generic else [])]
    return sql, params


@functools.cache
def _granted_keys_sql(model: type[Model], vendor: str) -> tuple[str, tuple[bool, ...]]:
    # ``vendor`` keys the cache: the key's cast type is the database's.
    key_type = model._meta.pk.cast_db_type(connection)
    selects, generics = [], []
    for table, col, generic, grants in _grant_tables(model, "%s"):
        if generic:  # the object's key kept as text, beside its content type
            key, of_model = f"CAST({col['object_pk']} AS {key_type})", f" AND {col['content_type']} = %s"
        else:
            key, of_model = col["content_object"], ""
        selects.append(f"SELECT {key} FROM {table} o WHERE {grants}{of_model}")
        generics.append(generic)
    return " UNION ".join(selects), tuple(generics)


def _grant_tables(model: type[Model], user: str):
    """Guardian's user and group permission tables for ``model``, each as
    (table, its columns as ``o.<column>``, whether it is generic, and the
    condition that a row grants the permission, given by content type and
    codename parameters, to ``user`` or one of their groups)."""
    q = connection.ops.quote_name
    groups_of, permission_key = _groups_of(user), _permission_key()
    for perms_model, holder in ((get_user_obj_perms_model(model), "user"), (get_group_obj_perms_model(model), "group")):
        meta = perms_model._meta
        col = {f.name: "o." + q(f.column) for f in meta.concrete_fields}
        who = f"{col['user']} = {user}" if holder == "user" else f"{col['group']} IN ({groups_of})"
        # The permission's key as a scalar subquery rather than a join: the
        # planner settles four parts of this shape in about half the time.
        yield (
            q(meta.db_table),
            col,
            perms_model.objects.is_generic(),
            f"{col['permission']} = ({permission_key}) AND {who}",
        )


def _groups_of(user: str) -> str:
    q = connection.ops.quote_name
    memberships = get_user_model().groups.through._meta
    return (
        f"SELECT {q(memberships.get_field('group').column)} FROM {q(memberships.db_table)}"
        f" WHERE {q(memberships.get_field('user').column)} = {user}"
    )


def _permission_key() -> str:
    """The permission's key by content type and codename (two parameters)."""
    q = connection.ops.quote_name
    permissions = Permission._meta
    return (
        f"SELECT {q(permissions.pk.column)} FROM {q(permissions.db_table)}"
        f" WHERE {q(permissions.get_field('content_type').column)} = %s"
        f" AND {q(permissions.get_field('codename').column)} = %s"
    )


@functools.cache
def grant_selects(model: type[Model], user: str = "%s", key: str = "%s") -> tuple[tuple[str, bool], ...]:
    """The SELECTs behind guardian's user and group permission checks on
    ``model`` (its direct permission tables, or the generic ones), each with
    whether it is generic. Written once per model as SQL: building the same
    four-part ORM query on every check cost more than running it.
    Parameters: content type, codename, user, then the object's key (a
    generic table: content type and the key as text). ``user`` and ``key``
    may name columns of an enclosing statement instead (``rights_columns``):
    those two are then not parameters."""
    selects = []
    for table, col, generic, grants in _grant_tables(model, user):
        if generic:  # the object's key kept as text
            text_key = key if key == "%s" else f"CAST({key} AS TEXT)"
            key_sql = f"{col['content_type']} = %s AND {col['object_pk']} = {text_key}"
        else:
            key_sql = f"{col['content_object']} = {key}"
        selects.append((f"SELECT 1 FROM {table} o WHERE {grants} AND {key_sql}", generic))
    return tuple(selects)
