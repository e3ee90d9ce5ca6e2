"""Storing a submitted run: its process row and the links to its inputs, in as few statements as possible.

Every run a page, the API, a script or a rule starts comes through here. The ORM's ``create()`` and
``bulk_create()`` compose their SQL anew each time, and on PostgreSQL the transaction around them
costs two more round trips (``BEGIN``, ``COMMIT``). Here the SQL is composed once per database, and
on PostgreSQL the row and its links are one statement. A TOM listening to new runs with ``pre_save``
or ``post_save`` receivers keeps the ORM's way, which sends those signals.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import connections, router, transaction
from django.db.models import Field
from django.db.models.signals import post_save, pre_save

from tom_education.ending import supports_returning
from tom_education.models import PipelineProcess, rows_per_statement


def insert_process(process: PipelineProcess, product_ids: list[int]) -> None:
    """INSERT the new ``process`` (its ``pk`` is set) and link it to the data products ``product_ids``."""
    links = PipelineProcess.input_files.through
    if pre_save.has_listeners(type(process)) or post_save.has_listeners(type(process)):
        with transaction.atomic(using=router.db_for_write(PipelineProcess), savepoint=False):
            process.save(force_insert=True)
            links.objects.bulk_create([links(pipelineprocess_id=process.pk, dataproduct_id=pk) for pk in product_ids])
        return
    connection = connections[router.db_for_write(PipelineProcess)]
    statements = _statements(connection.alias)
    values = [field.get_db_prep_save(field.pre_save(process, True), connection) for field in statements.fields]
    if connection.vendor == 'postgresql':
        sql = statements.pg_insert
        if product_ids:
            sql += statements.pg_links + ', '.join(['(%s)'] * len(product_ids)) + statements.pg_links_end
            values += product_ids
        with connection.cursor() as cursor:
            cursor.execute(sql + statements.pg_select, values)
            pk = cursor.fetchone()[0]
    else:
        with transaction.atomic(using=connection.alias, savepoint=False), connection.cursor() as cursor:
            if supports_returning(connection):
                cursor.execute(statements.insert + statements.returning, values)
                pk = cursor.fetchone()[0]
            else:
                cursor.execute(statements.insert, values)
                pk = connection.ops.last_insert_id(cursor, PipelineProcess._meta.db_table,
                                                   PipelineProcess._meta.pk.column)
            per_statement = rows_per_statement(connection, 2)
            for start in range(0, len(product_ids), per_statement):
                chunk = product_ids[start:start + per_statement]
                cursor.execute(statements.links + ', '.join(['(%s, %s)'] * len(chunk)),
                               [value for product_pk in chunk for value in (pk, product_pk)])
    process.pk = pk
    process._state.adding = False
    process._state.db = connection.alias


@dataclass(frozen=True)
class _Statements:
    #: the fields the INSERT writes, in its order
    fields: list[Field]
    insert: str
    returning: str
    links: str
    pg_insert: str
    pg_links: str
    pg_links_end: str
    pg_select: str


@cache
def _statements(alias: str) -> _Statements:
    """The INSERT statements of ``insert_process``, composed once per database alias."""
    quote = connections[alias].ops.quote_name
    meta = PipelineProcess._meta
    links = meta.get_field('input_files').remote_field.through._meta
    fields = [field for field in meta.local_concrete_fields if field is not meta.auto_field]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    columns = ', '.join(quote(field.column) for field in fields)
    insert = f'INSERT INTO {table} ({columns}) VALUES ({", ".join(["%s"] * len(fields))})'
    link_columns = (f'{quote(links.get_field("pipelineprocess").column)}, '
                    f'{quote(links.get_field("dataproduct").column)}')
    return _Statements(
        fields=fields,
        insert=insert,
        returning=f' RETURNING {pk}',
        links=f'INSERT INTO {quote(links.db_table)} ({link_columns}) VALUES ',
        pg_insert=f'WITH new_process AS ({insert} RETURNING {pk} AS id)',
        pg_links=(f', new_links AS (INSERT INTO {quote(links.db_table)} ({link_columns}) '
                  'SELECT new_process.id, given.id FROM new_process, (VALUES '),
        pg_links_end=') AS given (id))',
        pg_select=' SELECT id FROM new_process',
    )
