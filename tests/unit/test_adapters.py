"""LM adapters (issue 26): LoRA trains beside a frozen LM, and bundles load back exactly, kept or merged."""
import pytest
import torch

from spectron_kit import build
from spectron_kit.registry import get_registry

from test_model import batch_of, chirp, scored, tiny_model  # noqa: I001  (tests/unit is on sys.path under pytest)

pytest.importorskip("peft")


def lora_model(merge=True, r=4):
    model = tiny_model(max_text_tokens=6, lm_adapter={"name": "lora", "r": r}, merge_adapter=merge)
    with torch.no_grad():  # LoRA starts as a zero update; a trained one is not
        for name, param in model.lm.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    return model.eval()


def test_the_adapter_is_registered_and_only_its_weights_train():
    assert "lora" in get_registry().names("adapter")
    model = lora_model()
    lm_params = dict(model.lm.model.named_parameters())
    trainable = [n for n, p in lm_params.items() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert sum(p.numel() for n, p in lm_params.items() if p.requires_grad) < 0.2 * sum(
        p.numel() for p in lm_params.values())
    model.train()
    out = scored(model, batch_of(), terms={"ce": 1.0, "spec": 1.0})
    out["loss"].backward()
    assert all(p.grad is None for n, p in lm_params.items() if "lora_" not in n)  # the LM's own weights
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lm_params.items() if "lora_" in n)
    assert any(p.grad is not None for p in model.prenet.parameters())  # the rest of the model still learns


@pytest.mark.parametrize("merge", [False, True], ids=["kept", "merged"])
def test_an_adapter_bundle_loads_back_exactly(tmp_path, merge):
    from spectron_kit.model import SpectronModel

    model = lora_model(merge=merge)
    prompt = chirp(1.2)
    torch.manual_seed(0)
    before = model.generate(prompt, num_frames=20, vocode=False)
    loaded = SpectronModel.from_pretrained(model.save_pretrained(tmp_path / "bundle")).eval()
    torch.manual_seed(0)
    after = loaded.generate(prompt, num_frames=20, vocode=False)
    assert after.text == before.text
    if merge:  # a plain bundle: no adapter, the update folded into the LM's weights (float rounding only)
        assert loaded.adapter is None and loaded.config.lm_adapter is None
        assert not any("lora_" in n for n in loaded.state_dict())
        torch.testing.assert_close(after.frames[0], before.frames[0], atol=1e-4, rtol=1e-4)
        again = SpectronModel.from_pretrained(loaded.save_pretrained(tmp_path / "again")).eval()
        for key, value in loaded.state_dict().items():  # the merged bundle itself round-trips bit-exactly
            assert torch.equal(value, again.state_dict()[key]), key
    else:  # kept separate: the bundle re-applies the adapter, every weight and output is the same
        assert loaded.config.lm_adapter == {"name": "lora", "r": 4}
        assert set(loaded.state_dict()) == set(model.state_dict())
        for key, value in model.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key
        assert torch.equal(after.frames[0], before.frames[0])


def test_an_unknown_adapter_or_bad_rank_is_one_line():
    with pytest.raises(Exception, match="adapter.*lorra|lorra"):
        build("adapter", "lorra")
    with pytest.raises(ValueError, match="rank of at least 1"):
        build("adapter", "lora", r=0)
