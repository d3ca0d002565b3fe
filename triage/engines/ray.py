"""The Ray engine: ingest as Ray tasks, inference in an actor pool, rows on the driver.

The driver lists the studies and keeps a bounded window of ingest tasks in flight (twice
the cluster's CPUs), each running `triage.ingest.study.ingest_study` (and, for `triage
run`, `triage.engines.scoring.volume_for`) on a group of up to `GROUP` studies where Ray
places it (Ray's cost per task, paid once per group); each prepared volume is an object of
its own in Ray's object store until an inference actor takes it. The actors (one per GPU with
``num_gpus=1``, else one on CPU) score batches with `triage.engines.scoring.score_batch`,
padded to ``batch_size`` exactly as the local engine does, so both engines give the same
scores. The driver routes and journals each batch as it comes back (`triage.run.pipeline`).
The actors start (`RayEngine.prepare`) while the driver scans the export, so that a few
seconds of start-up (a worker, torch, the model) do not hold up the first batch.

Without ``--ray-address`` the engine starts a local instance with this machine's cores,
in the background while `triage run` loads the model, without prestarted workers
(`LOCAL_SYSTEM_CONFIG`): on 2 cores Ray's own processes are a fixed cost of CPU-seconds
that ingest and inference would otherwise have (`python -m benchmarks.run.cpu_tree`
measures them, process by process). Ray 2.60's `ray.init` has no option to go without its
API server and autoscaler monitor (~0.6 CPU-s each, and ~1-2 s of start-up), and the
engine does not patch Ray's internals to skip them.

Faults: a task whose worker or node dies is retried by Ray (``max_retries``); an actor that
dies is restarted and its batch retried (``max_restarts``, ``max_task_retries``); a volume
lost with its node is made again from its task (lineage). After the retries, a study gets
a ``failed`` row naming what died; a batch that killed its actor each time is split, each
study retried alone on a fresh actor, so that only the study that kills it fails; likewise
a group whose task failed each time is ingested again a study per task. An
exception of the machine (a full disk, a lost device) stops the run as with the local
engine; Ray's own errors are never dropped or retried silently.

The export and the output folder must be on a filesystem that every node mounts at the
same path (docs/scaling.md).
"""

from __future__ import annotations

import atexit
import logging
import re
import signal
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayActorError, RayError, RayTaskError

from triage.dicom.scan.grouping import StudyGroup
from triage.engines.base import Engine, Scored, TriageJob
from triage.engines.scoring import score_batch, volume_for
from triage.engines.threads import available_cpus
from triage.errors import (
    ConfigError,
    EnvironmentalError,
    describe_environmental,
    is_environmental,
)
from triage.ingest.config import IngestConfig
from triage.ingest.report import IngestStatus
from triage.ingest.stream import _one_blas_thread, failed_outcome, lower_priority
from triage.ingest.study import StudyOutcome, ingest_study
from triage.preprocess.cache import VolumeCache

LOGGER = logging.getLogger(__name__)
DEFAULT_RETRIES = 3
GROUP = 16
"""Studies per ingest task at most: Ray's own cost per task (scheduling, the driver's and
the worker's round trips) is paid once per group; `_group_size` makes groups smaller where
there are too few studies to keep every CPU busy. Measured on 2 cores, 400 studies of the
run benchmark: groups of 16 took ~1.3 s less than groups of 4 (25 tasks instead of 100),
groups of 32 no less than 16. A task of 16 CT studies is seconds of work, far above Ray's
per-task cost, and a failed group is retried a study per task (`RayEngine._split`)."""
IN_FLIGHT = 2
"""Batches an inference actor holds at once: the next one waits at the actor while the
driver routes the last, so the model does not wait for the driver's round trip (measured
on 2 cores: a 400-study run ~0.9 s faster than with one). Calls from the driver run in the
order they were sent."""
LOCAL_SYSTEM_CONFIG = {"prestart_worker_first_driver": False}
"""Ray's settings for a local instance that the engine starts. Prestarting a worker per CPU
when the driver connects left one worker unused (the inference actor takes one of them,
and the ingest tasks start another): each costs ~0.5 CPU-s to start on 2 cores; on demand,
the actor and the tasks start just the workers they use."""
_SHUTTING_DOWN: list[threading.Thread] = []  # local instances stopping in the background


