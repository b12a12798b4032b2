"""A multi-row INSERT for the hot paths (the chain's appends, the engine's step rows).

``bulk_create`` on PostgreSQL sends its rows as one array per column
(``UNNEST``), and psycopg writes every text and JSON value into those arrays
through a regular expression per quote character: for rows of JSON documents
that escaping costs more CPU than the insert itself. Here each value is its own
parameter in an ``INSERT ... VALUES (...), (...)``, adapted exactly as
``bulk_create`` adapts it (``pre_save`` then ``get_db_prep_save``), on every
database. Primary keys are not returned: callers that need them use
``bulk_create``.
"""

from django.db import connection
from django.db.models import AutoField, Model


def insert_rows(objs: list[Model]) -> None:
    if not objs:
        return
    model = type(objs[0])
    fields = [
        field
        for field in model._meta.concrete_fields
        if not getattr(field, "generated", False) and not (isinstance(field, AutoField) and objs[0].pk is None)
    ]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([row] * len(objs))}"
    )
    params = [field.get_db_prep_save(field.pre_save(obj, add=True), connection) for obj in objs for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    for obj in objs:  # saved, as bulk_create leaves them
        obj._state.adding, obj._state.db = False, connection.alias
