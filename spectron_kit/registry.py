"""Component registry filled through pluggy hooks.

Built-in components register through the same hooks as third-party plugins.
Plugins are modules published under the entry point group ``spectron_kit``.

Environment variables:

- ``SPECTRON_KIT_LOAD_PLUGINS``: comma-separated distribution or entry point
  names; when set, only these third-party plugins load ("" loads none).
- ``SPECTRON_KIT_DISABLE_PLUGINS``: comma-separated names never to load.

Example:
    >>> from spectron_kit import registry
    >>> "griffin_lim" in registry.names("vocoder")
    True
    >>> registry.build("prenet", "mlp", in_dim=8, out_dim=16).out_dim
    16
"""
import dataclasses
import difflib
import importlib
import importlib.metadata
import inspect
import logging
import os
import threading

import pluggy

from spectron_kit import hookspecs
from spectron_kit.version import __version__

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "spectron_kit"
LOAD_ENV = "SPECTRON_KIT_LOAD_PLUGINS"
DISABLE_ENV = "SPECTRON_KIT_DISABLE_PLUGINS"

#: hook name -> component kind
HOOK_KINDS = {
    "register_frontends": "frontend",
    "register_encoders": "encoder",
    "register_lms": "lm",
    "register_prenets": "prenet",
    "register_postnets": "postnet",
    "register_losses": "loss",
    "register_vocoders": "vocoder",
    "register_adapters": "adapter",
    "register_transcribers": "transcriber",
    "register_speaker_encoders": "speaker_encoder",
    "register_mos_predictors": "mos_predictor",
    "register_lm_scorers": "lm_scorer",
    "register_tts": "tts",
    "register_scorers": "scorer",
}
KINDS = tuple(HOOK_KINDS.values())

#: modules holding the built-in hook implementations
BUILTIN_MODULES = (
    "spectron_kit.features",
    "spectron_kit.encoders",
    "spectron_kit.lm",
    "spectron_kit.nets",
    "spectron_kit.losses",
    "spectron_kit.vocoders",
    "spectron_kit.adapters",
    "spectron_kit.evaluation.components",
    "spectron_kit.evaluation.ctc",
    "spectron_kit.evaluation.tts",
    "spectron_kit.evaluation.scorers",
)

BUILTIN_PROVIDER = "spectron-kit"


class RegistryError(Exception):
    """Base class of registry errors."""


class UnknownComponentError(RegistryError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0]


class PluginError(RegistryError):
    """A plugin that cannot be used (misspelled hook, bad registration)."""


@dataclasses.dataclass
class Entry:
    """One registered component."""

    kind: str
    name: str
    factory: object
    provider: str
    version: str
    description: str = ""
    status: str = "ok"


@dataclasses.dataclass
class PluginRecord:
    """One third-party plugin found through entry points."""

    distribution: str
    version: str
    entry_point: str
    hooks: list
    status: str = "ok"


@dataclasses.dataclass
class ComponentSpec:
    """How a component was built: enough to build it again."""

    kind: str
    name: str
    kwargs: dict

    def to_dict(self):
        return {"kind": self.kind, "name": self.name, "kwargs": self.kwargs}


def _split_env(var):
    value = os.environ.get(var)
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


