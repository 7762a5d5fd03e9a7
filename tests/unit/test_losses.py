"""Losses against an independent numpy reference (loops over items and valid frames)."""
import math

import numpy as np
import pytest
import torch

from spectron_kit.losses import (
    SpectronLoss,
    difference_mask,
    finite_difference,
    frequency_derivative_loss,
    l1_l2,
    lengths_to_mask,
    register_losses,
    spectrogram_loss,
    stop_gate_loss,
    time_derivative_loss,
    transcript_cross_entropy,
)


# -- numpy reference -----------------------------------------------------------
def ref_l12(pairs):
    """Mean |a-b| + mean (a-b)^2 over all elements of the (a, b) pairs; 0 if none."""
    diffs = [np.asarray(a, np.float64) - np.asarray(b, np.float64) for a, b in pairs]
    diffs = [d.ravel() for d in diffs if d.size]
    if not diffs:
        return 0.0
    d = np.concatenate(diffs)
    return float(np.mean(np.abs(d)) + np.mean(d ** 2))


def ref_spec(pred, target, lengths):
    return ref_l12([(target[b, :n], pred[b, :n]) for b, n in enumerate(lengths)])


def ref_time(pred, target, lengths, orders):
    total = 0.0
    for k in range(1, orders + 1):
        pairs = []
        for b, n in enumerate(lengths):
            if n > k:  # needs k + 1 valid frames
                pairs.append((np.diff(target[b, :n], n=k, axis=0),
                              np.diff(pred[b, :n], n=k, axis=0)))
        total += ref_l12(pairs)
    return total


def ref_freq(pred, target, lengths, orders):
    total = 0.0
    for k in range(1, orders + 1):
        pairs = [(np.diff(target[b, :n], n=k, axis=1), np.diff(pred[b, :n], n=k, axis=1))
                 for b, n in enumerate(lengths)]
        total += ref_l12(pairs)
    return total


def ref_ce(logits, targets, ignore_index=-100):
    losses = []
    for b in range(logits.shape[0]):
        for i in range(logits.shape[1]):
            t = targets[b, i]
            if t == ignore_index:
                continue
            row = logits[b, i].astype(np.float64)
            m = row.max()
            logsumexp = m + math.log(np.exp(row - m).sum())
            losses.append(logsumexp - row[t])
    return float(np.mean(losses)) if losses else 0.0


def ref_stop(logits, lengths, pos_weight=1.0):
    losses = []
    for b, n in enumerate(lengths):
        for g in range(n):
            x = float(logits[b, g])
            y = 1.0 if g == n - 1 else 0.0
            log_p = -math.log1p(math.exp(-x)) if x > -30 else x
            log_not_p = -math.log1p(math.exp(x)) if x < 30 else -x
            losses.append(-(pos_weight * y * log_p + (1 - y) * log_not_p))
    return float(np.mean(losses)) if losses else 0.0


# -- fixtures ------------------------------------------------------------------
LENGTHS = [7, 4, 1, 2, 0]
T, F = 7, 6


def padded_batch(seed=0, garbage="random"):
    """pred/target [B, T, F] float32 with garbage in the padding."""
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=(len(LENGTHS), T, F)).astype(np.float32)
    target = rng.normal(size=(len(LENGTHS), T, F)).astype(np.float32)
    for b, n in enumerate(LENGTHS):
        if garbage == "nan":
            pred[b, n:] = np.nan
            target[b, n:] = np.inf
        else:
            pred[b, n:] = rng.normal(scale=1e4, size=pred[b, n:].shape)
            target[b, n:] = rng.normal(scale=1e4, size=target[b, n:].shape)
    return pred, target


def close(tensor, value, tol=1e-5):
    assert tensor.dtype == torch.float32
    assert tensor.shape == ()
    np.testing.assert_allclose(tensor.item(), value, rtol=tol, atol=tol)


# -- building blocks -----------------------------------------------------------
def test_l1_l2_masked_and_unmasked():
    a = torch.tensor([[1.0, -2.0, 3.0], [0.5, 100.0, float("nan")]])
    b = torch.zeros(2, 3)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    close(l1_l2(a, b, mask), ref_l12([(np.array([1, -2, 3, 0.5]), np.zeros(4))]))
    close(l1_l2(a[:1], b[:1]), ref_l12([(np.array([1, -2, 3]), np.zeros(3))]))
    # broadcast mask over the last axis
    close(l1_l2(a, b, torch.tensor([[True], [False]])), ref_l12([(np.array([1, -2, 3]), np.zeros(3))]))
    # nothing valid -> 0, not NaN
    close(l1_l2(a, b, torch.zeros(2, 3, dtype=torch.bool)), 0.0)


