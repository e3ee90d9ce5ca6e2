"""The bench's settings with recovery tuned for row j (``bench/harness/worker_death.py``): its workers only.

The time from a worker's death to the run restarting elsewhere is dominated by these three
settings (defaults 5 s, 60 s and the heartbeat interval): the run's last heartbeat must go stale
(``TOM_EDUCATION_HEARTBEAT_TIMEOUT``) and then a surviving worker's check loop must come round
(every ``TOM_EDUCATION_CHECK_INTERVAL`` s, with +/-20 % jitter). Short values make 20 kills fit in
a few minutes; the figure scales with them.
"""
from bench.settings import *  # noqa: F403

TOM_EDUCATION_HEARTBEAT_INTERVAL = 0.5
TOM_EDUCATION_HEARTBEAT_TIMEOUT = 3.0
TOM_EDUCATION_CHECK_INTERVAL = 0.5
