"""plotting: spectrogram panels on one colour scale; loss curves read from SpeechBrain's train_log.txt."""
import numpy as np
import pytest

from spectron_kit.plotting import colour_range, plot_loss_curves, read_train_log

LOG = """\
epoch: 1, lr: 1.00e-03 - train loss: 52.05, train ce: 6.39e-01, train spec: 15.06 - valid loss: 29.27, valid ce: 3.12e-01, valid spec: 4.17
epoch: 2, lr: 9.99e-04 - train loss: 25.27, train ce: 2.82e-01, train spec: 4.00 - valid loss: 20.00, valid ce: 2.00e-01, valid spec: 3.15
not a stats line
"""


def test_train_log_is_read_per_epoch_and_plotted(tmp_path):
    log = tmp_path / "train_log.txt"
    log.write_text(LOG)
    epochs = read_train_log(log)
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[1]["lr"] == pytest.approx(9.99e-4)
    assert epochs[0]["train"] == {"loss": 52.05, "ce": 0.639, "spec": 15.06}
    assert epochs[1]["valid"]["spec"] == 3.15
    assert plot_loss_curves(log, tmp_path / "curves.png", title="t") == ["loss", "ce", "spec"]
    assert (tmp_path / "curves.png").stat().st_size > 5000
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert plot_loss_curves(empty, tmp_path / "none.png") == [] and not (tmp_path / "none.png").exists()


def test_colour_range_is_shared_and_ignores_non_finite_values():
    # percentiles 1 and 99.9 of the finite values of all panels together (NaN and -inf ignored)
    values = [-5.0, 0.0, 3.0]
    low, high = colour_range([np.array([[-5.0, 0.0]]), np.array([[np.nan, 3.0, -np.inf]])])
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [1.0, 99.9])))