def test_l1_l2_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\[2, 3\].*\[3, 2\]"):
        l1_l2(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\[4\].*\[2, 3\]"):
        l1_l2(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        l1_l2(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3))


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("dim", [1, 2, -1])
def test_finite_difference_matches_np_diff(order, dim):
    x = np.random.default_rng(1).normal(size=(2, 5, 4)).astype(np.float32)
    got = finite_difference(torch.from_numpy(x), order, dim).numpy()
    np.testing.assert_allclose(got, np.diff(x, n=order, axis=dim), rtol=1e-5, atol=1e-5)


def test_finite_difference_upcasts_half_precision():
    x = torch.tensor([1.0, 4.0, 9.0], dtype=torch.bfloat16)
    assert finite_difference(x, 1).dtype == torch.float32
    with pytest.raises(ValueError, match="order=-1"):
        finite_difference(x, -1)


@pytest.mark.parametrize("order", [0, 1, 2, 3, 5])
def test_difference_mask_requires_all_frames_valid(order):
    lengths = torch.tensor(LENGTHS)
    mask = lengths_to_mask(lengths, T)
    got = difference_mask(mask, order, dim=1)
    assert got.shape == (len(LENGTHS), T - order)
    for b, n in enumerate(LENGTHS):
        for i in range(T - order):
            assert bool(got[b, i]) == all(j < n for j in range(i, i + order + 1))
    # a hole in the middle of a mask invalidates every window touching it
    holed = torch.tensor([[True, True, False, True, True, True]])
    assert difference_mask(holed, 1).tolist() == [[True, False, False, True, True]]


# -- spectrogram and derivative losses -----------------------------------------
@pytest.mark.parametrize("garbage", ["random", "nan"])
def test_spectrogram_loss_matches_reference_and_ignores_padding(garbage):
    pred, target = padded_batch(0, garbage)
    got = spectrogram_loss(torch.from_numpy(pred), torch.from_numpy(target), torch.tensor(LENGTHS))
    close(got, ref_spec(pred, target, LENGTHS))


@pytest.mark.parametrize("time_orders,freq_orders", [(2, 1), (3, 2), (1, 0), (0, 3)])
@pytest.mark.parametrize("garbage", ["random", "nan"])
def test_derivative_loss_matches_reference(time_orders, freq_orders, garbage):
    pred, target = padded_batch(1, garbage)
    args = (torch.from_numpy(pred), torch.from_numpy(target), torch.tensor(LENGTHS))
    close(time_derivative_loss(*args, orders=time_orders), ref_time(pred, target, LENGTHS, time_orders))
    close(frequency_derivative_loss(*args, orders=freq_orders), ref_freq(pred, target, LENGTHS, freq_orders))


def frame_loss():
    """The spectrogram terms of the objective, with orders 3 (time) and 2 (frequency)."""
    return SpectronLoss({"spec": 1.0, "freq_deriv": 1.0, "time_deriv": 1.0, "flux": 1.0},
                        {"time_deriv": {"orders": 3}, "freq_deriv": {"orders": 2}})


def frames(pred, target, lengths=None):
    """Model outputs dict holding only frames."""
    as_tensor = lambda x: x if isinstance(x, torch.Tensor) else torch.from_numpy(x)  # noqa: E731
    return {"pred_frames": as_tensor(pred), "target_frames": as_tensor(target),
            "frame_lens": torch.tensor(LENGTHS) if lengths is None else lengths}


def test_padding_garbage_does_not_change_results():
    pred_a, target_a = padded_batch(2, "random")
    pred_b, target_b = pred_a.copy(), target_a.copy()
    for b, n in enumerate(LENGTHS):
        pred_b[b, n:] = -pred_b[b, n:] * 7 + 3
        target_b[b, n:] = np.nan
    loss = frame_loss()
    out_a = loss(frames(pred_a, target_a))
    out_b = loss(frames(pred_b, target_b))
    for key in out_a:
        assert torch.equal(out_a[key], out_b[key]), key


def test_short_items_give_no_nan():
    pred = torch.randn(2, 4, 5, requires_grad=True)
    target = torch.randn(2, 4, 5)
    # item lengths 1 and 2: order 2 has no valid position at all
    out = time_derivative_loss(pred, target, torch.tensor([1, 2]), orders=2)
    expected = ref_time(pred.detach().numpy(), target.numpy(), [1, 2], 2)
    close(out, expected)
    out.backward()
    assert torch.isfinite(pred.grad).all()
    # no item has even two frames: every order contributes 0.0
    close(time_derivative_loss(pred, target, torch.tensor([1, 0]), orders=2), 0.0)
    close(spectrogram_loss(pred, target, torch.tensor([0, 0])), 0.0)


def test_gradient_flows_to_pred_and_not_to_padding():
    pred_np, target_np = padded_batch(3, "nan")
    pred = torch.from_numpy(pred_np).requires_grad_(True)
    out = frame_loss()(frames(pred, target_np))
    out["loss"].backward()
    assert torch.isfinite(pred.grad).all()
    for b, n in enumerate(LENGTHS):
        assert torch.all(pred.grad[b, n:] == 0)
        if n:
            assert pred.grad[b, :n].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_give_float32_results(dtype):
    pred_np, target_np = padded_batch(4, "random")
    pred_np, target_np = pred_np / 1e4 * 3, target_np / 1e4 * 3  # keep padding in range
    pred, target = torch.from_numpy(pred_np), torch.from_numpy(target_np)
    lengths = torch.tensor(LENGTHS)
    loss = frame_loss()
    low = loss(frames(pred.to(dtype), target.to(dtype), lengths))
    # same (rounded) values given in float32: the computation itself is float32
    rounded = loss(frames(pred.to(dtype).float(), target.to(dtype).float(), lengths))
    full = loss(frames(pred, target, lengths))
    for key, value in low.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, rounded[key], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(value, full[key], rtol=2e-2, atol=2e-2)


def test_frame_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\[2, 3, 4\].*\[2, 3, 5\]"):
        spectrogram_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match=r"contains 4.*\[0, 3\]"):
        spectrogram_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.tensor([4, 3]))
    with pytest.raises(ValueError, match=r"shape \[3\].*\[2, 3, 4\]"):
        time_derivative_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="orders=2 needs more than 2 frequency bins.*lower freq_orders"):
        frequency_derivative_loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), torch.tensor([3]), orders=2)
    with pytest.raises(ValueError, match="time_orders=-1"):
        SpectronLoss({"time_deriv": 1.0}, {"time_deriv": {"orders": -1}})


