"""Signals other code (a TOM, this app's automatic-run rules) can connect to.

``run_finished`` is sent by the worker once a run has reached its final state and, for a
successful run, once its outputs are committed: a receiver may read them. Arguments:
``process_pk`` (int), ``state`` (one of the ``ASYNC_STATUS_*`` final states) and ``pipeline``
(its registered name, so a receiver interested in some pipelines only need not read the row), and
``followed_by_rule``: whether an active chain rule followed the pipeline when the run ended (read by
the run's ending statement; None when that statement could not tell, or from other senders). A
receiver that raises is logged and does not change the run.
"""
from django.dispatch import Signal

run_finished = Signal()
