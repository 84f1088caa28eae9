"""One function over many jobs: serially, on every local core, or on a Ray cluster.

:func:`run_jobs` yields ``(index, result)`` as each job finishes (so a caller can record each
result at once); :func:`parallel_map` returns the results in the jobs' order. Where they run:

- ``ray_address`` given: on Ray (``pip install 'proxygym[ray]'``). The address means what it
  means to ``ray.init``: ``local`` starts a new Ray instance on this machine, ``auto`` joins
  the one already running here (started with ``ray start``), ``HOST:PORT`` or
  ``ray://HOST:PORT`` a cluster's head. A process that is already connected to Ray (it called
  ``ray.init`` itself, or an earlier call here did) keeps that connection; Ray shuts it down
  when the process ends. Every node must have ``proxygym`` installed, as the jobs' function is
  found there by its module's name. :func:`check_ray` refuses, in one line and before any work,
  a missing Ray install and a cluster address that does not answer (Ray would keep retrying).
- otherwise on ``workers`` local processes (default: every core), or in this process when
  ``workers`` is 1 or there is a single job.

``fn`` must be a function defined at the top of a module (a process pool and Ray find it by
name) and the jobs must pickle. A job that raises stops the whole map with its exception
(the results yielded before it stand); the jobs not yet started are cancelled.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from tqdm import tqdm

from proxygym.envs.errors import ProxyGymError

#: What to install for --ray-address.
RAY_EXTRA = "pip install 'proxygym[ray]'"
#: Seconds to wait for a cluster's address to answer.
CONNECT_TIMEOUT = 10


def check_ray(ray_address: str | None) -> None:
    """Fail in one line, before any work, if ``ray_address`` is given and Ray is not installed, or the address is
    neither ``local`` nor ``auto`` nor a cluster's address that answers."""
    if ray_address is None:
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ProxyGymError(f"--ray-address needs Ray, which is not installed: {RAY_EXTRA}") from None
    if ray_address not in ("local", "auto"):
        _reachable(ray_address)


def _reachable(address: str) -> None:
    """A cluster's address (``HOST:PORT``, ``ray://HOST:PORT``) answers, or a one-line error (where the
    address does not, Ray itself keeps retrying without end)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ProxyGymError(f"--ray-address {address!r}: give local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        raise ProxyGymError(f"--ray-address {address!r}: cannot connect to Ray ({err.strerror or err})") from None


def _connect_ray(address: str):
    """The ``ray`` module, connected to ``address`` (or to whatever this process is connected to already)."""
    check_ray(address)
    import ray

    if not ray.is_initialized():
        try:
            # a client (ray://) passes its options to the cluster's ray.init; keep those to what Ray's client accepts
            quiet = {} if address.startswith("ray://") else dict(include_dashboard=False, log_to_driver=False,
                                                                   logging_level="ERROR")
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ProxyGymError(f"--ray-address {address!r}: cannot connect to Ray ({reason})") from None
    return ray


def _call(fn: Callable, job):
    """``fn(job)``: what a Ray task runs (Ray makes tasks of Python functions only, ``fn`` may be a builtin)."""
    return fn(job)


def _ray_jobs(fn: Callable, jobs: Sequence, address: str) -> Iterator[tuple[int, object]]:
    ray = _connect_ray(address)
    remote = ray.remote(num_cpus=1)(_call)
    pending = {remote.remote(fn, job): i for i, job in enumerate(jobs)}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # the task's own error, not the remote traceback
                    raise (err.cause if err.cause is not None else ProxyGymError(str(err).splitlines()[0])) from None
                yield i, result
    finally:
        for ref in pending:  # a failed job or an interrupted caller: the rest are not wanted
            ray.cancel(ref)


def _pool_jobs(fn: Callable, jobs: Sequence, workers: int) -> Iterator[tuple[int, object]]:
    """The jobs on a process pool. After a job fails, those not started are cancelled and those running are
    still collected and yielded (their work is not lost: a caller that records results records them), then the
    first failure is raised."""
    pool = ProcessPoolExecutor(max_workers=workers)
    failure: BaseException | None = None
    try:
        pending = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    yield i, future.result()
                elif failure is None:
                    failure = error
                    for other in pending:
                        other.cancel()  # (only those not started yet)
        if failure is not None:
            raise failure
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def show_progress(choice: bool | None = None) -> bool:
    """The one rule for progress bars: ``choice`` where the user made one (``--progress``, ``--no-progress``),
    else whenever standard error is a terminal."""
    return sys.stderr.isatty() if choice is None else bool(choice)


def run_jobs(fn: Callable, jobs: Sequence, *, workers: int | None = None, ray_address: str | None = None,
             progress: bool | None = None, desc: str | None = None, unit: str = "job") -> Iterator[tuple[int, object]]:
    """``(i, fn(jobs[i]))`` for every job, in the order they finish (see the module's docstring for where they run).
    ``progress``: a tqdm bar on standard error (default: when standard error is a terminal)."""
    if workers is not None and workers < 1:
        raise ProxyGymError(f"--workers must be at least 1, got {workers}")
    jobs = list(jobs)
    progress = show_progress(progress)
    if ray_address is not None:
        source = _ray_jobs(fn, jobs, ray_address)
    else:
        workers = min(workers or os.cpu_count() or 1, len(jobs))
        source = ((i, fn(job)) for i, job in enumerate(jobs)) if workers <= 1 else _pool_jobs(fn, jobs, workers)
    with tqdm(total=len(jobs), disable=not progress, desc=desc, unit=unit, file=sys.stderr) as bar:
        try:
            for item in source:
                bar.update()
                yield item
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def parallel_map(fn: Callable, jobs: Sequence, **kwargs) -> list:
    """``[fn(job) for job in jobs]``, computed as :func:`run_jobs` computes it (the same keyword arguments)."""
    jobs = list(jobs)
    out: list = [None] * len(jobs)
    for i, result in run_jobs(fn, jobs, **kwargs):
        out[i] = result
    return out