def _wait_for_shutdowns() -> None:
    """Wait until every local instance an engine closed has stopped."""
    while _SHUTTING_DOWN:
        _SHUTTING_DOWN.pop().join()


atexit.register(_wait_for_shutdowns)  # after ray's own: runs before it
_ADDRESS = re.compile(r"^(auto|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")


def check_address(address: str | None) -> str | None:
    """`address` if Ray can join it: ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT``.

    Raises:
        ConfigError: anything else.
    """
    if address is None or _ADDRESS.match(address):
        return address
    raise ConfigError(f"--ray-address '{address}' is not a Ray cluster address; give 'auto' "
                      f"(the cluster `ray start` runs on this machine) or "
                      f"ray://HOST:PORT (Ray Client, port 10001 by default).")


def _node() -> str:
    """The Ray node this task runs on (its id), which the driver counts studies by."""
    return str(ray.get_runtime_context().get_node_id())


NO_STUDY = "no study"  # the identifier the engine's checks score under: no study's


def _alive() -> str:
    """The task `RayEngine` runs to tell a failing study from a failing cluster: it reads no
    study (the node it ran on)."""
    return _node()


def _ingest(studies: list[StudyGroup], config: IngestConfig, cache_root: Path
            ) -> tuple[str, list[StudyOutcome]]:
    """Ingest a group of studies in one task (fewer tasks: less of Ray's per-task cost);
    the node it ran on, and the outcomes."""
    limiter = _one_blas_thread()  # one core per task, as in the local pool
    try:
        return _node(), [ingest_study(study, config, cache_root) for study in studies]
    finally:
        limiter.restore_original_limits()


def _prepare(studies: list[StudyGroup], config: IngestConfig, cache_root: Path
             ) -> tuple[Any, ...]:
    """Ingest a group of studies for scoring: ``((node, metas), volume, volume, ...)``,
    the node it ran on, a meta ``(outcome without volume, reason, has volume)`` and a volume
    (or None) per study; one object each, so that the driver fetches the small metas only
    and each volume goes to the actor alone."""
    lower_priority()  # the model has the cores first, as in the local engine
    limiter = _one_blas_thread()
    metas, arrays = [], []
    cache = VolumeCache(cache_root)
    try:
        for study in studies:
            outcome = ingest_study(study, config, cache_root, keep_array=True)
            outcome, reason = volume_for(study, outcome, config, cache)
            metas.append((replace(outcome, array=None), reason, outcome.array is not None))
            arrays.append(outcome.array)
    finally:
        limiter.restore_original_limits()
    return ((_node(), metas), *arrays)


class _Scorer:
    """An inference actor: the model on its device, scoring one batch per call."""

    def __init__(self, bundle: Any, device: str, batch_size: int,
                 runtime: str | None = None) -> None:
        import torch

        if device == "cpu":  # Ray gives actors one OpenMP thread; take the node's cores
            torch.set_num_threads(available_cpus())
        # The driver left the weights encoded (`EncodedWeights`): decoded here, once, so
        # that a bundle torch cannot read stops the run when the actor starts.
        decode = getattr(bundle.state_dict, "decode", None)
        if decode is not None:
            decode()
        self.bundle, self.device, self.batch_size = bundle, device, batch_size
        self.runtime = runtime

    def score(self, uids: list[str], *arrays: np.ndarray) -> list[tuple[float | None, str]]:
        return score_batch(self.bundle, arrays, device=self.device,
                           batch_size=self.batch_size, uids=uids, runtime=self.runtime)


@dataclass
class _Inference:
    """The inference actors started for a job, and how to start another."""

    job: TriageJob
    new_actor: Callable[[], Any]
    actors: list[Any]


@dataclass
class _Waiting:
    """An ingested study waiting for (or being scored by) an actor."""

    study: StudyGroup
    outcome: StudyOutcome
    volume: ray.ObjectRef
    alone: bool = False  # its batch killed an actor: retried in a batch of its own


