"""Phoneme units: the events of a continuation window, and a model that interleaves them with frames."""
import pytest
import torch

from spectron_kit import build
from spectron_kit.data.manifest import format_phone_times, parse_phone_times
from spectron_kit.model import SpectronModel
from spectron_kit.phonemes import PhonemeVocabulary, pad_events, phone_events, vocabulary_from_rows

from test_model import N_MELS, SPEC, batch_of, scored  # noqa: I001  (tests/unit is on sys.path under pytest)

VOCAB = PhonemeVocabulary(["a", "b", "c", "_"])
STEP = 0.025  # r = 2 frames of 12.5 ms


def test_vocabulary_reserves_end_and_unknown_and_round_trips(tmp_path):
    assert VOCAB.symbols[:2] == ["<end>", "<unk>"]
    assert VOCAB.ids(["a", "zz", "_"]) == [2, 1, 5]
    assert VOCAB.names([2, 5, 99]) == ["a", "_", "<unk>"]
    VOCAB.save(tmp_path / "v.json")
    assert PhonemeVocabulary.load(tmp_path / "v.json").symbols == VOCAB.symbols
    with pytest.raises(ValueError, match="unique"):
        PhonemeVocabulary(["a", "a"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a phoneme vocabulary"):
        PhonemeVocabulary.load(tmp_path / "bad.json")


def test_events_start_with_the_phoneme_spoken_at_the_cut_and_fill_the_window():
    timing = [("a", 2.8, 2.99), ("b", 2.99, 3.06), ("c", 3.06, 3.2), ("_", 3.2, 3.4)]
    ids, groups, ends = phone_events(timing, VOCAB, start=3.0, n_groups=10, step_seconds=STEP)
    # b is being spoken at 3.0 s; c starts 0.06 s in (round(2.4) = 2 groups), _ at 0.2 s (8 groups)
    assert VOCAB.names(ids) == ["b", "c", "_"]
    assert groups == [2, 6, 2] and sum(groups) == 10
    assert ends is False  # the speech goes on past the window (3.4 > 3.25)
    ids, groups, ends = phone_events(timing, VOCAB, start=3.0, n_groups=20, step_seconds=STEP)
    assert groups == [2, 6, 12] and ends is True  # the window holds the end: <end> follows


def test_short_phonemes_may_own_no_group_and_unknown_names_get_unk():
    timing = [("a", 2.9, 3.05), ("zz", 3.05, 3.055), ("c", 3.055, 3.3)]
    ids, groups, _ = phone_events(timing, VOCAB, start=3.0, n_groups=8, step_seconds=STEP)
    assert ids == [2, 1, 4] and groups == [2, 0, 6]


def test_no_timings_or_no_window_give_no_events():
    assert phone_events([], VOCAB, 3.0, 10, STEP) == ([], [], False)
    assert phone_events([("a", 0.0, 4.0)], VOCAB, 3.0, 0, STEP) == ([], [], False)


def test_manifest_column_round_trip_and_vocabulary_from_rows():
    phones = [("D", 0.011, 0.058), ("'A@", 0.058, 0.2), ("_:", 0.2, 0.25)]
    text = format_phone_times(phones)
    assert parse_phone_times(text) == [("D", 0.011, 0.058), ("'A@", 0.058, 0.2), ("_:", 0.2, 0.25)]
    assert parse_phone_times("") is None and parse_phone_times("0.3:0.1:a") is None
    vocab = vocabulary_from_rows([{"phone_times": text}, {"phone_times": ""}])
    assert vocab.symbols[2:] == sorted(["D", "'A@", "_:"])
    with pytest.raises(ValueError, match="phone_times"):
        vocabulary_from_rows([{"text": "no timings"}])


def interleaving_model(normalize=True, phone_context=False, phoneme_list=False):
    torch.manual_seed(0)
    return SpectronModel(
        frontend=build("frontend", "log_mel", spec=SPEC),
        encoder=build("encoder", "conformer", n_mels=N_MELS, d_model=32, num_layers=1, nhead=2, d_ffn=64,
                      kernel_size=7, dropout=0.0, hop_seconds=0.01),
        lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 48, "n_layer": 2, "n_head": 2,
                                     "n_positions": 1024, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                     "attn_pdrop": 0.0}, vocab_size=30),
        prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim, bottleneck=32,
                                             dropout=0.0),
        postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim, hidden=64),
        vocoder=build("vocoder", "griffin_lim", spec=SPEC, n_iter=4), reduction_factor=2, prompt_seconds=1.0,
        normalize_frames=normalize, interleave_phonemes=True, phonemes=["a", "b", "c"], phone_context=phone_context,
        phoneme_list=phoneme_list)


