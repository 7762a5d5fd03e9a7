"""How a recipe process runs: the one-line error policy, one run per output folder, the output folder
check and the allocator setting of CPU runs."""
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from spectron_kit.errors import TRACEBACK_ENV, one_line, traceback_wanted
from spectron_kit.recipe.config import RecipeConfigError


def shown_path(path):
    """``path`` as users type it: relative to the working folder when it is inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def command_line(script, argv):
    """How to rerun a recipe script: ``python <script> <argv...>`` (the script as :func:`shown_path` writes it),
    every argument shell-quoted (recorded in a run's summary)."""
    import shlex

    return shlex.join(["python", str(shown_path(script)), *[str(a) for a in argv]])


#: libraries whose DEBUG / INFO records would otherwise fill a run's log.txt (SpeechBrain's log file takes every
#: record at DEBUG): numba's bytecode tracing and faster-whisper's line per transcribed clip were 4,000 of the
#: 4,200 lines of an evaluation's log
NOISY_LIBRARIES = ("numba", "faster_whisper", "matplotlib", "PIL", "urllib3", "httpx", "onnxruntime")


def quiet_library_loggers(names=NOISY_LIBRARIES, level="WARNING"):
    """Keep only warnings and errors of the libraries in ``names`` in a run's log (our own records unchanged).

    Example:
        >>> quiet_library_loggers(["numba"]); logging.getLogger("numba").level == logging.WARNING
        True
    """
    for name in names:
        logging.getLogger(name).setLevel(level)


def check_output_folder(folder, key="output_folder"):
    """Refuse (one line) an output folder that is a file, lies under a file, or under a folder we cannot write.

    Example:
        >>> check_output_folder("results/some_run")
    """
    path = Path(folder)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        what = "is a file" if existing == path else f"lies under the file {existing}"
        raise RecipeConfigError(f"--{key}={folder} {what}; choose a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RecipeConfigError(f"--{key}={folder}: {existing} is not writable; choose a folder you can write to")


#: the held lock of this process's run folder (a FileLock is released when it is garbage-collected)
_RUN_LOCKS = {}


def lock_run_folder(folder, key="output_folder", what="training run"):
    """One run per output folder: hold ``<folder>/.run.lock`` for the life of this process.

    A second run on the same folder stops at once with one line naming the
    running process (from ``<folder>/run.pid``). The lock is an OS file lock
    (``filelock``), so the lock of a killed run is released with its process
    and the next run takes it over. Every recipe and tool that writes a run
    folder takes it (training, evaluation, sweeps, knowledge retention, the
    hearing tool): ``what`` names the holder in the message of the one refused.

    Raises:
        RecipeConfigError: another live process holds the folder.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key_path = str(folder.resolve())
    if key_path in _RUN_LOCKS:  # this process holds it already (a run started twice in one process: tests)
        return _RUN_LOCKS[key_path]
    lock = FileLock(str(folder / ".run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pid_file = folder / "run.pid"
        owner = pid_file.read_text().strip() if pid_file.is_file() else "another process"
        if ": pid " in owner:  # "<what>: pid N on host, started ..."
            holder, owner = owner.split(": ", 1)
        else:
            holder = "run"
        raise RecipeConfigError(f"--{key}={folder} is in use by a running {holder} ({owner}); wait for it "
                                f"to end or choose another --{key}") from None
    (folder / "run.pid").write_text(f"{what}: pid {os.getpid()} on {os.uname().nodename}, started "
                                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    _RUN_LOCKS[key_path] = lock
    return lock


def release_run_folder(folder):
    """Release this process's lock of ``folder`` (end of a run inside a longer-lived process)."""
    lock = _RUN_LOCKS.pop(str(Path(folder).resolve()), None)
    if lock is not None:
        lock.release()


#: what a Ctrl-C should tell the user (set by a run once it has a checkpoint folder)
INTERRUPTED = {"where": None}


@contextlib.contextmanager
def interrupts_deferred():
    """A Ctrl-C (SIGINT) that arrives inside the block takes effect when the block ends.

    For work that must happen whole or not at all, such as the end of an epoch
    (its checkpoint, then its log line and loss plot): an interrupt between
    them would make the rerun train a logged epoch again. Outside the main
    thread (where signal handlers cannot be set) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if arrived and previous is not signal.SIG_IGN:
        if callable(previous):  # Python's own handler raises KeyboardInterrupt
            previous(signal.SIGINT, None)
        else:                   # SIG_DFL (or a handler not set from Python): deliver it again
            os.kill(os.getpid(), signal.SIGINT)


def exit_on_config_error(func):
    """Decorator for recipe and tool mains: one error policy.

    Known errors (a bad configuration or override, an unknown component or a
    broken plugin, a missing file or folder, unreadable audio, a broken bundle,
    mismatched feature specs, a diverged run, an output path the OS refuses)
    print one line ``error: ...`` naming the thing and the fix, and exit with
    code 2. Ctrl-C prints one line (``INTERRUPTED["where"]``: where the last
    checkpoint is and that a rerun resumes) and exits with 130. Set
    ``SPECTRON_KIT_TRACEBACK=1`` to get the traceback instead.
    """
    from spectron_kit.registry import RegistryError

    known = (RecipeConfigError, RegistryError, OSError, ValueError, TypeError)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            if traceback_wanted():
                raise
            where = INTERRUPTED["where"]
            print(f"interrupted: {where}" if where else "interrupted", file=sys.stderr)
            sys.exit(130)
        except known as err:
            if traceback_wanted():
                raise
            hint = "" if isinstance(err, RecipeConfigError) else f" ({TRACEBACK_ENV}=1 shows the traceback)"
            print(f"error: {one_line(err)}{hint}", file=sys.stderr)
            sys.exit(2)
        except KeyError as err:
            if "Override" in str(err) and not traceback_wanted():
                print(f"error: {one_line(err)}", file=sys.stderr)
                sys.exit(2)
            raise
    return wrapper


def threads_per_job(jobs, environ=None):
    """Torch threads for each of ``jobs`` processes run side by side (sweeps, experiment drivers).

    The caller's ``OMP_NUM_THREADS`` when it is set (``OMP_NUM_THREADS=1`` leaves
    cores free for other work), else the machine's cores divided by ``jobs``.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("OMP_NUM_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise RecipeConfigError(f"OMP_NUM_THREADS={value!r} must be a positive integer (torch threads per "
                                    "job); unset it to give each job cores / jobs")
        return int(value)
    return max(1, (os.cpu_count() or 1) // max(1, int(jobs)))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)


def reuse_freed_memory(max_block_mb=256):
    """Ask glibc malloc to keep freed CPU memory for reuse instead of giving it back to the kernel.

    A training step frees and reallocates the same multi-megabyte buffers
    (STFTs, activations, gradients). By default glibc serves such blocks with
    ``mmap`` and unmaps them on free, so every step page-faults on fresh,
    zeroed pages: a third of the CPU time went to the kernel in the mini
    recipe (``tools/benchmark_allocator.py`` measures it). Blocks up to
    ``max_block_mb`` now come from the heap, and the heap is not trimmed.

    Linux with glibc only; elsewhere, or when the user set
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` themselves, nothing
    changes.

    Returns:
        True when the setting took effect.
    """
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(max_block_mb) << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def init_distributed(run_opts):
    """Join the process group when started by ``torchrun`` (it sets RANK and LOCAL_RANK).

    The backend is gloo on a machine without CUDA and nccl with it, unless
    ``--distributed_backend`` says otherwise; with nccl each process takes the
    GPU of its local rank.

    Returns:
        ``(run_opts, world_size)``; world size 1 without torchrun.
    """
    if os.environ.get("RANK") is None or os.environ.get("LOCAL_RANK") is None:
        return run_opts, 1
    import torch
    given = run_opts.overridden_args
    backend = run_opts.distributed_backend
    if "distributed_backend" not in given:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    device = run_opts.device
    if "device" not in given or device is None:
        device = "cpu" if backend == "gloo" else f"cuda:{int(os.environ['LOCAL_RANK'])}"
    # A term of weight 0 leaves parameters out of the loss (w_ce: 0 leaves the LM head unused), which plain
    # DDP refuses: look for unused parameters (a graph walk per step). Brain takes a run option from
    # run_opts only when it is marked as given on the command line.
    run_opts = dataclasses.replace(run_opts, distributed_backend=backend, device=device, find_unused_parameters=True,
                                   overridden_args=set(given) | {"distributed_backend", "device",
                                                                 "find_unused_parameters"})
    from speechbrain.utils.distributed import ddp_init_group

    ddp_init_group(run_opts)
    return run_opts, torch.distributed.get_world_size()