# -- transcript CE and stop gate -------------------------------------------------
def ce_batch(seed=5, V=11):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(3, 6, V)).astype(np.float32)
    targets = rng.integers(0, V, size=(3, 6))
    targets[0, :2] = -100  # speech-prefix positions
    targets[1, 4:] = -100  # padding
    targets[2, :] = -100   # an item with nothing to score
    return logits, targets


def test_transcript_ce_matches_log_softmax_reference():
    logits, targets = ce_batch()
    got = transcript_cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets))
    close(got, ref_ce(logits, targets))


def test_transcript_ce_ignored_rows_do_not_matter():
    logits, targets = ce_batch()
    logits[targets == -100] = np.nan
    x = torch.from_numpy(logits).requires_grad_(True)
    got = transcript_cross_entropy(x, torch.from_numpy(targets))
    close(got, ref_ce(np.nan_to_num(logits), targets))
    got.backward()
    assert torch.isfinite(x.grad).all()
    assert torch.all(x.grad[torch.from_numpy(targets) == -100] == 0)


def test_transcript_ce_custom_ignore_index_all_ignored_and_bf16():
    logits, targets = ce_batch()
    targets[targets == -100] = 0
    targets[targets == 3] = 0
    close(transcript_cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets), ignore_index=0),
          ref_ce(logits, targets, 0))
    close(transcript_cross_entropy(torch.from_numpy(logits), torch.zeros(3, 6, dtype=torch.long), ignore_index=0),
          0.0)
    low = transcript_cross_entropy(torch.from_numpy(logits).bfloat16(), torch.from_numpy(targets))
    rounded = torch.from_numpy(logits).bfloat16().float().numpy()
    close(low, ref_ce(rounded, targets), tol=1e-4)


