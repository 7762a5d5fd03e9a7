"""Tests of spectron_kit.encoders (tiny models, CPU, seconds)."""
import inspect
import json

import numpy as np
import pytest
import torch

from spectron_kit import encoders
from spectron_kit.encoders import ConformerEncoder, HFAudioEncoder, WhisperSpeechEncoder

TINY_CONFORMER = dict(n_mels=16, d_model=16, num_layers=2, nhead=2, d_ffn=32, kernel_size=5)

TINY_W2V2 = {"model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 32, "conv_dim": [8, 8],
             "conv_kernel": [10, 3], "conv_stride": [5, 2], "num_conv_pos_embeddings": 4,
             "num_conv_pos_embedding_groups": 2}

TINY_WHISPER = {"model_type": "whisper", "d_model": 16, "encoder_layers": 2,
                "decoder_layers": 1, "encoder_attention_heads": 2,
                "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
                "num_mel_bins": 20, "max_source_positions": 25, "max_target_positions": 8,
                "vocab_size": 16, "pad_token_id": 1, "bos_token_id": 1, "eos_token_id": 2,
                "decoder_start_token_id": 1}


def _registered():
    table = {}
    encoders.register_encoders(
        register=lambda name, factory, description="": table.setdefault(name, factory))
    return table


def build_encoder(name, **kwargs):
    """spectron_kit.build when every built-in module imports, else the hook's factory."""
    from spectron_kit import registry

    try:
        registry.get_registry()
    except ImportError:  # another built-in module is not written yet
        factory = _registered()[name]
        inspect.signature(factory).bind(**kwargs)
        return factory(**kwargs)
    return registry.build("encoder", name, **kwargs)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- registration ----------------------------------------------------------
def test_hook_registers_the_three_encoders():
    table = _registered()
    assert table == {"conformer": ConformerEncoder, "hf": HFAudioEncoder, "whisper": WhisperSpeechEncoder}


def test_module_import_is_light():
    src = inspect.getsource(encoders).split("\n# ---", 1)[0]
    assert "import transformers" not in src


