"""A Celery app whose broker does not answer: a closed port on this machine."""
import socket

from celery import Celery


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


app = Celery('unreachable', broker=f'redis://127.0.0.1:{_closed_port()}/0')
app.conf.broker_connection_timeout = 1
app.conf.broker_connection_retry = False
