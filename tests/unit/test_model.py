"""SpectronModel: teacher forcing, cached decoding, overfitting, bundles."""
import json
import math

import pytest
import torch

from spectron_kit import build
from spectron_kit.features import FeatureSpecMismatch
from spectron_kit.model import SpectronModel

N_MELS = 40
SPEC = {"n_mels": N_MELS, "n_fft": 512, "win_length": 400, "hop_length": 160}


def tiny_model(r=1, stop_head=False, prenet_dropout=0.0, vocoder=True, lm_layers=2, **settings):
    torch.manual_seed(0)
    return SpectronModel(
        frontend=build("frontend", "log_mel", spec=SPEC),
        encoder=build("encoder", "conformer", n_mels=N_MELS, d_model=32, num_layers=1, nhead=2,
                      d_ffn=64, kernel_size=7, dropout=0.0, hop_seconds=0.01),
        lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 48, "n_layer": lm_layers, "n_head": 2,
                                     "n_positions": 1024, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                     "attn_pdrop": 0.0}, vocab_size=30),
        prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim, bottleneck=32,
                                             dropout=prenet_dropout),
        postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim, hidden=64),
        vocoder=build("vocoder", "griffin_lim", spec=SPEC, n_iter=4) if vocoder else None,
        reduction_factor=r, stop_head=stop_head, prompt_seconds=1.0, **settings)


def scored(model, batch, **loss_kwargs):
    """The model's predictions and the objective's terms on them, as the recipe's compute_objectives does."""
    objective = build("loss", "spectron", **loss_kwargs)
    model.check_objective(objective)
    predictions = model(batch, attention_layers=objective.attention_layers)
    return {**predictions, **objective(predictions, batch)}


def chirp(seconds, rate=16000, f0=200.0, f1=900.0, seed=0):
    """A deterministic tone sweep with harmonics: a stand-in for an utterance."""
    t = torch.arange(int(seconds * rate)) / rate
    phase = 2 * math.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    gen = torch.Generator().manual_seed(seed)
    wav = 0.3 * torch.sin(phase) + 0.1 * torch.sin(2 * phase) + 0.01 * torch.randn(len(t), generator=gen)
    return wav * (0.5 + 0.5 * torch.sin(2 * math.pi * 1.5 * t) ** 2)


def batch_of(lengths_s=(1.0, 0.7), cont_s=(0.6, 0.4), n_tokens=(6, 3)):
    prompts = [chirp(s, seed=i) for i, s in enumerate(lengths_s)]
    conts = [chirp(s, f0=400, seed=10 + i) for i, s in enumerate(cont_s)]
    pad = torch.nn.utils.rnn.pad_sequence
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(2, 30, (len(n_tokens), max(n_tokens)), generator=gen)
    return {"prompt_wav": pad(prompts, batch_first=True), "prompt_lens": torch.tensor([len(p) for p in prompts]),
            "cont_wav": pad(conts, batch_first=True), "cont_lens": torch.tensor([len(c) for c in conts]),
            "tokens": tokens, "token_lens": torch.tensor(n_tokens)}


def test_forward_shapes_and_terms():
    model = tiny_model()
    out = scored(model, batch_of())
    assert out["pred_frames"].shape == out["target_frames"].shape == (2, 61, N_MELS)
    assert out["text_logits"].shape == (2, 7, 30)
    assert out["text_targets"][1].tolist()[:4] == batch_of()["tokens"][1, :3].tolist() + [model.lm.eos_id]
    assert (out["text_targets"][1, 4:] == -100).all()
    for term in ("loss", "ce", "spec", "freq_deriv", "time_deriv"):
        assert torch.isfinite(out[term]) and out[term].dim() == 0


