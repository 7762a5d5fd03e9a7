"""Decoder LMs and tokenizers load from directories exactly like hub models."""
import io

import pytest
import torch

from spectron_kit import build
from spectron_kit.lm import HFCausalLM, SentencePieceTokenizer, load_tokenizer

SENTENCES = ["the little fox walked to the river", "then the fox drank the cold water",
             "one two three four five six seven", "the red bird sang in the morning"] * 20


def train_sentencepiece(path, vocab_size=40):
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES), model_writer=model,
                                   vocab_size=vocab_size, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
                                   minloglevel=2)
    path.write_bytes(model.getvalue())
    return path


def test_sentencepiece_tokenizer_round_trip(tmp_path):
    tok = SentencePieceTokenizer(train_sentencepiece(tmp_path / "sp.model"))
    ids = tok.encode("the fox drank the water")
    assert tok.decode(ids) == "the fox drank the water"
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    tok.save_pretrained(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    assert isinstance(again, SentencePieceTokenizer) and again.encode("one two") == tok.encode("one two")


def test_lm_trained_here_saves_and_loads_through_registry(tmp_path):
    sp = train_sentencepiece(tmp_path / "sp.model")
    lm = HFCausalLM(config={"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2},
                    tokenizer=str(sp))
    assert (lm.sos_id, lm.eos_id, lm.vocab_size) == (1, 2, 40)
    lm.save_pretrained(tmp_path / "text_lm")
    loaded = build("lm", "hf", source=str(tmp_path / "text_lm"))
    ids = torch.tensor([lm.encode("the fox walked")])
    positions = torch.arange(ids.shape[1])[None]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a, _ = lm.eval()(lm.embed(ids), mask, positions)
        b, _ = loaded.eval()(loaded.embed(ids), mask, positions)
    assert torch.allclose(a, b, atol=1e-6)
    assert loaded.decode(ids[0]) == "the fox walked"


def test_hf_tokenizer_model_from_directory(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = sorted({w for s in SENTENCES for w in s.split()})
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                     bos_token="<|endoftext|>", unk_token="<unk>")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=1, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    model.save_pretrained(tmp_path / "gpt")
    hf_tok.save_pretrained(tmp_path / "gpt")
    lm = build("lm", "hf", source=str(tmp_path / "gpt"))
    assert lm.sos_id == lm.eos_id == 0 and lm.d_model == 32
    ids = lm.encode("the red bird")
    assert len(ids) == 3 and lm.decode(ids) == "the red bird"
    expected = model.eval()(torch.tensor([ids])).logits
    hidden, _ = lm.eval()(lm.embed(torch.tensor([ids])), torch.ones(1, 3, dtype=torch.long),
                          torch.arange(3)[None])
    assert torch.allclose(lm.logits(hidden), expected, atol=1e-5)


def test_lm_argument_errors():
    with pytest.raises(ValueError, match="exactly one of source=, config=, config_dir="):
        HFCausalLM()
    with pytest.raises(ValueError, match="model_type"):
        HFCausalLM(config={"hidden_size": 8})


def tiny_lm(model_type, layers):
    """A seeded random LM of width 32 and 4 heads (GQA for llama, no dropout for gpt2), in eval mode."""
    config = {"llama": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2},
              "gpt2": {"model_type": "gpt2", "n_embd": 32, "n_layer": layers, "n_head": 4, "attn_pdrop": 0.0,
                       "resid_pdrop": 0.0, "embd_pdrop": 0.0}}[model_type]
    torch.manual_seed(0)
    return HFCausalLM(config=config, tokenizer=None, vocab_size=40).eval()


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_record_attention_gives_the_eager_probabilities_without_changing_outputs(model_type):
    import torch

    from spectron_kit.lm import HFCausalLM

    lm = tiny_lm(model_type, layers=3)
    embeds = torch.randn(2, 9, 32)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    plain, _ = lm(embeds, mask, positions)
    with lm.record_attention([0, 2]) as records:
        recorded, _ = lm(embeds, mask, positions)
    torch.testing.assert_close(recorded, plain)
    assert lm.model.config._attn_implementation == "sdpa"   # restored
    lm.model.config._attn_implementation = "eager"
    reference = lm.model.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                    output_attentions=True).attentions
    for layer in (0, 2):
        got = records[layer][0]
        assert got.shape == (2, 4, 9, 9)
        torch.testing.assert_close(got[0], reference[layer][0].float())
        torch.testing.assert_close(got[1, :, :6, :6], reference[layer][1, :, :6, :6].float())
    assert set(records) == {0, 2}
    with pytest.raises(ValueError, match="attention layers \\[5\\] do not exist; this LM has 3 layers"):
        with lm.record_attention([5]):
            pass


