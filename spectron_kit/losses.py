"""Spectron training losses (SPECTRON.md section 3).

- ``TranscriptCrossEntropy``: L_CE over the transcript tokens.
- ``SpectrogramLoss``: L_s = L_1+2(X, X^) over valid frames.
- ``DerivativeLoss``: L_t and L_f, L_1+2 of finite differences along time
  and frequency, computed only where every frame involved is valid.
- ``StopGateLoss``: optional Tacotron-style stop gate (binary cross-entropy).
- ``SpectronLoss``: the weighted composite
  ``w_ce L_CE + w_spec L_s + w_freq L_f + w_time L_t (+ w_stop L_stop)``.

Every loss casts its inputs to at least float32 before any arithmetic, so
half/bfloat16 inputs (mixed precision) give float32 results. Padding (frames
at or past ``lengths``, tokens equal to ``ignore_index``) never changes a
value or a gradient, even when it holds NaN or inf.

Example:
    >>> import torch
    >>> from spectron_kit.losses import SpectronLoss
    >>> loss = SpectronLoss()
    >>> out = loss(torch.zeros(2, 3, 5), torch.tensor([[1, 2, -100], [0, 4, 3]]),
    ...            torch.zeros(2, 6, 4), torch.zeros(2, 6, 4), torch.tensor([6, 4]))
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
    "SpectrogramLoss",
    "DerivativeLoss",
    "TranscriptCrossEntropy",
    "StopGateLoss",
    "SpectronLoss",
]


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
    """L_1+2(a, b): mean |a - b| plus mean (a - b)^2 over the valid elements.

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
class SpectrogramLoss(nn.Module):
    """L_s: L_1+2 between predicted and reference frames over valid frames.

    Example:
        >>> loss = SpectrogramLoss()
        >>> pred = torch.ones(2, 3, 4)
        >>> target = torch.zeros(2, 3, 4)
        >>> target[1, 2] = float("nan")  # padding of item 1
        >>> loss(pred, target, torch.tensor([3, 2]))
        tensor(2.)
    """

    def __init__(self):
        super().__init__()

    def forward(self, pred, target, lengths):
        """Scalar L_1+2(target, pred) over frames t < lengths[b].

        Arguments:
            pred: predicted frames [B, T, F].
            target: reference frames [B, T, F].
            lengths: valid frames per item, long [B].

        Returns:
            float32 scalar (0.0 when no frame is valid).
        """
        _check_frames(pred, target, "SpectrogramLoss")
        B, T, _ = pred.shape
        lengths = _check_lengths(lengths, B, T, "lengths", "pred", _shape(pred), pred.device)
        mask = lengths_to_mask(lengths, T).unsqueeze(-1)
        return l1_l2(target, pred, mask)


class DerivativeLoss(nn.Module):
    """L_t and L_f: L_1+2 of k-th order finite differences along time / frequency.

    ``time_deriv = sum_{k=1..K_t} L_1+2(D_time^k X, D_time^k X^)`` where a
    difference position is used only when all k+1 frames it spans are valid,
    and ``freq_deriv = sum_{k=1..K_f} L_1+2(D_freq^k X, D_freq^k X^)`` over
    valid frames. An item shorter than k+1 frames adds nothing to order k; an
    order with no valid position in the whole batch adds 0.0.

    Arguments:
        time_orders: K_t >= 0 (default 2; 0 switches L_t off).
        freq_orders: K_f >= 0 (default 1, the paper; 0 switches L_f off).

    Example:
        >>> loss = DerivativeLoss(time_orders=2, freq_orders=1)
        >>> pred = torch.zeros(1, 4, 3)
        >>> target = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)  # ramp in time
        >>> {k: v.item() for k, v in loss(pred, target, torch.tensor([4])).items()}
        {'time_deriv': 2.0, 'freq_deriv': 0.0}
    """

    def __init__(self, time_orders=2, freq_orders=1):
        super().__init__()
        self.time_orders = _check_order(time_orders, "time_orders")
        self.freq_orders = _check_order(freq_orders, "freq_orders")

    def extra_repr(self):
        return f"time_orders={self.time_orders}, freq_orders={self.freq_orders}"

    def _prepare(self, pred, target, lengths):
        _check_frames(pred, target, "DerivativeLoss")
        B, T, _ = pred.shape
        lengths = _check_lengths(lengths, B, T, "lengths", "pred", _shape(pred), pred.device)
        return lengths_to_mask(lengths, T)

    def time_loss(self, pred, target, lengths):
        """L_t alone (float32 scalar); arguments as in ``forward``."""
        mask = self._prepare(pred, target, lengths)
        return self._time(pred, target, mask)

    def freq_loss(self, pred, target, lengths):
        """L_f alone (float32 scalar); arguments as in ``forward``."""
        mask = self._prepare(pred, target, lengths)
        return self._freq(pred, target, mask)

    def _time(self, pred, target, mask):
        total = _zero(pred.device)
        for k in range(1, self.time_orders + 1):
            valid = difference_mask(mask, k, dim=1).unsqueeze(-1)
            total = total + l1_l2(finite_difference(target, k, dim=1),
                                  finite_difference(pred, k, dim=1), valid)
        return total

    def _freq(self, pred, target, mask):
        total = _zero(pred.device)
        n_bins = pred.shape[-1]
        if self.freq_orders >= n_bins:
            raise ValueError(f"DerivativeLoss: freq_orders={self.freq_orders} needs more than "
                             f"{self.freq_orders} frequency bins, but frames have shape "
                             f"{_shape(pred)}; lower freq_orders")
        valid = mask.unsqueeze(-1)
        for k in range(1, self.freq_orders + 1):
            total = total + l1_l2(finite_difference(target, k, dim=2),
                                  finite_difference(pred, k, dim=2), valid)
        return total

    def forward(self, pred, target, lengths):
        """Both derivative terms.

        Arguments:
            pred: predicted frames [B, T, F].
            target: reference frames [B, T, F].
            lengths: valid frames per item, long [B].

        Returns:
            dict ``{"time_deriv": L_t, "freq_deriv": L_f}`` of float32 scalars.
        """
        mask = self._prepare(pred, target, lengths)
        return {"time_deriv": self._time(pred, target, mask),
                "freq_deriv": self._freq(pred, target, mask)}


