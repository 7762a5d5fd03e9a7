"""Spectron training losses (SPECTRON.md section 3).

Loss functions, one per quantity:

- ``transcript_cross_entropy``: L_CE over the transcript tokens.
- ``spectrogram_loss``: L_s = L_1+2(X, X^) over valid frames.
- ``time_derivative_loss``, ``frequency_derivative_loss``: L_t and L_f, L_1+2
  of finite differences along time and frequency, computed only where every
  frame involved is valid.
- ``stop_gate_loss``: optional Tacotron-style stop gate (binary cross-entropy).
- ``guided_attention_loss``: attention of chosen heads from frame steps to the
  token being spoken (an addition to the paper, default off).
- ``flux_loss``: bounded reward for moving away from the previous frame
  (MELLE's spectrogram flux; an addition to the paper, default off).

The objective is a table of *terms*: each term is a ``loss`` component
registered under its name (``ce``, ``spec``, ``freq_deriv``, ``time_deriv``,
``stop``, ``guided_attention``, ``flux``; plugins add more) that reads what it
needs from the model's outputs dict. ``SpectronLoss`` holds the table
``{term: weight}`` and returns the weighted total and every term unweighted.
Adding a term is one registered class and one YAML line.

Every loss casts its inputs to at least float32 before any arithmetic, so
half/bfloat16 inputs (mixed precision) give float32 results. Padding (frames
at or past ``lengths``, tokens equal to ``ignore_index``) never changes a
value or a gradient, even when it holds NaN or inf.

Example:
    >>> import torch
    >>> from spectron_kit.losses import SpectronLoss
    >>> loss = SpectronLoss({"ce": 1.0, "spec": 1.0, "freq_deriv": 1.0, "time_deriv": 1.0})
    >>> out = loss({"text_logits": torch.zeros(2, 3, 5), "text_targets": torch.tensor([[1, 2, -100], [0, 4, 3]]),
    ...             "pred_frames": torch.zeros(2, 6, 4), "target_frames": torch.zeros(2, 6, 4),
    ...             "frame_lens": torch.tensor([6, 4])})
    >>> sorted(out)
    ['ce', 'freq_deriv', 'loss', 'spec', 'time_deriv']
    >>> round(out["ce"].item(), 4)  # log(5): uniform logits over 5 tokens
    1.6094
"""
import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from spectron_kit.hookspecs import hookimpl

__all__ = [
    "l1_l2",
    "finite_difference",
    "difference_mask",
    "lengths_to_mask",
    "spectrogram_loss",
    "time_derivative_loss",
    "frequency_derivative_loss",
    "transcript_cross_entropy",
    "stop_gate_loss",
    "guided_attention_loss",
    "flux_loss",
    "LossTerm",
    "SpectronLoss",
    "PAPER_TERMS",
]

#: the paper's objective (SPECTRON.md section 3), all weights 1, plus the stop gate
#: (which only applies to models with a stop head)
PAPER_TERMS = {"ce": 1.0, "spec": 1.0, "freq_deriv": 1.0, "time_deriv": 1.0, "stop": 1.0}


# -- helpers -----------------------------------------------------------------
def _compute_dtype(dtype):
    """float32 for half/bfloat16/float32 (and integer) inputs, float64 kept."""
    if dtype == torch.float64:
        return torch.float64
    return torch.float32


def _upcast(x):
    return x.to(_compute_dtype(x.dtype))


