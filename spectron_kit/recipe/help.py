"""``--help`` of a recipe script: its own keys (from the YAML and its comments), then the run options.

SpeechBrain's parser knows only its run options (``--device``, ``--debug``, ...); the keys a recipe
reads live in its YAML. :func:`recipe_help` lists both: every top-level key of the YAML (its
``__base__`` chain resolved and the keys its layers add), with the default the run would use and the
comment written beside it (or just above it) in the YAML, grouped by the YAML's section headers
(``# Data ----``); then the run options that apply to this script, with what ``--debug`` does here.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "r.yaml").write_text("# Training ----\\nlr: 0.001   # peak learning rate\\n")
    >>> print(recipe_keys_text(folder / "r.yaml", width=60))
    Training:
      --lr=0.001
          peak learning rate
"""
import argparse
import copy
import dataclasses
import re
import shutil
import textwrap
from pathlib import Path

import yaml as pyyaml

from spectron_kit.recipe.config import ADD_KEY, BASE_KEY, _read_chain, _Tagged, resolve_base, yaml_defaults
from spectron_kit.recipe.runtime import shown_path

_KEY_LINE = re.compile(r"^(?P<indent>[ \t]*)(?P<key>[A-Za-z_][\w.-]*)[ \t]*:(?P<rest>.*)$")
_SECTION = re.compile(r"^(?:#{3,}[ \t]*)?(?P<title>[A-Za-z][^#]*?)[ \t]*(?:-{3,}|#{3,})[ \t]*$")
# a section header: "# Data -------" or "# ##### Data #####" (a title between or before a rule)


@dataclasses.dataclass
class RecipeHelp:
    """What a recipe script says about itself in ``--help``.

    Arguments:
        prog: the command as users type it (``recipes/LibriLight/train.py``).
        description: a few lines: what the script does.
        default_yaml: the YAML whose keys are listed when the command line names none.
        debug: what ``--debug`` does in this script; None hides the option (the script ignores it).
        run_options: the SpeechBrain run options that apply (their ``dest`` names); None: all of them.
    """

    prog: str
    description: str
    default_yaml: str = None
    debug: str = None
    run_options: tuple = None

    @classmethod
    def for_script(cls, script, doc, default_yaml=None, debug=None, run_options=None):
        """The help of the script at ``script`` (its ``__file__``): ``doc`` (its ``__doc__``, without the
        authors line) as the description, paths shown relative to the working folder when inside it,
        ``default_yaml`` relative to the script's folder."""
        here = Path(script).resolve().parent
        description = "\n".join(line for line in (doc or "").strip().splitlines()
                                if not line.startswith("Authors:")).strip()
        yaml_path = str(shown_path(here / default_yaml)) if default_yaml else None
        return cls(str(shown_path(script)), description, yaml_path, debug, run_options)


def wants_help(argv):
    """True when the command line asks for help (``-h`` / ``--help`` anywhere)."""
    return any(arg in ("-h", "--help") for arg in argv)


def key_comments(text):
    """``{key: (section, comment)}`` of one YAML file's text: top-level keys and the keys of its ``__add__``
    block. The comment is the one on the key's line, else the comment lines right above it (no blank line
    between); a section is the last ``# Title ----`` header above the key."""
    found, section, pending, add_indent, in_add = {}, None, [], None, False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            header = _SECTION.match(body)
            if header and not line[:1].isspace():
                section, pending = header.group("title").strip(), []
            elif body and not set(body) <= set("#-=*"):
                pending.append(body)
            else:
                pending = []
            continue
        match = _KEY_LINE.match(line)
        indent = len(match.group("indent")) if match else -1
        if match and indent == 0:
            in_add, add_indent = match.group("key") == ADD_KEY, None
            if match.group("key") not in (BASE_KEY, ADD_KEY):
                found[match.group("key")] = (section, _inline_comment(match.group("rest")) or " ".join(pending))
        elif match and in_add and add_indent in (None, indent):
            add_indent = indent
            found[match.group("key")] = (section, _inline_comment(match.group("rest")) or " ".join(pending))
        elif not line[:1].isspace():
            in_add = False
        pending = []
    return found


def _comment_start(text):
    """Where the ``# comment`` of a YAML line starts (a ``#`` inside quotes is the value's); -1 for none."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t"):
            return i
    return -1


def _inline_comment(rest):
    """The ``# comment`` after a value."""
    start = _comment_start(rest)
    return rest[start + 1:].strip() if start >= 0 else ""


def _without_comment(line):
    """A YAML line without its ``# comment``."""
    start = _comment_start(line)
    return line[:start] if start >= 0 else line