def test_transcript_ce_errors():
    with pytest.raises(ValueError, match=r"target id 11.*\[0, 11\)"):
        transcript_cross_entropy(torch.zeros(1, 2, 11), torch.tensor([[1, 11]]))
    with pytest.raises(ValueError, match=r"\[1, 2, 11\].*\[1, 3\]"):
        transcript_cross_entropy(torch.zeros(1, 2, 11), torch.tensor([[1, 2, 3]]))


@pytest.mark.parametrize("pos_weight", [1.0, 4.0])
def test_stop_gate_matches_numpy_bce(pos_weight):
    rng = np.random.default_rng(6)
    logits = rng.normal(scale=4.0, size=(4, 5)).astype(np.float32)
    lengths = [5, 3, 1, 0]
    logits[1, 3:] = np.nan
    logits[3, :] = np.inf
    x = torch.from_numpy(logits).requires_grad_(True)
    got = stop_gate_loss(x, torch.tensor(lengths), pos_weight=pos_weight)
    close(got, ref_stop(logits, lengths, pos_weight))
    got.backward()
    assert torch.isfinite(x.grad).all()
    assert torch.all(x.grad[1, 3:] == 0) and torch.all(x.grad[3] == 0)
    close(stop_gate_loss(x, torch.zeros(4, dtype=torch.long)), 0.0)
    assert stop_gate_loss(x.detach().bfloat16(), torch.tensor(lengths)).dtype == torch.float32


def test_stop_gate_errors():
    with pytest.raises(ValueError, match="pos_weight"):
        stop_gate_loss(torch.zeros(2, 5), torch.tensor([1, 1]), pos_weight=0)
    with pytest.raises(ValueError, match=r"contains 6.*\[0, 5\]"):
        stop_gate_loss(torch.zeros(2, 5), torch.tensor([6, 1]))


