"""Helpers shared by the recipes: checked command-line overrides and resolved configs.

Every recipe checks its command line with :func:`check_overrides` before it
loads anything: an unknown key (with the closest known one), a value of the
wrong type, and a required ``!PLACEHOLDER`` left empty each stop the run with
one line naming the key.
"""
import ctypes
import ctypes.util
import difflib
import functools
import json
import os
import re
import sys
import time
from pathlib import Path

import yaml as pyyaml
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

from spectron_kit.errors import TRACEBACK_ENV, one_line, traceback_wanted

NUMBER = (int, float)


class RecipeConfigError(ValueError):
    """A recipe command line that cannot work."""


class TrainingDiverged(RecipeConfigError):
    """Training produced non-finite losses or weights; nothing non-finite was checkpointed."""


class _Tagged(str):
    """A YAML value written with a tag (``!ref <x>``, ``!apply:f {...}``, ``!PLACEHOLDER``), as its source text."""


class _TagTolerantLoader(pyyaml.SafeLoader):
    """Plain YAML loader that reads any ``!tag`` value as a ``_Tagged`` string instead of failing."""


def _tagged_source(loader, suffix, node):
    start, end = node.start_mark, node.end_mark
    text = start.buffer[start.index:end.index].strip() if start.buffer is not None else ""
    return _Tagged(text if text.startswith("!") else f"!{suffix} {text}".strip())


_TagTolerantLoader.add_multi_constructor("!", _tagged_source)
# YAML 1.2 floats, as HyperPyYAML (ruamel) reads them: ``3e-4`` and ``1e9`` are numbers, not strings
# (PyYAML's YAML 1.1 rule wants a dot in the mantissa).
_TagTolerantLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _load_yaml(text):
    return pyyaml.load(text, Loader=_TagTolerantLoader) or {}


def yaml_defaults(path):
    """Top-level keys of a recipe YAML with their plain default values (tagged values as their source text)."""
    data = _load_yaml(Path(path).read_text())
    return {k: v for k, v in data.items() if not str(k).startswith("__")}


def parse_overrides(overrides):
    """SpeechBrain's override string (``key: value`` lines) or a dict -> dict.

    Tagged values (``!apply:...``, ``!ref <x>``) are kept as strings; they
    are HyperPyYAML's to resolve.
    """
    if isinstance(overrides, dict):
        return dict(overrides)
    return dict(_load_yaml(overrides or ""))


def check_overrides(hparams_file, overrides, example_hint=None):
    """Refuse, before anything is loaded, overrides that cannot work.

    Checks, each failing with one line naming the key and the fix: a key the
    YAML does not have (with the closest known key), a value of the wrong
    type (against the YAML default), and a required ``!PLACEHOLDER`` left
    empty.

    Arguments:
        hparams_file: the recipe YAML.
        overrides: the override YAML string from ``speechbrain.parse_arguments``
            (or a dict).
        example_hint: text appended to the placeholder error (e.g. how to run
            the mini setup instead).

    Returns:
        dict of the parsed overrides.
    """
    raw = yaml_defaults(hparams_file)
    given = parse_overrides(overrides)
    for key in given:
        if key not in raw:
            close = difflib.get_close_matches(str(key), list(raw), n=1)
            hint = f"did you mean --{close[0]}? " if close else ""
            raise RecipeConfigError(f"unknown override --{key}; {hint}keys of {Path(hparams_file).name}: "
                                    f"{', '.join(raw)}")
    for key, value in given.items():
        default = raw[key]
        if isinstance(default, _Tagged) or isinstance(value, _Tagged) or default is None or value is None:
            continue
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(default, bool) == isinstance(value, bool)
        elif isinstance(default, NUMBER):
            ok = isinstance(value, NUMBER) and not (isinstance(default, int) and isinstance(value, float)
                                                    and not value.is_integer())
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise RecipeConfigError(
                f"--{key}={value!r} is a {type(value).__name__} but {key} takes a "
                f"{type(default).__name__} (default: {default!r}); pass e.g. --{key}={default!r}")
    missing = [k for k, v in raw.items() if v == "!PLACEHOLDER" and k not in given]
    if missing:
        flags = " ".join(f"--{k}=..." for k in missing)
        hint = f"; {example_hint}" if example_hint else ""
        raise RecipeConfigError(f"{Path(hparams_file).name} needs {', '.join(missing)}: pass {flags}{hint}")
    return given


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