def recipe_keys(yaml_path):
    """``[(section, key, default text, comment, set_by)]`` of a recipe YAML in the order its base declares
    them (then the keys its layers add). ``set_by`` names the layer file that changes the base's value
    (None when the base's value stands)."""
    top = Path(yaml_path)
    base, layers, _, layer_paths = _read_chain(top, with_paths=True)
    chain = [base] + layer_paths[::-1]                                   # base first, top layer last
    docs, order = {}, []
    for path in chain:
        for key, (section, comment) in key_comments(path.read_text()).items():
            old_section, old_comment = docs.get(key, (None, ""))
            if key not in docs:
                order.append(key)
            docs[key] = (old_section or section or (f"keys added by {path.name}" if path != base else None),
                         comment or old_comment)
    resolved, layer_values = resolve_base(top, {})
    values = {**yaml_defaults(resolved), **layer_values}
    set_by = {}
    for path, layer in zip(layer_paths, layers):   # top layer first: it wins
        for key in layer:
            set_by.setdefault(key, path.name)
    return [(docs[key][0], key, _value_text(values.get(key)), docs[key][1], set_by.get(key))
            for key in order if key in values]


def _value_text(value):
    """A default as the user would type it after ``--key=`` (YAML flow style; tagged values as written)."""
    if isinstance(value, _Tagged):
        if str(value).strip() == "!PLACEHOLDER":
            return "<required>"
        return " ".join(" ".join(_without_comment(line).split()) for line in str(value).splitlines()
                        if _without_comment(line).strip())
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    text = pyyaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()
    return text.removesuffix("...").strip()


def recipe_keys_text(yaml_path, width=None):
    """The keys of :func:`recipe_keys` as ``--help`` prints them: grouped by section, one option line
    (``--key=default``) and its comment wrapped below it."""
    width = width or min(100, shutil.get_terminal_size((100, 24)).columns)
    lines, last_section = [], object()
    keys = recipe_keys(yaml_path)
    for section, key, value, comment, set_by in keys:
        if section != last_section:
            if lines:
                lines.append("")
            lines.append(f"{section or 'Keys'}:")
            last_section = section
        option = f"  --{key}={value}"
        lines.append(option if len(option) <= width else option[: width - 3] + "...")
        note = " ".join(part for part in (comment, f"[set by {set_by}]" if set_by else "") if part)
        if note:
            lines.extend(textwrap.wrap(note, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)


def run_options_parser(info):
    """An ``argparse`` parser with SpeechBrain's run options that apply to this script (``info.run_options``),
    ``--debug`` described as this script uses it."""
    parser = argparse.ArgumentParser(prog=info.prog, add_help=True, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage=f"{info.prog} YAML [--key=value ...] [run options]",
                                     description=info.description)
    parser.add_argument("yaml", metavar="YAML", help="the recipe's YAML (hparams/...); its keys are listed below")
    try:
        from speechbrain.utils.run_opts import RunOptions

        source = RunOptions._create_parser()
    except (ImportError, AttributeError):  # another SpeechBrain: its own --help lists them
        return parser
    group = parser.add_argument_group("SpeechBrain run options" + (" (those this script reads)" if info.run_options
                                                                     is not None else ""))
    for action in sorted(source._actions, key=lambda a: a.dest):
        if not action.option_strings or action.dest == "help":
            continue
        if info.run_options is not None and action.dest not in info.run_options and action.dest != "debug":
            continue
        if action.dest == "debug":
            if info.debug is None:
                continue
            action = copy.copy(action)
            action.help = info.debug
        group._add_action(action)
    return parser


def recipe_help(info, argv=()):
    """The whole ``--help`` text: usage, description, run options, then the keys of the YAML the command
    line names (else ``info.default_yaml``)."""
    yaml_file = next((arg for arg in argv if not arg.startswith("-")), None) or info.default_yaml
    text = run_options_parser(info).format_help().rstrip()
    if yaml_file is None:
        return text + "\n\nName a YAML (before --help) to list its keys."
    if not Path(yaml_file).is_file():
        return text + f"\n\n{yaml_file}: no such YAML; name the recipe's YAML before --help to list its keys."
    header = (f"Recipe keys of {yaml_file}, each with the default the run uses (override any with "
              "--key=value; lists and mappings in YAML form: --key=[a, b], --key=\"{a: 1}\"):")
    return f"{text}\n\n{header}\n\n{recipe_keys_text(yaml_file)}"


def print_help_if_asked(argv, info):
    """Print :func:`recipe_help` and exit 0 when ``argv`` asks for help; otherwise do nothing."""
    if info is not None and wants_help(argv):
        print(recipe_help(info, [arg for arg in argv if arg not in ("-h", "--help")]))
        raise SystemExit(0)
