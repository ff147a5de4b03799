"""The verification gate's figures against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from converter import GateError
from converter.verify import check_gate, classification_metrics, compare, mcnemar_exact_p, summary

LABELS = ("cardboard", "glass", "metal")


def one_hot(indices, classes=3):
    return np.eye(classes, dtype=np.float32)[indices]


def test_metrics_by_hand():
    # truth:     0 0 0 1 1 2
    # predicted: 0 0 1 1 2 2
    metrics = classification_metrics(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2]), LABELS)
    assert metrics["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    # cardboard: tp 2, fp 0, fn 1 -> 4/5; glass: tp 1, fp 1, fn 1 -> 1/2; metal: tp 1, fp 1, fn 0 -> 2/3
    assert metrics["per_class_f1"] == pytest.approx({"cardboard": 0.8, "glass": 0.5, "metal": 2 / 3}, abs=1e-6)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-6)


def test_class_absent_from_truth_and_predictions_scores_zero_but_is_left_out_of_the_macro():
    metrics = classification_metrics(np.array([0, 1]), np.array([0, 1]), LABELS)
    assert metrics["per_class_f1"]["metal"] == 0.0
    assert metrics["macro_f1"] == 1.0  # as training.metrics averages it


def test_compare_reports_both_models_agreement_and_drop():
    targets = np.array([0, 1, 2, 2])
    float_probs = one_hot([0, 1, 2, 2])
    model_probs = one_hot([0, 1, 2, 1])
    metrics = compare(targets, float_probs, model_probs, LABELS)
    assert metrics["split"] == "test" and metrics["n"] == 4
    assert metrics["float"]["accuracy"] == 1.0 and metrics["model"]["accuracy"] == 0.75
    assert metrics["agreement"] == 0.75
    assert metrics["drop_points"] == pytest.approx(25.0)
    assert set(metrics["model"]) == {"accuracy", "macro_f1", "per_class_f1"}


def test_gate_passes_within_the_allowed_drop():
    metrics = compare(np.array([0, 1]), one_hot([0, 1]), one_hot([0, 1]), LABELS)
    check_gate(metrics, max_drop=0.0)


def test_gate_refuses_a_larger_drop():
    metrics = compare(np.array([0, 1, 2, 2]), one_hot([0, 1, 2, 2]), one_hot([0, 1, 2, 1]), LABELS)
    with pytest.raises(GateError, match=r"drop of 25.00 points \(allowed: 1\) \(1 photos lost, 0 gained; "
                                        r"McNemar p = 1.00\); no bundle written"):
        check_gate(metrics, max_drop=1.0)


def test_gate_with_an_impossible_threshold_always_refuses():
    metrics = compare(np.array([0]), one_hot([0]), one_hot([0]), LABELS)
    with pytest.raises(GateError):
        check_gate(metrics, max_drop=-1.0)


def flipped(n: int, broken: int, fixed: int) -> dict:
    """``compare`` on n photos of class 0: the float model misses ``fixed`` of them, the converted
    model misses ``broken`` others and gets those ``fixed`` right."""
    float_top1 = [0] * n
    model_top1 = [0] * n
    for index in range(fixed):
        float_top1[index] = 1
    for index in range(fixed, fixed + broken):
        model_top1[index] = 1
    return compare(np.zeros(n, np.int64), one_hot(float_top1), one_hot(model_top1), LABELS, split="val")


def test_gate_passes_a_small_drop_made_of_close_calls_both_ways():
    metrics = flipped(378, broken=6, fixed=4)  # session 6's refused 320 px run: 0.53 points, p = 0.75
    assert metrics["drop_points"] == pytest.approx(0.529, abs=1e-3)
    check_gate(metrics, max_drop=1.0, significance=0.05)


def test_gate_refuses_a_one_sided_loss_within_the_drop_limit():
    metrics = flipped(5000, broken=30, fixed=10)  # 0.4 points on a large val split, p = 0.002
    with pytest.raises(GateError, match=r"a drop of 0.40 points \(a one-sided loss: McNemar p below 0.05\) "
                                        r"\(30 photos lost, 10 gained; McNemar p = 0.00\)"):
        check_gate(metrics, max_drop=1.0, significance=0.05)


def test_gate_uses_the_exact_p_value_not_the_rounded_one():
    metrics = flipped(20000, broken=150, fixed=117)  # p = 0.04998, shown rounded as 0.05
    assert metrics["flips"]["mcnemar_p"] == 0.05
    with pytest.raises(GateError, match="one-sided"):
        check_gate(metrics, max_drop=1.0, significance=0.05)


@pytest.mark.parametrize("significance", [-0.1, 1.5, float("nan")])
def test_gate_refuses_a_significance_outside_0_to_1(significance):
    with pytest.raises(ValueError, match="significance"):
        check_gate(flipped(10, broken=0, fixed=0), max_drop=1.0, significance=significance)


def test_gate_with_significance_zero_judges_the_drop_alone():
    check_gate(flipped(5000, broken=30, fixed=10), max_drop=1.0, significance=0.0)


def test_gate_never_refuses_a_one_sided_gain():
    check_gate(flipped(5000, broken=0, fixed=30), max_drop=1.0, significance=0.05)


def test_gate_summary_names_both_rules_and_old_manifests_only_the_drop():
    metrics = flipped(10, broken=0, fixed=0)
    gate = {"split": "val", "n": 10, "drop_points": 0.0, "max_drop": 1.0}
    assert summary(metrics | {"gate": gate}).endswith("drop 0.00 points, allowed 1")
    assert summary(metrics | {"gate": gate | {"significance": 0.05}}).endswith(
        "allowed 1; one-sided flips refused below McNemar p 0.05")
    assert summary(metrics | {"gate": gate | {"significance": 0.0}}).endswith(
        "allowed 1; the one-sided rule off (--significance 0)")


def test_flips_count_the_photos_behind_the_drop():
    targets = np.array([0, 0, 1, 1, 2, 2])
    float_probs = one_hot([0, 0, 1, 0, 2, 0])  # right on 0, 1, 2, 4
    model_probs = one_hot([0, 1, 1, 1, 0, 0])  # right on 0, 2, 3: loses 1 and 4, gains 3
    metrics = compare(targets, float_probs, model_probs, LABELS)
    assert metrics["flips"]["broken"] == 2 and metrics["flips"]["fixed"] == 1
    assert metrics["drop_points"] == pytest.approx(100 * (4 - 3) / 6, abs=1e-3)
    assert "2 photos lost, 1 gained" in summary(metrics)


def test_mcnemar_exact_p_by_hand():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == 1.0
    # 5 vs 0 of 5 discordant: 2 * (1/32)
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)
    # 7 vs 2 of 9: 2 * (C(9,0) + C(9,1) + C(9,2)) / 512 = 2 * 46 / 512
    assert mcnemar_exact_p(7, 2) == pytest.approx(92 / 512)
    assert mcnemar_exact_p(2, 7) == mcnemar_exact_p(7, 2)


def test_summary_says_what_the_bin_will_score_with_its_views_and_old_manifests_nothing():
    metrics = flipped(10, broken=0, fixed=0)
    assert "as the bin classifies" not in summary(metrics)
    views = {"views": ["original", "mirrored", "flipped"], "agreement": 1.0,
             "float": {"accuracy": 0.95, "macro_f1": 0.94}, "model": {"accuracy": 0.93, "macro_f1": 0.92}}
    assert ("\n  as the bin classifies (original, mirrored, flipped averaged): float accuracy 0.9500 macro-F1 0.9400, "
            "converted accuracy 0.9300 macro-F1 0.9200") in summary(metrics | {"views": views})


def test_a_model_whose_training_diverged_is_refused_not_passed_by_a_gate_argmax_would_fool(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from converter.cli import main
    from tests.converter_run_factory import write_run_folder
    from tests.model_factory import tiny_keras_model

    model = tiny_keras_model(len(LABELS), 32)
    model.set_weights([np.full_like(weights, np.nan) for weights in model.get_weights()])
    run = write_run_folder(tmp_path, model=model)
    assert main([str(run), "--out", str(tmp_path / "bundle")]) == 2
    assert "answers NaN or infinite probabilities (its training diverged)" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists()
