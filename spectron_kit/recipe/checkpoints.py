"""What keeps checkpoints safe: the training clock and RNG state saved with them, broken and non-finite
checkpoints set aside or refused, and the model settings a resumed run must keep."""
import json
import time
from pathlib import Path

import yaml as pyyaml
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

from spectron_kit.recipe.config import RecipeConfigError, yaml_defaults, yaml_defaults_text


#: settings that shape a run's model and its checkpoints: a run resumed from a folder must keep them
SHAPE_KEYS = ("sample_rate", "n_mels", "encoder_name", "encoder_source", "encoder_options", "freeze_encoder",
              "lm_name", "lm_source", "freeze_lm", "reduction_factor", "prenet_bottleneck", "prenet_output_norm", "postnet_hidden",
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