PHONEME_TERMS = {"ce": 1.0, "spec": 1.0, "phone_ce": 1.0, "phone_gate": 1.0}


def phoneme_batch():
    batch = batch_of()  # continuations of 0.6 s (61 frames: 31 groups) and 0.4 s (41 frames: 21 groups)
    batch.update(pad_events([([2, 3, 4], [10, 10, 11], False), ([4, 2], [5, 16], True)]))
    return batch


def test_interleaved_layout_targets_and_terms():
    model = interleaving_model()
    out = scored(model, phoneme_batch(), terms=PHONEME_TERMS)
    assert out["pred_frames"].shape == out["target_frames"].shape == (2, 61, N_MELS)
    # item 1: [go] c g*5 a g*16, then <end>: 1 + 1 + 5 + 1 + 16 = 24 steps
    assert out["layout"][1, 2] == 24
    gate, phones = out["gate_targets"][1], out["phone_targets"][1]
    assert gate[:24].tolist() == [1] + [0] * 5 + [1] + [0] * 16 + [1]
    assert phones[[0, 6, 23]].tolist() == [4, 2, 0] and (phones[:24] == -100).sum() == 21
    assert (gate[24:] == -1).all()
    for term in ("phone_ce", "phone_gate", "spec", "ce"):
        assert torch.isfinite(out[term])


def test_the_phoneme_list_comes_before_the_speech_and_carries_the_phoneme_targets():
    model = interleaving_model(phoneme_list=True)
    out = model(phoneme_batch())
    # item 1: list [start c a] -> [c a <end>], then [go] c g*5 a g*16 (+ <end>): 3 + 24 steps
    assert out["layout"][1, 2] == 27
    assert out["phone_targets"][1, :3].tolist() == [4, 2, 0] and (out["phone_targets"][1, 3:] == -100).all()
    assert out["gate_targets"][1, :3].tolist() == [-1, -1, -1]
    assert out["gate_targets"][1, 3:27].tolist() == [1] + [0] * 5 + [1] + [0] * 16 + [1]
    assert out["pred_frames"].shape == (2, 61, N_MELS)


def test_normalised_frames_are_what_the_decoder_sees_and_generation_undoes_it():
    model = interleaving_model()
    mean, std = torch.linspace(-6, -2, N_MELS), torch.linspace(1, 3, N_MELS)
    model.set_frame_stats(mean, std)
    frames = torch.randn(5, N_MELS) * std + mean
    torch.testing.assert_close(model.from_decoder_units(model.to_decoder_units(frames)), frames)
    assert model.to_decoder_units(mean[None]).abs().max() < 1e-6
    with pytest.raises(ValueError, match="std > 0"):
        model.set_frame_stats(mean, torch.zeros(N_MELS))
    with pytest.raises(ValueError, match=f"{N_MELS} values per bin"):
        model.set_frame_stats(mean[:3], std[:3])


def fit(model, batch, steps, terms=PHONEME_TERMS):
    """``steps`` Adam steps (lr 3e-3) on one batch with the objective ``terms``; the last step's outputs."""
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(steps):
        out = scored(model, batch, terms=terms)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
    return out


