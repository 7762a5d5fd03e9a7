"""Helpers shared by the recipes: checked command-line overrides and resolved configs.

SpeechBrain's ``parse_arguments`` + HyperPyYAML already refuse overrides of
unknown keys; this adds the checks users hit next: a value of the wrong type,
and a required ``!PLACEHOLDER`` left empty.
"""
import sys
from pathlib import Path

import yaml as pyyaml

NUMBER = (int, float)


class RecipeConfigError(ValueError):
    """A recipe command line that cannot work."""


def _raw_top_level(path):
    """Top-level keys of a HyperPyYAML file with their plain default values.

    Tagged values (``!ref``, ``!new:``...) map to the tag name; ``!include`` is
    followed for top-level includes.
    """
    class Tagged(str):
        pass

    class Loader(pyyaml.SafeLoader):
        pass

    def any_tag(loader, tag_suffix, node):
        return Tagged("!" + tag_suffix)

    Loader.add_multi_constructor("!", any_tag)
    text = Path(path).read_text()
    data = pyyaml.load(text, Loader=Loader) or {}
    return {k: v for k, v in data.items() if not str(k).startswith("__")}


def check_overrides(hparams_file, overrides, example_hint=None):
    """Refuse overrides with the wrong type and unfilled ``!PLACEHOLDER`` keys.

    Arguments:
        hparams_file: the recipe YAML.
        overrides: the override YAML string from ``speechbrain.parse_arguments``
            (or a dict).
        example_hint: text appended to the placeholder error (e.g. how to run
            the mini setup instead).
    """
    raw = _raw_top_level(hparams_file)
    given = pyyaml.safe_load(overrides) if isinstance(overrides, str) else (overrides or {})
    given = given or {}
    for key, value in given.items():
        if key not in raw:
            continue  # HyperPyYAML reports unknown keys itself, with the list of known ones
        default = raw[key]
        if type(default).__name__ == "Tagged" or default is None or value is None:
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
    missing = [k for k, v in raw.items() if str(v) == "!PLACEHOLDER" and k not in given]
    if missing:
        flags = " ".join(f"--{k}=..." for k in missing)
        hint = f" {example_hint}" if example_hint else ""
        raise RecipeConfigError(f"{Path(hparams_file).name} needs {', '.join(missing)}: pass {flags}.{hint}")


def exit_on_config_error(func):
    """Decorator for recipe mains: configuration errors print one line and exit 2."""
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RecipeConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyError as err:
            if "Override" in str(err):
                print(f"error: {err.args[0]}", file=sys.stderr)
                sys.exit(2)
            raise
    return wrapper


BASE_KEY = "__base__"


def resolve_base(hparams_file, overrides):
    """Follow ``__base__: other.yaml`` chains (ablation files of a few lines).

    An ablation YAML names its base and the keys it changes::

        __base__: spectron.yaml
        experiment: spectron_no_ce
        w_ce: 0.0

    Returns the base file and one override dict: the ablation's keys, then the
    command line's (which win).
    """
    path = Path(hparams_file)
    given = pyyaml.safe_load(overrides) if isinstance(overrides, str) else dict(overrides or {})
    given = given or {}
    layers, seen = [], set()
    while True:
        if path.resolve() in seen:
            raise RecipeConfigError(f"{path} is part of a {BASE_KEY} cycle")
        seen.add(path.resolve())
        data = pyyaml.safe_load(path.read_text()) if _has_base(path) else None
        if not data:
            break
        layers.append({k: v for k, v in data.items() if k != BASE_KEY})
        base = path.parent / data[BASE_KEY]
        if not base.is_file():
            raise RecipeConfigError(f"{path} names {BASE_KEY}: {data[BASE_KEY]} but {base} does not exist")
        path = base
    merged = {}
    for layer in reversed(layers):
        merged.update(layer)
    merged.update(given)
    return str(path), merged


def _has_base(path):
    return any(line.startswith(BASE_KEY + ":") for line in Path(path).read_text().splitlines())
