"""K policies as one stacked model: independence, packing exactness, batch checks, batched jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlsim import batch_runner
from vlsim.aggregators import aggregate
from vlsim.batch_runner import execute_batch, policy_bytes
from vlsim.batch_trainer import BatchTrainer, check_batchable, policy_loss
from vlsim.batched import StackedPolicy, plan_buckets, single_bucket, token_logprobs
from vlsim.config import preset_config
from vlsim.model import TinyGPT, model_config
from vlsim.runner import create_training_run
from vlsim.store import Store
from vlsim.train import MemorySink, run_batch

STEPS = 20
SKIP = ("time/", "charts/tokens_per_second")  # wall-clock figures differ between runs


def small_config(**overrides):
    """A config that trains 20 steps in a second or two."""
    base = {
        "sft_steps": 20,
        "steps": STEPS,
        "prompts_per_step": 4,
        "group_size": 4,
        "max_new_tokens": 24,
        "eval_every": 0,
        "checkpoint_every": 0,
        "sample_log_every": 0,
        "format_reward": 0.5,  # rewards differ inside groups, so every step updates
        "task": {"n_train": 100, "n_test": 8},
    }
    base.update(overrides)
    return preset_config("quick", **base)


BATCH = [
    small_config(aggregator="grpo", seed=0),
    small_config(aggregator="vl_norm", alpha=0.5, seed=1, lr=1e-3),
    small_config(aggregator="dapo", seed=2, lr=2e-4, max_grad_norm=0.5),
    small_config(aggregator="dr_grpo", seed=0, lr=8e-4, dynamic_sampling=True),
]


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("warmstart")


def trace(trainer: BatchTrainer, k: int, steps: int) -> tuple[list, list]:
    """Run k's sampled tokens and metric records over `steps` steps of the trainer."""
    tokens, records = [], []
    for _ in range(steps):
        recs = trainer.step()
        tokens.append(trainer.last_rollouts.tokens[k].clone())
        records.append(recs[k])
    return tokens, records


def assert_same_records(a: dict, b: dict, where: str) -> None:
    for key, value in a.items():
        if key.startswith(SKIP):
            continue
        assert key in b, f"{where}: {key} missing"
        assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-7), f"{where}: {key}"
    assert set(a) == set(b), where


@pytest.mark.slow
def test_batched_runs_equal_the_same_runs_alone(warm_cache) -> None:
    """K = 4 (different aggregators, seeds, lr, clipping) equals four K = 1 runs for 20 steps."""
    batch = BatchTrainer(BATCH, cache_dir=warm_cache)
    together = [[] for _ in BATCH]
    for _ in range(STEPS):
        records = batch.step()
        for k in range(len(BATCH)):
            together[k].append((batch.last_rollouts.tokens[k].clone(), records[k]))
    for k, cfg in enumerate(BATCH):
        alone = BatchTrainer([cfg], cache_dir=warm_cache)
        tokens, records = trace(alone, 0, STEPS)
        for step in range(STEPS):
            assert torch.equal(tokens[step], together[k][step][0]), f"run {k} step {step}"
            assert_same_records(records[step], together[k][step][1], f"run {k} step {step}")
        for name, p in alone.policy.params.items():
            torch.testing.assert_close(p[0], batch.policy.params[name][k], rtol=1e-4, atol=2e-5)
    assert any(r["charts/updated"] for _, r in together[0])


def test_kl_term_pulls_answers_without_a_reward_signal_back_to_the_warm_start(warm_cache):
    """Advantages all 0 (a group whose answers all fail): no gradient without the KL term; with
    it, k3 = exp(r) - r - 1 (r = log ref - log pi) per token, and a step down its gradient
    brings the policy closer to the warm start (why the wide preset uses it)."""
    cfgs = [small_config(kl_coef=0.5)]
    trainer = BatchTrainer(cfgs, cache_dir=warm_cache)
    trainer.step()
    ro = trainer.last_rollouts
    with torch.no_grad():  # move the policy away from its reference (the warm start)
        gen = torch.Generator().manual_seed(0)
        for p in trainer.policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    K, N = ro.lengths.shape
    zero = torch.zeros(K, N)
    keep = torch.ones(K, N, dtype=torch.bool)
    buckets = plan_buckets(ro.lengths, ro.prompts.shape[2])
    params = list(trainer.policy.parameters())

    def loss_and_grads(reference):
        for p in params:
            p.grad = None
        losses, stats = policy_loss(trainer.policy, ro, zero, keep, cfgs, buckets, reference)
        losses[0].backward()
        return losses[0].item(), stats[0], [p.grad.clone() for p in params]

    _, stats, grads = loss_and_grads(None)
    assert stats["losses/kl"] == 0.0
    assert all(float(g.abs().max()) == 0.0 for g in grads)  # no reward signal, no gradient

    def mean_k3() -> float:
        with torch.no_grad():
            logp, _ = token_logprobs(trainer.policy, ro.prompts, ro.tokens, buckets, [1.0], False)
            ref, _ = token_logprobs(trainer.reference, ro.prompts, ro.tokens, buckets, [1.0], False)
        r = ref - logp  # (K, N, W)
        mask = ro.mask[..., : r.shape[2]].float()
        return float(((torch.exp(r) - r - 1) * mask).sum() / mask.sum())

    before = mean_k3()
    loss, stats, grads = loss_and_grads(trainer.reference)
    assert stats["losses/kl"] == pytest.approx(before, rel=1e-5) and before > 0
    norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))
    assert norm > 0
    with torch.no_grad():  # a short step down the gradient
        for p, g in zip(params, grads, strict=True):
            p.sub_(0.05 * g / norm)
    assert loss_and_grads(trainer.reference)[0] < loss
    assert mean_k3() < before  # back towards the warm start


