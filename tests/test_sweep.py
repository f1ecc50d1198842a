import pytest

from bnstudy.config import ConfigError
from bnstudy.sweep import order_runs, plan, run_identity


def swept(tiny_study, sweep):
    tiny_study["sweep"] = sweep
    _, runs = plan(tiny_study, "study.yaml")
    return [run.swept for run in runs]


def test_axes_expand_to_their_cartesian_product(tiny_study):
    cells = swept(tiny_study, {"model.norm": ["batch", "group"], "train.batch_size": [1, 2, 4]})
    assert len(cells) == 6
    assert {(c["model.norm"], c["train.batch_size"]) for c in cells} == {
        (n, b) for n in ("batch", "group") for b in (1, 2, 4)
    }


def test_zip_groups_advance_together(tiny_study):
    cells = swept(
        tiny_study,
        {
            "seed": [0, 1],
            "zip": [{"train.batch_size": [1, 4], "train.lr": [0.01, 0.04]}],
        },
    )
    assert len(cells) == 4
    assert {(c["train.batch_size"], c["train.lr"]) for c in cells} == {(1, 0.01), (4, 0.04)}


def test_exclude_drops_matching_runs(tiny_study):
    cells = swept(
        tiny_study,
        {
            "model.norm": ["batch", "group", "none"],
            "train.batch_size": [1, 2],
            "exclude": [{"model.norm": ["group", "none"], "train.batch_size": 1}],
        },
    )
    assert len(cells) == 4
    assert {"model.norm": "group", "train.batch_size": 1} not in cells


def test_runs_resolve_the_swept_values_into_their_config(tiny_study):
    tiny_study["sweep"] = {"train.batch_size": [2, 4]}
    _, runs = plan(tiny_study, "study.yaml")
    assert [run.config.train.batch_size for run in runs] == [2, 4]
    assert all(run.config.sweep == {} for run in runs)


@pytest.mark.parametrize(
    "sweep, key",
    [
        ({"zip": [{"train.batch_size": [1, 2], "train.lr": [0.1]}]}, "sweep.zip[0]"),
        ({"train.batch_size": []}, "sweep.train.batch_size"),
        ({"train.batch_size": [1, 1]}, "sweep.train.batch_size"),
        ({"train.batch_size": [1], "zip": [{"train.batch_size": [2]}]}, "sweep.train.batch_size"),
        ({"train.batch_size": [1], "exclude": [{"seed": 0}]}, "sweep.exclude[0].seed"),
    ],
)
def test_malformed_sweeps_name_the_key(tiny_study, sweep, key):
    tiny_study["sweep"] = sweep
    with pytest.raises(ConfigError) as caught:
        plan(tiny_study, "study.yaml")
    assert key in [k for k, _ in caught.value.problems]


def test_identity_ignores_name_and_changes_with_any_setting(tiny_study):
    _, [run] = plan(tiny_study, "a.yaml")
    tiny_study["name"] = "renamed"
    _, [renamed] = plan(tiny_study, "b.yaml")
    tiny_study["train"]["lr"] = 0.1
    _, [changed] = plan(tiny_study, "c.yaml")
    assert run.run_id == renamed.run_id != changed.run_id
    assert run_identity(run.config) == run.run_id and len(run.run_id) == 10


def test_shuffled_order_is_seeded_and_grid_order_is_expansion_order(tiny_study):
    tiny_study["sweep"] = {"train.batch_size": [1, 2, 3, 4, 5, 6]}
    _, runs = plan(tiny_study, "study.yaml")
    assert order_runs(runs, "grid") == runs
    shuffled = order_runs(runs, "shuffled")
    assert shuffled == order_runs(runs, "shuffled") and shuffled != runs
    assert sorted(r.run_id for r in shuffled) == sorted(r.run_id for r in runs)


def test_zipped_lists_may_repeat_values_as_long_as_rows_differ(tiny_study):
    cells = swept(
        tiny_study,
        {
            "zip": [
                {
                    "model.norm": ["batch", "batch_manual", "batch_manual"],
                    "model.bn_stats": ["channel", "channel", "activation"],
                }
            ]
        },
    )
    assert len(cells) == 3


def test_values_that_resolve_to_the_same_config_are_rejected(tiny_study):
    tiny_study["sweep"] = {"train.lr": [1, 1.0]}
    with pytest.raises(ConfigError, match="resolve to the same config"):
        plan(tiny_study, "study.yaml")


def test_name_cannot_be_swept(tiny_study):
    tiny_study["sweep"] = {"name": ["a", "b"]}
    with pytest.raises(ConfigError, match="cannot be swept"):
        plan(tiny_study, "study.yaml")
