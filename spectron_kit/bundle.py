"""Inference bundles: the folder ``SpectronModel.save_pretrained`` writes and ``from_pretrained`` reads.

A bundle holds ``spectron_config.json`` (each component's registered kind, name and arguments, and the
model's ``SpectronConfig`` whole), the weights (``model.safetensors``), the feature spec and the files of
components that keep their own (an LM's tokenizer and config, under ``lm/``: paths inside the bundle are
written as ``@bundle/<kind>/...``). The objective is not part of it (it is the recipe's).
"""
import json
import os
from pathlib import Path

from spectron_kit.errors import one_line
from spectron_kit.jsonable import to_jsonable
from spectron_kit.registry import get_registry
from spectron_kit.version import __version__

CONFIG_FILE = "spectron_config.json"
WEIGHTS_FILE = "model.safetensors"
FEATURE_SPEC_FILE = "feature_spec.json"
BUNDLE_MARK = "@bundle/"
COMPONENTS = ("frontend", "encoder", "lm", "prenet", "postnet", "vocoder")  # the objective is the recipe's


def save_bundle(model, directory):
    """Write ``model`` (a ``SpectronModel``) as a bundle in ``directory``; returns the folder."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.for_bundle() if callable(getattr(model, "for_bundle", None)) else model  # adapter merged?
    components = {}
    for kind in COMPONENTS:
        module = getattr(model, kind)
        if module is None:
            continue
        components[kind] = _component_record(kind, module, directory)
    config = {
        "spectron_kit_version": __version__,
        "components": components,
        "model": model.config.to_dict(),
    }
    with open(directory / CONFIG_FILE, "w") as f:
        json.dump(config, f, indent=2)
    model.frontend.spec.save(directory / FEATURE_SPEC_FILE)
    save_model(model, str(directory / WEIGHTS_FILE))
    return directory


def load_bundle(model_class, source, map_location="cpu", overrides=None):
    """A ``model_class`` (``SpectronModel`` or a subclass, whose ``config_class`` reads the settings) from a
    bundle folder or hub repo id; ``overrides`` replace components or settings (see ``from_pretrained``)."""
    overrides = dict(overrides or {})
    directory = _bundle_folder(source)
    config_path = directory / CONFIG_FILE
    config = read_bundle_config(config_path)
    parts = {kind: _build_component(directory, kind, record) for kind, record in config["components"].items()
             if kind not in overrides and kind in COMPONENTS}  # older bundles also held the objective ("loss")
    settings = dict(config["model"])
    for key in list(overrides):
        if key in model_class.config_class.fields():
            settings[key] = overrides.pop(key)
    vocoder_override = overrides.pop("vocoder", None)
    parts.update(overrides)
    model = model_class(**parts, config=model_class.config_class.from_dict(settings, what=f"bundle {config_path}"))
    _load_weights(model, directory / WEIGHTS_FILE, map_location, keep_vocoder=vocoder_override is None)
    if vocoder_override is not None:
        model.frontend.spec.check_matches(vocoder_override.spec, "frontend", "vocoder")
        model.vocoder = vocoder_override
    model.to(map_location)
    model.eval()
    return model


def _bundle_folder(source):
    """The local folder of a bundle: ``source`` itself, or the hub snapshot of a repo id (one line if neither)."""
    directory = Path(str(source))
    if directory.is_dir():
        return directory
    if os.path.exists(str(source)):
        raise ValueError(f"{source} is not a directory; pass the bundle folder written by save_pretrained")
    check_bundle_source(str(source))
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source)))
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, bad id: one line for all
        raise FileNotFoundError(f"{source} is neither a local bundle folder nor a hub repo that could be "
                                f"downloaded ({one_line(err)}); pass the bundle folder written by training") from err


def read_bundle_config(config_path):
    """A bundle's ``spectron_config.json``, checked: a missing, damaged or foreign file is one line naming it."""
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path.parent} has no {CONFIG_FILE}; is it a spectron-kit bundle "
                                "(written by SpectronModel.save_pretrained)?")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}): the bundle is damaged; copy it again or "
                         "save it again with save_pretrained") from None
    missing = [key for key in ("components", "model") if not isinstance(config, dict) or key not in config]
    if missing:
        raise ValueError(f"{config_path} has no {' or '.join(repr(k) for k in missing)} entry: it is not a "
                         "spectron-kit bundle config (written by SpectronModel.save_pretrained); save it again")
    return config