def test_cached_encoder_outputs_give_the_same_forward_as_the_audio():
    model = tiny_model().eval()
    batch = batch_of()
    hidden, lens = model.encode_speech(batch["prompt_wav"], batch["prompt_lens"])
    cached = {k: v for k, v in batch.items() if not k.startswith("prompt_")}
    cached.update(prompt_encoded=hidden, prompt_encoded_lens=lens)
    a, b = scored(model, batch), scored(model, cached)
    for key in ("pred_frames", "text_logits", "loss"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_padding_does_not_change_an_item():
    """An item gives the same predictions alone and inside a padded batch."""
    model = tiny_model().eval()
    full = batch_of()
    pad = torch.nn.utils.rnn.pad_sequence
    feats = {}
    for side, lens in (("prompt", "prompt_lens"), ("cont", "cont_lens")):
        items = [model.frontend(full[f"{side}_wav"][i, : int(full[lens][i])])[0][0] for i in range(2)]
        feats[f"{side}_feats"] = pad(items, batch_first=True, padding_value=7.0)  # garbage padding
        feats[f"{side}_feat_lens"] = torch.tensor([len(x) for x in items])
    batch = {**feats, "tokens": full["tokens"], "token_lens": full["token_lens"]}
    single = {k: v[1:2] for k, v in batch.items()}
    n = int(single["cont_feat_lens"][0])
    single["prompt_feats"] = single["prompt_feats"][:, : int(single["prompt_feat_lens"][0])]
    single["cont_feats"], single["tokens"] = single["cont_feats"][:, :n], single["tokens"][:, :3]
    a, b = model(batch), model(single)
    assert torch.allclose(a["pred_frames"][1, :n], b["pred_frames"][0], atol=1e-4)
    assert torch.allclose(a["text_logits"][1, :4], b["text_logits"][0], atol=1e-4)


@pytest.mark.parametrize("r", [1, 2])
def test_cached_generation_equals_recomputation(r):
    model = tiny_model(r=r, prenet_dropout=0.3)
    batch = batch_of()
    kwargs = dict(prompt_wav=batch["prompt_wav"], prompt_lens=batch["prompt_lens"],
                  num_frames=torch.tensor([23, 14]), max_text_tokens=4, vocode=False)
    torch.manual_seed(5)
    cached = model.generate(use_cache=True, **kwargs)
    torch.manual_seed(5)
    uncached = model.generate(use_cache=False, **kwargs)
    assert cached.token_ids == uncached.token_ids
    assert [f.shape[0] for f in cached.frames] == [23, 14]
    for a, b in zip(cached.frames, uncached.frames):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_batch_generation_matches_single_items():
    """Per-item stopping and left-padded prefixes: a batch equals items decoded alone."""
    model = tiny_model(r=1)
    batch = batch_of()
    feats = [model.frontend(batch["prompt_wav"][i, : int(batch["prompt_lens"][i])])[0][0] for i in range(2)]
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lens = torch.tensor([len(f) for f in feats])
    both = model.generate(prompt_feats=padded, prompt_feat_lens=lens, num_frames=torch.tensor([12, 7]),
                          max_text_tokens=3, vocode=False)
    for i, n in enumerate((12, 7)):
        alone = model.generate(prompt_feats=feats[i], num_frames=n, max_text_tokens=3, vocode=False)
        assert alone.token_ids[0] == both.token_ids[i]
        assert alone.frames[0].shape[0] == n
        assert torch.allclose(alone.frames[0], both.frames[i], atol=1e-4)


def test_generation_returns_audio_text_and_timing():
    model = tiny_model()
    batch = batch_of()
    out = model.generate(batch["prompt_wav"][0], max_seconds=0.25, max_text_tokens=3)
    assert out.frames[0].shape == (25, N_MELS)
    assert out.waveforms[0].shape[0] == 24 * 160 and out.sample_rate == 16000
    assert len(out.token_ids[0]) <= 3
    for key in ("encode_s", "text_s", "frames_s", "frames_per_second", "real_time_factor"):
        assert out.timing[key] >= 0
    with pytest.raises(ValueError, match="stop_head"):
        model.generate(batch["prompt_wav"][0], stop="stop_head")


def test_stop_head_can_end_items_early():
    model = tiny_model(stop_head=True)
    with torch.no_grad():
        model.stop_head.bias.fill_(10.0)  # always says "stop"
    out = model.generate(batch_of()["prompt_wav"][0], num_frames=50, stop="stop_head", max_text_tokens=2,
                         vocode=False)
    assert out.stopped_by == ["stop_head"] and out.frames[0].shape[0] == 1


def test_overfits_one_utterance():
    """All loss terms fall by 10x on one utterance (the model can learn)."""
    model = tiny_model(r=1, stop_head=True, lm_layers=2)
    batch = batch_of(lengths_s=(1.0,), cont_s=(0.6,), n_tokens=(8,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(300):
        out = scored(model, batch)
        if first is None:
            first = {k: float(out[k].detach()) for k in ("ce", "spec", "freq_deriv", "time_deriv", "stop")}
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    last = {k: float(out[k].detach()) for k in first}
    print("overfit start", first, "end", last)
    for term in first:
        assert last[term] < first[term] / 10, (term, first[term], last[term])


def test_save_and_load_bundle_gives_identical_outputs(tmp_path):
    model = tiny_model(r=2, stop_head=True).eval()
    batch = batch_of()
    path = model.save_pretrained(tmp_path / "bundle")
    for name in ("spectron_config.json", "model.safetensors", "feature_spec.json"):
        assert (path / name).is_file()
    loaded = SpectronModel.from_pretrained(path)
    assert loaded.r == 2 and loaded.stop_head is not None
    a, b = scored(model, batch), scored(loaded, batch)
    for key in ("pred_frames", "text_logits", "loss"):
        assert torch.equal(a[key], b[key]), key
    kwargs = dict(num_frames=10, max_text_tokens=3, vocode=True)
    ga = model.generate(batch["prompt_wav"][0], **kwargs)
    gb = loaded.generate(batch["prompt_wav"][0], **kwargs)
    assert ga.token_ids == gb.token_ids and torch.equal(ga.frames[0], gb.frames[0])
    assert torch.allclose(ga.waveforms[0], gb.waveforms[0])


def test_a_bundle_that_still_holds_the_objective_loads(tmp_path):
    """Bundles written before the objective left the model list a "loss" component (with the old keywords)."""
    import json

    model = tiny_model(r=2).eval()
    path = model.save_pretrained(tmp_path / "bundle")
    config = json.loads((path / "spectron_config.json").read_text())
    assert "loss" not in config["components"]  # the objective is the recipe's, not the bundle's
    config["components"]["loss"] = {"kind": "loss", "name": "spectron", "kwargs": {"w_ce": 1.0, "time_orders": 2}}
    (path / "spectron_config.json").write_text(json.dumps(config))
    loaded = SpectronModel.from_pretrained(path).eval()
    batch = batch_of()
    assert torch.equal(model(batch)["pred_frames"], loaded(batch)["pred_frames"])


def test_without_intermediate_text_frames_follow_the_prefix(tmp_path):
    """The "no intermediate text" ablation: no text read or written, frames right after <sos>."""
    model = tiny_model()
    model.intermediate_text = False
    batch = batch_of()
    out = scored(model, batch)
    assert torch.isfinite(out["loss"])
    # the only text target is the end of text, at the first step (right after <sos>)
    targets = out["text_targets"]
    assert (targets[:, 0] == model.lm.eos_id).all() and (targets[:, 1:] == -100).all()
    # the transcript tokens change nothing: they are not read
    changed = dict(batch, tokens=torch.randint(3, 30, batch["tokens"].shape))
    torch.testing.assert_close(model(changed)["pred_frames"], out["pred_frames"])
    generated = model.generate(batch["prompt_wav"][0], num_frames=6, vocode=False)
    assert generated.token_ids == [[]] and generated.frames[0].shape[0] == 6
    loaded = SpectronModel.from_pretrained(model.save_pretrained(tmp_path / "bundle"))
    assert loaded.intermediate_text is False


def test_broken_or_missing_bundles_fail_with_one_clear_line(tmp_path):
    import shutil

    path = tiny_model().save_pretrained(tmp_path / "bundle")
    for missing in ("results/nope/bundle", "./nope", str(tmp_path / "nope")):
        with pytest.raises(FileNotFoundError, match="no such bundle folder: .*nope(/bundle)?; pass the folder"):
            SpectronModel.from_pretrained(missing)
    truncated = tmp_path / "truncated"
    shutil.copytree(path, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(ValueError, match="model.safetensors cannot be read .*damaged or truncated"):
        SpectronModel.from_pretrained(truncated)
    no_lm = tmp_path / "no_lm"
    shutil.copytree(path, no_lm)
    shutil.rmtree(no_lm / "lm")
    with pytest.raises(FileNotFoundError, match=r"bundle .*no_lm has no lm/ \(the files of its lm\)"):
        SpectronModel.from_pretrained(no_lm)
    # the command line says it in one line, exit code 2
    from spectron_kit.cli import main as cli

    prompt = tmp_path / "p.wav"
    import soundfile

    soundfile.write(prompt, torch.zeros(16000).numpy(), 16000)
    assert cli(["continue", "--model", str(tmp_path / "nope"), str(prompt), "-o", str(tmp_path / "o.wav")]) == 2


def test_an_encoder_for_other_features_is_refused_when_the_model_is_assembled():
    def assemble(**encoder):
        return SpectronModel(frontend=build("frontend", "log_mel", spec=SPEC),
                             encoder=build("encoder", "conformer", d_model=16, num_layers=1, nhead=2, d_ffn=32,
                                           **encoder),
                             lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1,
                                                          "n_head": 2}, vocab_size=20),
                             prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim),
                             postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim))

    assert assemble(n_mels=N_MELS, hop_seconds=0.01).n_mels == N_MELS
    with pytest.raises(ValueError, match=r"frontend and encoder use different features \(n_mels: frontend=40 vs "
                                         r"encoder=64; hop_seconds: frontend=0.01 vs encoder=0.0125\)"):
        assemble(n_mels=64, hop_seconds=0.0125)


