"""The pipelines app's hand-written SQL, in one place. Each statement here is
one that every run start, every worker task or every API request makes, where
compiling the ORM's query cost more than the database takes to answer it, or
one the ORM cannot express (a sequence's next value read with the row that
needs it, several rights read with a token).
Everything else in the app goes through the ORM. Tested on PostgreSQL and
SQLite (tests/pipelines/test_queries.py and the engine's and API's tests).

Invariants: the column lists come from the models' own metadata (a new field is
read without an edit here); each row becomes model instances through
``Model.from_db`` after the fields' own converters, as the ORM would convert it,
so values read the same on PostgreSQL and SQLite (where datetimes, decimals and
booleans arrive as text and integers); values written are adapted as ``save``
and ``update`` adapt them; a model with save hooks is always saved the ORM's
way; each statement is written once per process and database vendor.

- Rows: ``Columns`` (a model's columns in a SELECT and back to an instance),
  ``fetch_row``, ``insert_one`` and ``insert_statement`` (single-row INSERTs),
  ``update_where`` (a filtered UPDATE).
- Run start: ``deployment_read``. Worker: ``run_load``, ``run_update``,
  ``step_update``. API: ``token_read``. Operations: ``database_ping``,
  ``sqlite_wal_truncate``.
"""

import functools

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from governance.models import Workspace
from governance.permissions import rights_sql
from pipelines.models import Budget, Deployment, Pipeline, Release, Run, ServiceToken, StepRun


class Columns:
    """One model's concrete columns under a table alias in a SELECT, and the
    slice of a row they fill turned back into an instance."""

    def __init__(self, model: type[Model], alias: str, *, defer: tuple[str, ...] = ()) -> None:
        self.model = model
        self.alias = alias
        # A deferred field is left out of the SELECT and loaded on first access, as .defer() does.
        self.fields = [f for f in model._meta.concrete_fields if f.attname not in defer]
        self.attnames = [f.attname for f in self.fields]
        self._pk_index = self.attnames.index(model._meta.pk.attname)
        self._converters: dict[str, list] = {}

    @property
    def table(self) -> str:
        return connection.ops.quote_name(self.model._meta.db_table)

    @property
    def pk(self) -> str:
        return f"{self.alias}.{connection.ops.quote_name(self.model._meta.pk.column)}"

    @property
    def sql(self) -> str:
        return ", ".join(f"{self.alias}.{connection.ops.quote_name(f.column)}" for f in self.fields)

    def instance(self, row, start: int) -> Model | None:
        """The instance in ``row[start:start + len(self)]``; None when its primary
        key is NULL (the other side of a LEFT JOIN that found nothing)."""
        values = list(row[start : start + len(self.fields)])
        if values[self._pk_index] is None:
            return None
        for index, convert in self._converters_for(connection.vendor):
            values[index] = convert(values[index])
        return self.model.from_db(connection.alias, self.attnames, values)

    def __len__(self) -> int:
        return len(self.fields)

    def _converters_for(self, vendor: str) -> list:
        # (index, value -> value) for every field whose value the backend or
        # the field converts on the way out of the database (SQLCompiler.get_converters).
        if vendor not in self._converters:
            pairs = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.model._meta.db_table)
                found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
                if found:
                    pairs.append((index, _chain(found, column)))
            self._converters[vendor] = pairs
        return self._converters[vendor]


def _chain(converters: list, column):
    def convert(value):
        for converter in converters:
            value = converter(value, column, connection)
        return value

    return convert


def fetch_row(sql: str, params: list) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@functools.cache
def _insert_sql(model: type[Model], vendor: str, *, with_pk: bool = False) -> tuple[str, list]:
    quote = connection.ops.quote_name
    pk = model._meta.pk
    # Without with_pk the primary key comes from the database (an auto field),
    # as with save(), and insert_one reads it back with RETURNING (PostgreSQL,
    # and SQLite since 3.35: the ORM's own inserts rely on it there too).
    fields = [f for f in model._meta.concrete_fields if (with_pk or f is not pk) and not getattr(f, "generated", False)]
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if not with_pk:
        sql += f" RETURNING {quote(pk.column)}"
    return sql, fields