@pytest.mark.parametrize("phone_context,phoneme_list", [(False, False), (True, False), (True, True)])
def test_learning_the_interleaved_section_and_generating_exact_budgets(tmp_path, phone_context, phoneme_list):
    model = interleaving_model(phone_context=phone_context, phoneme_list=phoneme_list)
    batch = phoneme_batch()
    start = scored(model, batch, terms=PHONEME_TERMS)
    out = fit(model, batch, steps=120)
    assert out["phone_ce"] < 0.1 * start["phone_ce"] and out["phone_gate"] < 0.5 * start["phone_gate"]
    model.eval()
    texts = [batch["tokens"][0, :6].tolist(), batch["tokens"][1, :3].tolist()]
    got = model.generate(batch["prompt_wav"], batch["prompt_lens"], num_frames=torch.tensor([61, 41]),
                         forced_text=texts)
    assert [len(f) for f in got.frames] == [61, 41] and got.stopped_by == ["budget", "budget"]
    if phoneme_list:  # the lists are learnt and the speech reads them in order (a prefix: the gate sets how far)
        assert out["phone_logits"][1, :3].argmax(-1).tolist() == [4, 2, 0]
        assert got.phonemes[0] == ["a", "b", "c"][: len(got.phonemes[0])] and got.phonemes[0]
        assert got.phonemes[1] == ["c", "a"][: len(got.phonemes[1])] and got.phonemes[1]
    assert [len(w) for w in got.waveforms] == [60 * 160, 40 * 160]
    timing = [[("a", 0.95, 1.25), ("b", 1.25, 1.5), ("c", 1.5, 1.6)], "0.7:0.8:c 0.8:1.1:a"]
    forced = model.teacher_forced_frames(batch["prompt_wav"], batch["prompt_lens"], texts, batch["cont_wav"],
                                         batch["cont_lens"], phone_times=timing)
    assert [tuple(f.shape) for f in forced] == [(61, N_MELS), (41, N_MELS)]
    with pytest.raises(ValueError, match="phone_times"):
        model.teacher_forced_frames(batch["prompt_wav"], batch["prompt_lens"], texts, batch["cont_wav"],
                                    batch["cont_lens"])
    model.save_pretrained(tmp_path / "bundle")
    back = SpectronModel.from_pretrained(tmp_path / "bundle")
    assert back.interleave_phonemes and back.phone_vocab.symbols == model.phone_vocab.symbols
    assert back.phone_context == phone_context and back.phoneme_list == phoneme_list
    for name, value in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], value, rtol=0, atol=0)
    again = back.generate(batch["prompt_wav"], batch["prompt_lens"], num_frames=torch.tensor([61, 41]),
                          forced_text=texts)
    torch.testing.assert_close(again.frames[0], got.frames[0])


def test_interleaving_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="phoneme vocabulary"):
        SpectronModel(frontend=build("frontend", "log_mel", spec=SPEC),
                      encoder=build("encoder", "conformer", n_mels=N_MELS, d_model=32, num_layers=1, nhead=2,
                                    d_ffn=64, kernel_size=7, hop_seconds=0.01),
                      lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 48, "n_layer": 1,
                                                   "n_head": 2}, vocab_size=30),
                      prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim),
                      postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim),
                      interleave_phonemes=True)
    model = interleaving_model()
    batch = batch_of()
    with pytest.raises(ValueError, match="batch needs phones"):
        model(batch)


def test_a_refining_post_net_trains_both_outputs_and_refines_generation(tmp_path):
    torch.manual_seed(0)
    model = SpectronModel(
        frontend=build("frontend", "log_mel", spec=SPEC),
        encoder=build("encoder", "conformer", n_mels=N_MELS, d_model=32, num_layers=1, nhead=2, d_ffn=64,
                      kernel_size=7, dropout=0.0, hop_seconds=0.01),
        lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 48, "n_layer": 1, "n_head": 2}, vocab_size=30),
        prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim, dropout=0.0),
        postnet=lambda in_dim, out_dim: build("postnet", "conv_residual", in_dim=in_dim, out_dim=out_dim,
                                              channels=32, layers=3, conv_dropout=0.0),
        vocoder=build("vocoder", "griffin_lim", spec=SPEC, n_iter=2), reduction_factor=2, prompt_seconds=1.0)
    batch = batch_of()
    refining = {"spec": 1.0, "spec_coarse": 1.0}
    out = scored(model, batch, terms=refining)
    # the refiner starts as the identity, so both outputs (and both terms) agree at first
    torch.testing.assert_close(out["pred_frames"], out["coarse_frames"])
    assert float(out["spec"]) == pytest.approx(float(out["spec_coarse"]))
    out = fit(model, batch, steps=60, terms=refining)
    assert out["spec"] < out["spec_coarse"]  # the refiner improves on the step-by-step frames
    model.eval()
    got = model.generate(batch["prompt_wav"], batch["prompt_lens"], num_frames=torch.tensor([61, 41]),
                         forced_text=[[3, 4], [5]])
    assert [len(f) for f in got.frames] == [61, 41]
    model.save_pretrained(tmp_path / "b")
    back = SpectronModel.from_pretrained(tmp_path / "b")
    again = back.generate(batch["prompt_wav"], batch["prompt_lens"], num_frames=torch.tensor([61, 41]),
                          forced_text=[[3, 4], [5]])
    torch.testing.assert_close(again.frames[1], got.frames[1])