def test_a_sequence_longer_than_learned_positions_is_one_clear_error():
    from spectron_kit.lm import HFCausalLM

    gpt = HFCausalLM(config={"model_type": "gpt2", "n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 8},
                     tokenizer=None, vocab_size=20).eval()
    assert gpt.max_positions == 8
    ok, _ = gpt(torch.randn(1, 8, 16), torch.ones(1, 8, dtype=torch.long), torch.arange(8)[None])
    assert ok.shape == (1, 8, 16)
    with pytest.raises(ValueError, match="needs 9 positions but the LM has 8 learned positions; shorten it: "
                                         "--prompt_seconds"):
        gpt(torch.randn(1, 9, 16), torch.ones(1, 9, dtype=torch.long), torch.arange(9)[None])
    llama = HFCausalLM(config={"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
                               "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                               "max_position_embeddings": 8}, tokenizer=None, vocab_size=20)
    assert llama.max_positions is None  # rotary positions: no table to run past


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_the_growing_cache_decodes_the_same_numbers_without_copying_each_step(model_type):
    """lm.new_cache(): cached steps give DynamicCache's hidden states (a padded batch, 150 steps past its
    first buffer), write in place between regrowths, and survive transformers' batch selection."""
    from transformers import DynamicCache

    lm = tiny_lm(model_type, layers=2)
    prefix, steps = torch.randn(3, 7, 32), torch.randn(3, 150, 32)
    mask = torch.ones(3, 7 + 150, dtype=torch.long)
    mask[2, 5:7] = 0  # a padded item

    def decode(cache):
        out, moves = [], 0
        with torch.no_grad():
            hidden, cache = lm(prefix, mask[:, :7], (mask[:, :7].cumsum(-1) - 1).clamp(min=0), cache, True)
            out.append(hidden)
            for i in range(steps.shape[1]):
                before = cache.layers[0].keys.data_ptr()
                position = mask[:, : 8 + i].sum(-1, keepdim=True) - 1
                hidden, cache = lm(steps[:, i: i + 1], mask[:, : 8 + i], position, cache, True)
                moves += cache.layers[0].keys.data_ptr() != before
                out.append(hidden)
        return torch.cat(out, 1), cache, moves

    expected, reference_cache, _ = decode(DynamicCache(config=lm.model.config))
    got, cache, moves = decode(lm.new_cache())
    torch.testing.assert_close(got, expected)
    assert moves <= 3  # regrowths (64 -> 130 -> 262 positions), not one copy per step
    reference_cache.batch_select_indices(torch.tensor([0, 2]))
    cache.batch_select_indices(torch.tensor([0, 2]))
    with torch.no_grad():
        follow = [lm(steps[[0, 2], :1], mask[[0, 2]][:, :157], mask[[0, 2]][:, :157].sum(-1, keepdim=True) - 1,
                     c, True)[0] for c in (reference_cache, cache)]
    torch.testing.assert_close(follow[1], follow[0])


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_a_cached_step_builds_its_own_mask_with_transformers_numbers(model_type, implementation):
    """One cached step passes its padding mask as the 4-D mask the attention reads (no mask builder per
    step): the hidden states equal transformers' own masking, with left padding and a finished item."""
    lm = tiny_lm(model_type, layers=2)
    lm.model.config._attn_implementation = implementation
    prefix, steps = torch.randn(3, 6, 32), torch.randn(3, 12, 32)
    mask = torch.ones(3, 6 + 12, dtype=torch.long)
    mask[1, :2] = 0     # left padding
    mask[2, 10:] = 0    # an item that stopped: its later inputs are not attended to

    def decode(fast):
        lm.fast_step_mask = fast
        out = []
        with torch.no_grad():
            hidden, cache = lm(prefix, mask[:, :6], (mask[:, :6].cumsum(-1) - 1).clamp(min=0), lm.new_cache(), True)
            for i in range(steps.shape[1]):
                position = (mask[:, : 7 + i].sum(-1, keepdim=True) - 1).clamp(min=0)
                hidden, cache = lm(steps[:, i: i + 1], mask[:, : 7 + i], position, cache, True)
                out.append(hidden)
        return torch.cat(out, 1)

    try:
        own, theirs = decode(True), decode(False)
    finally:
        lm.fast_step_mask = True
    torch.testing.assert_close(own, theirs)
    assert lm._step_mask(mask[:, :7], torch.float32).shape == (3, 1, 1, 7)