def insert_one(obj: Model) -> Model:
    """``obj.save(force_insert=True)`` for a new row, without the ORM compiling
    the INSERT each time: the values are adapted exactly as ``save`` adapts
    them (``pre_save``, then ``get_db_prep_save``). A model that a
    ``pre_save`` or ``post_save`` receiver listens to, that has a ``save`` of
    its own (or whose primary key is not the database's to assign) is saved
    the ORM's way, so that nothing it does on saving is ever skipped. The
    instance gets its primary key; Django's own record of whether it was
    saved (private) is left alone, so a later ``save()`` updates the row."""
    model = type(obj)
    pk = model._meta.pk
    if _saved_its_own_way(model) or not isinstance(pk, AutoFieldMixin):
        obj.save(force_insert=True)
        return obj
    sql, fields = _insert_sql(model, connection.vendor)
    params = [field.get_db_prep_save(field.pre_save(obj, add=True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        setattr(obj, pk.attname, cursor.fetchone()[0])
    return obj


def _saved_its_own_way(model: type[Model]) -> bool:
    """A receiver listens to its saves, or it has a ``save`` of its own."""
    return pre_save.has_listeners(model) or post_save.has_listeners(model) or model.save is not Model.save


def insert_statement(obj: Model) -> tuple[str, list]:
    """The INSERT of a new row whose primary key is already set (taken from
    its sequence), as ``(sql, params)``, for a caller that sends it with
    another statement; values are adapted as ``insert_one`` adapts them. Only
    for models ``insert_one`` inserts itself."""
    model = type(obj)
    if obj.pk is None or _saved_its_own_way(model):
        raise ValueError(f"insert_statement needs a {model.__name__} with its key and no save hooks")
    sql, fields = _insert_sql(model, connection.vendor, with_pk=True)
    params = [field.get_db_prep_save(field.pre_save(obj, add=True), connection) for field in fields]
    return sql, params


def update_where(model: type[Model], fields: dict, where: str, params: list, *, also: str = "") -> int:
    """``model.objects.filter(...).update(**fields)`` with the filter written
    as SQL (``where`` and its ``params``), and ``also``: further assignments
    in SQL (``"attempts" = "attempts" + 1``). Values are adapted as ``update``
    adapts them (``get_db_prep_save``); the statement is written once per
    model, set of fields and filter. Returns the rows changed."""
    values = [model._meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, tuple(fields), where, also, connection.vendor), [*values, *params])
        return cursor.rowcount


@functools.lru_cache(maxsize=64)
def _update_sql(model: type[Model], names: tuple[str, ...], where: str, also: str, vendor: str) -> str:
    quote = connection.ops.quote_name
    assignments = [f"{quote(model._meta.get_field(name).column)} = %s" for name in names] + ([also] if also else [])
    return f"UPDATE {quote(model._meta.db_table)} SET {', '.join(assignments)} WHERE {where}"


# Run start


def deployment_read(
    pipeline: Pipeline, environment: str, key: str | None
) -> tuple[Deployment | None, bool, int | None, int | None]:
    """(the deployment with its release and canary release, whether any budget
    covers the pipeline, the run an earlier start with ``key`` created, and on
    PostgreSQL an id for a new run from the run table's sequence) in one round
    trip, or (None, False, None, None) without a deployment row.

    Every run start makes this read.
    """
    sql, deployment_columns, release_columns, canary_columns = _deployment_read_sql(connection.vendor)
    row = fetch_row(sql, [pipeline.pk, pipeline.workspace_id, pipeline.pk, key or None, pipeline.pk, environment])
    if row is None:
        return None, False, None, None
    deployment = deployment_columns.instance(row, 0)
    start = len(deployment_columns)
    # Assigning a related instance caches it, as select_related would.
    deployment.pipeline = pipeline
    deployment.release = release_columns.instance(row, start)
    deployment.canary_release = canary_columns.instance(row, start + len(release_columns))
    budgeted, earlier_id, run_id = row[-3:]
    return deployment, bool(budgeted), earlier_id, run_id


@functools.cache
def _deployment_read_sql(vendor: str) -> tuple[str, Columns, Columns, Columns]:
    deployment = Columns(Deployment, "d")
    # The snapshot (the whole configuration) is not needed to start a run; it loads on first use.
    release, canary = (Columns(Release, alias, defer=("snapshot", "notes")) for alias in ("r", "c"))
    budgets, runs = (connection.ops.quote_name(m._meta.db_table) for m in (Budget, Run))
    next_run_id = (
        f"nextval(pg_get_serial_sequence('{Run._meta.db_table}', '{Run._meta.pk.column}'))"
        if vendor == "postgresql"
        else "NULL"
    )
    sql = (
        f"SELECT {deployment.sql}, {release.sql}, {canary.sql},"
        # pipelines.runs.budgets.budgets_over: the pipeline's own budgets and its workspace's.
        f" EXISTS (SELECT 1 FROM {budgets} b WHERE b.pipeline_id = %s OR b.workspace_id = %s),"
        # (pipeline, idempotency_key) is unique; a NULL key matches nothing.
        f" (SELECT e.id FROM {runs} e WHERE e.pipeline_id = %s AND e.idempotency_key = %s),"
        # An id for the run about to start: it then goes in with its first audit
        # event in one statement. (A start that ends otherwise leaves a gap, as
        # any rolled-back insert does.) SQLite has no sequence: the insert assigns it.
        f" {next_run_id}"
        f" FROM {deployment.table} d"
        f" LEFT OUTER JOIN {release.table} r ON {release.pk} = d.release_id"
        f" LEFT OUTER JOIN {canary.table} c ON {canary.pk} = d.canary_release_id"
        # (pipeline, environment) is unique: one row at most.
        " WHERE d.pipeline_id = %s AND d.environment = %s"
    )
    return sql, deployment, release, canary


# The worker


def _claimable_sql(table: str) -> str:
    """Free to take: queued, or running under a lease that has expired (its
    worker died), for ``table`` (the run table's name or alias in the
    statement). Its parameters are ``_claimable_params``."""
    status, lease = (f"{table}.{_quote(Run._meta.get_field(name).column)}" for name in ("status", "lease_expires_at"))
    return f"({status} = %s OR ({status} = %s AND {lease} < %s))"


def _claimable_params(now) -> list:
    return [Run.Status.QUEUED, Run.Status.RUNNING, connection.ops.adapt_datetimefield_value(now)]


def run_load(run_id: int) -> Run | None:
    """The run, with its pipeline and release (less the snapshot), if it is
    free to take; it is claimed with the first commit."""
    sql, run_columns, pipeline_columns, release_columns = _load_sql(connection.vendor)
    row = fetch_row(sql, [run_id, *_claimable_params(timezone.now())])
    if row is None:
        return None
    run = run_columns.instance(row, 0)
    start = len(run_columns)
    run.pipeline = pipeline_columns.instance(row, start)
    run.release = release_columns.instance(row, start + len(pipeline_columns))
    return run


@functools.cache
def _load_sql(vendor: str) -> tuple[str, Columns, Columns, Columns]:
    # Every task of a worker makes this read; compiling it with the ORM cost
    # three times what the database takes to answer it.
    run, pipeline = Columns(Run, "r"), Columns(Pipeline, "p")
    release = Columns(Release, "l", defer=("snapshot",))  # parsed once per process: Release.snapshot_data
    sql = (
        f"SELECT {run.sql}, {pipeline.sql}, {release.sql} FROM {run.table} r"
        f" JOIN {pipeline.table} p ON {pipeline.pk} = r.pipeline_id"
        f" JOIN {release.table} l ON {release.pk} = r.release_id"
        f" WHERE {run.pk} = %s AND {_claimable_sql('r')}"
    )
    return sql, run, pipeline, release


def run_update(run_id: int, fields: dict, *, claim: bool, count: bool, owner: str, now) -> int:
    """Set ``fields`` on the run if it is this worker's (``claim``: if it is
    free to take, and ``count``: counting an attempt); returns the rows
    changed, 0 or 1."""
    claim_where, owner_where, _, attempts = _filters(connection.vendor)
    if claim:
        return update_where(Run, fields, claim_where, [run_id, *_claimable_params(now)], also=attempts if count else "")
    return update_where(Run, fields, owner_where, [run_id, owner, Run.Status.RUNNING])


def step_update(run_id: int, position: int, fields: dict) -> None:
    """Set ``fields`` on a stored StepRun row."""
    update_where(StepRun, fields, _filters(connection.vendor)[2], [run_id, position])


@functools.cache
def _filters(vendor: str) -> tuple[str, str, str, str]:
    """The worker's UPDATE filters, written once: a run free to take, a run
    this worker holds, a step row; and the claim's count of an attempt."""
    run_id, owner, status, attempts = (_quote(Run._meta.get_field(name).column)
                                       for name in ("id", "lease_owner", "status", "attempts"))  # fmt: skip
    step_run, step_position = (_quote(StepRun._meta.get_field(name).column) for name in ("run", "position"))
    return (
        f"{run_id} = %s AND {_claimable_sql(_quote(Run._meta.db_table))}",
        f"{run_id} = %s AND {owner} = %s AND {status} = %s",
        f"{step_run} = %s AND {step_position} = %s",
        f"{attempts} = {attempts} + 1",
    )


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


# The API


def token_read(key_sha256: str, rights: tuple[str, ...]) -> tuple[ServiceToken, dict[str, bool], str | None] | None:
    """The service token whose key hashes to ``key_sha256``, with its user and
    its pipeline (None for a workspace token) cached on it, the user's
    ``rights`` on that pipeline (``rights_sql``: all false without one), and
    the name of the token's creator (None if unknown): one statement, on
    every API request. None for no such token; revoked tokens and inactive
    users are the caller's to refuse."""
    content_types = ContentType.objects.get_for_models(Pipeline, Workspace)
    sql, params, token_columns, user_columns, pipeline_columns = _token_read_sql(
        connection.vendor, (content_types[Pipeline].pk, content_types[Workspace].pk), rights
    )
    row = fetch_row(sql, [*params, key_sha256])
    if row is None:
        return None
    token = token_columns.instance(row, 0)
    # Assigning a related instance caches it, as select_related would.
    token.user = user_columns.instance(row, len(token_columns))
    token.pipeline = pipeline_columns.instance(row, len(token_columns) + len(user_columns))
    answers = dict(zip(rights, row[-len(rights) - 1 : -1], strict=True))
    return token, {right: bool(held) for right, held in answers.items()}, row[-1]


@functools.cache
def _token_read_sql(
    vendor: str, content_types: tuple[int, int], rights: tuple[str, ...]
) -> tuple[str, list, Columns, Columns, Columns]:
    # Keyed by the content types' ids too: the rights' parameters name them, and a
    # database whose content types were made anew (a flushed test database) has others.
    token = Columns(ServiceToken, "t")
    # What a request needs of the user and the pipeline; the rest loads if anything asks for it.
    user = Columns(get_user_model(), "u", defer=("password",))
    pipeline = Columns(Pipeline, "p", defer=("description", "runbook", "input_schema"))
    workspace = f"p.{connection.ops.quote_name(Pipeline._meta.get_field('workspace').column)}"
    rights_columns, params = rights_sql(Pipeline, rights, user=user.pk, key=pipeline.pk, workspace=workspace)
    quote = connection.ops.quote_name
    user_model = get_user_model()
    creator_name = f"cu.{quote(user_model._meta.get_field(user_model.USERNAME_FIELD).column)}"
    creator_key = f"cu.{quote(user_model._meta.pk.column)}"
    created_by = f"t.{quote(ServiceToken._meta.get_field('created_by').column)}"
    # key_sha256 is unique: one row at most, no ORDER BY needed. Last: the
    # creator's name, which every event of the request names (audit.context.Via).
    sql = (
        f"SELECT {token.sql}, {user.sql}, {pipeline.sql}, {rights_columns}, {creator_name} FROM {token.table} t"
        f" INNER JOIN {user.table} u ON {user.pk} = t.user_id"
        f" LEFT OUTER JOIN {pipeline.table} p ON {pipeline.pk} = t.pipeline_id"
        f" LEFT OUTER JOIN {user.table} cu ON {creator_key} = {created_by}"
        " WHERE t.key_sha256 = %s"
    )
    return sql, params, token, user, pipeline


# Operations


def database_ping() -> None:
    """One round trip to the database; raises what the connection raises."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def sqlite_wal_truncate() -> None:
    """SQLite keeps old page images in its write-ahead log until they are
    overwritten: fold the log into the file and empty it (a reader that holds
    the log open leaves it for the next checkpoint). Nothing on other databases
    or inside a transaction."""
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