class TranscriptCrossEntropy(nn.Module):
    """L_CE: mean token cross-entropy over targets that are not ``ignore_index``.

    Targets are aligned with logits (``logits[:, i]`` scores ``targets[:, i]``):
    shift before calling. Speech-prefix and frame positions carry
    ``ignore_index``. Ignored positions never affect value or gradient; with
    no counted token the result is 0.0.

    Arguments:
        ignore_index: target value to skip (default -100).

    Example:
        >>> ce = TranscriptCrossEntropy()
        >>> logits = torch.zeros(1, 3, 4)
        >>> round(ce(logits, torch.tensor([[2, -100, 0]])).item(), 4)  # log(4)
        1.3863
    """

    def __init__(self, ignore_index=-100):
        super().__init__()
        self.ignore_index = int(ignore_index)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}"

    def forward(self, logits, targets):
        """Mean cross-entropy (natural log) over counted tokens.

        Arguments:
            logits: [B, N, V] (any float dtype; computed in float32).
            targets: long [B, N], class ids in [0, V) or ``ignore_index``.

        Returns:
            float32 scalar.
        """
        if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("TranscriptCrossEntropy takes tensors logits [B, N, V] and "
                            f"targets [B, N], got {type(logits).__name__} and "
                            f"{type(targets).__name__}")
        if logits.dim() != 3 or targets.shape != logits.shape[:2]:
            raise ValueError(f"TranscriptCrossEntropy: logits shape {_shape(logits)} and targets "
                             f"shape {_shape(targets)} do not match; expected [B, N, V] and [B, N]")
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(f"TranscriptCrossEntropy: targets have dtype {targets.dtype}; "
                            "pass token ids as torch.long")
        V = logits.shape[-1]
        targets = targets.to(logits.device).long().reshape(-1)
        counted = targets != self.ignore_index
        bad = counted & ((targets < 0) | (targets >= V))
        if bool(bad.any()):
            value = int(targets[bad][0])
            raise ValueError(f"TranscriptCrossEntropy: target id {value} is outside the "
                             f"vocabulary [0, {V}) of logits {_shape(logits)}; use ids < {V} "
                             f"or ignore_index={self.ignore_index} for skipped positions")
        index = counted.nonzero().squeeze(-1)
        with _no_autocast(logits.device):
            rows = _upcast(logits.reshape(-1, V).index_select(0, index))
            total = F.cross_entropy(rows, targets.index_select(0, index), reduction="sum")
            return total / max(index.numel(), 1)