def test_packed_pass_equals_padded_pass() -> None:
    """Bucketing by length gives the padded computation's loss and gradients (within 1e-5)."""
    torch.manual_seed(0)
    models = [TinyGPT(model_config("tiny", 32, 64)) for _ in range(2)]
    K, N, Tp, M = 2, 16, 6, 30
    prompt = torch.randint(2, 32, (K, N, Tp))
    tokens = torch.randint(2, 32, (K, N, M))
    lengths = torch.randint(1, M + 1, (K, N))
    lengths[0, 3] = M
    mask = torch.arange(M) < lengths[..., None]  # (K, N, M)
    adv = torch.randn(K, N)

    def loss_and_grads(buckets):
        policy = StackedPolicy.from_models(models)
        logp, entropy = token_logprobs(policy, prompt, tokens, buckets, [1.0, 0.7])
        W = logp.shape[2]
        loss = (
            sum(
                aggregate("dapo", -logp[k] * adv[k, :, None], mask[k, :, :W], 4, M)
                for k in range(K)
            )
            + (entropy * mask[..., :W]).sum() * 1e-3
        )
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in policy.params.items()}

    packed = plan_buckets(lengths, Tp)
    padded = single_bucket(lengths, Tp, M)
    assert len(packed.bounds) > 1 and packed.processed < padded.processed
    assert packed.padded_fraction < padded.padded_fraction
    loss_a, grads_a = loss_and_grads(packed)
    loss_b, grads_b = loss_and_grads(padded)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_bucket_plan_counts_positions() -> None:
    """Processed and real positions match a hand count; zero-length rows are skipped."""
    lengths = torch.tensor([[3, 1, 0, 5], [2, 2, 0, 4]])  # two policies, 4 rows each
    b = plan_buckets(lengths, prompt_width=2, overhead=0.0)
    # per-rank maxima over the policies: 0, 2, 3, 5 -> widths 0, 3, 4, 6; no overhead, so
    # each nonzero rank gets its own bucket: 2 policies x (3 + 4 + 6) = 26 positions
    assert b.bounds == [(1, 2, 2), (2, 3, 3), (3, 4, 5)]
    assert b.processed == 26
    assert b.real == (3 + 1 + 5 + 2 + 2 + 4) + 6 * (2 - 1)
    big = plan_buckets(lengths, prompt_width=2, overhead=1e9)
    assert len(big.bounds) == 1 and big.processed == 2 * 3 * 6


@pytest.mark.parametrize(
    "field, override",
    [
        ("model_size", {"model_size": "small"}),
        ("task", {"task": {"n_train": 100, "n_test": 8, "high": 30}}),
        ("max_new_tokens", {"max_new_tokens": 32}),
        ("group_size", {"group_size": 8}),
    ],
)
def test_mismatched_batch_is_refused_by_name(field, override, tmp_path) -> None:
    cfgs = [small_config(), small_config(**override)]
    with pytest.raises(ValueError, match=f"share {field}"):
        check_batchable(cfgs)
    with Store(tmp_path) as store:
        ids = [create_training_run(store, c) for c in cfgs]
        with pytest.raises(ValueError, match=field):
            execute_batch(store, ids)
        assert [store.get_run(i).status for i in ids] == ["queued", "queued"]


@pytest.mark.slow
def test_sample_records_keep_two_groups_in_full(warm_cache) -> None:
    cfg = small_config(prompts_per_step=10, steps=1, sample_log_every=1)
    trainer = BatchTrainer([cfg], cache_dir=warm_cache)
    sink = MemorySink()
    run_batch(trainer, [sink])
    G = cfg.group_size
    assert [(s["group"], s["index"]) for s in sink.samples] == (
        [(0, j) for j in range(G)] + [(1, j) for j in range(G)] + [(g, 0) for g in range(2, 8)]
    )
    ro = trainer.last_rollouts
    for s in sink.samples:
        i = s["group"] * G + s["index"]
        assert s["token_ids"] == ro.tokens[0, i, : s["length"]].tolist()
        assert len(s["token_ids"]) == s["length"]
        text = trainer.tokenizer.decode(s["token_ids"])
        assert text.startswith(s["trace"])
        assert s["advantage"] == pytest.approx(float(trainer.last_advantages[0, i]))
        assert {"numbers", "target", "answer", "reward", "truncated"} <= set(s)
    group0 = [s["reward"] for s in sink.samples[:G]]
    mean = sum(group0) / G
    assert sum(s["advantage"] for s in sink.samples[:G]) == pytest.approx(0.0, abs=1e-4)
    assert all((s["advantage"] > 0) == (s["reward"] > mean) for s in sink.samples[:G]
               if s["reward"] != mean)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("per_pass", [1, 2])
