"""``spectron-kit new-plugin KIND NAME``: a plugin package whose tests pass out of the box.

The package is a standalone pip-installable project: ``pyproject.toml`` with
a ``spectron_kit`` entry point, one module holding a working component of the
chosen kind (a starting point to replace with your own model) and its
``register_<kinds>`` hook, a README and tests that register the module through
the same hook and check the component's contract. See docs/PLUGINS.md.
"""
import keyword
import re
from pathlib import Path

#: kind -> (hook name, import lines, component source, test body)
_TEMPLATES = {
    "vocoder": ("register_vocoders", '''\
import torch

from spectron_kit import hookimpl
from spectron_kit.features import as_spec
from spectron_kit.vocoders import GriffinLimVocoder


class {cls}(torch.nn.Module):
    """Log-mel frames -> waveform. Starts as Griffin-Lim: replace ``forward`` with your model.

    Arguments:
        spec: the FeatureSpec (or dict) of the features it inverts; it must equal the
            recipe's ``feature_spec`` (the model refuses a mismatch, naming the fields).
        n_iter: Griffin-Lim iterations of the starting implementation.
    """

    def __init__(self, spec=None, n_iter=32, **fields):
        super().__init__()
        self.spec = as_spec(spec, **fields)
        self.sample_rate = self.spec.sample_rate
        self._griffin_lim = GriffinLimVocoder(self.spec, n_iter=n_iter)

    @torch.no_grad()
    def forward(self, feats, lengths=None):
        """feats [B, T, F] (+ frame lengths [B]) -> (wav [B, S], sample lengths [B] = spec.num_samples(lengths))."""
        return self._griffin_lim(feats, lengths)
''', '''\
def test_contract(built):
    spec = {{"n_mels": 40, "n_fft": 512, "win_length": 400, "hop_length": 160}}
    vocoder = built(spec=spec, n_iter=4)
    frontend = build("frontend", "log_mel", spec=spec)
    t = torch.arange(8000) / 16000
    feats, lengths = frontend(0.3 * torch.sin(2 * torch.pi * 440 * t)[None])
    wav, wav_lengths = vocoder(feats, lengths)
    assert vocoder.spec.n_mels == 40 and vocoder.sample_rate == 16000
    assert wav_lengths.tolist() == [vocoder.spec.num_samples(int(lengths[0]))]
    assert wav.shape[1] >= int(wav_lengths[0]) and float(wav.abs().max()) > 0.01
'''),
    "prenet": ("register_prenets", '''\
import torch

from spectron_kit import hookimpl


class {cls}(torch.nn.Module):
    """Spectrogram frames [B, T, in_dim] -> LM embeddings [B, T, out_dim]. Starts as a 2-layer MLP.

    Arguments:
        in_dim: frame size times the reduction factor (given by the model).
        out_dim: the LM's embedding size (given by the model).
        hidden: hidden width.
        dropout: dropout on the hidden layer.
    """

    def __init__(self, in_dim, out_dim, hidden=256, dropout=0.0):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                                       torch.nn.Linear(hidden, out_dim))

    def forward(self, frames):
        return self.net(frames)
''', '''\
def test_contract(built):
    prenet = built(in_dim=80, out_dim=48)
    out = prenet(torch.randn(2, 7, 80))
    assert out.shape == (2, 7, 48) and prenet.in_dim == 80 and prenet.out_dim == 48
    out.sum().backward()  # trainable
    assert all(p.grad is not None for p in prenet.parameters())
'''),
    "postnet": ("register_postnets", '''\
import torch

from spectron_kit import hookimpl


class {cls}(torch.nn.Module):
    """LM hidden states [B, T, in_dim] -> spectrogram frames [B, T, out_dim]. Starts as a residual MLP.

    Arguments:
        in_dim: the LM's hidden size (given by the model).
        out_dim: frame size times the reduction factor (given by the model).
        hidden: hidden width.
    """

    def __init__(self, in_dim, out_dim, hidden=256):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.project = torch.nn.Linear(in_dim, out_dim)
        self.refine = torch.nn.Sequential(torch.nn.Linear(out_dim, hidden), torch.nn.Tanh(),
                                          torch.nn.Linear(hidden, out_dim))

    def forward(self, hidden):
        frames = self.project(hidden)
        return frames + self.refine(frames)
''', '''\
def test_contract(built):
    postnet = built(in_dim=48, out_dim=80)
    out = postnet(torch.randn(2, 7, 48))
    assert out.shape == (2, 7, 80) and postnet.in_dim == 48 and postnet.out_dim == 80
    out.sum().backward()
    assert all(p.grad is not None for p in postnet.parameters())
'''),
    "loss": ("register_losses", '''\
import torch

from spectron_kit import hookimpl
from spectron_kit.losses import LossTerm, lengths_to_mask


class {cls}(LossTerm):
    """A loss term: mean absolute frame error over valid frames. Replace ``compute`` with your term.

    It reads ``requires`` from the model's outputs dict; add it to a recipe's table with one
    line (``terms: {{..., {name}: 1.0}}``) and it is trained and logged like the built-in terms.
    """

    requires = ("pred_frames", "target_frames", "frame_lens")

    def compute(self, outputs):
        pred, target, lengths = outputs["pred_frames"], outputs["target_frames"], outputs["frame_lens"]
        mask = lengths_to_mask(lengths, pred.shape[1]).unsqueeze(-1).to(pred.dtype)
        return ((pred - target).abs() * mask).sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)
''', '''\
def test_contract(built):
    from spectron_kit.losses import SpectronLoss

    pred, target = torch.zeros(1, 4, 3), torch.ones(1, 4, 3)
    outputs = {{"pred_frames": pred, "target_frames": target, "frame_lens": torch.tensor([2])}}
    assert float(built()(outputs)) == 1.0  # frames past the length do not count
    table = SpectronLoss({{"spec": 0.0, "{name}": 2.0}})  # one line in the recipe's table
    assert float(table(outputs)["loss"]) == 2.0
'''),
}