class StopGateLoss(nn.Module):
    """L_stop: binary cross-entropy with logits for a learned stop gate.

    For an item with ``L`` valid groups (decoder steps) the target is 0 at
    positions 0..L-2 and 1 at L-1; positions >= L are ignored. The value is
    the mean over all valid positions of the batch (0.0 when there are none).

    Arguments:
        pos_weight: weight of the positive (stop) term, > 0 (default 1.0);
            raise it to counter the 1-in-L class imbalance.

    Example:
        >>> gate = StopGateLoss()
        >>> logits = torch.tensor([[0.0, 0.0, float("nan")]])  # position 2 is padding
        >>> round(gate(logits, torch.tensor([2])).item(), 4)  # log(2)
        0.6931
    """

    def __init__(self, pos_weight=1.0):
        super().__init__()
        pos_weight = float(pos_weight)
        if not pos_weight > 0:
            raise ValueError(f"StopGateLoss: pos_weight={pos_weight} must be > 0")
        self.pos_weight = pos_weight

    def extra_repr(self):
        return f"pos_weight={self.pos_weight}"

    def forward(self, stop_logits, lengths_in_groups):
        """Mean BCE over valid positions.

        Arguments:
            stop_logits: [B, G] gate logits (one per decoder step / group of r frames).
            lengths_in_groups: valid groups per item, long [B]
                (with reduction factor r: ceil(frame_lengths / r)).

        Returns:
            float32 scalar.
        """
        if not isinstance(stop_logits, torch.Tensor):
            raise TypeError(f"StopGateLoss: stop_logits is {type(stop_logits).__name__}; "
                            "pass a tensor [B, G]")
        if stop_logits.dim() == 3 and stop_logits.shape[-1] == 1:
            stop_logits = stop_logits.squeeze(-1)
        if stop_logits.dim() != 2:
            raise ValueError(f"StopGateLoss: stop_logits has shape {_shape(stop_logits)}; "
                             "expected [B, G]")
        B, G = stop_logits.shape
        lengths = _check_lengths(lengths_in_groups, B, G, "lengths_in_groups", "stop_logits",
                                 _shape(stop_logits), stop_logits.device)
        positions = torch.arange(G, device=stop_logits.device).unsqueeze(0)
        valid = positions < lengths.unsqueeze(-1)
        with _no_autocast(stop_logits.device):
            x = _upcast(stop_logits)
            x = torch.where(valid, x, x.new_zeros(()))
            target = (positions == (lengths - 1).unsqueeze(-1)).to(x.dtype)
            weight = torch.tensor(self.pos_weight, dtype=x.dtype, device=x.device)
            bce = F.binary_cross_entropy_with_logits(x, target, pos_weight=weight,
                                                     reduction="none")
            bce = torch.where(valid, bce, bce.new_zeros(()))
            return bce.sum() / valid.sum().clamp(min=1).to(x.dtype)


