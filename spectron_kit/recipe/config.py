"""A recipe's configuration: the one loader (:func:`load_recipe`), checked command-line overrides, and the
small YAML dialect on top of HyperPyYAML.

The dialect is two keys and one rule, documented here and nowhere else:

- ``__base__: other.yaml``: this file is ``other.yaml`` with the keys it lists changed (ablations of a
  few lines; ``spectron_mini.yaml`` on ``spectron.yaml``). A changed key must exist in the base.
- ``__add__:``: keys the base does not have (the mini setup's own pre-training keys).
- A tagged component block (``vocoder: !name:spectron_kit.build`` with indented keys) in a layer replaces
  the base's block whole (HyperPyYAML would merge it into the base block, or refuse another shape).

Every recipe checks its command line with :func:`check_overrides` before it loads anything: an unknown
key (with the closest known one), a value of the wrong type, and a required ``!PLACEHOLDER`` left empty
each stop the run with one line naming the key.
"""
import dataclasses
import difflib
import re
from pathlib import Path

import yaml as pyyaml


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


def yaml_defaults_text(text):
    """:func:`yaml_defaults` of YAML text."""
    data = _load_yaml(text)
    return {k: v for k, v in data.items() if not str(k).startswith("__")}


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


def _read_chain(path, with_paths=False):
    """``(base path, [layer keys], [(layer path, added text)])`` of a ``__base__`` chain, top layer first;
    ``with_paths`` adds the layers' files (top first) as a fourth element."""
    layers, additions, seen, paths = [], [], set(), []
    while True:
        if path.resolve() in seen:
            raise RecipeConfigError(f"{path} is part of a {BASE_KEY} cycle")
        seen.add(path.resolve())
        text = path.read_text()
        data = _load_yaml(text) if _has_base(text) else None
        if not data:
            return (path, layers, additions, paths) if with_paths else (path, layers, additions)
        layers.append({k: v for k, v in data.items() if k not in (BASE_KEY, ADD_KEY)})
        paths.append(path)
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


@dataclasses.dataclass
class LoadedRecipe:
    """A recipe's command line and YAML, checked and loaded (:func:`load_recipe`)."""

    hparams_file: str      # the YAML HyperPyYAML loaded (the base of a ``__base__`` chain, resolved)
    run_opts: object       # SpeechBrain's run options (``--device``, ``--debug``, ...)
    overrides: str         # the override YAML applied (what ``create_experiment_directory`` records)
    typed: dict            # what the user typed on the command line
    hparams: dict


def warn_if_inside_a_recipe_folder(folder=None):
    """One warning line when a recipe runs from inside a recipe folder (``recipes/LibriLight``, as SpeechBrain's
    recipes are run): the YAMLs' relative paths (``data/``, ``results/``) would land there, beside the code,
    instead of at the repository root where the READMEs expect them. Returns the warning (None when fine)."""
    import warnings

    folder = Path(folder or Path.cwd()).resolve()
    if folder.parent.name == "recipes" and (folder / "hparams").is_dir():
        message = (f"running from {folder.parent.name}/{folder.name}: the recipe's data/ and results/ folders will "
                   f"be made here; run from the repository root ({folder.parent.parent}) as the READMEs do")
        warnings.warn(message, stacklevel=3)
        return message
    return None


def load_recipe(argv, hint=None, adjust=None, required=None, about=None):
    """The one way a recipe (train, pretrain, evaluate, the tools) reads its command line and YAML.

    Steps: SpeechBrain's ``parse_arguments`` (run options and ``--key=value``
    overrides); the ``__base__`` layers (:func:`resolve_base`; keys under
    ``__add__``); every override checked against the YAML (:func:`check_overrides`:
    unknown keys, wrong types, empty placeholders, each one line); ``adjust``;
    component blocks of ablation files (:func:`replace_blocks`); ``required``;
    ``load_hyperpyyaml``.

    Arguments:
        argv: the command line after the program name (YAML file first).
        hint: appended to the "needs ..." error of an empty placeholder.
        adjust: optional ``f(hparams_file, overrides, typed, run_opts) -> (overrides, run_opts)``
            (the training recipe's ``--debug`` sizes and distributed set-up).
        required: optional ``f(keys)`` that refuses a YAML missing keys the recipe reads.
        about: the script's :class:`spectron_kit.recipe.help.RecipeHelp`: ``-h`` / ``--help`` then prints
            the script's run options and the YAML's keys with their defaults and comments, and exits.
    Returns:
        :class:`LoadedRecipe`.
    """
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain import parse_arguments

    from spectron_kit.recipe.help import print_help_if_asked

    print_help_if_asked(list(argv), about)
    warn_if_inside_a_recipe_folder()
    hparams_file, run_opts, overrides = parse_arguments(list(argv))
    typed = parse_overrides(overrides)
    hparams_file, overrides = resolve_base(hparams_file, overrides)
    check_overrides(hparams_file, overrides, hint)
    if adjust is not None:
        overrides, run_opts = adjust(hparams_file, overrides, typed, run_opts)
    hparams_file, overrides = replace_blocks(hparams_file, overrides)
    if required is not None:
        required(set(yaml_defaults(hparams_file)) | set(overrides))  # before a !ref to a missing key fails
    text = overrides_to_yaml(overrides)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, text)
    return LoadedRecipe(hparams_file, run_opts, text, typed, hparams)
