"""K runs of one cell trained as one packed network write the records they would write alone:
through bnstudy's own run path, in float64, with every test mode; a copy that diverges is
diverged alone; a pack that fails trains its runs one by one; packs are formed per cell."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from bnstudy import packed_run, packing, run
from bnstudy.data.core import Split
from bnstudy.sweep import plan
from bnstudy.train import Position, Stream, train_pack

CPU = torch.device("cpu")
TOLERANCE = 1e-8  # relative, float64
ALL_MODES = ["eval", "train", "precise", "adabn", "pix2pix"]


@pytest.fixture
def float64_data(monkeypatch):
    """Every run's data in float64 (models follow: the default dtype is float64)."""
    load = run.load_data

    def load64(config, device):
        data = load(config, device)
        double = [Split(split.x.double(), split.y) for split in (data.train, data.test)]
        return dataclasses.replace(data, train=double[0], test=double[1])

    monkeypatch.setattr(run, "load_data", load64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def seed_runs(tiny_study, seeds=(0, 1, 2)):
    tiny_study["sweep"] = {"seed": list(seeds)}
    _, runs = plan(tiny_study, "s.yaml")
    return runs


def assert_same_record(alone, packed):
    assert packed["status"] == alone["status"], packed["error"]
    assert packed["error"] == alone["error"] and packed["error_at"] == alone["error_at"]
    assert packed["predictions"] == alone["predictions"]
    assert packed["train"].keys() == alone["train"].keys()
    for key in {"lr", "train_loss", "train_acc", "steps", "samples", "epochs"} & alone[
        "train"
    ].keys():
        assert packed["train"][key] == pytest.approx(alone["train"][key], rel=TOLERANCE)
    for key, value in alone["diagnostics"].items():
        if isinstance(value, float) and math.isfinite(value):
            assert packed["diagnostics"][key] == pytest.approx(value, rel=TOLERANCE), key
    for test_alone, test_packed in zip(alone["tests"], packed["tests"], strict=True):
        for key, value in test_alone.items():
            if isinstance(value, float) and math.isfinite(value):
                assert test_packed[key] == pytest.approx(value, rel=TOLERANCE), key
            else:
                assert test_packed[key] == value, key


@pytest.mark.parametrize(
    ("data", "norm"),
    [("synthetic2d", "batch"), ("synthetic2d", "group"), ("synthetic3d", "batch_renorm")],
)
def test_a_pack_writes_the_records_its_runs_write_alone(tiny_study, float64_data, data, norm):
    tiny_study["data"].update(name=data, image_size=8 if data == "synthetic2d" else 4)
    tiny_study["model"]["norm"] = norm
    tiny_study["train"].update(norm_batch_size=2, epochs=2)
    tiny_study["eval"].update(test_modes=ALL_MODES, train_mode_batch_sizes=["same", 1])
    configs = [r.config for r in seed_runs(tiny_study)]
    alone = [run.execute_run(config, CPU) for config in configs]
    packed = packed_run.execute_pack(configs, CPU)
    for record_alone, record_packed in zip(alone, packed, strict=True):
        assert_same_record(record_alone, record_packed)
        assert record_packed["provenance"]["packed"] == 3
        assert "packed" not in record_alone["provenance"]


def test_a_copy_that_diverges_is_diverged_alone_and_the_others_train_on(
    tiny_study, float64_data, monkeypatch
):
    build = run.model_for_data

    def exploding_for_seed_1(config, data):
        model = build(config, data)
        if config.seed == 1:
            list(model.parameters())[-1].data.fill_(math.nan)  # the head's bias
        return model

    monkeypatch.setattr(run, "model_for_data", exploding_for_seed_1)
    configs = [r.config for r in seed_runs(tiny_study)]
    alone = [run.execute_run(config, CPU) for config in configs]
    packed = packed_run.execute_pack(configs, CPU)
    assert [r["status"] for r in packed] == ["ok", "diverged", "ok"]
    for record_alone, record_packed in zip(alone, packed, strict=True):
        assert_same_record(record_alone, record_packed)


def test_a_copy_with_non_finite_weights_leaves_the_other_copies_untouched(tiny_study, float64_data):
    """Two copies trained as a pack, copy 1 with infinite weights (NaN outputs, which a dense
    layer with zero blocks would spread): copy 0 ends exactly as it ends trained alone."""
    config = seed_runs(tiny_study, seeds=(0,))[0].config
    data = run.load_data(config, CPU)
    nets = [run.model_for_data(config, data) for _ in range(3)]
    next(nets[1].parameters()).data.fill_(math.inf)
    packed = packing.pack(nets[:2])
    results = {}
    for name, model in (("packed", packed), ("alone", nets[2])):
        streams = [Stream(data.train, torch.Generator().manual_seed(0)) for _ in range(2)]
        copies = len(streams) if model is packed else 1
        results[name] = train_pack(
            model,
            streams[:copies],
            torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
            batching=run.batching(config),
            schedule=run.make_schedule(config, len(data.train.y)),
            position=Position(),
        )
    assert results["packed"][1].diverged == "loss nan in epoch 1"
    assert results["packed"][0].diverged is None
    state = packing.copy_state(packed, nets[2], 0, 2)
    for key, value in nets[2].state_dict().items():
        torch.testing.assert_close(state[key], value, rtol=TOLERANCE, atol=0)


def test_a_pack_that_fails_trains_its_runs_one_by_one_and_says_why(tiny_study, monkeypatch):
    def refuse(models):
        raise packing.CannotPack("conv: not a module packing knows")

    monkeypatch.setattr(packing, "pack", refuse)
    records = packed_run.execute_pack([r.config for r in seed_runs(tiny_study, (0, 1))], CPU)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert all(
        r["provenance"]["pack_note"]
        == "trained alone: its pack of 2 failed (CannotPack: conv: not a module packing knows)"
        for r in records
    )


def test_runs_pack_by_cell_up_to_the_size_in_the_order_of_their_first_runs(tiny_study):
    tiny_study["sweep"] = {"seed": [0, 1, 2], "model.norm": ["batch", "group"]}
    _, runs = plan(tiny_study, "s.yaml")
    cells = [(r.config.model.norm, r.config.seed) for r in runs]
    packs = packed_run.packs(runs, "2", "cpu")
    grouped = [[(r.config.model.norm, r.config.seed) for r in p.runs] for p in packs]
    assert sorted(sum(grouped, [])) == sorted(cells)
    assert all(len({norm for norm, _ in group}) == 1 for group in grouped)
    assert sorted(len(group) for group in grouped) == [1, 1, 2, 2]
    assert [len(p.runs) for p in packed_run.packs(runs, "off", "cpu")] == [1] * 6


def test_auto_packs_on_a_cpu_only_where_packing_paid(tiny_study):
    """The tiny cnn (widths 4, 8 on 8² images: 23,200 operations per image forward) packs on
    a CPU at 2,586 images per pass, not at 2,587 (60 MFLOP); on a GPU always."""
    tiny_study["data"]["train_size"] = 6000
    for batch, size in ((2586, 8), (2587, 1)):
        tiny_study["train"]["batch_size"] = batch
        tiny_study["eval"]["train_mode_batch_sizes"] = [1]
        assert packed_run.pack_size("auto", "cpu", seed_runs(tiny_study)[0].config) == size
    assert packed_run.pack_size("auto", "cuda", seed_runs(tiny_study)[0].config) == 8


def test_a_run_that_cannot_pack_trains_alone_with_the_reason(tiny_study):
    tiny_study["model"]["name"] = "resnet8"
    packs = packed_run.packs(seed_runs(tiny_study), "3", "cpu")
    assert [len(p.runs) for p in packs] == [1, 1, 1]
    assert packs[0].note.startswith("model resnet8 does not pack")
    tiny_study["model"]["name"] = "cnn"
    tiny_study["train"]["precision"] = "fp16"
    assert packed_run.packs(seed_runs(tiny_study), "3", "cpu")[0].note.startswith("fp16")


def test_a_packed_sweep_records_its_packs_in_the_table_and_status(
    tiny_study, write_study, tmp_path
):
    import pandas as pd
    from typer.testing import CliRunner

    from bnstudy.cli import app

    tiny_study["sweep"] = {"seed": [0, 1, 2], "model.name": ["cnn", "resnet8"]}
    config, out = str(write_study(tiny_study)), str(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["run", config, "--out", out, "--pack", "3"]).exit_code == 0
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv").drop_duplicates("run_id")
    packed = table.set_index("model.name")["packed"]
    assert (packed["cnn"] == 3).all() and packed["resnet8"].isna().all()
    assert len(list((tmp_path / "tiny").glob("runs/*/history.jsonl"))) == 6
    status = runner.invoke(app, ["status", str(tmp_path / "tiny")]).output
    assert "packing: 3 runs trained in packs of 3" in status
    assert "packing: 3 runs trained alone: model resnet8 does not pack" in status


def test_pack_takes_off_auto_or_a_number(tiny_study, write_study, tmp_path):
    from typer.testing import CliRunner

    from bnstudy.cli import app

    result = CliRunner().invoke(app, ["run", str(write_study(tiny_study)), "--pack", "0"])
    assert result.exit_code == 2
    assert "give off, auto or a number" in " ".join(result.output.replace("│", " ").split())


def test_runs_retrained_after_their_pack_failed_keep_only_their_own_epochs(
    tiny_study, tmp_path, monkeypatch
):
    from dataclasses import asdict

    from bnstudy import store
    from bnstudy.checkpoint import RunFiles

    runs = seed_runs(tiny_study, (0, 1))
    folders = [store.start_run(tmp_path, run) for run in runs]
    real, failed = packing.copy_state, []

    def fail_after_training(*args):  # the pack trained its epoch, then fails
        if not failed:
            failed.append(True)
            raise RuntimeError("late failure")
        return real(*args)

    monkeypatch.setattr(packing, "copy_state", fail_after_training)
    records = packed_run.execute_pack(
        [run.config for run in runs],
        CPU,
        on_epoch=lambda k, stats: store.append_history(folders[k], asdict(stats)),
        files=[RunFiles.of(folder, run) for folder, run in zip(folders, runs, strict=True)],
    )
    assert [r["status"] for r in records] == ["ok", "ok"] and failed
    for folder in folders:  # one epoch each, not the pack's epoch and its own
        assert len((folder / store.HISTORY).read_text().splitlines()) == 1