def test_execute_batch_stores_each_run_and_resumes(per_pass, tmp_path, monkeypatch) -> None:
    """A stopped batch leaves every run 'stopped' with its metrics; resuming finishes all."""
    monkeypatch.setattr(batch_runner, "CPU_POLICIES_PER_PASS", per_pass)
    cfgs = [small_config(steps=4, seed=s, checkpoint_every=1, sample_log_every=2) for s in (0, 1)]
    with Store(tmp_path) as store:
        ids = [create_training_run(store, c) for c in cfgs]
        seen = []
        stop_after = 3  # records (all runs together) before the stop request

        def on_step(run_id, step, record):
            seen.append((run_id, step))

        status = execute_batch(store, ids, should_stop=lambda: len(seen) >= stop_after,
                               on_step=on_step)  # fmt: skip
        assert set(status.values()) == {"stopped"}
        assert all(store.get_run(i).status == "stopped" for i in ids)
        kept = {i: list(store.metrics(i)["step"]) for i in ids if len(store.metrics(i))}
        assert kept  # metrics of the steps done are stored
        status = execute_batch(store, ids)
        assert status == {i: "finished" for i in ids}
        for i in ids:
            assert list(store.metrics(i)["step"]) == [0, 1, 2, 3]
            assert store.samples(i, limit_steps=None)


def test_memory_estimate_grows_with_the_work() -> None:
    small = policy_bytes(small_config())
    assert policy_bytes(small_config(model_size="large")) > small
    assert policy_bytes(small_config(max_new_tokens=96)) > small
    assert policy_bytes(small_config(kl_coef=0.1)) > small


@pytest.mark.parametrize("greedy", [False, True])
def test_static_decode_equals_dynamic_decode(greedy) -> None:
    """The fixed-shape decode (CUDA graphs on CUDA) samples what the dynamic one samples."""
    from vlsim.batched import sample_stacked

    torch.manual_seed(1)
    policy = StackedPolicy.from_models([TinyGPT(model_config("tiny", 32, 64)) for _ in range(3)])
    prompt = torch.randint(2, 32, (3, 10, 5))

    def draw(static):
        gens = [torch.Generator().manual_seed(k) for k in range(3)]
        return sample_stacked(policy, prompt, 20, 1, 0, [1.0, 0.8, 1.2], greedy, gens, static)

    a, b = draw(False), draw(True)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    assert torch.equal(a.truncated, b.truncated)


def test_one_prefill_per_group_samples_what_a_prefill_per_row_samples() -> None:
    """Rows that share a prompt prefill it once; tokens and log-probs stay exactly the same."""
    from vlsim.batched import sample_stacked

    torch.manual_seed(3)
    policy = StackedPolicy.from_models([TinyGPT(model_config("small", 32, 64)) for _ in range(2)])
    prompt = torch.randint(2, 32, (2, 6, 7)).repeat_interleave(4, dim=1)  # (K=2, 6 x G=4, Tp)

    def draw(group_size):
        gens = [torch.Generator().manual_seed(k) for k in range(2)]
        return sample_stacked(
            policy, prompt, 24, 1, 0, [1.0, 0.9], False, gens, False, group_size=group_size
        )

    a, b = draw(1), draw(4)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)
    assert torch.equal(a.logprobs, b.logprobs)
    with pytest.raises(ValueError, match="share one prompt"):
        sample_stacked(policy, torch.randint(2, 32, (2, 8, 7)), 4, 1, 0, [1.0, 1.0], group_size=4)
    with pytest.raises(ValueError, match="divide"):
        sample_stacked(policy, prompt, 4, 1, 0, [1.0, 1.0], group_size=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decode_equals_dynamic_decode() -> None:
    """On CUDA the captured decode step samples what the uncaptured dynamic loop samples."""
    from vlsim.batched import sample_stacked

    torch.manual_seed(2)
    models = [TinyGPT(model_config("small", 32, 64)).cuda() for _ in range(4)]
    policy = StackedPolicy.from_models(models)
    prompt = torch.randint(2, 32, (4, 16, 6), device="cuda")

    def draw(static):
        gens = [torch.Generator(device="cuda").manual_seed(k) for k in range(4)]
        return sample_stacked(policy, prompt, 30, 1, 0, [1.0] * 4, False, gens, static)

    a, b = draw(False), draw(True)
    b2 = draw(True)  # the second call replays the graph captured by the first
    assert torch.equal(b.tokens, b2.tokens)
    same = (a.tokens == b.tokens).all(dim=2).float().mean()
    assert same > 0.95  # kernels differ in the last bits; a rare near-tie may flip a token
    torch.testing.assert_close(a.logprobs[a.mask & b.mask], b.logprobs[a.mask & b.mask],
                               atol=1e-3, rtol=0)  # fmt: skip