class Registry:
    """All components known to this process, by kind and name."""

    def __init__(self, load_entry_points=True):
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._entries = {kind: {} for kind in KINDS}
        self.plugins = []  # PluginRecord for third-party plugins
        self._providers = {}  # plugin object id -> (distribution, version)
        for modname in BUILTIN_MODULES:
            self._register(importlib.import_module(modname), modname,
                           BUILTIN_PROVIDER, __version__)
        if load_entry_points:
            self._load_entry_points()
        self._collect()

    # -- plugin loading -------------------------------------------------
    def _register(self, plugin, name, distribution, version):
        self.pm.register(plugin, name=name)
        self._providers[id(plugin)] = (distribution, version)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as err:
            self.pm.unregister(plugin)
            raise PluginError(_explain_pending(name, distribution, err)) from None

    def register_plugin(self, plugin, name=None, distribution="<local>", version=""):
        """Register a plugin object (module or instance with hookimpls) now."""
        name = name or getattr(plugin, "__name__", repr(plugin))
        self._register(plugin, name, distribution, version)
        record = PluginRecord(distribution, version, name, _hook_names(plugin))
        self.plugins.append(record)
        self._collect(only=plugin, record=record)

    def _load_entry_points(self):
        only = _split_env(LOAD_ENV)
        disabled = _split_env(DISABLE_ENV) or set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "<unknown>"
            version = ep.dist.version if ep.dist else ""
            names = {dist, ep.name}
            if only is not None and not names & only:
                continue
            record = PluginRecord(dist, version, ep.name, [])
            self.plugins.append(record)
            if names & disabled:
                record.status = f"disabled by {DISABLE_ENV}"
                continue
            try:
                module = ep.load()
            except Exception as err:  # a broken plugin must not break the rest
                record.status = f"failed to import: {type(err).__name__}: {err}"
                logger.warning("plugin %s (entry point %r) failed to import and was skipped: %s: %s",
                               dist, ep.name, type(err).__name__, err)
                continue
            record.hooks = _hook_names(module)
            self._register(module, ep.name, dist, version)

    def _collect(self, only=None, record=None):
        for hook_name, kind in HOOK_KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if only is not None and impl.plugin is not only:
                    continue
                dist, version = self._providers[id(impl.plugin)]

                def register(name, factory, description="", _kind=kind, _dist=dist, _ver=version):
                    self._add(Entry(_kind, name, factory, _dist, _ver, description))

                try:
                    impl.function(register=register)
                except Exception as err:
                    msg = f"{hook_name} failed: {type(err).__name__}: {err}"
                    logger.warning("plugin %s: %s", dist, msg)
                    for rec in self.plugins:
                        if rec.distribution == dist and (record is None or rec is record):
                            rec.status = msg

    def _add(self, entry):
        if not isinstance(entry.name, str) or not entry.name:
            raise PluginError(f"{entry.provider} registered a {entry.kind} with an invalid name "
                              f"{entry.name!r}; names are non-empty strings")
        if not callable(entry.factory):
            raise PluginError(f"{entry.provider} registered {entry.kind} {entry.name!r} with a "
                              f"factory that is not callable: {entry.factory!r}")
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            logger.warning("%s %r from %s ignored: already registered by %s",
                           entry.kind, entry.name, entry.provider, existing.provider)
            return
        self._entries[entry.kind][entry.name] = entry

    # -- lookup ------------------------------------------------------------
    def names(self, kind):
        """Sorted names registered for ``kind``."""
        return sorted(self._kind(kind))

    def entries(self, kind=None):
        """All entries, or those of one kind, sorted by kind then name."""
        kinds = [kind] if kind else KINDS
        return [self._kind(k)[n] for k in kinds for n in sorted(self._kind(k))]

    def get(self, kind, name):
        """The Entry for ``kind``/``name``; the error lists the available names."""
        table = self._kind(kind)
        if name not in table:
            available = ", ".join(sorted(table)) or "(none)"
            hint = difflib.get_close_matches(str(name), table, n=1)
            hint = f" Did you mean {hint[0]!r}?" if hint else ""
            raise UnknownComponentError(
                f"no {kind} named {name!r}; available {kind} names: {available}.{hint}")
        return table[name]

    def _kind(self, kind):
        if kind not in self._entries:
            hint = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" Did you mean {hint[0]!r}?" if hint else ""
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}.{hint}")
        return self._entries[kind]

    def build(self, kind, name, **kwargs):
        """Build component ``name`` of ``kind`` with keyword arguments."""
        entry = self.get(kind, name)
        _check_arguments(entry, kwargs)
        try:
            component = entry.factory(**kwargs)
        except Exception as err:
            if entry.provider == BUILTIN_PROVIDER:
                raise
            # a third-party constructor failed: name the plugin, so the user knows whose code it is
            raise PluginError(f"{kind} {name!r} of the plugin {entry.provider} {entry.version} failed to build: "
                              f"{type(err).__name__}: {err}; see that plugin's documentation, or select another "
                              f"{kind} (SPECTRON_KIT_DISABLE_PLUGINS={entry.provider} turns it off)") from err
        try:
            component.spectron_spec = ComponentSpec(kind, name, dict(kwargs))
        except AttributeError:  # objects with __slots__ and the like
            pass
        return component


