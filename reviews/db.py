"""Review decisions, once written, never change: the database refuses DELETE
and every UPDATE (as on releases and the audit log), so a decision cannot be
rewritten or removed even by code that bypasses ``ReviewDecision.save``.

One UPDATE passes, as on the audit log: the redaction of a decision's
personal data (pipelines/runs/personal_data.py), once, with ``redacted_at`` set,
the texts emptied, each output that was there replaced by ``{"redacted":
true}`` (one that was not stays NULL), and every other column unchanged.

PostgreSQL also refuses TRUNCATE on them, which row triggers do not see.
"""

from audit.db import immutable_remove, truncate_guard_install, truncate_guard_remove

TABLE = "reviews_reviewdecision"
_UNCHANGED = ("id", "task_id", "reviewer_id", "decision", "created_at")
_TEXTS = ("reason", "category", "diff")
_OUTPUTS = ("original_output", "edited_output")
_MESSAGE = "review decisions never change: % refused (only the redaction of their personal data is allowed)"


def _redaction(vendor: str) -> str:
    if vendor == "postgresql":
        tombstone, same = "'{\"redacted\": true}'::jsonb", "IS NOT DISTINCT FROM"
        as_json = "{}"
    else:
        # Django keeps SQLite's JSON as text; json() reads it whatever its spacing.
        tombstone, same = "'{\"redacted\":true}'", "IS"
        as_json = "json({})"
    # An output that was there becomes the tombstone; one that was not stays NULL.
    outputs = [
        f"((OLD.{c} IS NULL AND NEW.{c} IS NULL)"
        f" OR (OLD.{c} IS NOT NULL AND {as_json.format('NEW.' + c)} = {tombstone}))"
        for c in _OUTPUTS
    ]
    return " AND ".join(
        [
            "OLD.redacted_at IS NULL AND NEW.redacted_at IS NOT NULL",
            *(f"NEW.{c} = ''" for c in _TEXTS),
            *outputs,
            *(f"NEW.{c} {same} OLD.{c}" for c in _UNCHANGED),
        ]
    )


def statements(vendor: str) -> tuple[list[str], list[str]]:
    """(install, remove) statements of the decisions' guard on ``vendor``."""
    if vendor == "sqlite":
        install = [
            f"""
            CREATE TRIGGER IF NOT EXISTS reviewdecision_no_delete BEFORE DELETE ON {TABLE}
            BEGIN SELECT RAISE(ABORT, '{_MESSAGE.replace("%", "DELETE")}'); END
            """,
            f"""
            CREATE TRIGGER IF NOT EXISTS reviewdecision_no_update BEFORE UPDATE ON {TABLE}
            WHEN NOT ({_redaction("sqlite")})
            BEGIN SELECT RAISE(ABORT, '{_MESSAGE.replace("%", "UPDATE")}'); END
            """,
        ]
        remove = ["DROP TRIGGER IF EXISTS reviewdecision_no_delete", "DROP TRIGGER IF EXISTS reviewdecision_no_update"]
        return install, remove
    install = [
        f"""
        CREATE OR REPLACE FUNCTION reviews_decision_guard() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND {_redaction("postgresql")} THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION '{_MESSAGE}', TG_OP USING ERRCODE = 'integrity_constraint_violation';
        END;
        $$ LANGUAGE plpgsql
        """,
        f"DROP TRIGGER IF EXISTS reviews_decision_guard ON {TABLE}",
        f"""
        CREATE TRIGGER reviews_decision_guard BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION reviews_decision_guard()
        """,
    ]
    remove = [
        f"DROP TRIGGER IF EXISTS reviews_decision_guard ON {TABLE}",
        "DROP FUNCTION IF EXISTS reviews_decision_guard()",
    ]
    return install, remove


def _run(connection, sql: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in sql:
            cursor.execute(statement)


def install_guards(connection) -> None:
    # The guard that refused every change (migration 0004) gives way to this one.
    immutable_remove(connection, (TABLE,))
    _run(connection, statements(connection.vendor)[0])


def remove_guards(connection) -> None:
    _run(connection, statements(connection.vendor)[1])


def install_truncate_guards(connection) -> None:
    """PostgreSQL refuses TRUNCATE on review decisions (row triggers do not see it)."""
    truncate_guard_install(connection, (TABLE,))


def remove_truncate_guards(connection) -> None:
    truncate_guard_remove(connection, (TABLE,))