def _build_component(directory, kind, record):
    """One component of a bundle, built through the registry with its files inside the bundle."""
    kwargs = _resolve_bundle_paths(record["kwargs"], directory)
    for value in record["kwargs"].values():
        if isinstance(value, str) and value.startswith(BUNDLE_MARK):
            if not (directory / value[len(BUNDLE_MARK):]).exists():
                raise FileNotFoundError(f"bundle {directory} has no {value[len(BUNDLE_MARK):]}/ (the files "
                                        f"of its {kind}); copy the whole bundle folder")
    try:
        return get_registry().build(record["kind"], record["name"], **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"bundle {directory}: its {kind} ({record['kind']} {record['name']!r}) does not "
                         f"load: {one_line(err)}; the bundle is incomplete, save it again with save_pretrained"
                         ) from err


def _load_weights(model, weights, map_location, keep_vocoder=True):
    """The bundle's weights into ``model`` (strict; without ``keep_vocoder`` the vocoder's own are skipped)."""
    from safetensors.torch import load_model

    if not weights.is_file():
        raise FileNotFoundError(f"bundle {weights.parent} has no {WEIGHTS_FILE}; save it again with "
                                "save_pretrained")
    try:
        if keep_vocoder:
            load_model(model, str(weights), strict=True, device=str(map_location))
        else:  # the bundle's own vocoder (and its weights, if it had any) is replaced
            missing, unexpected = load_model(model, str(weights), strict=False, device=str(map_location))
            unexpected = [k for k in unexpected if not k.startswith("vocoder.")]
            if missing or unexpected:
                raise RuntimeError(f"Missing key(s): {missing[:3]}; Unexpected key(s): {unexpected[:3]}")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for damaged files
        if "Missing key" in str(err) or "Unexpected key" in str(err) or "size mismatch" in str(err):
            raise
        raise ValueError(f"{weights} cannot be read ({one_line(err)[:160]}): the file is damaged or truncated; "
                         "copy the bundle again or save it again with save_pretrained") from err


def check_bundle_source(source):
    """Refuse a bundle source that names a local folder that does not exist (before anything is loaded).

    A source with one ``/`` and no leading ``.``, ``/`` or ``~`` may be a hub
    repo id (``owner/name``) and is left to the hub.
    """
    text = str(source)
    if os.path.isdir(text):
        return
    if os.path.isabs(text) or text.startswith((".", "~")) or text.count("/") != 1 or text.endswith("/"):
        raise FileNotFoundError(f"no such bundle folder: {source}; pass the folder written by training "
                                "(e.g. results/spectron_mini/1234/bundle) or a hub repo id (owner/name)")


def _component_record(kind, module, directory):
    spec = getattr(module, "spectron_spec", None)
    if spec is None:
        raise ValueError(f"the {kind} ({type(module).__name__}) was not built through the registry, so a "
                         f"bundle cannot rebuild it; build it with spectron_kit.build('{kind}', name, ...)")
    kwargs = dict(spec.kwargs)
    if hasattr(module, "bundle_kwargs"):
        subdir = directory / kind
        kwargs = module.bundle_kwargs(str(subdir))
        inside = str(subdir)
        kwargs = {k: (BUNDLE_MARK + kind + v[len(inside):] if isinstance(v, str) and v.startswith(inside) else v)
                  for k, v in kwargs.items()}
    return {"kind": spec.kind, "name": spec.name, "kwargs": to_jsonable(kwargs, where=f"{kind} argument")}


def _resolve_bundle_paths(kwargs, directory):
    return {k: (str(directory / v[len(BUNDLE_MARK):]) if isinstance(v, str) and v.startswith(BUNDLE_MARK) else v)
            for k, v in kwargs.items()}