#: settings that shape a run's model and its checkpoints: a run resumed from a folder must keep them
SHAPE_KEYS = ("sample_rate", "n_mels", "encoder_name", "encoder_source", "freeze_encoder", "lm_name", "lm_source",
              "freeze_lm", "reduction_factor", "prenet_bottleneck", "prenet_output_norm", "postnet_hidden",
              "postnet_name", "frame_positions", "intermediate_text", "normalize_frames", "interleave_phonemes",
              "phone_context", "phoneme_list", "stop_head")


def check_resume_settings(output_folder, save_folder, hparams_file, overrides_yaml):
    """Refuse (one line, before anything is written) to resume checkpoints made with other model settings.

    Compares the :data:`SHAPE_KEYS` of the folder's ``hyperparams.yaml`` (the
    run that wrote the checkpoints) with this run's resolved settings, so the
    previous ``hyperparams.yaml`` is kept and the error names every changed
    setting instead of a traceback of mismatched tensors.
    """
    from hyperpyyaml import resolve_references

    previous = Path(output_folder) / "hyperparams.yaml"
    if not previous.is_file() or not any(Path(save_folder).glob("CKPT*")):
        return
    with open(hparams_file) as fin:
        now = yaml_defaults_text(resolve_references(fin, overrides_yaml).getvalue())
    before = yaml_defaults(previous)
    changed = [f"{key}: {before[key]!r} -> {now[key]!r}" for key in SHAPE_KEYS
               if key in before and key in now and before[key] != now[key]]
    if changed:
        raise RecipeConfigError(f"{output_folder} holds checkpoints of a run with other model settings "
                                f"({'; '.join(changed)}); rerun with that run's values to resume it, or choose "
                                f"another --output_folder")


def yaml_defaults_text(text):
    """:func:`yaml_defaults` of YAML text."""
    data = _load_yaml(text)
    return {k: v for k, v in data.items() if not str(k).startswith("__")}


#: the held lock of this process's run folder (a FileLock is released when it is garbage-collected)
_RUN_LOCKS = {}


def lock_run_folder(folder, key="output_folder"):
    """One run per output folder: hold ``<folder>/.run.lock`` for the life of this process.

    A second run on the same folder stops at once with one line naming the
    running process (from ``<folder>/run.pid``). The lock is an OS file lock
    (``filelock``), so the lock of a killed run is released with its process
    and the next run takes it over.

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
        raise RecipeConfigError(f"--{key}={folder} is in use by a running training run ({owner}); wait for it "
                                f"to end or choose another --{key}") from None
    (folder / "run.pid").write_text(f"pid {os.getpid()} on {os.uname().nodename}, started "
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


BASE_KEY = "__base__"
#: a layer's block of keys its base does not have (a setup of its own, e.g. the mini recipe's pre-training)
ADD_KEY = "__add__"


def resolve_base(hparams_file, overrides):
    """Follow ``__base__: other.yaml`` chains (ablation files of a few lines, setups built on another).

    A layer names its base and the keys it changes; a setup that needs keys
    the base does not have lists them under ``__add__``::

        __base__: spectron.yaml
        experiment: spectron_no_ce
        w_ce: 0.0
        __add__:
            pretrained_folder: !ref <data_folder>/pretrained

    A changed key must exist in the base (a misspelling is named by
    :func:`check_overrides`); an added key must not (one line names it).

    Returns:
        ``(yaml path, overrides dict)``: the base file (or, when a layer adds
        keys, a copy of it with the added blocks appended, named like the
        first file) and one override dict: the layers' keys, then the command
        line's (which win).
    """
    top = Path(hparams_file)
    path, layers, additions = _read_chain(top)
    merged = {}
    for layer in reversed(layers):
        merged.update(layer)
    merged.update(parse_overrides(overrides))
    if not additions:
        return str(path), merged
    text = (f"# {top.name} resolved: {path.name} with the keys {top.name}'s layers add (at the end);\n"
            f"# the values they change are applied over it as overrides\n") + path.read_text()
    known = set(yaml_defaults(path))
    for layer_path, added in reversed(additions):  # the base's own layer first
        for key in _load_yaml(added):
            if key in known:
                raise RecipeConfigError(f"{layer_path.name} adds {key} under {ADD_KEY} but its base already has "
                                        f"it; set {key} at the top level of {layer_path.name} instead")
            known.add(key)
        text = text.rstrip("\n") + f"\n\n# ---- keys added by {layer_path.name} ({ADD_KEY}) ----\n" + added
    return _write_resolved(top.name, text), merged


def declared_keys(hparams_file):
    """Every top-level key a recipe YAML defines: its base's, its layers' and the ones they add (nothing written)."""
    path, layers, additions = _read_chain(Path(hparams_file))
    keys = set(yaml_defaults(path))
    for layer in layers:
        keys |= set(layer)
    for _, added in additions:
        keys |= set(_load_yaml(added))
    return keys


def _read_chain(path):
    """``(base path, [layer keys], [(layer path, added text)])`` of a ``__base__`` chain, top layer first."""
    layers, additions, seen = [], [], set()
    while True:
        if path.resolve() in seen:
            raise RecipeConfigError(f"{path} is part of a {BASE_KEY} cycle")
        seen.add(path.resolve())
        text = path.read_text()
        data = _load_yaml(text) if _has_base(text) else None
        if not data:
            return path, layers, additions
        layers.append({k: v for k, v in data.items() if k not in (BASE_KEY, ADD_KEY)})
        if data.get(ADD_KEY):
            additions.append((path, _added_text(text)))
        base = path.parent / data[BASE_KEY]
        if not base.is_file():
            raise RecipeConfigError(f"{path} names {BASE_KEY}: {data[BASE_KEY]} but {base} does not exist")
        path = base


def _block_span(lines, key):
    """``(start, end)`` lines of a top-level key and its indented block (trailing blank lines excluded), or None."""
    start = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(key)}\s*:", line)), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][:1] in (" ", "\t")):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start, end


def _added_text(text):
    """The ``__add__:`` block of a layer file's text as top-level YAML text (tags and comments kept)."""
    lines = text.splitlines()
    start, end = _block_span(lines, ADD_KEY)
    body = lines[start + 1:end]
    indent = min((len(line) - len(line.lstrip()) for line in body if line.strip()), default=0)
    return "\n".join(line[indent:] for line in body).strip("\n") + "\n"