def test_mismatched_vocoder_is_refused():
    with pytest.raises(FeatureSpecMismatch) as err:
        SpectronModel(frontend=build("frontend", "log_mel", spec=SPEC),
                      encoder=build("encoder", "conformer", n_mels=N_MELS, d_model=16, num_layers=1, nhead=2,
                                    d_ffn=32),
                      lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1,
                                                   "n_head": 2}, vocab_size=20),
                      prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim),
                      postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim),
                      vocoder=build("vocoder", "griffin_lim", spec=dict(SPEC, hop_length=200, n_mels=80)))
    message = str(err.value)
    assert "hop_length: frontend=160 vs vocoder=200" in message
    assert "n_mels: frontend=40 vs vocoder=80" in message
    assert "win_length" not in message


def test_teacher_forced_frames_are_the_forward_predictions():
    model = tiny_model(r=2).eval()
    batch = batch_of()
    ids = [batch["tokens"][i, : int(n)].tolist() for i, n in enumerate(batch["token_lens"])]
    torch.manual_seed(0)
    frames = model.teacher_forced_frames(batch["prompt_wav"], batch["prompt_lens"], ids,
                                         batch["cont_wav"], batch["cont_lens"])
    torch.manual_seed(0)
    out = model(batch)
    assert [f.shape[0] for f in frames] == out["frame_lens"].tolist() == [61, 41]
    for i, f in enumerate(frames):
        torch.testing.assert_close(f, out["pred_frames"][i, : f.shape[0]].detach())