def _no_autocast(device):
    """Context that turns autocast off on ``device`` (losses run in float32)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        return contextlib.nullcontext()


def _shape(x):
    return list(x.shape)


def _zero(device):
    return torch.zeros((), dtype=torch.float32, device=device)


def _check_lengths(lengths, batch, size, what, ref_name, ref_shape, device):
    """``lengths`` as a long tensor [batch] on ``device`` with 0 <= value <= size."""
    if lengths is None:
        raise ValueError(f"{what} is None; pass a long tensor [B] of valid counts per item")
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"{what} has dtype {lengths.dtype}; pass integer counts (torch.long)")
    lengths = lengths.long()
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{what} has shape {_shape(lengths)} but {ref_name} has shape "
                         f"{ref_shape}; pass one length per batch item, shape [{batch}]")
    if lengths.numel():
        low, high = int(lengths.min()), int(lengths.max())
        if low < 0 or high > size:
            bad = low if low < 0 else high
            raise ValueError(f"{what} contains {bad}, outside [0, {size}] for {ref_name} of "
                             f"shape {ref_shape}; lengths count the valid positions per item")
    return lengths


def lengths_to_mask(lengths, size):
    """Boolean mask [B, size], True where position < length (right padding).

    Arguments:
        lengths: integer tensor [B].
        size: number of positions.

    Returns:
        bool tensor [B, size].

    Example:
        >>> lengths_to_mask(torch.tensor([2, 0, 3]), 3).int().tolist()
        [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    """
    lengths = torch.as_tensor(lengths)
    positions = torch.arange(size, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(-1)


def l1_l2(a, b, mask=None):
    """L_1+2(a, b): mean ``|a - b|`` plus mean ``(a - b)^2`` over the valid elements.

    Computed in (at least) float32 whatever the input dtype. Invalid elements
    never reach the arithmetic, so NaN/inf there changes neither the value nor
    the gradient. With no valid element at all the result is 0.0.

    Arguments:
        a, b: tensors of the same shape.
        mask: optional boolean tensor broadcastable to ``a`` (True = valid);
            None means every element is valid.

    Returns:
        scalar tensor (float32, or float64 for float64 inputs).

    Example:
        >>> a = torch.tensor([1.0, 2.0, 3.0])
        >>> l1_l2(a, torch.zeros(3), torch.tensor([True, True, False]))
        tensor(4.)
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"l1_l2 takes tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"l1_l2: shapes differ, a {_shape(a)} vs b {_shape(b)}; "
                         "pass tensors of the same shape")
    dtype = torch.promote_types(_compute_dtype(a.dtype), _compute_dtype(b.dtype))
    with _no_autocast(a.device):
        diff = a.to(dtype) - b.to(dtype)
        if mask is None:
            if diff.numel() == 0:
                return diff.sum()
            return diff.abs().mean() + diff.square().mean()
        if mask.dtype != torch.bool:
            raise TypeError(f"l1_l2: mask has dtype {mask.dtype}; pass a boolean mask "
                            "(e.g. mask.bool())")
        try:
            full = torch.broadcast_shapes(mask.shape, diff.shape)
        except RuntimeError:
            full = None
        if full != diff.shape:
            raise ValueError(f"l1_l2: mask of shape {_shape(mask)} does not broadcast to "
                             f"a's shape {_shape(a)}; give the mask a's shape or size-1 axes")
        mask = mask.to(diff.device)
        diff = torch.where(mask, diff, diff.new_zeros(()))
        count = mask.expand(diff.shape).sum().clamp(min=1).to(dtype)
        return (diff.abs().sum() + diff.square().sum()) / count


def finite_difference(x, order=1, dim=-1):
    """k-th order forward difference along ``dim``: D^1 z[i] = z[i+1] - z[i].

    D^k is D^1 applied k times, so the result is ``order`` shorter along
    ``dim`` (empty when the axis has ``order`` or fewer entries). Half and
    bfloat16 inputs are differenced in float32.

    Arguments:
        x: tensor.
        order: k >= 0 (0 returns x, upcast).
        dim: axis to difference along.

    Returns:
        tensor like ``x`` with ``x.shape[dim] - order`` entries along ``dim``.

    Example:
        >>> finite_difference(torch.tensor([1.0, 4.0, 9.0, 16.0]), order=2)
        tensor([2., 2.])
    """
    order = _check_order(order, "order")
    x = _upcast(x) if x.is_floating_point() else x
    for _ in range(order):
        n = x.shape[dim]
        if n == 0:
            break
        x = x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)
    return x


def difference_mask(mask, order=1, dim=-1):
    """Validity of ``finite_difference(x, order, dim)``: position i is valid iff
    positions i..i+order of ``mask`` are all valid.

    Arguments:
        mask: boolean tensor (True = valid), e.g. from ``lengths_to_mask``.
        order: k >= 0.
        dim: axis the difference is taken along.

    Returns:
        bool tensor ``order`` shorter than ``mask`` along ``dim``.

    Example:
        >>> m = lengths_to_mask(torch.tensor([4, 2]), 4)
        >>> difference_mask(m, order=2, dim=1).int().tolist()
        [[1, 1], [0, 0]]
    """
    order = _check_order(order, "order")
    if mask.dtype != torch.bool:
        raise TypeError(f"difference_mask: mask has dtype {mask.dtype}; pass a boolean mask")
    for _ in range(order):
        n = mask.shape[dim]
        if n == 0:
            break
        mask = mask.narrow(dim, 1, n - 1) & mask.narrow(dim, 0, n - 1)
    return mask


