"""Work folders: where a run's ``tmpdir`` lives on the worker's host, and how they go away.

Each attempt works in ``<work root>/<pk>-<attempt>-r<pid>n<number>/tmp`` (see :func:`conf.work_root`),
named after the run and the worker process that made it. The periodic cleanup removes only folders
whose process no longer exists: a living process removes or reuses its own. Whether the run still
runs is no guide: a finished run's folder waits to be emptied by its process, which then renames it
for its next run, and a cleanup that removed it then would empty the next run's folder under it.

Making and removing two folders costs more on a journalled filesystem than a short run spends in
Python, so a worker process keeps the folder of a finished run as a *spare*, and renames it for its
next run: one ``rename`` each way instead of two ``mkdir`` and two ``rmdir``. Only an empty folder
is kept (a folder a run left files in is emptied first, off the next run's path): a run never sees
what another one wrote.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
from pathlib import Path

from tom_education import conf

#: A work folder's name: the pipeline process, the attempt and the operating-system process running it.
WORKDIR_PATTERN = re.compile(r'^(\d+)-(\d+)-r(\d+)n\d+$')
#: A spare folder's name: the operating-system process that keeps it.
SPARE_PATTERN = re.compile(r'^spare-(\d+)-\d+$')
#: Spares a process keeps: one per run it runs at a time (a prefork pool process runs one).
MAX_SPARES = 2

_spares: list[Path] = []
_spares_pid = os.getpid()
_lock = threading.Lock()
_numbers = itertools.count()


def make_workdir(pk: int, attempt: int) -> Path:
    """The work folder of an attempt, with its empty ``tmp``, readable by the worker's user only."""
    root = conf.work_root()
    workdir = root / f'{pk}-{attempt}-r{os.getpid()}n{next(_numbers)}'
    spare = _take_spare(root)
    if spare is not None:
        try:
            os.rename(spare, workdir)
            return workdir
        except OSError:
            shutil.rmtree(spare, ignore_errors=True)  # gone or damaged: make a new one
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    workdir.mkdir(mode=0o700)
    (workdir / 'tmp').mkdir()
    return workdir


def release_workdir(workdir: Path) -> Path | None:
    """After the run: keep the folder as a spare if the run left it empty; else return it, for removal."""
    try:
        empty = os.listdir(workdir) == ['tmp'] and not os.listdir(workdir / 'tmp')
    except OSError:
        empty = False
    with _lock:
        _forget_parents_spares()
        if empty and len(_spares) < MAX_SPARES:
            spare = workdir.with_name(f'spare-{os.getpid()}-{next(_numbers)}')
            try:
                os.rename(workdir, spare)
            except OSError:
                return workdir
            _spares.append(spare)
            return None
    return workdir


def recycle(workdir: Path) -> None:
    """Empty a finished run's folder that ``release_workdir`` returned (the run left files in it), and
    keep it as a spare, or remove it when this process keeps enough.

    Runs off the run's path (the process's monitor thread calls it): the next run renames a spare
    instead of making folders, even after a run that left files (every run with outputs does).
    """
    for entry in (workdir.iterdir() if workdir.is_dir() else ()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    try:
        (workdir / 'tmp').mkdir()
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    if release_workdir(workdir) is not None:
        remove_workdir(workdir)


def remove_workdir(workdir: Path) -> None:
    """Most runs that are not kept as spares still leave ``tmp`` empty: two ``rmdir`` then, not a walk."""
    try:
        (workdir / 'tmp').rmdir()
        workdir.rmdir()
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)


def remove_spares() -> None:
    """Remove this process's spares (it is exiting)."""
    with _lock:
        _forget_parents_spares()
        spares, _spares[:] = list(_spares), []
    for spare in spares:
        remove_workdir(spare)


def remove_workdirs(pk: int, attempt: int | None) -> None:
    """Remove the work folders a killed attempt of process ``pk`` left on this host (all its attempts' when
    the message did not say which). Another attempt may run here by now: the killed one's heartbeat stopped."""
    for leftover in conf.work_root().glob(f'{pk}-{"*" if attempt is None else attempt}-*'):
        if WORKDIR_PATTERN.match(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def orphaned_folders(root: Path) -> list[Path]:
    """The work and spare folders under ``root`` whose process no longer exists (killed processes leave them).

    A reused process id only keeps a folder until that process ends too; removing the folder of a living
    process is what must never happen.
    """
    orphaned = []
    for path in (root.iterdir() if root.is_dir() else ()):
        match = WORKDIR_PATTERN.match(path.name) or SPARE_PATTERN.match(path.name)
        if match and not _alive(int(match[match.re.groups])):
            orphaned.append(path)
    return orphaned


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to judge
    return True


def _take_spare(root: Path) -> Path | None:
    with _lock:
        _forget_parents_spares()
        while _spares:
            spare = _spares.pop()
            if spare.parent == root:
                return spare
            remove_workdir(spare)  # the settings changed the root (tests): not a spare any more
    return None


def _forget_parents_spares() -> None:
    """A forked process inherits the list of its parent's spares, which are not its to take."""
    global _spares_pid
    if _spares_pid != os.getpid():
        _spares_pid = os.getpid()
        _spares.clear()
