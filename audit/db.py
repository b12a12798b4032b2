"""Database guards that make the audit table append-only.

Both PostgreSQL and SQLite refuse DELETE on ``audit_auditevent`` and refuse any
UPDATE except the one shape the redaction path writes: the payload replaced by
the tombstone and ``redacted_at`` set, once, with every other column (and so
every hash) unchanged.
"""

from audit.models import REDACTED_PAYLOAD

TABLE = "audit_auditevent"
_UNCHANGED = (
    "seq",
    "ts",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "workspace_id",
    "pipeline_id",
    "payload_sha256",
    "prev_hash",
    "hash",
)
_REDACTION = f"OLD.redacted_at IS NULL AND NEW.redacted_at IS NOT NULL AND NEW.payload = '{REDACTED_PAYLOAD}'"

_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON {TABLE}
    WHEN NOT ({_REDACTION} AND {" AND ".join(f"NEW.{c} IS OLD.{c}" for c in _UNCHANGED)})
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END
    """,
]
_SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    "DROP TRIGGER IF EXISTS audit_event_no_update",
]

_cols = ", ".join(_UNCHANGED)
_POSTGRES_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND {_REDACTION}
           AND ROW({", ".join("NEW." + c for c in _UNCHANGED)})
               IS NOT DISTINCT FROM ROW({", ".join("OLD." + c for c in _UNCHANGED)}) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END;
    $$ LANGUAGE plpgsql
    """,
    f"DROP TRIGGER IF EXISTS audit_event_guard ON {TABLE}",
    f"""
    CREATE TRIGGER audit_event_guard BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_event_guard()
    """,
]
_POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_event_guard ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_event_guard()",
]


def _run(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install_guards(connection) -> None:
    if connection.vendor == "postgresql":
        _run(connection, _POSTGRES_INSTALL)
    elif connection.vendor == "sqlite":
        _run(connection, _SQLITE_INSTALL)
    else:  # pragma: no cover - Keel supports these two databases only
        raise RuntimeError(f"no audit guards for {connection.vendor}")


def remove_guards(connection) -> None:
    _run(connection, _POSTGRES_REMOVE if connection.vendor == "postgresql" else _SQLITE_REMOVE)


def immutable_statements(vendor: str, table: str) -> tuple[list[str], list[str]]:
    """(install, remove) statements that make ``table`` refuse every UPDATE
    and DELETE, for tables other apps keep immutable (releases)."""
    if vendor == "sqlite":
        install = [
            f"""
            CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} rows never change: {op} refused'); END
            """
            for op in ("UPDATE", "DELETE")
        ]
        remove = [f"DROP TRIGGER IF EXISTS {table}_no_{op.lower()}" for op in ("update", "delete")]
        return install, remove
    install = [
        """
        CREATE OR REPLACE FUNCTION keel_refuse_change() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '% rows never change: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$ LANGUAGE plpgsql
        """,
        f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}",
        f"""
        CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION keel_refuse_change()
        """,
    ]
    return install, [f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}"]


def immutable_install(connection, tables: tuple[str, ...]) -> None:
    """Make each of ``tables`` refuse every UPDATE and DELETE (``immutable_statements``)."""
    _run(connection, [sql for table in tables for sql in immutable_statements(connection.vendor, table)[0]])


def immutable_remove(connection, tables: tuple[str, ...]) -> None:
    _run(connection, [sql for table in tables for sql in immutable_statements(connection.vendor, table)[1]])


# TRUNCATE empties a table without firing its row triggers, so the guards above
# do not see it. On PostgreSQL a statement-level trigger refuses it on every
# append-only table. SQLite has no TRUNCATE: its DELETE without WHERE fires the
# row triggers whenever a table has any (the "truncate optimisation" is off).
def truncate_guard_statements(table: str) -> tuple[list[str], list[str]]:
    """(install, remove) statements that make ``table`` refuse TRUNCATE on
    PostgreSQL."""
    install = [
        """
        CREATE OR REPLACE FUNCTION keel_refuse_truncate() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$ LANGUAGE plpgsql
        """,
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"""
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION keel_refuse_truncate()
        """,
    ]
    return install, [f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}"]


def truncate_guard_install(connection, tables: tuple[str, ...]) -> None:
    """Make each of ``tables`` refuse TRUNCATE (PostgreSQL; nothing to do on SQLite)."""
    if connection.vendor == "postgresql":
        _run(connection, [sql for table in tables for sql in truncate_guard_statements(table)[0]])


def truncate_guard_remove(connection, tables: tuple[str, ...]) -> None:
    if connection.vendor == "postgresql":
        _run(connection, [sql for table in tables for sql in truncate_guard_statements(table)[1]])


def install_truncate_guards(connection) -> None:
    truncate_guard_install(connection, (TABLE,))


def remove_truncate_guards(connection) -> None:
    truncate_guard_remove(connection, (TABLE,))