def _check_order(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is not a valid difference order; pass an int >= 0")
    return value


def _check_frames(pred, target, where):
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{where}: {name} is {type(x).__name__}; pass a tensor [B, T, F]")
    if pred.dim() != 3:
        raise ValueError(f"{where}: pred has shape {_shape(pred)}; expected [B, T, F] "
                         "(unfold a reduction factor r into T before the loss)")
    if pred.shape != target.shape:
        raise ValueError(f"{where}: pred shape {_shape(pred)} differs from target shape "
                         f"{_shape(target)}; pass frames of the same shape")


# -- components --------------------------------------------------------------
# -- loss functions: one per quantity (the terms below apply them to the model's outputs) -----------------------
def spectrogram_loss(pred, target, lengths):
    """L_s: L_1+2(target, pred) over frames ``t < lengths[b]`` (float32 scalar; 0.0 when no frame is valid).

    Arguments:
        pred: predicted frames [B, T, F].
        target: reference frames [B, T, F].
        lengths: valid frames per item, long [B].

    Example:
        >>> pred, target = torch.ones(2, 3, 4), torch.zeros(2, 3, 4)
        >>> target[1, 2] = float("nan")  # padding of item 1
        >>> spectrogram_loss(pred, target, torch.tensor([3, 2]))
        tensor(2.)
    """
    mask = _frame_mask(pred, target, lengths, "spectrogram_loss").unsqueeze(-1)
    return l1_l2(target, pred, mask)


def time_derivative_loss(pred, target, lengths, orders=2):
    """L_t: ``sum_{k=1..orders} L_1+2(D_time^k X, D_time^k X^)``, a difference position used only when all
    k+1 frames it spans are valid (an order with no valid position adds 0.0; ``orders=0``: 0.0).

    Example:
        >>> pred, target = torch.zeros(1, 4, 3), torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)  # a ramp
        >>> time_derivative_loss(pred, target, torch.tensor([4])).item()  # order 1: 1 + 1; order 2: 0
        2.0
    """
    orders = _check_order(orders, "orders")
    mask = _frame_mask(pred, target, lengths, "time_derivative_loss")
    total = _zero(pred.device)
    for k in range(1, orders + 1):
        valid = difference_mask(mask, k, dim=1).unsqueeze(-1)
        total = total + l1_l2(finite_difference(target, k, dim=1), finite_difference(pred, k, dim=1), valid)
    return total


def frequency_derivative_loss(pred, target, lengths, orders=1):
    """L_f: ``sum_{k=1..orders} L_1+2(D_freq^k X, D_freq^k X^)`` over valid frames (paper: orders 1).

    Example:
        >>> pred, target = torch.zeros(1, 4, 3), torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)  # flat in frequency
        >>> frequency_derivative_loss(pred, target, torch.tensor([4])).item()
        0.0
    """
    orders = _check_order(orders, "orders")
    mask = _frame_mask(pred, target, lengths, "frequency_derivative_loss")
    total = _zero(pred.device)
    if orders >= pred.shape[-1]:
        raise ValueError(f"frequency_derivative_loss: orders={orders} needs more than {orders} frequency bins, "
                         f"but frames have shape {_shape(pred)}; lower freq_orders")
    valid = mask.unsqueeze(-1)
    for k in range(1, orders + 1):
        total = total + l1_l2(finite_difference(target, k, dim=2), finite_difference(pred, k, dim=2), valid)
    return total


def transcript_cross_entropy(logits, targets, ignore_index=-100):
    """L_CE: mean token cross-entropy (natural log, float32) over targets that are not ``ignore_index``.

    Targets are aligned with logits (``logits[:, i]`` scores ``targets[:, i]``): shift before calling.
    Ignored positions never affect value or gradient; with no counted token the result is 0.0.

    Arguments:
        logits: [B, N, V] (any float dtype; computed in float32).
        targets: long [B, N], class ids in [0, V) or ``ignore_index``.

    Example:
        >>> round(transcript_cross_entropy(torch.zeros(1, 3, 4), torch.tensor([[2, -100, 0]])).item(), 4)  # log(4)
        1.3863
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("transcript_cross_entropy takes tensors logits [B, N, V] and targets [B, N], got "
                        f"{type(logits).__name__} and {type(targets).__name__}")
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"transcript_cross_entropy: logits shape {_shape(logits)} and targets shape "
                         f"{_shape(targets)} do not match; expected [B, N, V] and [B, N]")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"transcript_cross_entropy: targets have dtype {targets.dtype}; pass token ids as torch.long")
    ignore_index = int(ignore_index)
    V = logits.shape[-1]
    targets = targets.to(logits.device).long().reshape(-1)
    counted = targets != ignore_index
    bad = counted & ((targets < 0) | (targets >= V))
    if bool(bad.any()):
        raise ValueError(f"transcript_cross_entropy: target id {int(targets[bad][0])} is outside the vocabulary "
                         f"[0, {V}) of logits {_shape(logits)}; use ids < {V} or ignore_index={ignore_index} "
                         "for skipped positions")
    index = counted.nonzero().squeeze(-1)
    with _no_autocast(logits.device):
        rows = _upcast(logits.reshape(-1, V).index_select(0, index))
        total = F.cross_entropy(rows, targets.index_select(0, index), reduction="sum")
        return total / max(index.numel(), 1)


def stop_gate_loss(stop_logits, lengths_in_groups, pos_weight=1.0):
    """L_stop: binary cross-entropy with logits of a learned stop gate, mean over valid positions.

    For an item with ``L`` valid groups (decoder steps) the target is 0 at positions 0..L-2 and 1 at
    L-1; positions >= L are ignored (0.0 when there are none).

    Arguments:
        stop_logits: [B, G] gate logits (one per decoder step / group of r frames).
        lengths_in_groups: valid groups per item, long [B] (with reduction factor r: ceil(frames / r)).
        pos_weight: weight of the positive (stop) term, > 0; raise it against the 1-in-L imbalance.

    Example:
        >>> logits = torch.tensor([[0.0, 0.0, float("nan")]])  # position 2 is padding
        >>> round(stop_gate_loss(logits, torch.tensor([2])).item(), 4)  # log(2)
        0.6931
    """
    pos_weight = _check_pos_weight(pos_weight)
    if not isinstance(stop_logits, torch.Tensor):
        raise TypeError(f"stop_gate_loss: stop_logits is {type(stop_logits).__name__}; pass a tensor [B, G]")
    if stop_logits.dim() == 3 and stop_logits.shape[-1] == 1:
        stop_logits = stop_logits.squeeze(-1)
    if stop_logits.dim() != 2:
        raise ValueError(f"stop_gate_loss: stop_logits has shape {_shape(stop_logits)}; expected [B, G]")
    B, G = stop_logits.shape
    lengths = _check_lengths(lengths_in_groups, B, G, "lengths_in_groups", "stop_logits", _shape(stop_logits),
                             stop_logits.device)
    positions = torch.arange(G, device=stop_logits.device).unsqueeze(0)
    valid = positions < lengths.unsqueeze(-1)
    with _no_autocast(stop_logits.device):
        x = _upcast(stop_logits)
        x = torch.where(valid, x, x.new_zeros(()))
        target = (positions == (lengths - 1).unsqueeze(-1)).to(x.dtype)
        weight = torch.tensor(pos_weight, dtype=x.dtype, device=x.device)
        bce = F.binary_cross_entropy_with_logits(x, target, pos_weight=weight, reduction="none")
        bce = torch.where(valid, bce, bce.new_zeros(()))
        return bce.sum() / valid.sum().clamp(min=1).to(x.dtype)


GUIDED_FORMS = ("nll", "penalty")


def guided_attention_loss(attention, layout, centres, sigma, layers=(1,), heads=(0,), form="nll"):
    """Pull chosen attention heads of frame steps onto the token being spoken (an addition to the paper).

    For frame step j of item b, ``centres[b, j]`` is the index (into the transcript tokens) of the token
    spoken then (``spectron_kit.alignment``). Key position k gets the band weight
    ``G = exp(-(k - c)^2 / (2 sigma_b^2))`` when it holds a transcript token (c = the centre's key
    position) and 0 otherwise (prefix, <sos>, frames). Two forms, averaged over heads and valid steps:

    - ``"nll"`` (default): ``-log(sum_k A_k G_k)``, the negative log of the attention mass inside the
      band. Its gradient stays large while the head still looks elsewhere, which matters in a
      decoder-only layout where a fresh head spreads its mass over hundreds of positions.
    - ``"penalty"``: ``sum_k A_k (1 - G_k)``, DC-TTS's guided attention (Tachibana et al., 2018);
      measured here to barely move such a head in hundreds of steps. SpeechBrain's
      ``GuidedAttentionLoss`` is this form for attention that lives only on the text.

    Arguments:
        attention: ``{layer: probabilities [B, H, L, L]}`` (query, key), for (at least) ``layers``.
        layout: long [B, 3]: prefix length p, token count n, frame steps g per item; tokens sit at keys
            p+1..p+n, frame step j queries from position p+n+1+j.
        centres: float [B, G]: token index per frame step (NaN = no target).
        sigma: float [B]: width of the allowed band, in tokens.
        layers, heads: the decoder layers (0-based) and the heads in each that are guided.
        form: "nll" or "penalty".

    Example:
        >>> attn = torch.zeros(1, 1, 4, 4)
        >>> attn[0, 0, 3, 1] = 1.0          # the frame step at position 3 looks at key 1
        >>> layout = torch.tensor([[0, 2, 1]])  # prefix 0, 2 tokens (keys 1-2), 1 frame step (query 3)
        >>> guided_attention_loss({0: attn}, layout, torch.tensor([[0.0]]), torch.tensor([0.5]), [0], [0]).item()
        0.0
        >>> round(guided_attention_loss({0: attn}, layout, torch.tensor([[1.0]]), torch.tensor([0.5]), [0], [0]).item(), 4)
        2.0
        >>> round(guided_attention_loss({0: attn}, layout, torch.tensor([[1.0]]), torch.tensor([0.5]), [0], [0],
        ...                             form="penalty").item(), 4)  # 1 - G
        0.8647
    """
    layers, heads, form = _check_guided(layers, heads, form)
    device = centres.device
    layout = layout.to(device)
    batch, steps = centres.shape
    p, n, g = layout[:, 0:1], layout[:, 1:2], layout[:, 2:3]
    j = torch.arange(steps, device=device)[None]
    valid = (j < g) & torch.isfinite(centres)                            # [B, G]
    total, count = _zero(device), 0
    for layer in layers:
        if layer not in attention:
            raise ValueError(f"guided_attention_loss: no attention recorded for layer {layer} "
                             f"(recorded: {sorted(attention)})")
        probs = _upcast(attention[layer])
        if max(heads) >= probs.shape[1]:
            raise ValueError(f"guided_attention_loss: head {max(heads)} does not exist; layer {layer} has "
                             f"{probs.shape[1]} heads")
        length = probs.shape[-1]
        queries = (p + n + 1 + j).clamp(max=length - 1)                  # [B, G]
        index = queries[:, None, :, None].expand(batch, len(heads), steps, length)
        rows = probs[:, heads].gather(2, index)                          # [B, H', G, L]
        keys = torch.arange(length, device=device)[None, None]           # [1, 1, L]
        text = (keys >= p[:, :, None] + 1) & (keys <= (p + n)[:, :, None])  # [B, 1, L]
        centre_key = (p + 1 + torch.nan_to_num(centres))[:, :, None]     # [B, G, 1]
        width = sigma.to(device).float().clamp(min=1e-3)[:, None, None]
        band = torch.where(text, torch.exp(-(keys - centre_key) ** 2 / (2 * width ** 2)), 0.0)  # [B, G, L]
        if form == "nll":
            mass = -torch.log((rows * band[:, None]).sum(-1).clamp(min=1e-8))       # [B, H', G]
        else:
            mass = (rows * (1.0 - band)[:, None]).sum(-1)
        mask = valid[:, None].expand_as(mass)
        total = total + torch.where(mask, mass, torch.zeros_like(mass)).sum()
        count += int(mask.sum())
    return total / max(count, 1)


def flux_loss(pred, target, lengths, bound=1.0):
    """MELLE's spectrogram flux, bounded: reward predictions that move away from the previous true frame.

    ``-mean(min(|X^_t - X_{t-1}|, bound))`` over valid frames t >= 1 and bins (negative: minimising it
    pushes each predicted frame away from the true frame before it, against the flat output of an
    unaligned model; the bound keeps the reward finite). Meng et al., MELLE (arXiv 2407.08551).

    Example:
        >>> target = torch.zeros(1, 3, 2)
        >>> pred = torch.tensor([[[0.0, 0.0], [0.5, 0.5], [3.0, 3.0]]])
        >>> flux_loss(pred, target, torch.tensor([3])).item()  # frames 1 and 2: -(0.5 + 1.0) / 2
        -0.75
    """
    bound = _check_bound(bound)
    mask = _frame_mask(pred, target, lengths, "flux_loss")
    if pred.shape[1] < 2:
        return _zero(pred.device)
    valid = difference_mask(mask, 1, dim=1).unsqueeze(-1)  # frame t and t-1 valid
    with _no_autocast(pred.device):
        distance = (_upcast(pred[:, 1:]) - _upcast(target[:, :-1])).abs().clamp(max=bound)
        distance = torch.where(valid, distance, distance.new_zeros(()))
        count = valid.expand(distance.shape).sum().clamp(min=1)
        return -distance.sum() / count


def _frame_mask(pred, target, lengths, where):
    """The checked frames' validity mask [B, T] (``where`` names the loss in the errors)."""
    _check_frames(pred, target, where)
    B, T, _ = pred.shape
    return lengths_to_mask(_check_lengths(lengths, B, T, "lengths", "pred", _shape(pred), pred.device), T)


def _check_pos_weight(value):
    value = float(value)
    if not value > 0:
        raise ValueError(f"stop gate: pos_weight={value} must be > 0")
    return value


def _check_bound(value):
    value = float(value)
    if not value > 0:
        raise ValueError(f"flux: bound={value} must be > 0")
    return value


def _check_guided(layers, heads, form):
    layers, heads = [int(i) for i in layers], [int(h) for h in heads]
    if not layers or not heads:
        raise ValueError(f"guided attention needs at least one layer and one head, got layers={layers} heads={heads}")
    if form not in GUIDED_FORMS:
        raise ValueError(f"guided attention: form={form!r}; use one of {', '.join(GUIDED_FORMS)}")
    return layers, heads, form


# -- terms: the objective as a table -------------------------------------------
class LossTerm(nn.Module):
    """One term of the Spectron objective, computed from the model's outputs dict.

    Subclasses set ``requires`` (the outputs keys they read) and implement
    ``compute(outputs)``. ``optional = True`` means the term is skipped when
    the model does not produce its inputs (the stop gate of a model without a
    stop head); otherwise a missing input is an error naming the term.
    ``attention_layers`` lists decoder layers whose attention the model must
    record for this term.

    Outputs keys a model provides (``SpectronModel.forward``): ``text_logits``
    [B, N, V], ``text_targets`` [B, N], ``pred_frames`` / ``target_frames``
    [B, T, F], ``frame_lens`` [B], ``stop_logits`` [B, G], ``stop_lengths``
    [B], ``attention`` {layer: [B, H, L, L]}, ``layout`` [B, 3],
    ``attention_centres`` [B, G], ``attention_sigma`` [B].
    """

    requires = ()
    optional = False
    attention_layers = ()

    def available(self, outputs):
        return all(outputs.get(key) is not None for key in self.requires)

    def forward(self, outputs):
        missing = [key for key in self.requires if outputs.get(key) is None]
        if missing:
            raise ValueError(f"loss term {type(self).__name__} needs {', '.join(missing)} from the model; "
                             "give the model what it needs or set this term's weight to 0")
        return self.compute(outputs)

    def compute(self, outputs):
        raise NotImplementedError


class TranscriptCETerm(LossTerm):
    """``ce``: L_CE over the transcript tokens and <eos> (:func:`transcript_cross_entropy`)."""

    requires = ("text_logits", "text_targets")

    def __init__(self, ignore_index=-100):
        super().__init__()
        self.ignore_index = int(ignore_index)

    def compute(self, outputs):
        return transcript_cross_entropy(outputs["text_logits"], outputs["text_targets"], self.ignore_index)


class TextRehearsalTerm(LossTerm):
    """``text_rehearsal``: the LM's own next-token cross-entropy on text-only batches mixed into training (so it
    keeps its language modelling while it learns speech; an addition to the paper). The recipe serves the batches
    (``rehearsal_tokens``, from ``rehearsal_text``) because the term requires them; the model writes
    ``rehearsal_logits`` / ``rehearsal_targets`` for them."""

    requires = ("rehearsal_tokens", "rehearsal_logits", "rehearsal_targets")  # the data field, the predictions

    def compute(self, outputs):
        return transcript_cross_entropy(outputs["rehearsal_logits"], outputs["rehearsal_targets"])


class SpectrogramTerm(LossTerm):
    """``spec``: L_s = L_1+2(X, X^) over valid frames (:func:`spectrogram_loss`)."""

    requires = ("pred_frames", "target_frames", "frame_lens")

    def compute(self, outputs):
        return spectrogram_loss(outputs["pred_frames"], outputs["target_frames"], outputs["frame_lens"])


class CoarseSpectrogramTerm(LossTerm):
    """``spec_coarse``: L_s of the frames a refining post-net starts from (what generation feeds back).

    Skipped for post-nets that do not refine (``coarse_frames`` is None).
    """

    requires = ("coarse_frames", "target_frames", "frame_lens")
    optional = True

    def compute(self, outputs):
        return spectrogram_loss(outputs["coarse_frames"], outputs["target_frames"], outputs["frame_lens"])


class FrequencyDerivativeTerm(LossTerm):
    """``freq_deriv``: L_f, differences of orders 1..``orders`` along frequency (paper: 1)."""

    requires = ("pred_frames", "target_frames", "frame_lens")

    def __init__(self, orders=1):
        super().__init__()
        self.orders = _check_order(orders, "freq_orders")

    def compute(self, outputs):
        return frequency_derivative_loss(outputs["pred_frames"], outputs["target_frames"], outputs["frame_lens"],
                                         self.orders)


class TimeDerivativeTerm(LossTerm):
    """``time_deriv``: L_t, differences of orders 1..``orders`` along time (default 2)."""

    requires = ("pred_frames", "target_frames", "frame_lens")

    def __init__(self, orders=2):
        super().__init__()
        self.orders = _check_order(orders, "time_orders")

    def compute(self, outputs):
        return time_derivative_loss(outputs["pred_frames"], outputs["target_frames"], outputs["frame_lens"],
                                    self.orders)


class StopTerm(LossTerm):
    """``stop``: the stop gate's binary cross-entropy; skipped for models without a stop head."""

    requires = ("stop_logits", "stop_lengths")
    optional = True

    def __init__(self, pos_weight=1.0):
        super().__init__()
        self.pos_weight = _check_pos_weight(pos_weight)

    def available(self, outputs):
        return outputs.get("stop_logits") is not None

    def compute(self, outputs):
        return stop_gate_loss(outputs["stop_logits"], outputs["stop_lengths"], self.pos_weight)


class GuidedAttentionTerm(LossTerm):
    """``guided_attention``: :func:`guided_attention_loss`; the model records ``layers``."""

    requires = ("attention", "layout", "attention_centres", "attention_sigma")

    def __init__(self, layers=(1,), heads=(0,), form="nll"):
        super().__init__()
        self.layers, self.heads, self.form = _check_guided(layers, heads, form)
        self.attention_layers = tuple(self.layers)

    def compute(self, outputs):
        return guided_attention_loss(outputs["attention"], outputs["layout"], outputs["attention_centres"],
                                     outputs["attention_sigma"], self.layers, self.heads, self.form)


class FluxTerm(LossTerm):
    """``flux``: :func:`flux_loss`."""

    requires = ("pred_frames", "target_frames", "frame_lens")

    def __init__(self, bound=1.0):
        super().__init__()
        self.bound = _check_bound(bound)

    def compute(self, outputs):
        return flux_loss(outputs["pred_frames"], outputs["target_frames"], outputs["frame_lens"], self.bound)


class PhonemeCETerm(LossTerm):
    """``phone_ce``: cross-entropy of the phoneme tokens of an interleaved speech section (addition).

    Skipped for models that do not interleave phonemes (``interleave_phonemes``).
    """

    requires = ("phone_logits", "phone_targets")
    optional = True

    def compute(self, outputs):
        logits, targets = outputs["phone_logits"], outputs["phone_targets"]
        if not (targets != -100).any():
            return _zero(logits.device)
        with _no_autocast(logits.device):
            return nn.functional.cross_entropy(_upcast(logits).flatten(0, 1), targets.flatten(), ignore_index=-100)


class PhonemeGateTerm(LossTerm):
    """``phone_gate``: binary cross-entropy of "a phoneme comes next" at every interleaved speech step (addition).

    The gate sets each phoneme's duration; skipped for models that do not interleave phonemes.
    """

    requires = ("gate_logits", "gate_targets")
    optional = True

    def compute(self, outputs):
        logits, targets = outputs["gate_logits"], outputs["gate_targets"]
        valid = targets >= 0
        if not valid.any():
            return _zero(logits.device)
        with _no_autocast(logits.device):
            return nn.functional.binary_cross_entropy_with_logits(_upcast(logits)[valid], targets[valid].float())


def _check_weight(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"SpectronLoss: the weight of {name!r} is {value!r}, not a number; "
                        "pass a float >= 0") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"SpectronLoss: the weight of {name!r} is {value}; use a finite number >= 0 "
                         "(0 switches the term off)")
    return value


