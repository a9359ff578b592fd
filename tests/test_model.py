"""Tests for the tiny transformer policy and sampling (one policy: K = 1 of the stacked code)."""

import pytest
import torch
from pydantic import ValidationError

from vlsim.batched import SampleOutput, StackedCache, StackedPolicy, sample
from vlsim.model import (
    MODEL_SIZES,
    ModelConfig,
    TinyGPT,
    model_config,
    pick_device,
    sequence_logprobs,
)

VOCAB = 32
EOS, PAD = 1, 0


def make_model(size: str = "tiny", seed: int = 0, block_size: int = 64) -> TinyGPT:
    """A freshly initialised model in eval mode, reproducible from the seed."""
    torch.manual_seed(seed)
    return TinyGPT(model_config(size, VOCAB, block_size)).eval()


def eos_biased_model(p_eos: float, seed: int = 0) -> TinyGPT:
    """A model whose next-token distribution ignores the input and gives EOS probability p_eos."""
    model = make_model(seed=seed)
    with torch.no_grad():
        model.ln_f.weight.zero_()  # the final hidden state is ln_f.bias for every input
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 1.0
        model.wte.weight[:, 0] = 0.0  # every token's logit is 0 ...
        # ... except EOS, whose logit gives it probability p_eos among VOCAB tokens
        model.wte.weight[EOS, 0] = torch.log(torch.tensor(p_eos * (VOCAB - 1) / (1 - p_eos)))
    return model


def test_forward_shapes_and_block_size_error():
    model = make_model()
    idx = torch.randint(0, VOCAB, (3, 10))
    assert model(idx).shape == (3, 10, VOCAB)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.randint(0, VOCAB, (1, 65)))


@pytest.mark.parametrize(
    "size, low, high",
    [
        ("tiny", 0.05e6, 0.2e6),
        ("small", 0.25e6, 0.6e6),
        ("medium", 1.0e6, 2.2e6),
        ("large", 3.5e6, 7e6),
    ],
)
def test_size_presets_parameter_counts(size, low, high):
    model = TinyGPT(model_config(size, vocab_size=VOCAB, block_size=128))
    assert low <= model.num_parameters() <= high
    assert set(MODEL_SIZES) == {"tiny", "small", "medium", "large"}


def test_unknown_size_is_named():
    with pytest.raises(ValueError, match="huge"):
        model_config("huge", VOCAB, 64)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_embd": 100, "n_head": 3}, "n_embd"),
        ({"n_layer": 0}, "n_layer"),
        ({"block_size": -1}, "block_size"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        ModelConfig(**{"vocab_size": VOCAB, **kwargs})


@pytest.mark.slow
def test_kv_cache_matches_full_forward():
    model = make_model("small")
    policy = StackedPolicy.of_model(model)
    idx = torch.randint(0, VOCAB, (4, 20))
    with torch.no_grad():
        full = model(idx)  # (4, 20, V)
        cache = StackedCache(model.config, 1, 4, 64, model.wte.weight)
        parts = [policy(idx[None, :, :7], cache)]  # prefill
        parts += [policy(idx[None, :, t : t + 1], cache) for t in range(7, 12)]  # one at a time
        parts.append(policy(idx[None, :, 12:], cache))  # a chunk after a cached prefix
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(parts, dim=2)[0], full, atol=1e-5, rtol=0)


def check_sample_invariants(out: SampleOutput, M: int) -> None:
    """Tokens after EOS are pad; lengths, truncation, mask and logprobs agree with the tokens."""
    N = out.tokens.shape[0]
    assert out.tokens.shape == out.logprobs.shape == out.mask.shape == (N, M)
    assert out.lengths.shape == out.truncated.shape == (N,)
    for i in range(N):
        row, n = out.tokens[i].tolist(), int(out.lengths[i])
        if out.truncated[i]:
            assert n == M and EOS not in row
        else:
            assert row[n - 1] == EOS and EOS not in row[: n - 1]
            assert row[n:] == [PAD] * (M - n)
        assert out.mask[i].tolist() == [t < n for t in range(M)]
        assert (out.logprobs[i, n:] == 0).all() and (out.logprobs[i, :n] < 0).all()


@pytest.mark.slow
def test_sample_respects_eos():
    model = eos_biased_model(p_eos=0.15)
    prompt = torch.randint(2, VOCAB, (64, 5))
    out = sample(model, prompt, 10, EOS, PAD, generator=torch.Generator().manual_seed(0))
    check_sample_invariants(out, 10)
    assert out.truncated.any() and not out.truncated.all()  # both kinds of rows occur
    assert out.lengths.min() < 10


def test_sample_stops_when_every_row_ends():
    model = eos_biased_model(p_eos=0.999)
    prompt = torch.randint(2, VOCAB, (8, 5))
    out = sample(model, prompt, 20, EOS, PAD, generator=torch.Generator().manual_seed(0))
    check_sample_invariants(out, 20)
    assert (out.lengths == 1).all() and not out.truncated.any()
    assert out.trim().tokens.shape == (8, 1)


@pytest.mark.slow
def test_greedy_is_deterministic():
    model = make_model("small")
    prompt = torch.randint(2, VOCAB, (6, 8))
    a = sample(model, prompt, 12, EOS, PAD, greedy=True)
    b = sample(model, prompt, 12, EOS, PAD, greedy=True)
    assert torch.equal(a.tokens, b.tokens)
    check_sample_invariants(a, 12)


@pytest.mark.slow
def test_same_seed_same_samples():
    prompt = torch.randint(2, VOCAB, (16, 6))
    outs = [
        sample(make_model(seed=3), prompt, 15, EOS, PAD, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    assert torch.equal(outs[0].logprobs, outs[1].logprobs)
    other = sample(
        make_model(seed=3), prompt, 15, EOS, PAD, generator=torch.Generator().manual_seed(8)
    )
    assert not torch.equal(outs[0].tokens, other.tokens)


@pytest.mark.slow
@pytest.mark.parametrize("p_eos", [0.0, 0.1])
def test_sampled_logprobs_match_teacher_forcing(p_eos):
    model = make_model("small", seed=1) if p_eos == 0 else eos_biased_model(p_eos, seed=1)
    prompt = torch.randint(2, VOCAB, (32, 6))
    out = sample(model, prompt, 20, EOS, PAD, generator=torch.Generator().manual_seed(0))
    logp, entropy = sequence_logprobs(model, prompt, out.tokens)
    assert logp.shape == entropy.shape == (32, 20)
    torch.testing.assert_close(logp[out.mask], out.logprobs[out.mask], atol=1e-5, rtol=0)
    assert (entropy >= 0).all() and (entropy <= torch.log(torch.tensor(float(VOCAB))) + 1e-5).all()


def test_sequence_logprobs_is_differentiable():
    model = make_model()
    prompt, tokens = torch.randint(0, VOCAB, (2, 4)), torch.randint(0, VOCAB, (2, 5))
    logp, entropy = sequence_logprobs(model, prompt, tokens, temperature=0.7)
    (logp.sum() + entropy.sum()).backward()
    assert model.wte.weight.grad is not None


def test_sample_restores_training_mode_and_checks_width():
    model = make_model(block_size=16)
    model.train()
    sample(model, torch.zeros(2, 4, dtype=torch.long), 5, EOS, PAD)
    assert model.training
    with pytest.raises(ValueError, match="block_size"):
        sample(model, torch.zeros(2, 10, dtype=torch.long), 10, EOS, PAD)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, torch.zeros(2, 4, dtype=torch.long), 5, EOS, PAD, temperature=0.0)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            pick_device("mps")
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")
