"""The end of a run: its last log lines and its final state, written together (``end_run``), or the
final state alone when the engine ends a run its worker could not (``finish``).

Every run ends here, which makes it the engine's hottest path. On PostgreSQL the last lines, the
final state and the question "does an active chain rule follow this pipeline?" are one statement:
one round trip and one commit where the ORM made six round trips (``BEGIN``, the lines, the state,
``COMMIT``, the rule look-up). On SQLite, whose statements cost no round trip, they are one short
transaction. Either way the state is final only with the last lines written, and an attempt that
lost its run (see ``runner.RunLost``) writes neither.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from tom_education.models import (
    ACTIVE_STATES,
    ASYNC_STATUS_RUNNING,
    PipelineLogLine,
    PipelineProcess,
    PipelineRule,
)


@dataclass(frozen=True)
class Ended:
    """A run this attempt ended. ``followed``: whether an active chain rule follows its pipeline, as the
    ending statement saw it; None where the database could not say in the same statement."""

    followed: bool | None


def end_run(process: PipelineProcess, attempt: int, state: str, lines: list[tuple[str, int]], first_seq: int,
            failure_message: str = '', traceback_text: str = '', changes: Mapping[str, Any] | None = None,
            ) -> Ended | None:
    """Append ``lines`` (numbered from ``first_seq``) and move the run of ``attempt`` to ``state``.

    ``changes``: more fields of the row to set in the same statement (the outputs' group, say).
    None, with nothing written, when the run is no longer that attempt's: another attempt owns it,
    or numbered lines of its own. Inside a transaction (the outputs'), the caller must then roll it back.
    """
    connection = connections[router.db_for_write(PipelineProcess)]
    changes = dict(changes or {})
    extra = tuple(sorted(changes))
    update = [*_final_values(connection, state, failure_message, traceback_text, changes, extra),
              process.pk, ASYNC_STATUS_RUNNING, attempt]
    statements = _statements(connection.alias, extra)
    if connection.vendor == 'postgresql':
        return _end_in_one_statement(connection, statements, update, lines, first_seq)
    with transaction.atomic(using=connection.alias, savepoint=False):
        if lines:
            try:
                PipelineLogLine.append(process, lines, first_seq=first_seq)
            except IntegrityError:
                transaction.set_rollback(True, using=connection.alias)
                return None
        with connection.cursor() as cursor:
            returning = supports_returning(connection)
            cursor.execute(statements.update + (statements.followed if returning else ''),
                           update + (_FOLLOWED_PARAMS if returning else []))
            if returning:
                row = cursor.fetchone()
                ended = None if row is None else Ended(bool(row[0]))
            else:
                ended = Ended(None) if cursor.rowcount else None
        if ended is None:
            transaction.set_rollback(True, using=connection.alias)
        return ended


def finish(pk: int, state: str, failure_message: str = '', traceback_text: str = '',
           attempt: int | None = None) -> bool:
    """Move an active process to a final state without log lines; False when it had already ended.

    How the engine ends a run its worker could not end (killed by the hard time limit, an unknown
    pipeline, the queue unreachable, too many lost attempts). With ``attempt``, only that attempt,
    still running, may end the run: an attempt that lost its run to a newer one never writes over it.
    """
    connection = connections[router.db_for_write(PipelineProcess)]
    statements = _statements(connection.alias, ())
    params = _final_values(connection, state, failure_message, traceback_text, {}, ())
    if attempt is None:
        sql, params = statements.update_active, [*params, pk, *sorted(ACTIVE_STATES)]
    else:
        sql, params = statements.update, [*params, pk, ASYNC_STATUS_RUNNING, attempt]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount > 0


def _final_values(connection: Any, state: str, failure_message: str, traceback_text: str,
                  changes: Mapping[str, Any], extra: tuple[str, ...]) -> list[Any]:
    """The values of a final UPDATE's SET clause, in the order of ``_statements``' assignments."""
    meta = PipelineProcess._meta
    finished = meta.get_field('finished').get_db_prep_save(timezone.now(), connection)
    return [state, state, failure_message, traceback_text, finished,
            *(meta.get_field(name).get_db_prep_save(changes[name], connection) for name in extra)]


def _end_in_one_statement(connection: Any, statements: _Statements, update: list[Any],
                          lines: list[tuple[str, int]], first_seq: int) -> Ended | None:
    """PostgreSQL: the state changes first and the lines are inserted only for the row it changed, so a lost
    attempt writes nothing; a line number taken meanwhile fails the whole statement, as a lost run."""
    params = list(update)
    sql = statements.pg_update
    if lines:
        params.append(PipelineLogLine._meta.get_field('created').get_db_prep_save(timezone.now(), connection))
        for seq, (message, level) in enumerate(lines, start=first_seq):
            params += (seq, level, message)
        sql += statements.pg_lines + ', '.join(['(%s, %s, %s)'] * len(lines)) + statements.pg_lines_end
    sql += statements.pg_followed
    params += _FOLLOWED_PARAMS
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    except IntegrityError:
        return None
    return None if row is None else Ended(bool(row[0]))


_FOLLOWED_PARAMS = [PipelineRule.RUN_SUCCEEDED, False]


@dataclass(frozen=True)
class _Statements:
    #: the UPDATE of one running attempt (SQLite and others; ``finish``), and its RETURNING clause
    update: str
    followed: str
    #: the UPDATE of any active run (``finish`` without an attempt)
    update_active: str
    #: PostgreSQL: the UPDATE in a WITH, the INSERT of the lines (its VALUES added per call), the SELECT
    pg_update: str
    pg_lines: str
    pg_lines_end: str
    pg_followed: str


@cache
def _statements(alias: str, extra: tuple[str, ...]) -> _Statements:
    """The SQL of the end setting the fields ``extra`` too, composed once per database alias (composing it
    cost more than running it)."""
    quote = connections[alias].ops.quote_name
    meta, log, rule = PipelineProcess._meta, PipelineLogLine._meta, PipelineRule._meta

    def column(model_meta: Any, name: str) -> str:
        return quote(model_meta.get_field(name).column)

    table = quote(meta.db_table)
    assignments = ', '.join(f'{column(meta, name)} = %s'
                            for name in ('state', 'status', 'failure_message', 'traceback', 'finished', *extra))
    where = f'{column(meta, "id")} = %s AND {column(meta, "state")} = %s AND {column(meta, "attempts")} = %s'
    where_active = (f'{column(meta, "id")} = %s AND '
                    f'{column(meta, "state")} IN ({", ".join(["%s"] * len(ACTIVE_STATES))})')
    rule_exists = (f'EXISTS (SELECT 1 FROM {quote(rule.db_table)} WHERE {column(rule, "after_pipeline")} = '
                   '{pipeline} '
                   f'AND {column(rule, "trigger")} = %s AND {column(rule, "paused")} = %s)')
    log_columns = ', '.join(column(log, name) for name in ('process', 'seq', 'created', 'level', 'message'))
    return _Statements(
        update=f'UPDATE {table} SET {assignments} WHERE {where}',
        followed=' RETURNING ' + rule_exists.format(pipeline=f'{table}.{column(meta, "pipeline")}'),
        update_active=f'UPDATE {table} SET {assignments} WHERE {where_active}',
        pg_update=(f'WITH ended AS (UPDATE {table} SET {assignments} WHERE {where} '
                   f'RETURNING {column(meta, "id")} AS id, {column(meta, "pipeline")} AS pipeline)'),
        pg_lines=(f', lines AS (INSERT INTO {quote(log.db_table)} ({log_columns}) '
                  'SELECT ended.id, given.seq, %s, given.level, given.message FROM ended, (VALUES '),
        pg_lines_end=') AS given (seq, level, message))',
        pg_followed=' SELECT ' + rule_exists.format(pipeline='ended.pipeline') + ' FROM ended',
    )


def supports_returning(connection: Any) -> bool:
    """``UPDATE ... RETURNING``: PostgreSQL, and SQLite from 3.35."""
    if connection.vendor == 'postgresql':
        return True
    return connection.vendor == 'sqlite' and connection.Database.sqlite_version_info >= (3, 35)