def test_guided_attention_term_teaches_a_head_to_point_at_the_spoken_token():
    """Trained on the guided-attention term alone, head 0 of layer 1 attends to the target token."""
    model = tiny_model(r=2)
    guided = {"terms": {"guided_attention": 1.0}, "options": {"guided_attention": {"layers": [1], "heads": [0]}}}
    batch = batch_of(lengths_s=(1.0, 0.7), cont_s=(0.6, 0.4), n_tokens=(6, 3))
    steps = [31, 21]                      # ceil(frames / r) frame steps per item
    centres = torch.full((2, 31), float("nan"))
    for i, (g, n) in enumerate(zip(steps, (6, 3))):
        centres[i, :g] = torch.div(torch.arange(g) * n, g, rounding_mode="floor").float()  # a staircase
    batch.update(attention_centres=centres, attention_sigma=torch.tensor([0.5, 0.5]))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        out = scored(model, batch, **guided)
        if step == 0:
            first = float(out["guided_attention"].detach())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    last = float(out["guided_attention"].detach())
    print("guided attention", first, "->", last)
    assert set(out) >= {"loss", "guided_attention"} and "spec" not in out
    assert last < first / 5, (first, last)
    probs = out["attention"][1][:, 0].detach()          # [B, L, L]
    hits = total = 0
    for i, (p, n, g) in enumerate(out["layout"].tolist()):
        for j in range(g):
            hits += int(probs[i, p + n + 1 + j].argmax()) == p + 1 + int(centres[i, j])
            total += 1
    assert hits / total > 0.9, (hits, total)
    with pytest.raises(ValueError, match="needs attention_centres"):
        scored(model, {k: v for k, v in batch.items() if k != "attention_centres"}, **guided)


def test_frame_positions_start_as_a_no_op_and_keep_cached_decoding_exact():
    base = tiny_model(r=2).eval()
    with_positions = SpectronModel(frontend=base.frontend, encoder=base.encoder, lm=base.lm, prenet=base.prenet,
                                   postnet=base.postnet, vocoder=base.vocoder, reduction_factor=2,
                                   prompt_seconds=1.0, frame_positions=True).eval()
    with_positions.projection.load_state_dict(base.projection.state_dict())
    batch = batch_of()
    torch.testing.assert_close(with_positions(batch)["pred_frames"], base(batch)["pred_frames"])
    torch.nn.init.normal_(with_positions.frame_positions.weight, std=0.5)
    assert not torch.allclose(with_positions(batch)["pred_frames"], base(batch)["pred_frames"])
    kwargs = dict(num_frames=12, max_text_tokens=3, vocode=False)
    cached = with_positions.generate(batch["prompt_wav"][0], **kwargs)
    recomputed = with_positions.generate(batch["prompt_wav"][0], use_cache=False, **kwargs)
    torch.testing.assert_close(cached.frames[0], recomputed.frames[0], atol=1e-5, rtol=1e-4)