def _hook_names(plugin):
    marker = f"{ENTRY_POINT_GROUP}_impl"
    return sorted(n for n in dir(plugin) if getattr(getattr(plugin, n, None), marker, None) is not None)


def _explain_pending(name, distribution, err):
    hooks = sorted(HOOK_KINDS)
    bad = [h for h in _hook_names(err.plugin) if h not in HOOK_KINDS]
    parts = []
    for hook in bad:
        close = difflib.get_close_matches(hook, hooks, n=1)
        fix = f"rename it to {close[0]!r}" if close else f"use one of: {', '.join(hooks)}"
        parts.append(f"unknown hook {hook!r} ({fix})")
    detail = "; ".join(parts) or str(err)
    return (f"plugin {name!r} from {distribution}: {detail}. "
            f"Disable it with {DISABLE_ENV}={distribution} if you cannot fix it.")


def _check_arguments(entry, kwargs):
    try:
        signature = inspect.signature(entry.factory)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        params = [p for p, v in signature.parameters.items()
                  if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
        raise TypeError(f"{entry.kind} {entry.name!r}: {err}; it takes: "
                        f"{', '.join(params) or '(no arguments)'}") from None


_REGISTRY = None
_LOCK = threading.Lock()


def get_registry():
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    with _LOCK:
        if _REGISTRY is None:
            _REGISTRY = Registry()
        return _REGISTRY


def reset_registry():
    """Forget the loaded registry (tests, or after changing plugin env vars)."""
    global _REGISTRY
    with _LOCK:
        _REGISTRY = None


def build(kind, name, **kwargs):
    """Build a registered component: ``build("vocoder", "griffin_lim", n_iter=32)``.

    In a HyperPyYAML recipe::

        vocoder: !apply:spectron_kit.build
            kind: vocoder
            name: griffin_lim
    """
    return get_registry().build(kind, name, **kwargs)


def build_vocoder(name, spec, source=None, options=None):
    """Build the vocoder ``name`` with its own constructor arguments only.

    Arguments:
        name: registered vocoder name.
        spec: the model's ``FeatureSpec``.
        source: trained weights for a vocoder that loads them (passed as ``source`` when not None).
        options: ``{vocoder name: {argument: value}}``; only ``options[name]`` is passed, so a
            recipe can hold the arguments of several vocoders (Griffin-Lim's ``n_iter``, a
            plugin's own) and switch with ``--vocoder_name``.

    Example:
        >>> from spectron_kit.features import FeatureSpec
        >>> voc = build_vocoder("griffin_lim", FeatureSpec(n_mels=40), options={"griffin_lim": {"n_iter": 4},
        ...                                                                     "vocos": {"dim": 64}})
        >>> voc.n_iter
        4
    """
    kwargs = dict((options or {}).get(name) or {})
    if source is not None:
        kwargs["source"] = source
    return build("vocoder", name, spec=spec, **kwargs)


def build_encoder(name, source, freeze=False, spec=None, options=None):
    """Build the speech encoder ``name`` with the arguments every encoder takes, plus its own options.

    Arguments:
        name: registered encoder name.
        source, freeze, spec: passed to every encoder.
        options: ``{encoder name: {argument: value}}``; only ``options[name]`` is passed (a recipe holds
            Whisper's ``stack_frames`` beside other encoders' settings and switches with ``--encoder_name``).

    Example:
        >>> enc = build_encoder("conformer", None, options={"conformer": {"d_model": 16, "num_layers": 1,
        ...     "nhead": 2, "d_ffn": 32, "n_mels": 8}, "whisper": {"stack_frames": 3}})
        >>> enc.output_size
        16
    """
    kwargs = dict((options or {}).get(name) or {})
    return build("encoder", name, source=source, freeze=freeze, spec=spec, **kwargs)


def names(kind):
    """Registered names of one kind."""
    return get_registry().names(kind)
