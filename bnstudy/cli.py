"""The ``bnstudy`` command line: thin commands over the library."""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup, TyperOption

import bnstudy
from bnstudy import claims, store
from bnstudy.cluster import ClusterError, SlurmSettings, submit
from bnstudy.config import (
    ConfigError,
    StudyConfig,
    apply_overrides,
    read_config_file,
)
from bnstudy.device import resolve_devices
from bnstudy.diagnostics import LayerReport, layer_reports
from bnstudy.norms import NORMS, create_norm
from bnstudy.results import CRASHED, DIVERGED, ERROR, OOM, counts_text
from bnstudy.run import load_data, model_for_data, statistics_batch
from bnstudy.study import (
    STAGGER_SECONDS,
    Interrupted,
    SetupFailures,
    pending_runs,
    run_study,
)
from bnstudy.sweep import Run, order_runs, plan, swept_keys


class _FlagsWithoutType:
    """Help that shows a flag as a flag: typer 0.29 types every flag ``<bool>`` (--help too)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    pass


class _Group(_FlagsWithoutType, TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
)
# Plain lines don't wrap (greppable); tables get 140 columns when output is not a terminal.
out = Console(
    soft_wrap=True, highlight=False, markup=False, width=None if sys.stdout.isatty() else 140
)
err = Console(stderr=True, soft_wrap=True, highlight=False)


SweepDir = Annotated[Path, typer.Argument(help="The sweep folder: `results/<name>`.")]


class Order(str, enum.Enum):
    shuffled = "shuffled"
    grid = "grid"


def _version(value: bool) -> None:
    if value:
        out.print(f"bnstudy {bnstudy.__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """What does batch size do to your normalization layers? Sweep batch size, norm type and
    the test-time mode of small conv nets, and measure it."""


def _fail(lines: list[str]) -> None:
    for line in lines:
        err.print(f"[red]error:[/red] {escape(line)}")
    raise typer.Exit(code=2)


class Executor(str, enum.Enum):
    local = "local"
    slurm = "slurm"
    submitit_local = "submitit-local"


def _slurm(help_text: str, **limits: float) -> Any:
    """An option of the SLURM panel of ``run --help``."""
    return typer.Option(help=help_text, rich_help_panel="SLURM (--executor slurm)", **limits)


class Retry(str, enum.Enum):
    """Outcomes that ``--retry`` trains again."""

    error = ERROR
    oom = OOM
    crashed = CRASHED
    diverged = DIVERGED


@app.command(cls=_Command)
def run(
    config: Annotated[Path, typer.Argument(help="Study file (YAML).")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="KEY=VALUE overrides, values in YAML: train.epochs=1 "
            "'sweep.train.batch_size=[1,2]'."
        ),
    ] = None,
    out_root: Annotated[Path, typer.Option("--out", help="Results root.")] = Path("results"),
    device: Annotated[
        str,
        typer.Option(
            "--devices",
            "--device",
            help="auto | cpu | cuda | cuda:N, or one CUDA device per worker: cuda:0,cuda:1 (a "
            "worker on each GPU), cuda:0,cuda:0 (two on GPU 0). Each worker sees only its GPU "
            "(CUDA_VISIBLE_DEVICES).",
        ),
    ] = "auto",
    order: Annotated[
        Order, typer.Option(help="Run order: seeded shuffle or grid.")
    ] = Order.shuffled,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and exit.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Runs at a time, each in its own process with an equal share of the CPU "
            "threads, on the --devices in turn (results are bit-identical for equal jobs). "
            "Default: one per device listed.",
            show_default=False,
        ),
    ] = None,
    stagger: Annotated[
        float,
        typer.Option(min=0, help="Seconds between the starts of the first workers."),
    ] = STAGGER_SECONDS,
    lease: Annotated[
        float,
        typer.Option(
            min=1,
            help="Seconds without a heartbeat after which another process's claim on a run "
            "is stale and taken over (claims of dead processes on this host at once).",
        ),
    ] = claims.LEASE_SECONDS,
    retry: Annotated[
        list[Retry] | None,
        typer.Option(help="Also rerun the runs with this outcome (repeatable)."),
    ] = None,
    max_setup_failures: Annotated[
        int,
        typer.Option(
            min=0,
            help="Stop launching after this many runs in a row fail before training "
            "(missing data, bad device, import error); 0: never.",
        ),
    ] = 3,
    executor: Annotated[
        Executor,
        typer.Option(
            help="local: worker processes here. slurm: submit the runs still to do as one "
            "SLURM job array (pip install 'bnstudy\\[slurm]') and exit; rerun to submit what is "
            "still missing. submitit-local: the same submission as processes on this machine, "
            "all at once (a rehearsal for a few runs).",
        ),
    ] = Executor.local,
    slurm_partition: Annotated[str | None, _slurm("Partition.")] = None,
    slurm_gpus_per_task: Annotated[int, _slurm("GPUs per run (0: CPU only).", min=0)] = 1,
    slurm_cpus_per_task: Annotated[int, _slurm("CPU cores per run.", min=1)] = 4,
    slurm_mem_gb: Annotated[float | None, _slurm("Memory per run, GiB.", min=0)] = None,
    slurm_time: Annotated[
        int, _slurm("Time limit per run, minutes; the longest run must fit.", min=1)
    ] = 60,
    slurm_array_parallelism: Annotated[
        int, _slurm("Runs of the array at a time, at most.", min=1)
    ] = 256,
    slurm_account: Annotated[str | None, _slurm("Account to charge.")] = None,
    slurm_qos: Annotated[str | None, _slurm("Quality of service.")] = None,
    slurm_constraint: Annotated[str | None, _slurm("Node features (--constraint).")] = None,
) -> None:
    """Run a study: every run of the sweep not finished yet and not claimed by another live
    process (several `bnstudy run` of one study share the work), then rebuild runs.csv. With
    --executor slurm, submit those runs to a cluster instead."""
    try:
        raw = apply_overrides(read_config_file(config), overrides or [])
        study, runs = plan(raw, str(config))
    except ConfigError as error:
        _fail(error.lines())
    sweep_dir = out_root / study.name
    again = [outcome.value for outcome in retry or []]
    if dry_run:
        out.print(_plan_table(runs, sweep_dir, order.value, again))
        return
    if executor is not Executor.local:
        settings = SlurmSettings(
            slurm_partition,
            slurm_gpus_per_task,
            slurm_cpus_per_task,
            slurm_mem_gb,
            slurm_time,
            slurm_array_parallelism,
            slurm_account,
            slurm_qos,
            slurm_constraint,
        )
        cluster = "slurm" if executor is Executor.slurm else "local"
        _submit(sweep_dir, study, runs, device, lease, again, settings, cluster)
        return
    try:
        targets = resolve_devices(device)
    except ValueError as error:
        _fail([f"--devices: {error}"])
    if jobs is not None and jobs < len(targets):
        _fail([f"--jobs {jobs} is fewer than the {len(targets)} devices listed in --devices"])
    try:
        counts, trained = run_study(
            study,
            runs,
            out_root,
            targets,
            order.value,
            err,
            jobs,
            lease,
            again,
            max_setup_failures,
            stagger,
        )
    except SetupFailures as error:
        _fail([str(error)])
    except OSError as error:  # --out unwritable or a file, disk full, ...
        where = error.filename or sweep_dir
        _fail(
            [
                f"{where}: {error.strerror or error}: fix it (--out, free space) and rerun the "
                "same command; finished runs are kept"
            ]
        )
    except Interrupted as stop:
        done = store.sweep_status(sweep_dir)
        err.print(
            f"interrupted: {stop.trained} runs trained by this process; "
            f"{len(runs) - len(done.missing)} of {len(runs)} done. Resume with the same "
            f"command (bnstudy run {config} ...); finished runs are kept"
        )
        raise typer.Exit(code=130) from None
    summary = counts_text(counts)
    out.print(
        f"{study.name}: {len(runs)} runs: {summary} ({trained} trained by this process) "
        f"-> {sweep_dir / store.TABLE}"
    )
    _print_failures(store.sweep_status(sweep_dir))
    out.print(f"see the results: bnstudy report {sweep_dir}")


def _print_failures(status: store.SweepStatus) -> None:
    for entry in status.failures:
        out.print(f"  {entry['status']} {entry['run_id']} {_values(entry)}: {entry['error']}")


def _submit(
    sweep_dir: Path,
    study: StudyConfig,
    runs: list[Run],
    device: str,
    lease: float,
    retry: list[str],
    settings: SlurmSettings,
    cluster: str,
) -> None:
    """Submit the runs still to do and say what was submitted, what was left out and why,
    and how to follow the jobs."""
    try:
        submission = submit(sweep_dir, study, runs, device, lease, retry, settings, cluster)
    except (ClusterError, ValueError) as error:
        _fail([str(error)])
    except OSError as error:
        _fail([f"{error.filename or sweep_dir}: {error.strerror or error}"])
    finished = len(runs) - len(pending_runs(sweep_dir, runs, retry))
    left_out = [f"{finished} finished"]
    left_out += [f"{run_id} claimed by {c.describe()}" for run_id, c in submission.claimed.items()]
    left_out += [f"{run_id} still in job {job}" for run_id, job in submission.queued.items()]
    if not submission.run_ids:
        out.print(f"{study.name}: nothing to submit: " + "; ".join(left_out))
        return
    ids = ", ".join(submission.job_ids)
    what = f"SLURM job {ids}" if cluster == "slurm" else f"local jobs (pids {ids})"
    out.print(
        f"{study.name}: submitted {len(submission.run_ids)} runs as {what}, at most "
        f"{settings.array_parallelism} at a time; logs in {sweep_dir / 'slurm'}/<job id>/"
    )
    out.print("left out: " + "; ".join(left_out))
    follow = f"; squeue -j {ids}; cancel with scancel {ids}" if cluster == "slurm" else ""
    out.print(f"follow with: bnstudy status {sweep_dir}{follow}")


def _plan_table(runs: list[Run], sweep_dir: Path, order: str, retry: list[str]) -> Table:
    todo = {run.run_id for run in pending_runs(sweep_dir, runs, retry)}
    keys = swept_keys(runs)
    table = Table("#", "run_id", *keys, "state", title=f"{len(runs)} runs ({len(todo)} to run)")
    for index, run in enumerate(order_runs(runs, order), start=1):
        state = "to run" if run.run_id in todo else "done"
        table.add_row(
            str(index), run.run_id, *(str(run.swept.get(k, "(unused)")) for k in keys), state
        )
    return table


@app.command(cls=_Command)
def inspect(
    config: Annotated[Path, typer.Argument(help="Study file (YAML); its sweep is ignored.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Samples per norm statistic. Default: train.norm_batch_size or train.batch_size.",
        ),
    ] = None,
) -> None:
    """Will BN work with this shape at this batch size? Per norm layer, without training: input
    shape, the axes its statistics reduce over, values and images per statistic, and what to
    expect in train mode and in eval mode."""
    try:
        raw = apply_overrides(read_config_file(config), overrides or [])
        raw.pop("sweep", None)  # the same RawStudy: it knows which override set each key
        study, _ = plan(raw, str(config))
    except ConfigError as error:
        _fail(error.lines())
    size = batch_size or statistics_batch(study)
    try:
        data = load_data(study, torch.device("cpu"))
        model = model_for_data(study, data)
    except (OSError, ValueError) as error:
        _fail([f"{config}: {type(error).__name__}: {error}"])
    reports = layer_reports(model, torch.zeros(size, *data.train.x.shape[1:]))
    out.print(_layer_table(study, size, reports))


def _layer_table(study: StudyConfig, batch_size: int, reports: list[LayerReport]) -> Table:
    title = f"{study.model.name} with {study.model.norm} norm at batch size {batch_size}"
    table = Table(
        "layer",
        "type",
        "input shape",
        "reduced axes",
        "values / statistic",
        "images / statistic",
        "verdict",
        title=title,
    )
    for r in reports:
        shape = "×".join(map(str, r.input_shape))
        table.add_row(r.name, r.kind, shape, r.axes, str(r.values), str(r.images), r.verdict)
    return table


@app.command(cls=_Command)
def norms() -> None:
    """The registered norms: what one statistic averages over, whether it uses batch and
    running statistics, what it does with one value per statistic, and its options
    (`model.<norm>.<option>` in a study file)."""
    table = Table(
        "norm",
        "averages",
        "batch stats",
        "running stats",
        "at one value",
        "options",
        title="norms (bnstudy.norms)",
    )
    for name, spec in NORMS.items():
        module = create_norm(name, 8, 2)
        options = ", ".join(f"{k}={v}" for k, v in spec.options().model_dump().items())
        yes = {True: "yes", False: "no"}
        extras = [
            word
            for flag, word in (
                (spec.fused_activation, "fuses its activation"),
                (spec.conv is not None, "standardizes the convs"),
            )
            if flag
        ]
        table.add_row(
            name,
            "; ".join([spec.summary, *extras]),
            yes[spec.batch_statistics],
            yes[spec.running_statistics],
            spec.at_one_value(module),
            options or "-",
        )
    out.print(table)


@app.command(cls=_Command)
def status(sweep_dir: SweepDir) -> None:
    """Counts of run outcomes; the failed runs with their errors; the runs in flight, with who
    trains them (host, pid, device, heartbeat age); the runs still missing (stale claims and
    damaged folders marked); whether the report is current."""
    try:
        status = store.sweep_status(sweep_dir)
    except FileNotFoundError as error:
        _fail([str(error)])
    live = {r for r, claim in status.running.items() if not claims.is_stale(claim)}
    total = sum(status.counts.values()) + len(status.missing)
    parts = [f"{status.counts[s]} {s}" for s in sorted(status.counts)]
    parts += [f"{len(live)} running", f"{len(status.missing) - len(live)} missing"]
    out.print(f"{sweep_dir}: {total} planned: " + ", ".join(parts))
    if status.stale:
        out.print(f"{status.stale} run folders are not in the current plan (earlier configs)")
    _print_failures(status)
    for entry in status.missing:
        run_id = entry["run_id"]
        state = "running" if run_id in live else "missing"
        out.print(f"  {state} {run_id} {_values(entry)}{_missing_note(status, run_id)}")
    out.print(_report_freshness(sweep_dir))


def _report_freshness(sweep_dir: Path) -> str:
    """Whether the report holds every finished run: written after the newest result."""
    from bnstudy.report import INDEX_HTML, REPORT_DIR

    page = sweep_dir / REPORT_DIR / INDEX_HTML
    if not page.exists():
        return f"report: not written yet (bnstudy report {sweep_dir})"
    written = page.stat().st_mtime
    newer = sum(path.stat().st_mtime > written for path in sweep_dir.glob("runs/*/result.json"))
    if newer:
        results = "result" if newer == 1 else "results"
        return f"report: {page} is stale: {newer} newer {results} (bnstudy report {sweep_dir})"
    return f"report: {page} is up to date"


def _values(entry: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in entry["swept"].items())


def _missing_note(status: store.SweepStatus, run_id: str) -> str:
    if run_id in status.running:
        claim = status.running[run_id]
        state = "stale claim" if claims.is_stale(claim) else "by"
        return f" ({state} {claim.describe()})"
    if run_id in status.damaged:
        return f" (damaged, will be retrained: {status.damaged[run_id]})"
    return ""


@app.command(cls=_Command)
def report(
    sweep_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="The sweep folder (`results/<name>`), or several to compare: their accuracy "
            "curves overlaid along the batch axis, what was run side by side."
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where a comparison goes. Default: `comparison/` beside the sweep folders.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the report of a sweep to `<sweep_dir>/report/`: what was run, the findings with
    their verdicts, figures and tables in index.html. With several sweep folders, compare them."""
    from bnstudy.report import INDEX_HTML, REPORT_DIR, write_comparison, write_report

    if len(sweep_dirs) == 1 and out_dir is not None:
        _fail([f"--out is for a comparison; one sweep's report goes to {REPORT_DIR}/ in it"])
    try:
        for sweep_dir in sweep_dirs:
            store.write_table(sweep_dir)
        if len(sweep_dirs) == 1:
            folder = write_report(sweep_dirs[0])
        else:
            common = Path(os.path.commonpath([d.absolute() for d in sweep_dirs]))
            folder = write_comparison(sweep_dirs, out_dir or common / "comparison")
    except (FileNotFoundError, ValueError) as error:
        _fail([str(error)])
    out.print(f"report: {folder / INDEX_HTML}")


def main() -> None:
    app()