class SpectronLoss(nn.Module):
    """The Spectron objective as a table: ``sum_term weight * term(outputs)``.

    Each term is the ``loss`` component registered under its name, built with
    its ``options``. A term of weight 0 is neither built nor computed; the
    returned dict holds ``"loss"`` (the weighted total, to backpropagate) and
    every computed term UNWEIGHTED, for logging, in table order. All values
    are float32.

    Arguments:
        terms: ``{name: weight}`` (default :data:`PAPER_TERMS`, the paper's
            objective: ce, spec, freq_deriv, time_deriv, all 1, and the stop
            gate for models with a stop head).
        options: ``{name: {argument: value}}`` for the terms' constructors,
            e.g. ``{"time_deriv": {"orders": 2}}``; options of terms that are
            off or absent are ignored.

    Example:
        >>> loss = SpectronLoss({"spec": 1.0, "ce": 0.0})
        >>> out = loss({"pred_frames": torch.ones(1, 3, 2), "target_frames": torch.zeros(1, 3, 2),
        ...             "frame_lens": torch.tensor([3])})
        >>> out["loss"], out["spec"], "ce" in out
        (tensor(2.), tensor(2.), False)
    """

    def __init__(self, terms=None, options=None):
        super().__init__()
        from spectron_kit.registry import get_registry

        terms = dict(PAPER_TERMS if terms is None else terms)
        options = {name: dict(kwargs or {}) for name, kwargs in (options or {}).items()}
        registry = get_registry()
        self.weights = {}
        self.terms = nn.ModuleDict()
        for name, weight in terms.items():
            weight = _check_weight(name, weight)
            if weight == 0:
                continue
            kwargs = options.get(name) or {}
            if not isinstance(kwargs, dict):
                raise TypeError(f"SpectronLoss: options of {name!r} must be a mapping of arguments, got {kwargs!r}")
            term = registry.build("loss", name, **kwargs)
            if not isinstance(term, LossTerm):
                raise TypeError(f"loss component {name!r} is a {type(term).__name__}, not a LossTerm: it cannot "
                                "be a term of the objective")
            self.terms[name] = term
            self.weights[name] = weight

    def extra_repr(self):
        return ", ".join(f"{name}={weight:g}" for name, weight in self.weights.items())

    @property
    def requires(self):
        """Every key some active term reads (sorted): model outputs, and data fields such as
        ``attention_centres`` that the recipe's data pipeline then provides and the model passes on."""
        return sorted({key for term in self.terms.values() for key in term.requires})

    @property
    def attention_layers(self):
        """Decoder layers whose attention some term needs (sorted)."""
        return sorted({layer for term in self.terms.values() for layer in term.attention_layers})

    def forward(self, outputs, batch=None):
        """Weighted total and unweighted terms.

        Arguments:
            outputs: the model's predictions (``SpectronModel.forward``; keys in ``LossTerm``).
            batch: the model's input batch: the data fields a term requires that the model does not
                predict (the alignments ``attention_centres``/``attention_sigma``) are read from it.

        Returns:
            dict: ``"loss"`` and one float32 scalar per computed term.
        """
        if batch is not None:
            outputs = dict(outputs)
            for key in self.requires:
                if outputs.get(key) is None and batch.get(key) is not None:
                    outputs[key] = batch[key]
        device = next((v.device for v in outputs.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
        values = {}
        total = _zero(device)
        for name, term in self.terms.items():
            if term.optional and not term.available(outputs):
                continue
            values[name] = term(outputs).float()
            total = total + self.weights[name] * values[name]
        return {"loss": total, **values}


@hookimpl
def register_losses(register):
    """Register the objective and its terms."""
    register("spectron", SpectronLoss,
             description="the objective: a table {term: weight} of the loss terms below, weighted sum")
    register("ce", TranscriptCETerm, description="L_CE: transcript + continuation token cross-entropy")
    register("spec", SpectrogramTerm, description="L_s: L1 + squared L2 between frames over valid frames")
    register("spec_coarse", CoarseSpectrogramTerm,
             description="L_s of a refining post-net's step-by-step frames (conv_residual post-net; addition)")
    register("freq_deriv", FrequencyDerivativeTerm,
             description="L_f: L1+L2 of frequency differences of orders 1..orders (paper: 1)")
    register("time_deriv", TimeDerivativeTerm,
             description="L_t: L1+L2 of time differences of orders 1..orders (default 2)")
    register("stop", StopTerm, description="stop-gate binary cross-entropy (models with a stop head)")
    register("guided_attention", GuidedAttentionTerm,
             description="attention of chosen heads from frame steps to the spoken token (addition to the paper)")
    register("phone_ce", PhonemeCETerm,
             description="cross-entropy of the interleaved phoneme tokens (interleave_phonemes; addition)")
    register("phone_gate", PhonemeGateTerm,
             description="'a phoneme comes next' gate of the interleaved speech steps (interleave_phonemes; addition)")
    register("text_rehearsal", TextRehearsalTerm,
             description="the LM's next-token cross-entropy on text-only batches of its own text (addition)")
    register("flux", FluxTerm,
             description="bounded reward for moving away from the previous true frame (MELLE; addition)")