def _write_resolved(name, text):
    """Write a resolved recipe YAML (named like the file it came from) to a fresh temporary folder; its path."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="spectron_kit_yaml_")) / name
    path.write_text(text)
    return str(path)


def replace_blocks(hparams_file, overrides):
    """Let a component block given in an ablation file replace the base file's block.

    HyperPyYAML merges an override into the value it overrides and refuses
    one of another shape (a base ``spec: !ref <feature_spec>`` against an
    ablation's ``spec: {n_mels: 64}``). A tagged block (``vocoder:
    !name:spectron_kit.build`` with its indented keys) in an ablation file
    means "use this block instead": it is written over the base's block in a
    copy of the base YAML (in a temporary folder), and the other overrides
    stay overrides.

    Returns:
        ``(yaml path to load, remaining overrides dict)``; the original path
        when there is no block to replace.
    """
    blocks = {k: v for k, v in overrides.items() if isinstance(v, _Tagged) and "\n" in v}
    if not blocks:
        return str(hparams_file), overrides
    lines = Path(hparams_file).read_text().splitlines()
    for key, value in blocks.items():
        span = _block_span(lines, key)
        if span is None:
            raise RecipeConfigError(f"{key}: a block for a key {Path(hparams_file).name} does not have; "
                                    "check the key's spelling")
        lines[span[0]:span[1]] = f"{key}: {value}".splitlines()
    merged = _write_resolved(Path(hparams_file).name, "\n".join(lines) + "\n")
    return merged, {k: v for k, v in overrides.items() if k not in blocks}


def overrides_to_yaml(overrides):
    """An override dict (from :func:`parse_overrides` / :func:`resolve_base`) -> the YAML string
    HyperPyYAML takes, with tagged values (``!apply:...``) written back as they were given."""
    lines = []
    for key, value in overrides.items():
        if isinstance(value, _Tagged):
            lines.append(f"{key}: {value}")
        else:
            lines.append(pyyaml.safe_dump({key: value}, default_flow_style=True, width=10 ** 6).strip()[1:-1])
    return "\n".join(lines)


def _has_base(text):
    return any(line.startswith(BASE_KEY + ":") for line in text.splitlines())


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


@register_checkpoint_hooks
class TrainingClock:
    """Wall-clock seconds spent training, kept across resumed runs (a checkpoint recoverable).

    ``start()`` begins a timed span and ``minutes()`` adds the seconds of every
    span so far; as a recoverable of SpeechBrain's ``Checkpointer`` the total
    is saved and restored, so a run killed and resumed reports the training
    time it really took.

    Example:
        >>> clock = TrainingClock()
        >>> clock.start(); clock.minutes() >= 0
        True
    """

    def __init__(self):
        self.seconds = 0.0
        self._since = None

    def start(self):
        """Start (or restart) counting."""
        self._since = time.monotonic()

    def total_seconds(self):
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.seconds + running

    def minutes(self):
        return self.total_seconds() / 60.0

    @mark_as_saver
    def save(self, path):
        if if_main_process():  # SpeechBrain calls save hooks in every process
            Path(path).write_text(json.dumps({"seconds": self.total_seconds()}))

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        self.seconds = float(json.loads(Path(path).read_text())["seconds"])
        if self._since is not None:
            self._since = time.monotonic()


@register_checkpoint_hooks
class RandomState:
    """The python, numpy and torch random generators as a checkpoint recoverable.

    Resuming from a checkpoint restores them, so dropout masks, noise and
    sampling after the resume are the ones an uninterrupted run would draw.

    Example:
        >>> import tempfile, torch
        >>> state = RandomState(); path = Path(tempfile.mkdtemp()) / "rng.ckpt"
        >>> state.save(path); a = torch.rand(2); state.load(path); torch.equal(a, torch.rand(2))
        True
    """

    @mark_as_saver
    def save(self, path):
        import random

        import numpy as np
        import torch

        if not if_main_process():  # processes of a DDP run draw the same numbers (one seed): one file
            return
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        import random

        import numpy as np
        import torch

        state = torch.load(path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_problem(folder, recoverables):
    """Why a SpeechBrain checkpoint folder cannot be loaded (None when it can).

    Arguments:
        folder: a ``CKPT+...`` folder.
        recoverables: the checkpointer's ``{name: object}``.

    Returns:
        str or None: an unreadable ``CKPT.yaml``, a missing or empty file, or a
        torch file that does not load (a run killed while writing it).
    """
    import torch

    folder = Path(folder)
    try:
        meta = pyyaml.safe_load((folder / "CKPT.yaml").read_text())
    except (OSError, pyyaml.YAMLError) as err:
        return f"CKPT.yaml does not read ({type(err).__name__})"
    if not isinstance(meta, dict):
        return "CKPT.yaml is empty"
    for name, obj in recoverables.items():
        path = folder / f"{name}.ckpt"
        if not path.is_file():
            if name != "model":  # saved only mid-epoch (data loader), or added by a later version (rng):
                continue         # the checkpointer loads what is there (allow_partial_load)
            return f"{path.name} is missing"
        if path.stat().st_size == 0:
            return f"{path.name} is empty"
        if isinstance(obj, (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
            try:
                torch.load(path, map_location="cpu", weights_only=False)
            except Exception as err:  # noqa: BLE001 - any failure to read means the file is unusable
                return f"{path.name} does not load ({type(err).__name__})"
    return None


def set_aside_broken_checkpoints(checkpointer, log=None):
    """Rename checkpoints that cannot be loaded to ``BROKEN-<name>`` so recovery uses the previous one.

    Nothing is deleted: the folder stays next to the good ones for inspection.

    Arguments:
        checkpointer: a ``speechbrain.utils.checkpoints.Checkpointer``.
        log: ``print``-like function for the warnings (default: the logging warning).

    Returns:
        list of the renamed folders.
    """
    import logging

    warn = log or logging.getLogger(__name__).warning
    root = Path(checkpointer.checkpoints_dir)
    moved = []
    for folder in sorted(root.glob("CKPT+*")) if root.is_dir() else ():
        if not folder.is_dir():
            continue
        problem = checkpoint_problem(folder, checkpointer.recoverables)
        if problem:
            target = folder.with_name("BROKEN-" + folder.name)
            folder.rename(target)
            warn(f"checkpoint {folder} cannot be loaded ({problem}); set aside as {target.name}, "
                 "resuming from the previous one")
            moved.append(target)
    return moved


def nonfinite_weights(module):
    """Names of the parameters and buffers of ``module`` holding NaN or infinity."""
    import torch

    named = list(module.named_parameters()) + list(module.named_buffers())
    return [name for name, value in named if value.is_floating_point() and not torch.isfinite(value).all()]
