"""What the broker still holds: lets the periodic check tell a run waiting in a long queue from one whose
message was lost (a Redis restarted empty, a filesystem queue cleared).

Only transports whose queues can be read without taking messages are looked into: Redis (the
queues' lists and the hash of messages delivered but not yet acknowledged) and kombu's filesystem
transport (the message files). For any other broker the answer is "cannot tell", and a run that
has waited long enough is sent again: a copy of a message is harmless, since only one delivery
can claim an attempt.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def held_messages(app: Any, queues: Iterable[str]) -> str | None:
    """Everything the broker holds for ``queues`` as one text to search for task ids, or None if it cannot tell.

    Reading the queues whole is fine at a TOM's scale (hundreds of messages at most); it is done
    only when some pending run has waited longer than ``TOM_EDUCATION_RESEND_PENDING_AFTER``.
    """
    queues = list(queues)
    try:
        with app.connection_for_read() as connection:
            channel = connection.default_channel
            transport = connection.transport_cls
            if transport in ('redis', 'rediss') or hasattr(channel, 'unacked_key'):
                return _redis_messages(channel, queues)
            if hasattr(channel, 'data_folder_in'):
                return _folder_messages(Path(channel.data_folder_in), queues)
    except Exception:  # noqa: BLE001 - a broker that cannot be read is "cannot tell", never a crash
        logger.warning('tom_education: could not read the broker\'s queues', exc_info=True)
    return None


def _redis_messages(channel: Any, queues: list[str]) -> str:
    client = channel.client
    pipe = client.pipeline()
    for queue in queues:
        for priority in channel.priority_steps:
            pipe.lrange(channel._q_for_pri(queue, priority), 0, -1)
    pipe.hvals(channel.unacked_key)
    parts = []
    for result in pipe.execute():
        parts.extend(item.decode(errors='replace') if isinstance(item, bytes) else str(item) for item in result)
    return '\n'.join(parts)


def _folder_messages(folder: Path, queues: list[str]) -> str:
    parts = []
    for path in folder.iterdir():
        if any(path.name.endswith(f'{queue}.msg') for queue in queues):
            try:
                parts.append(path.read_text(errors='replace'))
            except OSError:  # taken by a worker while we looked
                continue
    return '\n'.join(parts)
