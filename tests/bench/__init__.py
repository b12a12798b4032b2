"""Keel's benchmarks: ``python -m tests.bench`` (see ``__main__``)."""


def database_maintained() -> None:
    """VACUUM (ANALYZE) the benchmark database, as autovacuum keeps a production
    one. Without it (a server with autovacuum off, as this project's CI server
    is) the planner works from statistics of tables long since grown, and
    indexes keep every dead entry: replaying 10,000 runs read the whole step
    table once per chunk (58 s, against 21 s after one VACUUM), and a run
    status poll cost 5.8 ms. Nothing to do on SQLite."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def in_turn(first, second, repeats: int) -> tuple[list, list]:
    """Call ``first`` and ``second`` ``repeats`` times each, in turn, the order
    alternating, so that drift on a shared machine falls on both alike; returns
    their results in two lists, pair by pair."""
    firsts, seconds = [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            firsts.append(first())
            seconds.append(second())
        else:
            seconds.append(second())
            firsts.append(first())
    return firsts, seconds