class SpectronLoss(nn.Module):
    """Spectron objective: ``w_ce L_CE + w_spec L_s + w_freq L_f + w_time L_t (+ w_stop L_stop)``.

    The returned dict holds ``"loss"`` (the weighted total, to backpropagate)
    and each term UNWEIGHTED for logging: ``"ce"``, ``"spec"``,
    ``"freq_deriv"``, ``"time_deriv"``, and ``"stop"`` when ``stop_logits``
    is given. A term whose weight is 0 is not computed: its key holds a 0.0
    tensor, it adds nothing to ``"loss"`` and its inputs may be None
    (``w_ce=0`` allows ``text_logits=None``; ``w_spec=w_freq=w_time=0`` allows
    ``pred_frames=None``). All terms are float32.

    Arguments:
        w_ce, w_spec, w_freq, w_time, w_stop: non-negative weights (default 1.0).
        time_orders: K_t, differences of order 1..K_t along time (default 2).
        freq_orders: K_f, differences of order 1..K_f along frequency (default 1).
        ignore_index: transcript target value to skip (default -100).
        stop_pos_weight: positive-class weight of the stop gate (default 1.0).

    Example:
        >>> loss = SpectronLoss(w_ce=0.0)  # spectrogram terms only
        >>> out = loss(None, None, torch.ones(1, 3, 2), torch.zeros(1, 3, 2), torch.tensor([3]))
        >>> out["loss"], out["spec"], out["ce"]
        (tensor(2.), tensor(2.), tensor(0.))
    """

    TERMS = ("ce", "spec", "freq_deriv", "time_deriv", "stop")

    def __init__(self, w_ce=1.0, w_spec=1.0, w_freq=1.0, w_time=1.0, w_stop=1.0,
                 time_orders=2, freq_orders=1, ignore_index=-100, stop_pos_weight=1.0):
        super().__init__()
        weights = {"w_ce": w_ce, "w_spec": w_spec, "w_freq": w_freq,
                   "w_time": w_time, "w_stop": w_stop}
        for name, value in weights.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"SpectronLoss: {name}={value!r} is not a number; "
                                "pass a float >= 0") from None
            if not value >= 0 or value == float("inf"):
                raise ValueError(f"SpectronLoss: {name}={value} must be a finite number >= 0 "
                                 "(0 switches the term off)")
            setattr(self, name, value)
        self.transcript = TranscriptCrossEntropy(ignore_index=ignore_index)
        self.spectrogram = SpectrogramLoss()
        self.derivative = DerivativeLoss(time_orders=time_orders, freq_orders=freq_orders)
        self.stop_gate = StopGateLoss(pos_weight=stop_pos_weight)

    def extra_repr(self):
        return (f"w_ce={self.w_ce}, w_spec={self.w_spec}, w_freq={self.w_freq}, "
                f"w_time={self.w_time}, w_stop={self.w_stop}")

    @property
    def weights(self):
        """Term name -> weight."""
        return {"ce": self.w_ce, "spec": self.w_spec, "freq_deriv": self.w_freq,
                "time_deriv": self.w_time, "stop": self.w_stop}

    def forward(self, text_logits, text_targets, pred_frames, target_frames, frame_lengths,
                stop_logits=None, stop_lengths=None):
        """Weighted total and unweighted terms.

        Arguments:
            text_logits: LM logits [B, N, V] aligned with ``text_targets``.
            text_targets: long [B, N], ``ignore_index`` outside [y_1..y_n, <eos>].
            pred_frames: post-net frames [B, T, F] (reduction factor unfolded).
            target_frames: reference frames [B, T, F].
            frame_lengths: valid frames per item, long [B].
            stop_logits: optional stop-gate logits [B, G].
            stop_lengths: valid groups per item [B]; required with ``stop_logits``.

        Returns:
            dict: "loss" (weighted sum), "ce", "spec", "freq_deriv",
            "time_deriv" (unweighted), plus "stop" when ``stop_logits`` is given.
        """
        device = next((x.device for x in (pred_frames, text_logits, stop_logits)
                       if isinstance(x, torch.Tensor)), torch.device("cpu"))
        out = {name: _zero(device) for name in self.TERMS[:4]}
        if self.w_ce:
            if text_logits is None or text_targets is None:
                raise ValueError("SpectronLoss: text_logits/text_targets are None but w_ce="
                                 f"{self.w_ce}; pass them or set w_ce=0")
            out["ce"] = self.transcript(text_logits, text_targets)
        if self.w_spec or self.w_freq or self.w_time:
            if pred_frames is None or target_frames is None:
                raise ValueError("SpectronLoss: pred_frames/target_frames are None but a "
                                 "spectrogram weight is > 0; pass them or set "
                                 "w_spec=w_freq=w_time=0")
            if self.w_spec:
                out["spec"] = self.spectrogram(pred_frames, target_frames, frame_lengths)
            if self.w_freq or self.w_time:
                mask = self.derivative._prepare(pred_frames, target_frames, frame_lengths)
                if self.w_freq:
                    out["freq_deriv"] = self.derivative._freq(pred_frames, target_frames, mask)
                if self.w_time:
                    out["time_deriv"] = self.derivative._time(pred_frames, target_frames, mask)
        if stop_logits is not None:
            out["stop"] = _zero(device)
            if self.w_stop:
                if stop_lengths is None:
                    raise ValueError("SpectronLoss: stop_logits given without stop_lengths; "
                                     "pass stop_lengths [B] (ceil(frame_lengths / r))")
                out["stop"] = self.stop_gate(stop_logits, stop_lengths)
        total = _zero(device)
        for name, weight in self.weights.items():
            if weight and name in out:
                total = total + weight * out[name]
        return {"loss": total, **out}


@hookimpl
def register_losses(register):
    """Register the built-in losses."""
    register("spectron", SpectronLoss,
             description="Spectron objective: w_ce*CE + w_spec*L_s + w_freq*L_f + w_time*L_t "
                         "(+ w_stop*stop gate); returns dict with 'loss' and unweighted terms")
    register("spectrogram", SpectrogramLoss,
             description="L_s: L1 + squared L2 between frames, mean over valid frames")
    register("derivative", DerivativeLoss,
             description="L_t and L_f: L1+L2 of time/frequency finite differences of orders 1..K")
    register("transcript_ce", TranscriptCrossEntropy,
             description="token cross-entropy over the transcript, ignore_index skipped")
    register("stop_gate", StopGateLoss,
             description="binary cross-entropy stop gate over valid decoder steps")
