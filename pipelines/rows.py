"""Model instances from hand-written SQL, and single-row INSERT and UPDATE
statements written once per model, for the run-creation and run-execution path.

Invariants: the column lists come from the models' own metadata (a new field is
read without an edit here); each row becomes model instances through
``Model.from_db`` after the fields' own converters, as the ORM would convert it,
so values read the same on PostgreSQL and SQLite (where datetimes, decimals and
booleans arrive as text and integers); values written are adapted as ``save``
and ``update`` adapt them; a model with save hooks is always saved the ORM's way.
"""

import functools

from django.db import connection
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin
from django.db.models.signals import post_save, pre_save


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
    the ORM's way, so that nothing it does on saving is ever skipped."""
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