# -- Conformer -------------------------------------------------------------
def test_conformer_shapes_and_lengths():
    enc = ConformerEncoder(**TINY_CONFORMER).eval()
    assert enc.input_kind == "features" and enc.output_size == 16
    assert enc.frame_rate == pytest.approx(20.0)
    lengths = torch.tensor([37, 20, 5, 1])
    hidden, out = enc(torch.randn(4, 37, 16), lengths)
    expected = [((((n - 1) // 2 + 1) - 1) // 2 + 1) for n in lengths.tolist()]
    assert out.dtype == torch.long and out.tolist() == expected == [10, 5, 2, 1]
    assert hidden.shape == (4, 10, 16)
    assert torch.all(hidden[1, 5:] == 0)


def test_conformer_padding_invariance():
    enc = ConformerEncoder(**TINY_CONFORMER).eval()
    lengths = torch.tensor([41, 23, 14])
    x = torch.randn(3, 41, 16)
    x_padded = x.clone()
    x_padded[1, 23:] = 100.0  # garbage in padding must not matter
    x_padded[2, 14:] = -50.0
    with torch.no_grad():
        batch, out = enc(x_padded, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, out_i = enc(x[i:i + 1, :n], torch.tensor([n]))
            assert out_i.item() == out[i].item()
            torch.testing.assert_close(batch[i, :out[i]], alone[0], atol=1e-5, rtol=0)


def test_conformer_subsampling_channels(tmp_path):
    enc = ConformerEncoder(**TINY_CONFORMER, subsampling_channels=4).eval()
    assert enc.subsampling.conv2.weight.shape == (4, 4, 3, 3)
    assert enc.subsampling.proj.in_features == 4 * 4  # 4 channels x (16 bins -> 8 -> 4)
    wide = ConformerEncoder(**TINY_CONFORMER)
    assert sum(p.numel() for p in enc.parameters()) < sum(p.numel() for p in wide.parameters())
    x, lengths = torch.randn(2, 30, 16), torch.tensor([30, 17])
    enc.save_pretrained(tmp_path / "narrow")
    loaded = ConformerEncoder.from_pretrained(tmp_path / "narrow")
    assert loaded.config["subsampling_channels"] == 4
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x, lengths)[0], enc(x, lengths)[0], atol=1e-5, rtol=1e-5)
    # an encoder saved before the field existed loads with channels = d_model
    wide.save_pretrained(tmp_path / "old")
    config_file = tmp_path / "old" / "encoder_config.json"
    config = json.loads(config_file.read_text())
    del config["subsampling_channels"]
    config_file.write_text(json.dumps(config))
    assert ConformerEncoder.from_pretrained(tmp_path / "old").subsampling.conv2.out_channels == 16
    with pytest.raises(ValueError, match="subsampling_channels=0 must be a positive integer or null"):
        ConformerEncoder(**TINY_CONFORMER, subsampling_channels=0)


def test_conformer_freeze():
    enc = ConformerEncoder(**TINY_CONFORMER, freeze=True)
    enc.train()
    assert not enc.training
    assert all(not p.requires_grad for p in enc.parameters())
    hidden, _ = enc(torch.randn(1, 12, 16), torch.tensor([12]))
    assert not hidden.requires_grad
    trainable = ConformerEncoder(**TINY_CONFORMER)
    assert trainable(torch.randn(1, 12, 16))[0].requires_grad


def test_conformer_save_load_round_trip(tmp_path):
    enc = ConformerEncoder(**TINY_CONFORMER).eval()
    enc.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "encoder_config.json").read_text())["n_mels"] == 16
    x, lengths = torch.randn(2, 30, 16), torch.tensor([30, 17])
    with torch.no_grad():
        ref = enc(x, lengths)[0]
        loaded = ConformerEncoder.from_pretrained(tmp_path, freeze=True)
        for name, value in enc.state_dict().items():  # the weights come back bit for bit
            assert torch.equal(loaded.state_dict()[name], value), name
        # outputs: float32-equal (kernels may sum in another order under load, ~1e-7)
        torch.testing.assert_close(loaded(x, lengths)[0], ref, atol=1e-5, rtol=1e-5)
        # registry path: stored config wins over other keyword arguments
        built = build_encoder("conformer", source=str(tmp_path), d_model=999).eval()
        assert built.output_size == 16
        torch.testing.assert_close(built(x, lengths)[0], ref, atol=1e-5, rtol=1e-5)
    assert loaded.frozen and not any(p.requires_grad for p in loaded.parameters())
    rebuilt = ConformerEncoder(**enc.bundle_kwargs(tmp_path))
    rebuilt.load_state_dict(enc.state_dict())
    # config_dir: the stored architecture with fresh weights ("no pre-trained encoder" ablation)
    torch.manual_seed(5)
    fresh = build_encoder("conformer", config_dir=str(tmp_path), d_model=999)
    assert fresh.config == enc.config
    assert not torch.equal(next(iter(fresh.parameters())),
                           next(iter(enc.parameters())))
    with pytest.raises(ValueError, match="not both"):
        ConformerEncoder(source=str(tmp_path), config_dir=str(tmp_path))


def test_conformer_bad_inputs(tmp_path):
    ConformerEncoder(**TINY_CONFORMER).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="n_mels=80 does not match n_mels=16"):
        ConformerEncoder(source=tmp_path, n_mels=80)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        ConformerEncoder(source=tmp_path / "missing")
    with pytest.raises(ValueError, match="nhead=3"):
        ConformerEncoder(d_model=16, nhead=3)
    enc = ConformerEncoder(**TINY_CONFORMER)
    with pytest.raises(ValueError, match="expected 16 mel bins, got 80"):
        enc(torch.randn(1, 10, 80), torch.tensor([10]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        enc(torch.randn(1, 10, 16), torch.tensor([11]))
    with pytest.raises(ValueError, match="absolute"):
        enc(torch.randn(1, 10, 16), torch.tensor([1.0]))


# -- Hugging Face ----------------------------------------------------------
def test_hf_wav2vec2_shapes_lengths():
    enc = HFAudioEncoder(config=TINY_W2V2).eval()
    assert enc.input_kind == "waveform" and enc.output_size == 16
    assert enc.frame_rate == pytest.approx(1600.0)
    lengths = torch.tensor([800, 333])
    hidden, out = enc(torch.randn(2, 800), lengths)
    ref = enc.model._get_feat_extract_output_lengths(lengths)
    assert out.tolist() == ref.tolist() == [79, 32]
    assert hidden.shape == (2, 79, 16)
    assert torch.all(hidden[1, 32:] == 0)
    # a middle layer
    mid = HFAudioEncoder(config=TINY_W2V2, layer=1).eval()
    assert mid(torch.randn(1, 800))[0].shape == (1, 79, 16)
    with pytest.raises(ValueError, match="layer=5 is out of range"):
        HFAudioEncoder(config=TINY_W2V2, layer=5)


def test_hf_layer_norm_model_gets_attention_mask():
    cfg = dict(TINY_W2V2, feat_extract_norm="layer", do_stable_layer_norm=True)
    enc = HFAudioEncoder(config=cfg).eval()
    assert enc.use_attention_mask
    assert not HFAudioEncoder(config=TINY_W2V2).use_attention_mask
    x, lengths = torch.randn(2, 800), torch.tensor([800, 500])
    with torch.no_grad():
        batch, out = enc(x, lengths)
        alone, _ = enc(x[1:, :500], lengths[1:])
    torch.testing.assert_close(batch[1, :out[1]], alone[0], atol=1e-5, rtol=0)


def test_hf_wav2vec2_from_saved_source(tmp_path):
    from transformers import AutoConfig, AutoModel

    fields = dict(TINY_W2V2)
    original = AutoModel.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
    original.eval().save_pretrained(str(tmp_path))
    enc = build_encoder("hf", source=str(tmp_path), normalize_waveform=False).eval()
    wav = torch.randn(1, 640)
    with torch.no_grad():
        ref = original(wav).last_hidden_state
        hidden, out = enc(wav, torch.tensor([640]))
    assert out.item() == ref.shape[1]
    torch.testing.assert_close(hidden, ref, atol=1e-5, rtol=1e-5)


def test_hf_freeze():
    enc = HFAudioEncoder(config=TINY_W2V2, freeze=True)
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert not enc(torch.randn(1, 400))[0].requires_grad


def test_hf_bundle_kwargs_round_trip(tmp_path):
    enc = HFAudioEncoder(config=TINY_W2V2, layer=1).eval()
    kwargs = enc.bundle_kwargs(tmp_path / "enc")
    assert kwargs == {"config_dir": str(tmp_path / "enc"), "freeze": False, "layer": 1,
                      "normalize_waveform": True}
    rebuilt = build_encoder("hf", **kwargs).eval()
    rebuilt.load_state_dict(enc.state_dict())
    wav, lengths = torch.randn(2, 500), torch.tensor([500, 420])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(wav, lengths)[0], enc(wav, lengths)[0],
                                   atol=1e-5, rtol=1e-5)


def test_hf_refuses_whisper_and_names_the_whisper_encoder(tmp_path):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with pytest.raises(ValueError, match="--encoder_name=whisper"):
        HFAudioEncoder(config=TINY_WHISPER)
    WhisperEncoder(WhisperConfig(**{k: v for k, v in TINY_WHISPER.items() if k != "model_type"})).save_pretrained(
        str(tmp_path))
    with pytest.raises(ValueError, match="is a Whisper checkpoint; use the whisper encoder"):
        HFAudioEncoder(source=str(tmp_path))


def test_hf_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of source, config or config_dir"):
        HFAudioEncoder()
    with pytest.raises(ValueError, match="model_type"):
        HFAudioEncoder(config={"hidden_size": 8})
    with pytest.raises(ValueError, match="not a supported audio encoder"):
        HFAudioEncoder(config={"model_type": "bert", "hidden_size": 8,
                               "num_hidden_layers": 1, "num_attention_heads": 2,
                               "intermediate_size": 8})


def test_conformer_keeps_its_feature_spec_and_the_model_compares_every_field(tmp_path):
    from spectron_kit.features import FeatureSpec, FeatureSpecMismatch

    spec = FeatureSpec(n_mels=16, hop_length=160, win_length=400, n_fft=512)
    enc = ConformerEncoder(spec=spec, **{k: v for k, v in TINY_CONFORMER.items() if k != "n_mels"})
    assert enc.n_mels == 16 and enc.frame_rate == 25.0 and enc.spec == spec
    enc.save_pretrained(tmp_path / "enc")
    assert ConformerEncoder(source=str(tmp_path / "enc")).spec == spec  # saved with it
    rebuilt = ConformerEncoder(**enc.bundle_kwargs(tmp_path))
    assert rebuilt.spec == spec and rebuilt.config == enc.config
    with pytest.raises(ValueError, match="give one of them"):
        ConformerEncoder(spec=spec, n_mels=80)
    # the model names every differing field, not only n_mels and the hop
    from spectron_kit.model import _check_encoder_features

    _check_encoder_features(spec, enc)
    with pytest.raises(FeatureSpecMismatch, match="f_min"):
        _check_encoder_features(FeatureSpec(n_mels=16, hop_length=160, win_length=400, n_fft=512, f_min=20.0), enc)


def test_a_waveform_encoder_must_read_the_feature_spec_rate():
    from spectron_kit.encoders.hf import HFAudioEncoder
    from spectron_kit.features import FeatureSpec
    from spectron_kit.model import _check_encoder_features

    config = {"model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 32, "conv_dim": [8, 8], "conv_kernel": [10, 3], "conv_stride": [5, 2],
              "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2}
    spec16 = FeatureSpec(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    spec24 = FeatureSpec(sample_rate=24000, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    enc = HFAudioEncoder(config=config, spec=spec16)  # the rate agrees: built
    _check_encoder_features(spec16, enc)
    with pytest.raises(ValueError, match="the feature spec is 24000 Hz but this wav2vec2 encoder reads 16000 Hz"):
        HFAudioEncoder(config=config, spec=spec24)
    with pytest.raises(ValueError, match=r"sample_rate: frontend=24000 vs encoder=16000"):
        _check_encoder_features(spec24, enc)  # an encoder built without the spec is caught at assembly