KINDS = tuple(_TEMPLATES)


def _names(name):
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise ValueError(f"plugin name {name!r}: use lower-case letters, digits and _ (e.g. my_vocoder)")
    module = f"spectron_kit_{name}"
    cls = "".join(part.capitalize() for part in name.split("_"))
    return module, cls, f"spectron-kit-{name.replace('_', '-')}"


def new_plugin(kind, name, folder="."):
    """Write the package ``<folder>/spectron-kit-<name>/`` for a component of ``kind`` named ``name``.

    Returns:
        The package folder. An existing folder is refused (nothing is overwritten).
    """
    if kind not in _TEMPLATES:
        raise ValueError(f"kind {kind!r}: the scaffold makes {', '.join(KINDS)}; other kinds follow the same "
                         "pattern (docs/PLUGINS.md)")
    module, cls, dist = _names(name)
    root = Path(folder) / dist
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or folder (nothing was written)")
    hook, source, test = _TEMPLATES[kind]
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(_pyproject(kind, name, module, dist))
    (root / f"{module}.py").write_text(_plugin_module(kind, name, cls, hook, source))
    (root / "tests" / f"test_{name}.py").write_text(_plugin_test(kind, name, module, dist, test))
    (root / "README.md").write_text(_plugin_readme(kind, name, dist))
    return root


def _pyproject(kind, name, module, dist):
    return f'''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "spectron-kit plugin: the {kind} {name!r}"
requires-python = ">=3.10"
dependencies = ["spectron-kit"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.spectron_kit]
{name} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]
'''


def _plugin_module(kind, name, cls, hook, source):
    return f'''"""spectron-kit plugin: the {kind} ``{name}``.

Installed (``pip install -e .``), it is listed by ``spectron-kit plugins`` and built by
name: ``spectron_kit.build("{kind}", "{name}", ...)``, or from a recipe (docs/PLUGINS.md).
"""
{source.format(cls=cls, name=name)}

@hookimpl
def {hook}(register):
    register("{name}", {cls}, description="{kind} {name} (plugin)")
'''


def _plugin_test(kind, name, module, dist, test):
    return f'''"""The plugin registers through its hook and keeps the {kind} contract."""
import sys
from pathlib import Path

import pytest
import torch

from spectron_kit import build
from spectron_kit.registry import get_registry, reset_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import {module}  # noqa: E402


@pytest.fixture
def built():
    """Register the module as a plugin (as its entry point would) and build the component by name."""
    reset_registry()
    registry = get_registry()
    registry.register_plugin({module}, name="{dist}", distribution="{dist}")
    assert registry.get("{kind}", "{name}").provider == "{dist}"
    return lambda **kwargs: build("{kind}", "{name}", **kwargs)


{test.format(name=name)}'''


def _plugin_readme(kind, name, dist):
    return f'''# {dist}

A spectron-kit plugin providing the {kind} `{name}`.

```
pip install -e .                       # registers it through the spectron_kit entry point
spectron-kit plugins                   # lists {kind} / {name}
pip install pytest && pytest tests     # its contract tests
```

Select it in a recipe with `--{kind}_name={name}` where the recipe has that key, or with a
block in an ablation YAML (docs/PLUGINS.md in spectron-kit).
'''