def test_guided_attention_on_a_layer_the_lm_lacks_is_refused_before_training():
    objective = build("loss", "spectron", terms={"guided_attention": 1.0},
                      options={"guided_attention": {"layers": [5]}})
    with pytest.raises(ValueError, match=r"decoder layers \[5\], but the LM has 2 layer\(s\)"):
        tiny_model().check_objective(objective)


def test_a_new_model_setting_is_one_field_and_one_yaml_key_and_travels_in_the_bundle(tmp_path):
    """One config object from the YAML to the bundle (issue 24): a setting added as a dataclass field is read
    from its YAML key by the recipe's from_hparams, saved whole and loaded back."""
    import dataclasses

    from spectron_kit.model_config import SpectronConfig

    @dataclasses.dataclass
    class MyConfig(SpectronConfig):
        my_setting: float = dataclasses.field(default=0.25, metadata={"yaml": "my_yaml_key"})

    class MyModel(SpectronModel):
        config_class = MyConfig

    base = tiny_model(r=2)
    hparams = {"reduction_factor": 2, "prompt_seconds": 1.0, "my_yaml_key": 0.75, "stop_rule": "budget",
               "unrelated": 3}
    config = MyConfig.from_hparams(hparams)
    assert config.my_setting == 0.75 and config.reduction_factor == 2 and config.stop == "budget"
    model = MyModel(frontend=base.frontend, encoder=base.encoder, lm=base.lm, prenet=base.prenet,
                    postnet=base.postnet, config=config)
    path = model.save_pretrained(tmp_path / "bundle")
    back = MyModel.from_pretrained(path)
    assert back.config == model.config and back.config.my_setting == 0.75 and back.r == 2
    assert back.config.to_dict() == json.loads((path / "spectron_config.json").read_text())["model"]
    with pytest.raises(TypeError, match="settings this spectron-kit version does not know: my_setting"):
        SpectronModel.from_pretrained(path)  # the plain model does not know the field: said, not dropped
    with pytest.raises(TypeError, match="unknown settings reduction"):
        SpectronModel(frontend=base.frontend, encoder=base.encoder, lm=base.lm, prenet=base.prenet,
                      postnet=base.postnet, reduction=2)
    with pytest.raises(ValueError, match="self_feeding=2.0; use a fraction"):
        SpectronConfig(self_feeding=2)


def test_rehearsal_batches_reach_the_lm_and_score_as_the_lm_s_own_loss():
    """text_rehearsal: the model's rehearsal outputs give the HF LM's own next-token loss on the same text."""
    from spectron_kit.losses import TextRehearsalTerm

    model = tiny_model().eval()
    tokens = torch.tensor([[5, 9, 3, 7, 0, 0], [4, 4, 8, 11, 12, 6]])
    lengths = torch.tensor([4, 6])
    with torch.no_grad():
        out = model.rehearsal_outputs(tokens, lengths)
        ours = TextRehearsalTerm()({**out, "rehearsal_tokens": tokens})
        sos, eos = model.lm.sos_id, model.lm.eos_id
        losses, counts = [], []
        for row, n in zip(tokens, lengths.tolist()):  # the HF model's own loss, one unpadded sequence at a time
            ids = torch.tensor([[sos, *row[:n].tolist(), eos]])
            losses.append(model.lm.model(input_ids=ids, labels=ids).loss * (n + 1))
            counts.append(n + 1)
    assert out["rehearsal_targets"].shape == (2, 7) and (out["rehearsal_targets"][0, 5:] == -100).all()
    torch.testing.assert_close(ours, sum(losses) / sum(counts), atol=1e-5, rtol=1e-5)


def test_a_training_step_under_bf16_autocast_on_the_cpu_follows_fp32():
    """The GPU path's mixed precision (--precision=bf16) also runs on a CPU: the loss and every gradient are
    finite and close to the fp32 step's (bf16 keeps about 3 significant digits)."""
    losses, grads = {}, {}
    for precision in ("fp32", "bf16"):
        model = tiny_model(r=2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = scored(model, batch_of())
        out["loss"].backward()
        losses[precision] = float(out["loss"].detach())
        grads[precision] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert losses["bf16"] != losses["fp32"]  # the autocast took effect
    assert math.isfinite(losses["bf16"]) and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03)
    assert torch.isfinite(grads["bf16"]).all()
    assert torch.nn.functional.cosine_similarity(grads["bf16"], grads["fp32"], dim=0) > 0.98
