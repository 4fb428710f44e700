"""Background training: one worker thread per device runs fit() for one job at a time; the rest queue.
A run on several GPUs runs in processes of its own (launch.LaunchedRun), controlled through its run folder.

Any caller (a Streamlit session, a second browser tab, a test) can start, stop,
pause, resume and observe a run by id. Observation goes through the run store,
so what a caller sees does not depend on which thread or tab started the run.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from .config import RunConfig
from .control import RunControl
from .devices import pick_device
from .errors import RunError
from .events import RunStatus
from .launch import LaunchedRun
from .paths import check_config_paths
from .store import RunStore
from .trainer import FitResult, Observer, check_resumable, check_startable, fit

log = logging.getLogger(__name__)


@dataclass
class Job:
    run_id: str
    config: RunConfig | None
    resume: bool = False
    extra_epochs: int = 0
    control: RunControl = field(default_factory=RunControl)
    done: threading.Event = field(default_factory=threading.Event)
    result: FitResult | None = None


class JobManager:
    def __init__(self, store: RunStore, observers: list[Observer] | None = None, *,
                 allowed_roots: list | None = None):
        self.store = store
        self.observers = list(observers or [])
        # Set by the web app: runs may read data and local model folders only under these folders.
        self.allowed_roots = list(allowed_roots) if allowed_roots is not None else None
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Job]] = {}
        self._running: dict[str, Job] = {}   # device -> job
        self._jobs: dict[str, Job] = {}      # run id -> job (latest)
        self._wake: dict[str, threading.Condition] = {}
        self._launched: dict[str, LaunchedRun] = {}   # run id -> a run on several processes
        self._closed = False
        # Runs left "running" by a process that died are shown as interrupted and can be resumed.
        store.reconcile_interrupted()

    # ---- starting -------------------------------------------------------
    def submit(self, config: RunConfig, name: str | None = None, processes: int = 1) -> str:
        """Validate, create the run (queued) and schedule it, or start it at once on `processes` processes
        (torchrun: one per GPU). Raises ConfigError before anything is written."""
        check_startable(config, runs_dir=self.store.root, allowed_roots=self.allowed_roots)
        if processes > 1 and config.adapt.method != "none":
            raise RunError("domain adaptation trains on one process for now; train it on one GPU")
        self._check_gpus_free(config, processes)
        run_id = self.store.create_run(config.to_dict(), name=name, modality="", model=config.model.name,
                                       dataset=config.data.path)
        if processes > 1:
            with self._lock:
                self._launched[run_id] = LaunchedRun(self.store, run_id, config, processes, self.allowed_roots)
        else:
            self._enqueue(Job(run_id, config), config.train.device)
        return run_id

    def resume(self, run_id: str, extra_epochs: int = 0) -> str:
        """Unpause a paused job, or continue a stopped/failed/interrupted/finished run from its checkpoint."""
        run_id = self.store.get_run(run_id).id
        with self._lock:
            launched = self._live_launched(run_id)
            if launched is not None:
                launched.request("run")
                return run_id
            job = self._jobs.get(run_id)
            if job is not None and not job.done.is_set():
                if job.control.paused:
                    job.control.resume()
                    return run_id
                raise RunError(f"run {run_id} is already {self.store.get_run(run_id).status}; wait for it or stop it first")
        # Refused here, while the run is as it was: once queued, a refusal inside the worker would mark it failed.
        record = check_resumable(self.store, run_id, extra_epochs)
        config = RunConfig.of_saved_run(record.config)
        self._check_gpus_free(config, 1)
        if self.allowed_roots is not None:   # a run made on the command line may name data the app may not read
            check_config_paths(config, self.allowed_roots)
        self.store.set_status(run_id, RunStatus.QUEUED)
        self._enqueue(Job(run_id, None, resume=True, extra_epochs=extra_epochs), config.train.device)
        return run_id

    # ---- control --------------------------------------------------------
    def stop(self, run_id: str) -> None:
        with self._lock:
            if (launched := self._live_launched(run_id)) is not None:
                launched.request("stop")
                return
            job = self._job(run_id)
            for queue in self._queues.values():
                if job in queue:  # never started: nothing to checkpoint
                    queue.remove(job)
                    job.done.set()
                    self.store.set_status(run_id, RunStatus.STOPPED, message="stopped before it started")
                    return
        job.control.request_stop()

    def pause(self, run_id: str) -> None:
        with self._lock:
            if (launched := self._live_launched(run_id)) is not None:
                launched.request("pause")
                return
        self._job(run_id).control.pause()

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            if self._live_launched(run_id) is not None:
                return True
            job = self._jobs.get(run_id)
            return job is not None and not job.done.is_set()

    def active_runs(self) -> list[str]:
        with self._lock:
            return [rid for rid, job in self._jobs.items() if not job.done.is_set()] + \
                [rid for rid, launched in self._launched.items() if launched.alive]

    def queue_position(self, run_id: str) -> int | None:
        """0 while running, 1.. while queued, None otherwise."""
        with self._lock:
            if self._live_launched(run_id) is not None:
                return 0
            for job in self._running.values():
                if job.run_id == run_id:
                    return 0
            for queue in self._queues.values():
                for i, job in enumerate(queue):
                    if job.run_id == run_id:
                        return i + 1
        return None

    def wait(self, run_id: str, timeout: float | None = None) -> FitResult | None:
        """The result of an in-process job (None: not done in time, or a run on several processes, whose
        result is in the store)."""
        with self._lock:
            launched = self._launched.get(run_id)
        if launched is not None and run_id not in self._jobs:
            launched.wait(timeout)
            return None
        job = self._job(run_id)
        job.done.wait(timeout)
        return job.result

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job (each writes a checkpoint) and wait for the workers."""
        with self._lock:
            self._closed = True
            jobs = [j for j in self._jobs.values() if not j.done.is_set()]
            launched = [r for r in self._launched.values() if r.alive]
            for cond in self._wake.values():  # conditions share self._lock, which is held here
                cond.notify_all()
        for job in jobs:
            self.stop(job.run_id)
        for run in launched:
            run.request("stop")
        for job in jobs:
            job.done.wait(timeout)
        for run in launched:
            run.wait(timeout)

    # ---- runs on several processes ----------------------------------------
    def _live_launched(self, run_id: str) -> LaunchedRun | None:
        """The run's processes, while they live (a finished one may since have been resumed as a job here)."""
        launched = self._launched.get(run_id)
        if launched is not None and not launched.alive:
            del self._launched[run_id]
            return None
        return launched

    def _check_gpus_free(self, config: RunConfig, processes: int) -> None:
        """A run on several GPUs takes them all: it neither starts beside a run on a GPU nor lets one start."""
        if pick_device(config.train.device).type != "cuda":
            return
        with self._lock:
            launched = [rid for rid in list(self._launched) if self._live_launched(rid) is not None]
            on_gpu = [job.run_id for device, queue in self._queues.items() if device.startswith("cuda")
                      for job in [*queue, *([self._running[device]] if device in self._running else [])]]
        if launched or (processes > 1 and on_gpu):
            busy = (launched or on_gpu)[0]
            raise RunError(f"run {busy} is training on the GPUs; start this one when it has finished, or stop it")

    # ---- workers --------------------------------------------------------
    def _job(self, run_id: str) -> Job:
        job = self._jobs.get(run_id)
        if job is None:
            raise RunError(f"run {run_id} is not running in this app; resume it first")
        return job

    def _enqueue(self, job: Job, device_name: str) -> None:
        device = str(pick_device(device_name))
        with self._lock:
            if self._closed:
                raise RunError("the job manager is shutting down; start the run again after restarting")
            self._jobs[job.run_id] = job
            if device not in self._queues:
                self._queues[device] = deque()
                self._wake[device] = threading.Condition(self._lock)
                threading.Thread(target=self._worker, args=(device,), name=f"train-{device}", daemon=True).start()
            self._queues[device].append(job)
            self._wake[device].notify()

    def _worker(self, device: str) -> None:
        while True:
            with self._lock:
                queue, wake = self._queues[device], self._wake[device]
                while not queue and not self._closed:
                    wake.wait()
                if self._closed and not queue:
                    return
                job = queue.popleft()
                self._running[device] = job
            try:
                job.result = fit(job.config, store=self.store, run_id=job.run_id, control=job.control,
                                 observers=self.observers, resume=job.resume, extra_epochs=job.extra_epochs,
                                 allowed_roots=self.allowed_roots)
                if job.result.status == RunStatus.FAILED:
                    # The page shows one line; the terminal that runs the app gets it too (fit() has already
                    # logged the traceback of an unexpected error), so a failure never passes unseen there.
                    advice = f" What to do: {job.result.advice}" if job.result.advice else ""
                    log.error("run %s failed: %s.%s", job.run_id, job.result.message.strip().rstrip("."), advice)
            except Exception as exc:  # fit() reports its own failures; this guards the worker itself
                log.exception("job %s could not run", job.run_id)
                self.store.set_status(job.run_id, RunStatus.FAILED, message=str(exc))
            finally:
                with self._lock:
                    self._running.pop(device, None)
                job.done.set()
