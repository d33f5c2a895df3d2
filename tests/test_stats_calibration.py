"""Calibration by simulation from sufficient statistics (seeded, seconds not minutes).

Thousands of experiments are drawn at once with NumPy (binomial counts, or a normal
metric's sum and sum of squares from their exact sampling distributions), then each goes
through the public `estimate` / `infer` path (about 0.1 ms a call).
"""

from __future__ import annotations

import numpy as np

from productlens.experiments.inference import infer
from productlens.experiments.stats import VariantStats, estimate

N_EXPERIMENTS = 4000


def normal_sums(
    rng: np.random.Generator, n: int, mean: float, sd: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares of n normal draws: the sample mean is normal, (n-1)s^2/sd^2
    chi-square with n - 1 degrees of freedom, independently."""
    sample_mean = rng.normal(mean, sd / np.sqrt(n), size)
    sample_var = sd**2 * rng.chisquare(n - 1, size) / (n - 1)
    return n * sample_mean, (n - 1) * sample_var + n * sample_mean**2


def proportion_arms(
    rng: np.random.Generator, n: int, p_control: float, p_treatment: float, size: int
) -> list[tuple[VariantStats, VariantStats]]:
    xc, xt = rng.binomial(n, p_control, size), rng.binomial(n, p_treatment, size)
    return [
        (VariantStats("c", n, float(a), float(a)), VariantStats("t", n, float(b), float(b)))
        for a, b in zip(xc, xt, strict=True)
    ]


def mean_arms(
    rng: np.random.Generator, n: int, mean_c: float, mean_t: float, sd: float, size: int
) -> list[tuple[VariantStats, VariantStats]]:
    sc, qc = normal_sums(rng, n, mean_c, sd, size)
    st, qt = normal_sums(rng, n, mean_t, 1.5 * sd, size)  # unequal variances: Welch's case
    return [
        (VariantStats("c", n, a, b), VariantStats("t", n, c, d))
        for a, b, c, d in zip(sc, qc, st, qt, strict=True)
    ]


def test_aa_false_positive_rate_is_five_percent() -> None:
    rng = np.random.default_rng(20260301)
    for kind, arms in (
        ("proportion", proportion_arms(rng, 4000, 0.08, 0.08, N_EXPERIMENTS)),
        ("mean", mean_arms(rng, 300, 10.0, 10.0, 4.0, N_EXPERIMENTS)),
    ):
        estimates = [estimate(c, t, kind) for c, t in arms]
        assert all(e.ok for e in estimates)
        p = np.array([infer(e).p_value for e in estimates])
        rate = np.mean(p < 0.05)
        assert 0.04 <= rate <= 0.06, (kind, rate)
        # Bayesian: a 95% credible interval excluding zero is as rare under A/A.
        bayes = np.array([infer(e, "bayesian").significant for e in estimates])
        assert 0.04 <= np.mean(bayes) <= 0.06, (kind, np.mean(bayes))


def test_ci_coverage_of_a_planted_effect_is_ninety_five_percent() -> None:
    rng = np.random.default_rng(20260302)
    cases = (
        ("proportion", proportion_arms(rng, 20_000, 0.10, 0.11, N_EXPERIMENTS), 0.01, 0.1),
        ("mean", mean_arms(rng, 2000, 10.0, 10.5, 4.0, N_EXPERIMENTS), 0.5, 0.05),
    )
    for kind, arms, true_abs, true_rel in cases:
        inferences = [infer(estimate(c, t, kind)) for c, t in arms]
        lo = np.array([i.ci_absolute[0] for i in inferences])
        hi = np.array([i.ci_absolute[1] for i in inferences])
        coverage = np.mean((lo <= true_abs) & (true_abs <= hi))
        assert 0.94 <= coverage <= 0.96, (kind, coverage)
        rlo = np.array([i.ci_relative[0] for i in inferences])
        rhi = np.array([i.ci_relative[1] for i in inferences])
        rel_coverage = np.mean((rlo <= true_rel) & (true_rel <= rhi))
        assert 0.94 <= rel_coverage <= 0.96, (kind, rel_coverage)


def test_sequential_intervals_survive_daily_peeking_where_fixed_horizon_does_not() -> None:
    rng = np.random.default_rng(20260303)
    experiments, days, daily = 1500, 20, 400
    p_c, p_t = 0.10, 0.11
    # Daily conversions per arm, accumulated: the sums an analyst sees each morning.
    xc = np.cumsum(rng.binomial(daily, p_c, (experiments, days)), axis=1)
    xt = np.cumsum(rng.binomial(daily, p_t, (experiments, days)), axis=1)
    truth = p_t - p_c
    fixed_ok = np.ones(experiments, dtype=bool)
    seq_ok = np.ones(experiments, dtype=bool)
    for e in range(experiments):
        for d in range(days):
            n = daily * (d + 1)
            est = estimate(
                VariantStats("c", n, float(xc[e, d]), float(xc[e, d])),
                VariantStats("t", n, float(xt[e, d]), float(xt[e, d])),
                "proportion",
            )
            f, s = infer(est).ci_absolute, infer(est, "sequential").ci_absolute
            fixed_ok[e] &= f[0] <= truth <= f[1]
            seq_ok[e] &= s[0] <= truth <= s[1]
    # Coverage at every one of the 20 looks at once.
    assert np.mean(seq_ok) >= 0.95, np.mean(seq_ok)
    assert np.mean(fixed_ok) < 0.85, np.mean(fixed_ok)
