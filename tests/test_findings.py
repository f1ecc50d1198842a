"""Tests for bnstudy.report's findings on small synthetic runs tables with exactly known values.

The normalization-batch study (:func:`nbs_runs`): BN (``batch``) at norm_batch_size 1, 4, 16 in a
training batch of 16, controls ``group`` and ``none`` with an empty norm_batch_size (one run
per seed), seeds 0, 1, 2, test settings eval, train (same) and precise. Accuracies:

    batch, eval     EVAL_BN[nbs] + 0.01 * seed
    batch, train    TRAIN_BN[nbs] + 0.02 * seed      -> eval − train = −75, −10, +5 pp − seed
    batch, precise  PRECISE_BN[nbs] + 0.015 * seed
    group           0.70 + 0.03 * seed (every mode)
    none            0.50 + 0.10 * seed (every mode)
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
import scipy.stats

from bnstudy import results
from bnstudy.config import AnalysisConfig
from bnstudy.report import controls, design, findings, flips, modes, recovery, runs_table, verdicts
from bnstudy.report.noise import noise_findings
from bnstudy.resampling import Resampler
from bnstudy.store import TestOutputs as StoredOutputs

T_975_2 = 4.302652729749462  # t quantile 0.975 at 2 degrees of freedom

SEEDS = (0, 1, 2)
NBS = (1, 4, 16)
EVAL_BN = {1: 0.10, 4: 0.60, 16: 0.80}
TRAIN_BN = {1: 0.85, 4: 0.70, 16: 0.75}
PRECISE_BN = {1: 0.30, 4: 0.69, 16: 0.80}
CONTROLS = {"group": (0.70, 0.03), "none": (0.50, 0.10)}  # norm -> (base, per seed)
SETTINGS = (("eval", "eval"), ("train", "same"), ("precise", "precise"))
NOISE_BETWEEN = {1: 0.30, 4: 0.15, 16: 0.075}


def bn_acc(nbs: int, seed: int, mode: str) -> float:
    """BN test accuracy (fraction) of the synthetic study."""
    base, slope = {
        "eval": (EVAL_BN, 0.01),
        "train": (TRAIN_BN, 0.02),
        "precise": (PRECISE_BN, 0.015),
    }[mode]
    return base[nbs] + slope * seed


def base_row(norm: str, seed: int, nbs: float, mode: str, batch: str, acc: float) -> dict:
    """One runs.csv row; run_id from norm, nbs and seed."""
    tag = "shared" if math.isnan(nbs) else f"nbs{int(nbs)}"
    return {
        "run_id": f"{norm}-{tag}-s{seed}",
        "name": "nbs",
        "norm": norm,
        "batch_size": 16,
        "norm_batch_size": nbs,
        "accumulate": 1,
        "num_classes": 10,
        "seed": seed,
        "status": "ok",
        "test_mode": mode,
        "test_batch": batch,
        "test_acc": acc,
        "test_flip_rate": 0.1 + 0.01 * seed if mode == "train" else 0.0,
    }


def noise(nbs: int, seed: int, between_ratio: float, values_ratio: float) -> dict:
    """Noise columns whose ratios measured / prediction are exactly the given ones (seed moves
    the between-image ratio by ±5%)."""
    measured = NOISE_BETWEEN[nbs]
    between = measured / (between_ratio * (1 + 0.05 * (seed - 1)))
    return {
        "bn_mean_noise": measured,
        "bn_mean_noise_between_images": between,
        "bn_mean_noise_values_law": measured / values_ratio,
        "noise_images": nbs,
    }


def nbs_runs(between_ratio: float = 1.0, values_ratio: float = 5.0) -> pd.DataFrame:
    """The normalization-batch study of the module docstring."""
    rows = []
    for seed, (mode, batch) in ((s, m) for s in SEEDS for m in SETTINGS):
        for nbs in NBS:
            acc = bn_acc(nbs, seed, mode)
            row = base_row("batch", seed, nbs, mode, batch, acc)
            rows.append(row | noise(nbs, seed, between_ratio, values_ratio))
        for norm, (base, slope) in CONTROLS.items():
            rows.append(base_row(norm, seed, math.nan, mode, batch, base + slope * seed))
    return pd.DataFrame(rows)


def batch_size_runs(group_acc: dict[int, list[float]]) -> pd.DataFrame:
    """An old-style optimizer-batch study (no norm_batch_size column): group norm only, eval
    mode, accuracy per batch size and seed from ``group_acc``."""
    rows = [
        {
            "run_id": f"group-bs{bs}-s{seed}",
            "norm": "group",
            "batch_size": bs,
            "seed": seed,
            "status": "ok",
            "test_mode": "eval",
            "test_batch": "eval",
            "test_acc": acc,
        }
        for bs, accs in group_acc.items()
        for seed, acc in enumerate(accs)
    ]
    return pd.DataFrame(rows)


def only(group: verdicts.FindingGroup, subject: str, claim_part: str = "") -> verdicts.Finding:
    """The single finding of ``group`` about ``subject`` whose claim contains ``claim_part``."""
    found = [f for f in group.findings if f.subject == subject and claim_part in f.claim]
    assert len(found) == 1, [f.describe() for f in group.findings]
    return found[0]


def decided(group: verdicts.FindingGroup) -> verdicts.FindingGroup:
    """``group`` with its p-values adjusted (as its own family) and its verdicts decided."""
    return verdicts.adjust([group], AnalysisConfig())[0]


def claim(estimate: float, adjusted: float, equivalent: float, direction: int) -> verdicts.Finding:
    return verdicts.Finding(
        "s", "c", "m", estimate, math.nan, math.nan, 5, key="k", direction=direction,
        margin=1.0, pvalue=adjusted, pvalue_equivalent=equivalent, adjusted=adjusted,
        adjusted_equivalent=equivalent,
    )  # fmt: skip


def test_verdicts_follow_the_adjusted_p_values() -> None:
    assert verdicts.decide(claim(-3.0, 0.01, 0.9, -1), 0.05) == "supported"
    assert verdicts.decide(claim(3.0, 0.01, 0.9, -1), 0.05) == "contradicted"
    assert verdicts.decide(claim(-0.1, 0.6, 0.01, -1), 0.05) == "equivalent within ±1.0 pp"
    assert verdicts.decide(claim(-3.0, 0.2, 0.9, -1), 0.05) == "not resolved at n = 5"
    flat = replace(claim(0.1, 0.6, 0.01, 0), words=(verdicts.FLAT, verdicts.DRIFT))
    assert verdicts.decide(flat, 0.05) == "flat (within ±1.0 pp)"
    assert verdicts.decide(replace(flat, adjusted=0.01, adjusted_equivalent=0.5), 0.05) == "drift"


def test_primary_claims_are_adjusted_by_holm_the_others_by_benjamini_hochberg() -> None:
    raw = [0.01, 0.02, 0.03, 0.04]
    found = [
        replace(claim(-1.0, math.nan, math.nan, -1), key=f"a/{i}", pvalue=p)
        for i, p in enumerate(raw)
    ]
    group = verdicts.FindingGroup("g", "r", found)
    primary = AnalysisConfig(primary=["a/0", "a/1"])
    adjusted = verdicts.adjust([group], primary)[0].findings
    assert [f.primary for f in adjusted] == [True, True, False, False]
    assert [f.adjusted for f in adjusted] == pytest.approx([0.02, 0.02, 0.04, 0.04])
    assert [f.verdict for f in adjusted] == ["supported"] * 2 + ["supported"] * 2
    everything = verdicts.adjust([group], AnalysisConfig(primary=["a/*"]))[0].findings
    assert [f.adjusted for f in everything] == pytest.approx([0.04, 0.06, 0.06, 0.06])
    assert [f.verdict for f in everything] == ["supported"] + ["not resolved at n = 5"] * 3


def test_batch_axis_prefers_norm_batch_size_when_it_varies() -> None:
    runs = nbs_runs()
    assert runs_table.batch_axis(runs) == "norm_batch_size"
    fixed = runs.assign(norm_batch_size=runs["norm_batch_size"].where(runs["norm"] != "batch", 16))
    assert runs_table.batch_axis(fixed) == "batch_size"
    # a plain batch-size study: BN's norm_batch_size is its batch_size, controls trained at each
    plain = runs.assign(batch_size=runs["norm_batch_size"].fillna(16))
    assert runs_table.batch_axis(plain) == "batch_size"
    assert runs_table.along_axis(plain) is plain  # nothing to broadcast
    assert runs_table.batch_axis(runs.drop(columns="norm_batch_size")) == "batch_size"


def test_controls_are_broadcast_over_the_norm_batch_axis() -> None:
    runs = nbs_runs()
    spread = runs_table.along_axis(runs)
    group = spread[spread["norm"].eq("group") & spread["test_mode"].eq("eval")]
    assert sorted(group["norm_batch_size"].unique()) == list(NBS)
    assert len(group) == len(SEEDS) * len(NBS)
    assert group.groupby("norm_batch_size")["test_acc"].mean().tolist() == pytest.approx([0.73] * 3)
    assert len(runs_table.along_axis(spread)) == len(spread)  # idempotent
    assert runs_table.shared_norms(runs) == ["group", "none"]
    assert runs_table.other_factors(runs) == []


def test_eval_collapse_findings_paired_per_run() -> None:
    group = decided(modes.eval_collapse_findings(nbs_runs()))
    assert len(group.findings) == len(NBS)
    # eval − train = −75 − seed pp at nbs 1: mean −76, std 1, n 3; seeds only (no stored
    # predictions): the paired t-test's interval and p-value, up to the bootstrap's noise
    at1 = only(group, "BatchNorm @ norm batch 1")
    assert (at1.estimate, at1.n) == (pytest.approx(-76.0), 3)
    half = T_975_2 / 3**0.5
    assert (at1.low, at1.high) == pytest.approx((-76 - half, -76 + half), rel=0.02)
    assert at1.pvalue == pytest.approx(scipy.stats.ttest_1samp([-75, -76, -77], 0).pvalue, rel=0.1)
    assert at1.verdict == "supported" and at1.key == "collapse/batch@1/same"
    # +5 − seed pp at nbs 16: train mode is below eval mode, the claim is contradicted
    assert only(group, "BatchNorm @ norm batch 16").verdict == "contradicted"
    assert "eval 11.0%, train 87.0%" in at1.describe()  # means over seeds
    assert "test batch = normalization batch" in at1.claim


def test_bn_vs_control_paired_by_seed() -> None:
    group = decided(controls.control_findings(nbs_runs(), "eval"))
    # BN eval − group = −60 − 2 * seed pp at nbs 1 (group repeated at every nbs)
    eval1 = only(group, "BatchNorm @ norm batch 1", "eval mode below GroupNorm")
    assert eval1.estimate == pytest.approx(-62.0) and eval1.verdict == "supported"
    # +10 − 2 * seed at nbs 16: contradicted
    eval16 = only(group, "BatchNorm @ norm batch 16", "eval mode below GroupNorm")
    assert eval16.verdict == "contradicted"
    # BN eval − none = 10 − 9 * seed at nbs 4: 10, 1, −8 → not resolved
    none4 = only(group, "BatchNorm @ norm batch 4", "eval mode below no norm")
    assert none4.estimate == pytest.approx(1.0) and none4.verdict == "not resolved at n = 3"
    assert len(group.findings) == len(NBS) * len(CONTROLS)
    # train mode: BN − group = +15 − seed at nbs 1 (train mode is InstanceNorm-like there)
    train = decided(controls.control_findings(nbs_runs(), "train"))
    assert len(train.findings) == len(NBS) * len(CONTROLS)
    train1 = only(train, "BatchNorm @ norm batch 1", "below GroupNorm")
    assert train1.estimate == pytest.approx(14.0) and train1.verdict == "contradicted"
    assert train1.claim == "train mode (test batch = normalization batch) below GroupNorm"


def test_no_duplicate_modes_for_norms_without_running_statistics() -> None:
    groups = findings.build_findings(nbs_runs())
    # the controls check and the recovery view name each control once, not once per mode
    compared = [g for g in groups if not g.title.startswith(("Controls check", "Recovery"))]
    subjects = {f.subject for g in compared for f in g.findings}
    assert subjects and not any(s.startswith(("group", "none")) for s in subjects)


def test_controls_check_is_not_applicable_in_a_norm_batch_study() -> None:
    group = decided(controls.controls_check(nbs_runs()))
    assert [f.subject for f in group.findings] == ["group", "none"]
    assert all(f.verdict == verdicts.NOT_APPLICABLE for f in group.findings)
    assert controls.drift_warning([group]) is None


def test_controls_check_detects_drift_along_batch_size_paired_by_seed() -> None:
    # seeds differ by 1 pp at every batch size: the seed-blocked difference is exact
    drifting = batch_size_runs({1: [0.50, 0.51], 4: [0.60, 0.61], 16: [0.70, 0.71]})
    group = decided(controls.controls_check(drifting))
    assert [f.subject for f in group.findings] == ["GroupNorm @ batch 1", "GroupNorm @ batch 4"]
    assert [f.verdict for f in group.findings] == ["drift", "drift"]
    assert group.findings[0].estimate == pytest.approx(-20.0)  # batch 1 − batch 16
    warning = controls.drift_warning([group])
    assert warning.startswith(controls.DRIFT_WARNING) and "GroupNorm" in warning


def test_controls_check_never_reads_no_significant_drift_as_flat() -> None:
    # differences to batch 16 of −2, +1, +1 pp: no drift shown, and not within ±1 pp either
    unclear = batch_size_runs({1: [0.70, 0.71, 0.72], 16: [0.72, 0.70, 0.71]})
    (check,) = decided(controls.controls_check(unclear)).findings
    assert check.estimate == pytest.approx(0.0) and check.pvalue > 0.5
    assert check.verdict == "not resolved at n = 3"
    flat = batch_size_runs({1: [0.700, 0.702, 0.704], 16: [0.701, 0.703, 0.702]})
    (check,) = decided(controls.controls_check(flat)).findings
    assert check.verdict == "flat (within ±1.0 pp)"
    one_seed = batch_size_runs({1: [0.50], 4: [0.90]})
    assert decided(controls.controls_check(one_seed)).findings[0].verdict == "not testable"


def test_precise_findings_and_interpretation() -> None:
    group = decided(modes.precise_findings(nbs_runs()))
    # precise − eval = 20 + 0.5 * seed pp at nbs 1
    recover = only(group, "BatchNorm @ norm batch 1", "recovers")
    assert recover.estimate == pytest.approx(20.5) and recover.verdict == "supported"
    below = only(group, "BatchNorm @ norm batch 1", "below")
    assert below.estimate == pytest.approx(-55.5) and below.verdict == "supported"
    (note,) = group.notes
    assert note.startswith("BatchNorm @ norm batch 1: population statistics recover 20.5 pp")
    assert "even population statistics stay 55.5 pp below train mode" in note
    assert "train/test inconsistency" in note
    # tables from before the estimator was recorded used the average of per-batch variances
    assert "average of per-batch variances" in group.title


def test_precise_interpretation_says_only_what_the_verdicts_support() -> None:
    runs = nbs_runs()
    bn_precise = runs["norm"].eq("batch") & runs["test_mode"].eq("precise")
    train = runs[runs["norm"].eq("batch") & runs["test_mode"].eq("train")]
    runs.loc[bn_precise, "test_acc"] = train["test_acc"].to_numpy()  # precise = train exactly
    runs["precise_variance"] = "population"
    group = decided(modes.precise_findings(runs))
    (note, *_) = group.notes
    assert "population statistics match train mode (equivalent within ±1.0 pp)" in note
    assert "population variance" in group.title


def test_noise_law_estimates_the_exponent_and_compares_the_levels() -> None:
    exponent, level = decided(noise_findings(nbs_runs())).findings
    # measured noise 0.30, 0.15, 0.075 at 1, 4, 16 images: slope exactly −0.5
    assert exponent.subject == "BatchNorm" and exponent.key == "noise/batch/exponent"
    assert exponent.estimate == pytest.approx(-0.5) and exponent.n == len(SEEDS)
    assert exponent.verdict == "supported (within ±0.10)"
    assert level.verdict == "supported" and "/ values law 5.00×" in level.detail
    runs = nbs_runs()
    runs["bn_mean_noise"] *= runs["norm_batch_size"] ** 0.25 * (1 + 0.01 * runs["seed"])
    slower = decided(noise_findings(runs)).findings[0]
    assert slower.estimate == pytest.approx(-0.25) and slower.verdict == "contradicted"
    # the measurement at the values law, 3× off the between-image prediction
    closer_to_values = nbs_runs(between_ratio=3.0, values_ratio=1.0)
    assert decided(noise_findings(closer_to_values)).findings[1].verdict == "contradicted"
    old = nbs_runs().drop(columns=["bn_mean_noise_between_images", "bn_mean_noise_values_law"])
    assert noise_findings(old).skipped


PREDICTIONS = {0: [0] * 10, 1: [0] * 8 + [1] * 2, 2: [0] * 5 + [1] * 5}


def fake_predictions(run_id: str) -> dict[str, list[int]] | None:
    """Train-mode predictions for BN at nbs 4 only (disagreements 0.2, 0.5, 0.3)."""
    if not run_id.startswith("batch-nbs4-"):
        return None
    return {"same": PREDICTIONS[int(run_id[-1])], "eval": [0] * 10}


def fake_outputs(run_id: str) -> StoredOutputs | None:
    """:func:`fake_predictions` with labels, no per-image flips."""
    predictions = fake_predictions(run_id)
    return StoredOutputs([0] * 10, predictions, {}, None) if predictions else None


def test_seed_disagreement() -> None:
    rate, pairs = flips.seed_disagreement(list(PREDICTIONS.values()))
    assert (rate, pairs) == (pytest.approx(1 / 3), 3)
    assert flips.seed_disagreement([[1, 2]])[1] == 0
    with pytest.raises(ValueError, match="different lengths"):
        flips.seed_disagreement([[1, 2], [1]])


def test_flip_rate_against_seed_to_seed_baseline() -> None:
    runs = nbs_runs()
    baseline = flips.flip_baseline(runs, fake_predictions)
    assert list(baseline["norm_batch_size"]) == [4, 4, 4]
    # per run: the mean disagreement with the two other seeds (0.2 and 0.5, 0.2 and 0.3, ...)
    assert list(baseline["baseline"]) == pytest.approx([35, 25, 40])
    assert baseline["baseline"].mean() == pytest.approx(100 / 3)
    group = flips.flip_findings(runs, baseline, Resampler(fake_outputs))
    (finding,) = decided(group).findings
    # flip 10, 11, 12 % against 33.3 %
    assert finding.estimate == pytest.approx(11 - 100 / 3)
    # 3 seeds and 10 test images: the seed-to-seed baseline itself is uncertain
    assert finding.low < finding.estimate < finding.high and 0 < finding.pvalue < 0.5
    assert finding.verdict == "not resolved at n = 3"
    assert math.isnan(flips.flip_findings(runs, baseline).findings[0].estimate)  # no outputs
    empty = flips.flip_baseline(runs, lambda run_id: None)
    assert flips.flip_findings(runs, empty).skipped


def test_findings_markdown_lists_every_group_with_rules_and_verdicts() -> None:
    runs = nbs_runs()
    analysis = AnalysisConfig(primary=["recovery/*"])
    baseline = flips.flip_baseline(runs, fake_predictions)
    groups = findings.build_findings(runs, baseline, Resampler(fake_outputs), analysis)
    method = verdicts.method_text(analysis)
    text = findings.findings_markdown("t", design.design_text(runs), groups, method)
    for group in groups:
        assert f"## {group.title}" in text and group.rule in text
    assert "**supported**" in text and "**contradicted**" in text
    assert "**not resolved at n = 3**" in text
    assert "2000 replicates, random seed 0" in text and "Holm over the primary claims" in text
    assert "`recovery/batch@1` (primary)" in text and "(adj " in text
    assert (
        "## The answer" in text and "Best batch-independent alternative (the highest mean" in text
    )
    assert "Warning" not in text
    assert "group, none: no batch statistics, so one trained model per seed" in text


def test_old_table_without_new_columns_skips_what_it_lacks() -> None:
    old = batch_size_runs({1: [0.5, 0.6], 4: [0.6, 0.7]})
    groups = findings.build_findings(old)
    skipped = {g.title: g.skipped for g in groups if g.skipped}
    assert len(skipped) == len(groups) - 1  # only the controls check has something to say
    assert all(skipped.values())


def test_the_environments_the_runs_computed_in_are_told_apart() -> None:
    runs = nbs_runs()
    assert design.environments(runs) == []
    runs = runs.assign(device_name="NVIDIA H100 80GB HBM3", torch="2.11.0+cu130")
    runs.loc[runs["seed"].eq(0), "device_name"] = "AMD EPYC, no AVX-512"
    labels = [label for label, _ in design.environments(runs)]
    assert labels == [
        "AMD EPYC, no AVX-512 (torch 2.11.0+cu130)",
        "NVIDIA H100 80GB HBM3 (torch 2.11.0+cu130)",
    ]


def accumulate_runs(group_by_setup: dict[tuple[int, int], float]) -> pd.DataFrame:
    """An accumulation study: BN at nbs 4 in three optimizer setups and at nbs 32 in one,
    group norm (no axis value) once per setup with accuracy ``group_by_setup`` ± 0.5 pp."""
    rows = []
    for seed in SEEDS:
        for bs, acc_steps, nbs in ((32, 1, 32), (32, 1, 4), (4, 8, 4), (4, 1, 4)):
            rows.append(
                base_row("batch", seed, nbs, "eval", "eval", 0.9)
                | {
                    "batch_size": bs,
                    "accumulate": acc_steps,
                    "run_id": f"b{bs}{acc_steps}{nbs}{seed}",
                }
            )
        for (bs, acc_steps), acc in group_by_setup.items():
            rows.append(
                base_row("group", seed, math.nan, "eval", "eval", acc + 0.005 * (seed - 1))
                | {"batch_size": bs, "accumulate": acc_steps, "run_id": f"g{bs}{acc_steps}{seed}"}
            )
    return pd.DataFrame(rows)


def test_controls_check_tests_the_optimizer_setups_of_an_accumulation_study() -> None:
    drifting = decided(
        controls.controls_check(accumulate_runs({(32, 1): 0.85, (4, 8): 0.85, (4, 1): 0.95}))
    )
    by_subject = {f.subject: f for f in drifting.findings}
    assert list(by_subject) == [
        "GroupNorm @ batch_size 4, accumulate 1",
        "GroupNorm @ batch_size 4, accumulate 8",
    ]
    drift = by_subject["GroupNorm @ batch_size 4, accumulate 1"]
    assert drift.verdict == "drift" and drift.estimate == pytest.approx(10.0)
    assert controls.drift_warning([drifting]) is not None
    steady = accumulate_runs({(32, 1): 0.85, (4, 8): 0.85, (4, 1): 0.85})
    checks = decided(controls.controls_check(steady)).findings
    assert [f.verdict for f in checks] == ["flat (within ±1.0 pp)"] * 2


def test_a_control_is_shown_only_at_axis_values_of_its_own_optimizer_setup() -> None:
    spread = runs_table.along_axis(accumulate_runs({(32, 1): 0.85, (4, 8): 0.85, (4, 1): 0.95}))
    group = spread[spread["norm"].eq("group")]
    at = group.groupby(["batch_size", "accumulate"])["norm_batch_size"].unique()
    assert sorted(at[(32, 1)]) == [4, 32] and list(at[(4, 8)]) == [4] and list(at[(4, 1)]) == [4]


def test_recovery_pairs_each_norm_with_bn_at_its_largest_batch_by_seed():
    group = decided(recovery.recovery_findings(nbs_runs()))
    by_subject = {f.subject: f for f in group.findings}
    assert list(by_subject) == [
        "BatchNorm @ norm batch 1",
        "BatchNorm @ norm batch 4",
        "GroupNorm @ any norm batch",
        "no norm @ any norm batch",
    ]
    bn_at_one = by_subject["BatchNorm @ norm batch 1"]
    assert bn_at_one.estimate == pytest.approx(-70) and bn_at_one.verdict == "supported"
    gn = by_subject["GroupNorm @ any norm batch"]  # -10, -8, -6 pp over seeds 0, 1, 2
    assert gn.estimate == pytest.approx(-8)
    assert gn.low == pytest.approx(-8 - T_975_2 * 2 / math.sqrt(3), rel=0.02)
    assert gn.verdict == "supported" and gn.n == 3 and gn.key == "recovery/group@any"
    assert "90.1% of it" in gn.detail  # 73% of 81%
    none = by_subject["no norm @ any norm batch"]  # -30, -21, -12 pp: the t-test's p = 0.057
    assert none.pvalue == pytest.approx(0.057, abs=0.01)
    assert none.verdict == "not resolved at n = 3"
    assert group.notes == ["BatchNorm: shown short of the reference up to norm batch 4"]


def test_recovery_needs_bn_runs():
    runs = nbs_runs()
    group = recovery.recovery_findings(runs[runs["norm"].ne("batch")])
    assert group.skipped == "the study has no batch runs to measure recovery against"


def test_recovery_keeps_controls_at_each_optimizer_batch_they_were_trained_at():
    # an optimizer-batch study: the control is trained at every batch size, so no pooling
    group = batch_size_runs({1: [0.50, 0.51], 4: [0.60, 0.61], 16: [0.70, 0.71]})
    bn = group.assign(norm="batch", run_id=group["run_id"].str.replace("group", "batch"))
    runs = pd.concat([group, bn], ignore_index=True)
    subjects = [f.subject for f in recovery.recovery_findings(runs).findings]
    assert "GroupNorm @ batch 4" in subjects and not any("any batch" in s for s in subjects)


def test_recovery_reference_is_the_largest_batch_where_bn_has_a_result():
    runs = nbs_runs()
    failed = runs["norm"].eq("batch") & runs["norm_batch_size"].eq(16)
    runs.loc[failed, ["status", "test_acc"]] = ["error", float("nan")]
    group = recovery.recovery_findings(runs)
    assert group.findings[0].claim == "falls short of BatchNorm @ norm batch 4"
    assert [f.subject for f in group.findings][0] == "BatchNorm @ norm batch 1"


def test_batch_stat_mask_selects_rows_of_an_empty_table() -> None:
    runs = nbs_runs()
    mask = runs_table.batch_stat_mask(runs)
    assert mask.dtype == bool and mask.sum() == len(SEEDS) * len(SETTINGS) * len(NBS)
    empty = runs.iloc[:0]
    assert list(empty[runs_table.batch_stat_mask(empty)].columns) == list(runs.columns)
    assert runs_table.batch_axis(empty) == "batch_size"


def test_without_ok_runs_every_group_is_skipped_saying_so() -> None:
    runs = nbs_runs()
    failed = runs.assign(status="error", test_acc=math.nan)
    for table in (runs.iloc[:0], failed):
        groups = findings.build_findings(table, flips.flip_baseline(table, fake_predictions))
        assert [g.findings for g in groups] == [[]] * len(groups)
        assert all(g.skipped.startswith("no ok runs (") for g in groups)
    assert design.design_text(runs.iloc[:0]) == (
        "0 runs: 0 ok, 0 error, 0 diverged; 0 rows: no run has finished yet."
    )


def test_the_test_settings_in_order_once_each() -> None:
    runs = nbs_runs()
    assert runs_table.ordered_settings(runs.iloc[::-1]) == [
        ("eval", "eval"),
        ("precise", "precise"),
        ("train", "same"),
    ]
    assert runs_table.axis_values(runs) == list(NBS)
    assert runs_table.axis_values(runs, "batch_size") == [16]


def test_training_budget_steps_or_samples_replace_epochs() -> None:
    assert results.training_budget(3, None, None) == (3, "epoch")
    assert results.training_budget(3, 40, None) == (40, "step")
    assert results.training_budget(3, math.nan, 5000.0) == (5000, "sample")
    assert results.count_text(*results.training_budget(1, None, None)) == "1 epoch"
    assert results.count_text("1, 2", "epoch") == "1, 2 epochs"


def test_controls_spread_along_the_study_axis_given_for_a_part_of_it() -> None:
    runs = nbs_runs()
    ok = runs[runs["norm"].ne("batch") | runs["norm_batch_size"].eq(4)]  # BN ok at 4 only
    assert runs_table.batch_axis(ok) == "batch_size"  # its own axis
    spread = runs_table.along_axis(ok, "norm_batch_size")
    assert set(spread.loc[spread["norm"].eq("group"), "norm_batch_size"]) == {4}