class RayEngine(Engine):
    """Run the per-study path on a Ray cluster.

    The model runs in the inference actors only (`scores_in_driver` is False): the driver
    loads the bundle with its weights encoded and never imports torch.

    Args:
        workers: processes for the driver's scan of the export (default: its cores).
        address: ``auto`` or ``ray://HOST:PORT`` joins a running cluster; None starts a
            local Ray instance with this machine's cores. An already initialized Ray
            (``ray.init`` by the caller) is used as it is.
        max_retries: retries of a task whose worker or node died, and restarts of an
            inference actor (and of its batch), before the study is failed.
        inference_actors: inference actors (default: one per GPU of the cluster, else 1).
    """

    name = "ray"
    scores_in_driver = False

    def __init__(self, workers: int | None = None, address: str | None = None, *,
                 max_retries: int = DEFAULT_RETRIES, inference_actors: int | None = None
                 ) -> None:
        self.workers = max(1, workers or available_cpus())
        self.address = check_address(address)
        self.max_retries = max_retries
        self.inference_actors = inference_actors
        self._started = False
        self._resources: dict[str, float] = {}
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._started_here = threading.Event()  # set: the start-up thread's work is done
        self._release = threading.Event()  # set: the start-up thread may end
        self._stop = False  # the start-up thread stops Ray when released
        self._inference: _Inference | None = None  # actors `prepare` started
        self._preparing: threading.Thread | None = None  # `prepare` starting them
        #: Studies ingested on each Ray node (by node id), in this engine's runs so far.
        self.studies_per_node: Counter[str] = Counter()
        self._prepare_error: BaseException | None = None

    @property
    def scan_workers(self) -> int:
        return self.workers

    def start(self) -> None:
        """Start joining the cluster (or starting the local instance) in the background.

        `triage run` calls this before it loads the model, so that Ray's start-up (a few
        seconds on a small machine, mostly spent waiting on its processes) overlaps it;
        the engine waits for it when it first needs Ray (`prepare` does not wait). Without
        this call the engine connects when it first needs Ray.
        """
        if self._starting is not None or self._started or ray.is_initialized():
            return
        if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
            # what ray.init sets when called from the main thread (a clean exit on SIGTERM)
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        logging.getLogger("ray._private.worker").addFilter(_not_main_thread_warning)
        self._started_here.clear()
        self._release.clear()
        self._stop = False
        # A daemon: a driver that exits without closing the engine is not held up by it.
        self._starting = threading.Thread(target=self._start_in_background,
                                          name="triage-ray-start", daemon=True)
        self._starting.start()
        atexit.register(self.close)  # a driver that stops before using the engine

    def _start_in_background(self) -> None:
        try:
            self._init()
        except BaseException as err:  # noqa: BLE001 - raised on the driver's thread
            self._start_error = err
        self._started_here.set()
        # Ray ties the processes it starts (GCS, raylet, ...) to the thread that started
        # them (Linux's parent-death signal is per thread): this thread lives until the
        # engine is closed, or as long as the driver when it is not; it then stops them
        # (a second or so) while the driver goes on with its report.
        self._release.wait()
        if self._stop and ray.is_initialized():
            ray.shutdown()

    def _join_start(self) -> None:
        if self._starting is not None:
            self._started_here.wait()


    def _connect(self) -> None:
        self._join_start()
        if self._start_error is not None:
            err, self._start_error = self._start_error, None
            raise err
        if self._started:
            return
        if ray.is_initialized():
            self._resources = ray.cluster_resources()
            return
        self._init()

    def _init(self) -> None:
        _wait_for_shutdowns()  # a local instance an engine closed is stopped
        try:
            if self.address:
                ray.init(address=self.address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=available_cpus(), include_dashboard=False,
                         logging_level=logging.WARNING, _system_config=LOCAL_SYSTEM_CONFIG)
        except ConnectionError as err:
            raise EnvironmentalError(f"Could not join the Ray cluster at {self.address}: "
                                     f"{describe_environmental(err)}. Start it (`ray start "
                                     f"--head`) or fix --ray-address.") from err
        self._started = True
        self._resources = ray.cluster_resources()
        LOGGER.info("Ray cluster: %s CPUs, %s GPUs.", self._resources.get("CPU", 0),
                    self._resources.get("GPU", 0))

    def close(self) -> None:
        atexit.unregister(self.close)
        if self._preparing is not None:  # what it raised no longer matters
            self._preparing.join()
            self._preparing, self._prepare_error = None, None
        self._join_start()
        self._discard_inference()
        if self._starting is not None:  # started in the background: stopped there too
            self._stop = self._started
            self._release.set()
            _SHUTTING_DOWN.append(self._starting)
            self._starting = None
        elif self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    @property
    def _window(self) -> int:
        return 2 * max(1, int(self._resources.get("CPU", 1)))

    def _group_size(self, studies: int) -> int:
        """Studies per task: `GROUP`, or fewer, so that every CPU gets two tasks."""
        cpus = max(1, int(self._resources.get("CPU", 1)))
        return max(1, min(GROUP, -(-studies // (2 * cpus))))

    def _task(self, fn, **options):
        remote = ray.remote(fn)  # exported to the cluster once, whatever the options
        return lambda **more: remote.options(max_retries=self.max_retries,
                                             retry_exceptions=False, **options, **more)

    def _split(self, group: list[StudyGroup], pending: deque[list[StudyGroup]],
               err: RayError) -> bool:
        """Whether a group's task that failed is retried a study per task (so that one
        study that kills its worker, or raises, fails alone); False for a single study."""
        if len(group) == 1:
            return False
        if isinstance(err, RayTaskError):
            cause = err.cause if isinstance(err.cause, BaseException) else err
            if is_environmental(cause):
                raise EnvironmentalError(describe_environmental(cause)) from err
        LOGGER.warning("Ingesting a group of %d studies failed on Ray (%s); ingesting each "
                       "alone.", len(group), type(err).__name__)
        pending.extendleft([study] for study in reversed(group))
        return True

    def _outcome(self, study: StudyGroup, err: RayError) -> StudyOutcome:
        """The failed outcome of a study whose task raised `err` (after Ray's retries)."""
        if isinstance(err, RayTaskError):  # ingest_study itself raised
            cause = err.cause if isinstance(err.cause, BaseException) else err
            if is_environmental(cause):
                raise EnvironmentalError(describe_environmental(cause)) from err
            LOGGER.error("Ingest of study %s raised %s.", study.study_uid,
                         type(cause).__name__)
            return failed_outcome(study, f"internal error while ingesting "
                                         f"({type(cause).__name__})")
        self._check_workers()
        LOGGER.error("Ingest of study %s failed on Ray after %d retries (%s).",
                     study.study_uid, self.max_retries, type(err).__name__)
        return failed_outcome(study, f"the Ray worker ingesting this study died "
                                     f"{self.max_retries + 1} times ({type(err).__name__}); "
                                     f"a decoder may have crashed on its pixel data, or its "
                                     f"node was lost")

    def _check_workers(self, timeout: float = 120.0) -> None:
        """Raise `EnvironmentalError` unless a task that reads no study (`_alive`) runs on
        the cluster within `timeout` seconds, Ray's retries included: a study is written
        down as failed for killing its workers only when workers still run without it."""
        ref = self._task(_alive, num_cpus=1)().remote()
        try:
            ray.get(ref, timeout=timeout)
        except Exception as err:  # noqa: BLE001 - whatever stopped it, the cluster failed
            _cancel({ref: None})  # a task still waiting for a worker is not left queued
            raise EnvironmentalError(
                f"Ray workers die or hang even on a task that reads no study "
                f"({type(err).__name__}): a node or the cluster is failing, not a "
                f"study") from err

    def ingest(self, studies: Sequence[StudyGroup], config: IngestConfig,
               cache_root: Path) -> Iterator[tuple[StudyGroup, StudyOutcome]]:
        self._connect()
        task = self._task(_ingest, num_cpus=1)()
        pending = _groups(studies, self._group_size(len(studies)))
        running: dict[ray.ObjectRef, list[StudyGroup]] = {}
        try:
            while pending or running:
                while pending and len(running) < self._window:
                    group = pending.popleft()
                    running[task.remote(group, config, cache_root)] = group
                (ref,), _ = ray.wait(list(running), num_returns=1)
                group = running.pop(ref)
                try:
                    node, outcomes = ray.get(ref)
                    self.studies_per_node[node] += len(group)
                except RayError as err:
                    if self._split(group, pending, err):
                        continue
                    outcomes = [self._outcome(group[0], err)]
                yield from zip(group, outcomes, strict=True)
        finally:
            _cancel(running)

    def _actors(self, job: TriageJob) -> tuple[Any, str, int]:
        gpus = int(self._resources.get("GPU", 0))
        count = self.inference_actors or max(1, gpus)
        device = "cuda" if gpus else "cpu"
        options: dict[str, Any] = {"max_restarts": self.max_retries,
                                   "max_task_retries": self.max_retries}
        if gpus:
            options |= {"num_gpus": 1, "num_cpus": 1}
        else:  # beside the ingest tasks, which run at the lowest priority (a local Ray
            # instance inherits the driver's OMP_WAIT_POLICY=PASSIVE: triage.engines.threads)
            options |= {"num_cpus": 0}
        return ray.remote(_Scorer).options(**options), device, count

    def prepare(self, job: TriageJob) -> None:
        """Start the inference actors while the driver scans the export.

        An actor takes seconds to start (a worker process, torch, the model) and scores
        nothing until then; started here, it is ready when the first volumes are. A run
        with nothing left to do stops it unused. Nor does the driver wait here for Ray's
        own start-up (seconds on a small machine): a thread starts the actors once Ray is
        up while the driver scans, and `triage` waits for that thread. (The scan's
        processes fork while Ray's threads run, as they would after its start: they only
        read headers, and exit with the scan.)
        """
        self._join_prepare()
        self._discard_inference()
        self._preparing = threading.Thread(target=self._prepare_in_background, args=(job,),
                                           name="triage-ray-prepare", daemon=True)
        self._preparing.start()

    def _prepare_in_background(self, job: TriageJob) -> None:
        try:
            self._connect()
            self._inference = self._start_inference(job)
        except BaseException as err:  # noqa: BLE001 - raised on the driver's thread
            self._prepare_error = err

    def _join_prepare(self) -> None:
        """Wait for `prepare`'s thread; raise what it raised (Ray could not start)."""
        if self._preparing is not None:
            self._preparing.join()
            self._preparing = None
        if self._prepare_error is not None:
            err, self._prepare_error = self._prepare_error, None
            raise err

    def _start_inference(self, job: TriageJob) -> _Inference:
        actor_class, device, count = self._actors(job)
        self._device, self._actor_count = device, count
        bundle = ray.put(job.bundle)

        def new_actor():
            return actor_class.remote(bundle, device, job.batch_size, job.runtime)

        return _Inference(job, new_actor, [new_actor() for _ in range(count)])

    def _discard_inference(self) -> None:
        """Stop the actors `prepare` started that no `triage` took."""
        inference, self._inference = self._inference, None
        if inference is not None and ray.is_initialized():
            _kill(inference.actors)

    def triage(self, studies: Sequence[StudyGroup], job: TriageJob) -> Iterator[list[Scored]]:
        with job.clock("ray_start"):  # joining the cluster, or starting a local instance
            self._join_prepare()
            self._connect()
        prepare = self._task(_prepare, num_cpus=1)
        if self._inference is None or self._inference.job is not job:
            self._discard_inference()
            self._inference = self._start_inference(job)
        inference, self._inference = self._inference, None
        new_actor, actors = inference.new_actor, inference.actors
        size = self._group_size(len(studies))
        pending = _groups(studies, size)
        ingesting: dict[ray.ObjectRef, tuple[list[StudyGroup], list[ray.ObjectRef]]] = {}
        waiting: deque[_Waiting] = deque()
        scoring: dict[ray.ObjectRef, tuple[Any, list[_Waiting]]] = {}
        # studies held at once: the ingest window, each actor's batches and one more each
        limit = self._window * size + (IN_FLIGHT + 1) * job.batch_size * len(actors)
        try:
            while pending or ingesting or waiting or scoring:
                held = (sum(len(g) for g, _ in ingesting.values()) + len(waiting)
                        + sum(len(b) for _, b in scoring.values()))
                while pending and len(ingesting) < self._window and held < limit:
                    group = pending.popleft()
                    meta, *volumes = prepare(num_returns=len(group) + 1).remote(
                        group, job.config, job.cache_root)
                    ingesting[meta] = (group, volumes)
                    held += len(group)
                last = not (pending or ingesting)
                while waiting and (len(waiting) >= job.batch_size or last
                                   or waiting[0].alone):
                    actor = _free_actor(actors, scoring.values(), waiting[0].alone)
                    if actor is None:
                        break
                    batch = _take(waiting, job.batch_size)
                    ref = actor.score.remote([w.study.study_uid for w in batch],
                                             *[w.volume for w in batch])
                    scoring[ref] = (actor, batch)
                with job.clock("ray_wait"):
                    (ref,), _ = ray.wait([*ingesting, *scoring], num_returns=1)
                if ref in ingesting:
                    group, volumes = ingesting.pop(ref)
                    try:
                        node, metas = ray.get(ref)
                        self.studies_per_node[node] += len(group)
                    except RayError as err:
                        if self._split(group, pending, err):
                            continue
                        metas = [(self._outcome(group[0], err), "", False)]
                    unscored = []
                    for study, volume, (outcome, reason, has_volume) in zip(
                            group, volumes, metas, strict=True):
                        if has_volume and outcome.report.status is IngestStatus.OK:
                            waiting.append(_Waiting(study, outcome, volume))
                        else:
                            unscored.append(Scored(study, outcome, None, reason))
                    if unscored:
                        yield unscored
                    continue
                actor, batch = scoring.pop(ref)
                try:
                    scores = ray.get(ref)
                except RayError as err:
                    if isinstance(err, RayActorError) and err.actor_init_failed:
                        # (Ray raises it as a RayTaskError too: checked first)
                        raise _actor_could_not_start(err) from err
                    if isinstance(err, RayTaskError):  # score_batch itself raised
                        yield self._batch_failed(batch, err)
                        continue
                    # The actor died max_retries + 1 times on this batch, or one of its
                    # volumes was lost and could not be made again.
                    if isinstance(err, RayActorError) and actor in actors:  # dead for good
                        # (its other batches fail alike and find it replaced already)
                        actors[actors.index(actor)] = new_actor()
                    yield from self._batch_lost(batch, waiting, err, new_actor)
                    continue
                yield [Scored(w.study, w.outcome, p, e)
                       for w, (p, e) in zip(batch, scores, strict=True)]
        finally:
            _cancel(ingesting)
            _cancel(scoring)
            _kill(list(dict.fromkeys([*actors, *(actor for actor, _ in scoring.values())])))

    def _batch_lost(self, batch: list[_Waiting], waiting: deque[_Waiting],
                    err: RayError, new_actor: Callable[[], Any]) -> Iterator[list[Scored]]:
        """A batch Ray could not score: each study again alone, then failed alone (once a
        fresh actor still scores a volume of no study: `_check_scorer`)."""
        if isinstance(err, RayActorError) and len(batch) == 1:
            self._check_scorer(new_actor, batch[0].volume)
        if isinstance(err, RayActorError):
            what = (f"the inference actor died {self.max_retries + 1} times while scoring "
                    f"this study")
        else:
            what = "Ray could not score this study"
        if len(batch) > 1:
            LOGGER.warning("Scoring a batch of %d studies failed on Ray (%s); scoring each "
                           "alone.", len(batch), type(err).__name__)
            waiting.extendleft(replace(w, alone=True) for w in reversed(batch))
            return
        (item,) = batch
        LOGGER.error("Scoring study %s failed on Ray (%s).", item.study.study_uid,
                     type(err).__name__)
        yield [Scored(item.study, item.outcome, None, f"{what} ({type(err).__name__})")]

    def _check_scorer(self, new_actor: Callable[[], Any], volume: ray.ObjectRef,
                      timeout: float = 300.0) -> None:
        """Raise `EnvironmentalError` unless a fresh inference actor scores a blank volume
        of `volume`'s shape (no study's data) within `timeout` seconds: a study is written
        down as failed for killing the actor only when the actor still scores without it."""
        actor = None
        try:
            blank = np.zeros_like(ray.get(volume, timeout=timeout))
            actor = new_actor()
            ray.get(actor.score.remote([NO_STUDY], blank), timeout=timeout)
        except Exception as err:  # noqa: BLE001 - whatever stopped it, inference failed
            raise EnvironmentalError(
                f"inference actors die or hang even on a volume of no study "
                f"({type(err).__name__}): the device, a node or the cluster is failing, "
                f"not a study") from err
        finally:
            if actor is not None:
                _kill([actor])

    def _batch_failed(self, batch: list[_Waiting], err: RayTaskError) -> list[Scored]:
        cause = err.cause if isinstance(err.cause, BaseException) else err
        if is_environmental(cause):  # the device failed: stop, fail no study
            raise EnvironmentalError(describe_environmental(cause)) from err
        LOGGER.error("Scoring a batch of %d failed on Ray (%s).", len(batch),
                     type(cause).__name__)
        return [Scored(w.study, w.outcome, None, f"inference error on Ray "
                                                 f"({type(cause).__name__})") for w in batch]

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"engine": self.name, "workers": self.workers,
                                "cluster_cpus": self._resources.get("CPU", 0),
                                "cluster_gpus": self._resources.get("GPU", 0),
                                "max_retries": self.max_retries}
        if hasattr(self, "_device"):
            info |= {"inference_actors": self._actor_count, "inference_device": self._device}
        if self.studies_per_node:
            info["studies_per_node"] = dict(self.studies_per_node.most_common())
        return info


def _groups(studies: Sequence[StudyGroup], size: int) -> deque[list[StudyGroup]]:
    """`studies` in order, `size` to a group (largest first stays largest first)."""
    return deque(list(studies[i:i + size]) for i in range(0, len(studies), size))


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    sys.exit(signum)  # atexit then stops the local Ray instance


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    """Drop ray.init's warning that it set no SIGTERM handler (`RayEngine.start` did)."""
    return "SIGTERM handler is not set" not in record.getMessage()


def _take(waiting: deque[_Waiting], batch_size: int) -> list[_Waiting]:
    if waiting[0].alone:
        return [waiting.popleft()]
    batch: list[_Waiting] = []
    while waiting and len(batch) < batch_size and not waiting[0].alone:
        batch.append(waiting.popleft())
    return batch


def _actor_could_not_start(err: RayActorError) -> EnvironmentalError:
    """An inference actor that failed in its constructor (torch or its device missing on
    the node, weights torch cannot read) scores nothing, whichever study it is given: the
    run stops, and no study is written down as failed for it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines
                 else type(err).__name__)
    return EnvironmentalError(f"The inference actor could not start on Ray ({cause}); "
                              f"fix the model or the nodes' environment and run again.")


def _free_actor(actors: list[Any], scoring: Iterable[tuple[Any, list[_Waiting]]],
                alone: bool) -> Any | None:
    """An actor that can take the next batch, or None.

    Each actor holds up to `IN_FLIGHT` batches, except a batch scored alone (one that
    killed an actor before): it goes only to an actor holding nothing, and that actor takes
    nothing else until it is done, so that if it dies again no other study dies with it.
    """
    held: dict[Any, list[list[_Waiting]]] = {actor: [] for actor in actors}
    for actor, batch in scoring:
        held.setdefault(actor, []).append(batch)
    for actor in actors:
        batches = held[actor]
        if alone and not batches:
            return actor
        if (not alone and len(batches) < IN_FLIGHT
                and not any(w.alone for batch in batches for w in batch)):
            return actor
    return None


def _kill(actors: list[Any]) -> None:
    """Stop inference actors now: left to exit with the instance, each would run torch's
    teardown (~1 CPU-s on 2 cores), which nothing needs."""
    for actor in actors:
        ray.kill(actor)


def _cancel(refs: dict) -> None:
    """Cancel what is still running when the driver stops early (an error, a close)."""
    for ref in list(refs):
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001, S110 - an actor task or a finished one
            pass