# -- composite ---------------------------------------------------------------------
def composite_inputs(seed=7):
    logits, targets = ce_batch(seed)
    pred, target = padded_batch(seed, "random")
    pred, target = pred[:3], target[:3]
    lengths = LENGTHS[:3]
    stop = np.random.default_rng(seed).normal(size=(3, 4)).astype(np.float32)
    stop_lengths = [(n + 1) // 2 for n in lengths]  # r = 2
    return logits, targets, pred, target, lengths, stop, stop_lengths


def run_composite(loss, inputs, grad=False, drop=()):
    logits, targets, pred, target, lengths, stop, stop_lengths = inputs
    tensors = {
        "logits": torch.from_numpy(logits).requires_grad_(grad),
        "pred": torch.from_numpy(pred).requires_grad_(grad),
        "stop": torch.from_numpy(stop).requires_grad_(grad),
    }
    outputs = dict(text_logits=tensors["logits"], text_targets=torch.from_numpy(targets),
                   pred_frames=tensors["pred"], target_frames=torch.from_numpy(target),
                   frame_lens=torch.tensor(lengths), stop_logits=tensors["stop"],
                   stop_lengths=torch.tensor(stop_lengths))
    for name in drop:
        outputs[name] = None
    out = loss(outputs)
    if grad:
        out["loss"].backward()
    return out, tensors


ALL_ONES = {"ce": 1.0, "spec": 1.0, "freq_deriv": 1.0, "time_deriv": 1.0, "stop": 1.0}


def test_composite_terms_are_unweighted_and_total_is_weighted():
    inputs = composite_inputs()
    logits, targets, pred, target, lengths, stop, stop_lengths = inputs
    weights = {"ce": 0.5, "spec": 2.0, "freq_deriv": 3.0, "time_deriv": 0.25, "stop": 1.5}
    loss = SpectronLoss(weights, {"time_deriv": {"orders": 3}, "freq_deriv": {"orders": 2},
                                  "stop": {"pos_weight": 2.0}})
    out, _ = run_composite(loss, inputs)
    assert list(out) == ["loss", "ce", "spec", "freq_deriv", "time_deriv", "stop"]
    refs = {
        "ce": ref_ce(logits, targets),
        "spec": ref_spec(pred, target, lengths),
        "freq_deriv": ref_freq(pred, target, lengths, 2),
        "time_deriv": ref_time(pred, target, lengths, 3),
        "stop": ref_stop(stop, stop_lengths, 2.0),
    }
    for key, value in refs.items():
        close(out[key], value)
    total = sum(weights[k] * refs[k] for k in refs)
    close(out["loss"], total)


def test_paper_defaults_and_stop_skipped_without_stop_logits():
    inputs = composite_inputs()
    logits, targets, pred, target, lengths, _, _ = inputs
    out, _ = run_composite(SpectronLoss(), inputs, drop=("stop_logits", "stop_lengths"))
    assert "stop" not in out
    out, _ = run_composite(SpectronLoss(ALL_ONES), inputs, drop=("stop_logits", "stop_lengths"))
    assert "stop" not in out  # the stop term only applies to models with a stop head
    total = (ref_ce(logits, targets) + ref_spec(pred, target, lengths)
             + ref_freq(pred, target, lengths, 1) + ref_time(pred, target, lengths, 2))
    close(out["loss"], total)


@pytest.mark.parametrize("off", ["ce", "spec", "freq_deriv", "time_deriv", "stop"])
def test_zero_weight_switches_term_off(off):
    inputs = composite_inputs()
    out_on, _ = run_composite(SpectronLoss(ALL_ONES), inputs)
    out_off, t_off = run_composite(SpectronLoss({**ALL_ONES, off: 0.0}), inputs, grad=True)
    assert off not in out_off
    torch.testing.assert_close(out_off["loss"], out_on["loss"] - out_on[off])
    # gradients equal those of the remaining (unweighted, all weights 1) terms alone
    out_all, t_rest = run_composite(SpectronLoss(ALL_ONES), inputs, grad=False)
    for t in t_rest.values():
        t.requires_grad_(True)
    out_all, _ = run_composite(SpectronLoss(ALL_ONES), inputs)
    outputs = dict(text_logits=t_rest["logits"], text_targets=torch.from_numpy(inputs[1]),
                   pred_frames=t_rest["pred"], target_frames=torch.from_numpy(inputs[3]),
                   frame_lens=torch.tensor(inputs[4]), stop_logits=t_rest["stop"],
                   stop_lengths=torch.tensor(inputs[6]))
    out_all = SpectronLoss(ALL_ONES)(outputs)
    sum(v for k, v in out_all.items() if k not in ("loss", off)).backward()
    for name in t_off:
        g_off, g_rest = t_off[name].grad, t_rest[name].grad
        if g_off is None:
            assert g_rest is None or torch.all(g_rest == 0), name
        else:
            torch.testing.assert_close(g_off, g_rest)


def test_zero_weights_do_not_need_their_inputs():
    inputs = composite_inputs()
    out, tensors = run_composite(SpectronLoss({**ALL_ONES, "ce": 0.0}), inputs, grad=True,
                                 drop=("text_logits", "text_targets"))
    assert "ce" not in out and tensors["logits"].grad is None
    out, tensors = run_composite(SpectronLoss({"ce": 1.0, "spec": 0, "freq_deriv": 0, "time_deriv": 0}), inputs,
                                 grad=True, drop=("pred_frames", "target_frames", "frame_lens"))
    assert list(out) == ["loss", "ce"]
    assert tensors["pred"].grad is None and tensors["logits"].grad is not None


def test_composite_errors():
    inputs = composite_inputs()
    with pytest.raises(ValueError, match="TranscriptCETerm needs text_logits"):
        run_composite(SpectronLoss(), inputs, drop=("text_logits",))
    with pytest.raises(ValueError, match="stop_lengths"):
        run_composite(SpectronLoss(ALL_ONES), inputs, drop=("stop_lengths",))
    with pytest.raises(ValueError, match="weight of 'spec' is -1"):
        SpectronLoss({"spec": -1})
    with pytest.raises(TypeError, match="weight of 'time_deriv' is 'a'"):
        SpectronLoss({"time_deriv": "a"})
    with pytest.raises(KeyError, match="no loss named 'specc'.*Did you mean 'spec'"):
        SpectronLoss({"specc": 1.0})


def test_adding_a_term_is_one_registered_class_and_one_table_line():
    from spectron_kit.hookspecs import hookimpl
    from spectron_kit.losses import LossTerm
    from spectron_kit.registry import get_registry

    class MeanPrediction(LossTerm):
        requires = ("pred_frames",)

        def compute(self, outputs):
            return outputs["pred_frames"].float().mean()

    class Plugin:
        @hookimpl
        def register_losses(self, register):
            register("mean_prediction", MeanPrediction, description="test term")

    get_registry().register_plugin(Plugin(), name="test-term")
    inputs = composite_inputs()
    out, _ = run_composite(SpectronLoss({"spec": 0.0, "mean_prediction": 2.0}), inputs)
    close(out["mean_prediction"], float(np.mean(inputs[2])))
    close(out["loss"], 2 * float(np.mean(inputs[2])))


def ref_guided(attn, layout, centres, sigma, heads, form):
    """Loop reference of guided_attention_loss for one layer."""
    total, count = 0.0, 0
    for b, (p, n, g) in enumerate(layout):
        for j in range(g):
            if not np.isfinite(centres[b, j]):
                continue
            q = p + n + 1 + j
            for h in heads:
                in_band = penalty = 0.0
                for k in range(attn.shape[-1]):
                    band = 0.0
                    if p + 1 <= k <= p + n:
                        band = math.exp(-(k - (p + 1 + centres[b, j])) ** 2 / (2 * sigma[b] ** 2))
                    in_band += attn[b, h, q, k] * band
                    penalty += attn[b, h, q, k] * (1 - band)
                total += -math.log(in_band) if form == "nll" else penalty
                count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("form", ["nll", "penalty"])
def test_guided_attention_matches_loop_reference(form):
    from spectron_kit.losses import guided_attention_loss

    rng = np.random.default_rng(3)
    L = 12
    attn = rng.random((2, 3, L, L)).astype(np.float32)
    attn /= attn.sum(-1, keepdims=True)
    layout = [(2, 4, 5), (3, 2, 3)]            # item 1: 3 frame steps, padded to 5
    centres = np.array([[0, 1, 1, 2, np.nan], [0, 1, 1, np.nan, np.nan]], dtype=np.float32)
    sigma = np.array([0.5, 2.0], dtype=np.float32)
    got = guided_attention_loss({0: torch.from_numpy(attn)}, torch.tensor(layout), torch.from_numpy(centres),
                                torch.from_numpy(sigma), layers=[0], heads=[0, 2], form=form)
    close(got, ref_guided(attn, layout, centres, sigma, [0, 2], form))


def test_guided_attention_is_zero_on_the_target_and_rewards_moving_there():
    from spectron_kit.losses import GuidedAttentionTerm, guided_attention_loss

    L = 8
    layout = torch.tensor([[1, 3, 3]])         # prefix 1, tokens at keys 2-4, frame queries 5-7
    centres = torch.tensor([[0.0, 1.0, 2.0]])
    on_target = torch.zeros(1, 1, L, L)
    for j in range(3):
        on_target[0, 0, 5 + j, 2 + j] = 1.0
    on_prefix = torch.zeros(1, 1, L, L)
    on_prefix[0, 0, 5:, 0] = 1.0
    def loss(attention, layers=(0,), heads=(0,), form="nll"):
        return guided_attention_loss({0: attention}, layout, centres, torch.tensor([0.5]), layers, heads, form)

    assert loss(on_target).item() == 0.0
    assert loss(on_prefix).item() > 18  # -log(1e-8)
    assert loss(on_target, form="penalty").item() == 0.0
    assert loss(on_prefix, form="penalty").item() == 1.0
    with pytest.raises(ValueError, match="form='ctc'"):
        GuidedAttentionTerm(form="ctc")
    with pytest.raises(ValueError, match="head 1 does not exist"):
        loss(on_target, heads=[1])
    with pytest.raises(ValueError, match="no attention recorded for layer 2"):
        loss(on_target, layers=[2])


def test_flux_matches_reference():
    from spectron_kit.losses import flux_loss

    pred, target = padded_batch(5, "nan")
    got = flux_loss(torch.from_numpy(pred), torch.from_numpy(target), torch.tensor(LENGTHS), bound=1.5)
    values = []
    for b, n in enumerate(LENGTHS):
        for t in range(1, n):
            values.extend(np.minimum(np.abs(pred[b, t] - target[b, t - 1]), 1.5))
    close(got, -float(np.mean(values)))


def test_register_losses_hook():
    registered = {}

    def register(name, factory, description=""):
        registered[name] = (factory, description)

    register_losses(register=register)
    assert registered["spectron"][0] is SpectronLoss
    assert {"spectron", "ce", "spec", "freq_deriv", "time_deriv", "stop", "guided_attention",
            "flux"} <= set(registered)
    assert all(desc for _, desc in registered.values())
