"""Tests for scripts/bnstudy-sweeps, the script a schedule (systemd timer, cron) runs: every
study file of a folder, run then reported, one log per config, failures not stopping the rest.

Each case starts real ``bnstudy`` processes (a few seconds each for imports and the report)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bnstudy-sweeps"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bash") is None, reason="scripts/bnstudy-sweeps needs bash"),
]


def _sweeps(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the script in ``tmp_path`` with ``$BNSTUDY`` = this interpreter's bnstudy (a
    wrapper around ``python -m bnstudy``: works in any environment that imports bnstudy)."""
    wrapper = tmp_path / "bnstudy"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m bnstudy "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "BNSTUDY": str(wrapper)}
    return subprocess.run(
        [str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )


def _write(folder: Path, stem: str, study: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


def test_every_config_of_the_default_folder_is_run_reported_and_logged(tmp_path, tiny_study):
    for stem, name in (("20-second", "beta"), ("10-first", "alpha")):
        _write(tmp_path / "configs" / "scheduled", stem, {**tiny_study, "name": name})
    done = _sweeps(tmp_path, "--", "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("alpha", "beta"):
        assert (tmp_path / "results" / name / "runs.csv").is_file()
        assert (tmp_path / "results" / name / "report" / "index.html").is_file()
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:2]] == [
        ["ok", "configs/scheduled/10-first.yaml", "exit=0"],  # sorted order
        ["ok", "configs/scheduled/20-second.yaml", "exit=0"],
    ]
    logs = sorted((tmp_path / "results" / "logs").glob("*.log"))
    assert [log.name.split("-", 1)[1] for log in logs] == ["10-first.log", "20-second.log"]
    for line, log in zip(lines, logs, strict=False):
        assert line.endswith(f"log=results/logs/{log.name}")
    text = logs[0].read_text()
    assert "run configs/scheduled/10-first.yaml --out results --device cpu" in text
    assert "alpha: 1 runs: 1 ok" in text and "report results/alpha" in text


def test_an_invalid_config_fails_without_stopping_the_others(tmp_path, tiny_study):
    _write(tmp_path / "studies", "a-broken", {**tiny_study, "name": "broken", "trian": {}})
    _write(tmp_path / "studies", "b-fine", {**tiny_study, "name": "fine"})
    done = _sweeps(tmp_path, "--out", "out", "studies")
    assert done.returncode == 1
    assert (tmp_path / "out" / "fine" / "report" / "index.html").is_file()
    assert not (tmp_path / "out" / "broken").exists()
    failed, fine = done.stdout.splitlines()[:2]
    assert failed.startswith("FAILED  studies/a-broken.yaml  exit=2  log=out/logs/")
    assert fine.startswith("ok      studies/b-fine.yaml  exit=0")
    assert "1 of 2 configs failed: studies/a-broken.yaml" in done.stdout
    log = tmp_path / failed.rsplit("log=", 1)[1]
    assert "trian: unknown key" in log.read_text()
