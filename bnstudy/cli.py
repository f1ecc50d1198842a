"""The ``bnstudy`` command line: thin commands over the library."""

from __future__ import annotations

import enum
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup, TyperOption

import bnstudy
from bnstudy.claims import LEASE_SECONDS
from bnstudy.options import (
    DEFAULT_SLURM,
    EXECUTORS,
    LOCAL,
    MAX_SETUP_FAILURES,
    STAGGER_SECONDS,
    RunOptions,
    SlurmSettings,
)
from bnstudy.results import (
    CRASHED,
    DIVERGED,
    ERROR,
    ERROR_MESSAGE,
    OOM,
    RUN_ID,
    STATUS,
    count_text,
    counts_text,
    duration_text,
)

if TYPE_CHECKING:  # the library's modules load in the commands that need them (torch)
    from bnstudy.config import StudyConfig
    from bnstudy.evaluate_saved import Evaluated
    from bnstudy.launch import InspectedCell, Inspection, Listing, Ran, Submitted
    from bnstudy.overview import Overview, ReportAge


class _FlagsWithoutType:
    """Help that shows a flag as a flag: typer 0.29 types every flag ``<bool>`` (--help too)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag:
                param.metavar = ""
        return params


# Below this many columns rich's help tables cut long option names and words with "…" (84 for
# `run --help`): the help is click's plain text there, which wraps and cuts nothing.
RICH_HELP_MIN_COLUMNS = 100


class _Command(_FlagsWithoutType, TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        if shutil.get_terminal_size().columns < RICH_HELP_MIN_COLUMNS:
            super(TyperCommand, self).format_help(ctx, formatter)  # click's, past typer's
        else:
            super().format_help(ctx, formatter)


class _Group(_FlagsWithoutType, TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
)
# Plain lines don't wrap (greppable); tables get 140 columns when output is not a terminal,
# unless COLUMNS says otherwise.
out = Console(
    soft_wrap=True,
    highlight=False,
    markup=False,
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140,
)
err = Console(stderr=True, soft_wrap=True, highlight=False)


SweepDir = Annotated[Path, typer.Argument(help="The sweep folder: `results/<name>`.")]


class Order(str, enum.Enum):
    shuffled = "shuffled"
    grid = "grid"


class Tracker(str, enum.Enum):
    tensorboard = "tensorboard"
    mlflow = "mlflow"


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


def _fail(lines: list[str]) -> NoReturn:
    """Say each problem on its own line and exit with code 2."""
    for line in lines:
        err.print(f"[red]error:[/red] {escape(line)}")
    raise typer.Exit(code=2)


# Where ``run`` trains: bnstudy.options.EXECUTORS (submitit-local as submitit_local).
Executor = enum.Enum(
    "Executor", {name.replace("-", "_"): name for name in EXECUTORS}, type=str, module=__name__
)


def _slurm(help_text: str, **limits: float) -> Any:
    """An option of the SLURM panel of ``run --help``."""
    return typer.Option(help=help_text, rich_help_panel="SLURM (--executor slurm)", **limits)


def _pack_choice(value: str) -> str:
    """``--pack``: off, auto, or a whole number of runs per pack."""
    if value in ("off", "auto") or (value.isdigit() and int(value) >= 1):
        return value
    raise typer.BadParameter(f"{value!r}: give off, auto or a number of runs (1 or more)")


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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List the runs, their optimizer steps and their estimated time here, and exit.",
        ),
    ] = False,
    probe: Annotated[
        bool,
        typer.Option(
            help="With --dry-run: time each cell without finished runs by training one of its "
            "runs for a few steps and testing it (else: from finished runs only).",
        ),
    ] = True,
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
    ] = LEASE_SECONDS,
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
    ] = MAX_SETUP_FAILURES,
    pack: Annotated[
        str,
        typer.Option(
            callback=_pack_choice,
            help="Train the seeds of one cell as one packed network (K models side by side, "
            "each trained exactly as alone): off, at most K runs per pack (a number), or auto: "
            "where scripts/bench.py found that it pays (on a CPU at 4 images per pass or "
            "fewer).",
        ),
    ] = "auto",
    log: Annotated[
        Tracker | None,
        typer.Option(
            help="Also write each run's training curves, test accuracies and config to this "
            "tracker as it trains: tensorboard, in <sweep>/tensorboard/<run id> (tensorboard "
            "--logdir results); mlflow, an experiment named after the study at "
            "MLFLOW_TRACKING_URI, else sqlite:///<sweep>/mlflow.db. Extras: pip install -e "
            "'.[tensorboard]' or '.[mlflow]'.",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        Executor,
        typer.Option(
            help="local: worker processes here. slurm: submit the runs still to do as one "
            "SLURM job array (the slurm extra of bnstudy: pip install -e '.[slurm]') and exit; "
            "rerun to submit what is still missing. submitit-local: the same submission as "
            "processes on this machine, all at once (a rehearsal for a few runs).",
        ),
    ] = Executor[LOCAL],
    slurm_partition: Annotated[str | None, _slurm("Partition.")] = DEFAULT_SLURM.partition,
    slurm_gpus_per_task: Annotated[int, _slurm("GPUs per run (0: CPU only).", min=0)] = (
        DEFAULT_SLURM.gpus_per_task
    ),
    slurm_cpus_per_task: Annotated[
        int, _slurm("CPU cores per run.", min=1)
    ] = DEFAULT_SLURM.cpus_per_task,
    slurm_mem_gb: Annotated[
        float | None, _slurm("Memory per run, GiB.", min=0)
    ] = DEFAULT_SLURM.mem_gb,
    slurm_time: Annotated[
        int, _slurm("Time limit per run, minutes; the longest run must fit.", min=1)
    ] = DEFAULT_SLURM.time_min,
    slurm_array_parallelism: Annotated[
        int, _slurm("Runs of the array at a time, at most.", min=1)
    ] = DEFAULT_SLURM.array_parallelism,
    slurm_account: Annotated[str | None, _slurm("Account to charge.")] = DEFAULT_SLURM.account,
    slurm_qos: Annotated[str | None, _slurm("Quality of service.")] = DEFAULT_SLURM.qos,
    slurm_constraint: Annotated[str | None, _slurm("Node features (--constraint).")] = (
        DEFAULT_SLURM.constraint
    ),
) -> None:
    """Run a study: every run of the sweep not finished yet and not claimed by another live
    process (several `bnstudy run` of one study share the work), then rebuild runs.csv. With
    --executor slurm, submit those runs to a cluster instead."""
    from bnstudy.launch import LaunchError, Stopped, launch

    slurm = SlurmSettings(
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
    options = RunOptions(
        config=config,
        overrides=tuple(overrides or ()),
        out_root=out_root,
        devices=device,
        order=order.value,
        dry_run=dry_run,
        probe=probe,
        jobs=jobs,
        stagger=stagger,
        lease=lease,
        retry=tuple(outcome.value for outcome in retry or ()),
        max_setup_failures=max_setup_failures,
        executor=executor.value,
        slurm=slurm,
        pack=pack,
        log=log.value if log else None,
    )
    try:
        launched = launch(options, err)
    except LaunchError as error:
        _fail(error.lines)
    except Stopped as stop:
        err.print(
            f"interrupted: {stop.trained} runs trained by this process; "
            f"{stop.done} of {stop.planned} done. Resume with the same "
            f"command (bnstudy run {config} ...); finished runs are kept"
        )
        raise typer.Exit(code=130) from None
    _print_launched(launched)


def _print_launched(launched: Listing | Submitted | Ran) -> None:
    """What ``run`` did: the runs listed, submitted or trained."""
    from bnstudy.launch import Listing, Submitted

    if isinstance(launched, Listing):
        out.print(_plan_table(launched))
        out.print(_cost_line(launched))
    elif isinstance(launched, Submitted):
        _print_submitted(launched)
    else:
        _print_ran(launched)


def _print_ran(ran: Ran) -> None:
    out.print(
        f"{ran.name}: {ran.planned} runs: {counts_text(ran.counts)} ({ran.trained} trained by "
        f"this process) -> {ran.table}"
    )
    _print_failures(ran.status.failures)
    _print_unfinished(ran)
    out.print(f"see the results: bnstudy report {ran.sweep_dir}")


def _print_unfinished(ran: Ran) -> None:
    """The planned runs without a result when this process is done: those another live
    process holds (the counts above leave them out), by owner, and the others."""
    from bnstudy.claims import is_stale

    missing = ran.status.missing
    held = {r: claim for r, claim in ran.status.running.items() if not is_stale(claim, ran.lease)}
    if not missing:
        return
    owners = Counter(f"{claim.host} pid {claim.pid}" for claim in held.values())
    by = "; ".join(f"{count} by {owner}" for owner, count in owners.items())
    line = f"  {len(missing)} not finished:"
    if held:
        line += f" {len(held)} still training in another process ({by}),"
    line += f" {len(missing) - len(held)} not trained; follow with: bnstudy status {ran.sweep_dir}"
    out.print(line)


def _print_failures(failures: list[dict[str, Any]]) -> None:
    for entry in failures:
        out.print(f"  {entry[STATUS]} {entry[RUN_ID]} {_values(entry)}: {entry[ERROR_MESSAGE]}")


def _print_submitted(submitted: Submitted) -> None:
    """What was submitted, what was left out and why, and how to follow the jobs."""
    submission, sweep_dir = submitted.submission, submitted.sweep_dir
    left_out = [f"{submitted.finished} finished"]
    left_out += [f"{run_id} claimed by {c.describe()}" for run_id, c in submission.claimed.items()]
    left_out += [f"{run_id} still in job {job}" for run_id, job in submission.queued.items()]
    if not submission.run_ids:
        out.print(f"{submitted.name}: nothing to submit: " + "; ".join(left_out))
        return
    ids = ", ".join(submission.job_ids)
    slurm = submitted.cluster == "slurm"
    what = f"SLURM job {ids}" if slurm else f"local jobs (pids {ids})"
    out.print(
        f"{submitted.name}: submitted {len(submission.run_ids)} runs as {what}, at most "
        f"{submitted.settings.array_parallelism} at a time; logs in {sweep_dir / 'slurm'}/<job id>/"
    )
    out.print("left out: " + "; ".join(left_out))
    follow = f"; squeue -j {ids}; cancel with scancel {ids}" if slurm else ""
    out.print(f"follow with: bnstudy status {sweep_dir}{follow}")


def _plan_table(listing: Listing) -> RenderableType:
    runs, keys, todo = listing.runs, listing.keys, listing.todo
    rows = [
        [
            str(index),
            run.run_id,
            *(str(run.swept.get(k, "(unused)")) for k in keys),
            "to run" if run.run_id in todo else "done",
        ]
        for index, run in enumerate(runs, start=1)
    ]
    return _fitted(f"{len(runs)} runs ({len(todo)} to run)", ["#", "run_id", *keys, "state"], rows)


def _cost_line(listing: Listing) -> str:
    """What the runs to do cost: ``25 to run: 18,800 optimizer steps, about 3.2 min with 2
    workers on cpu (runs timed: 25 by a probe)``; the runs whose time is unknown counted and
    why (failed probes named, one line each)."""
    cost = listing.estimate
    if not listing.todo:
        return "nothing to run"
    line = f"{len(listing.todo)} to run: {cost.steps:,} optimizer steps"
    unknown = cost.sources.get("unknown", 0)
    if unknown < len(listing.todo):
        how = ", ".join(f"{n} by {_SOURCES[s]}" for s, n in cost.sources.items() if s != "unknown")
        workers = f"{cost.jobs} worker{'s' if cost.jobs > 1 else ''}"
        some = f" for the {len(listing.todo) - unknown} timed" if unknown else ""
        line += f", about {duration_text(cost.wall_seconds)}{some} with {workers} on "
        line += f"{listing.device} (runs timed: {how})"
    if unknown:
        why = "their probes failed (below)" if cost.problems else listing.untimed
        line += f"; time unknown for {count_text(unknown, 'run')}: {why}"
    return "\n".join([line, *(f"  {problem}" for problem in cost.problems)])


_SOURCES = {"finished": "finished runs of their cell", "probe": "a probe"}


def _fitted(title: str, headers: list[str], rows: list[list[str]]) -> RenderableType:
    """A table of ``rows`` under ``headers``, or, where the terminal is too narrow for it to
    show every word whole (rich would cut them with "…"), the same rows stacked: each row's
    first cell, then one line per other cell under its column's name. Nothing is cut at 80
    columns."""
    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    unbounded = out.options.update_width(10**6)  # rich clamps a measurement to the width
    if out.measure(table, options=unbounded).minimum <= out.width:
        return table
    stacked = Table.grid(padding=(0, 2))
    stacked.add_column(no_wrap=True)
    stacked.add_column(overflow="fold")
    first, *others = headers
    for row in rows:
        stacked.add_row(f"{first} {row[0]}", "")
        for header, cell in zip(others, row[1:], strict=True):
            stacked.add_row(f"  {header}", cell)
    return Group(title, stacked)


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
    from bnstudy.launch import LaunchError, inspect_study

    try:
        inspection = inspect_study(config, overrides or [], batch_size)
    except LaunchError as error:
        _fail(error.lines)
    out.print(_inspection(inspection, config))


def _inspection(inspection: Inspection, config: Path) -> RenderableType:
    """One cell: its layers; several (a sweep): one verdict each, its decisive layer's
    (bnstudy.diagnostics.decisive_layer), and how to see a cell's layers."""
    from bnstudy.diagnostics import decisive_layer

    study = inspection.study
    if len(inspection.cells) == 1:
        return _layer_table(study, inspection.cells[0])
    keys = list(dict.fromkeys(key for cell in inspection.cells for key in cell.swept))
    headers = [*keys, "images / statistic", "fewest values / statistic", "verdict"]
    rows = []
    for cell in inspection.cells:
        swept = [str(cell.swept.get(k, "(unused)")) for k in keys]
        layer = decisive_layer(cell.layers)
        if layer is None:
            rows.append([*swept, "-", "-", "no norm layer"])
            continue
        values = "-" if layer.values is None else f"{layer.values} ({layer.name})"
        images = _or_dash(layer.images)
        rows.append([*swept, images, values, layer.verdict])
    title = f"{study.name}: the norm layers of each model and batch its sweep trains"
    hint = f"each one's layers: bnstudy inspect {config} model.norm=<norm> --batch-size <images>"
    return Group(_fitted(title, headers, rows), Text(hint))


def _or_dash(count: int | None) -> str:
    """A count of a layer report, ``-`` where the layer computes no statistic."""
    return "-" if count is None else str(count)


def _layer_table(study: StudyConfig, cell: InspectedCell) -> RenderableType:
    model = study.model.model_copy(update={"norm": cell.swept.get("model.norm", study.model.norm)})
    title = f"{model.name} with {model.norm} norm at batch size {cell.batch_size}"
    headers = ["layer", "type", "input shape", "reduced axes", "values / statistic"]
    headers += ["images / statistic", "verdict"]
    rows = [
        [
            r.name,
            r.kind,
            "×".join(map(str, r.input_shape)),
            r.axes,
            _or_dash(r.values),
            _or_dash(r.images),
            r.verdict,
        ]
        for r in cell.layers
    ]
    return _fitted(title, headers, rows)


@app.command(cls=_Command)
def config(
    study: Annotated[
        Path | None,
        typer.Argument(help="Study file (YAML). Default: none, the defaults.", show_default=False),
    ] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides.")] = None,
    schema: Annotated[
        bool,
        typer.Option("--schema", help="Print the JSON schema of a study file (for editors)."),
    ] = False,
    reference: Annotated[
        bool,
        typer.Option("--reference", help="Print every key documented, as docs/config.md."),
    ] = False,
) -> None:
    """Print the study as its runs see it: every key, defaults filled in (its sweep as
    written). Or the schema, or the reference of every key."""
    if schema or reference:
        from bnstudy.config_reference import reference_markdown, study_schema

        typer.echo(study_schema() if schema else reference_markdown())
        return
    from bnstudy.launch import LaunchError, resolved_study

    try:
        text = resolved_study(study, overrides or [])
    except LaunchError as error:
        _fail(error.lines)
    typer.echo(text, nl=False)


@app.command(cls=_Command)
def init(
    path: Annotated[Path, typer.Argument(help="The study file to write.")] = Path("study.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter study, each key under a comment saying what it is: BN at 1-32 images
    per statistic against GroupNorm on generated data, 3 seeds."""
    from bnstudy.config_reference import starter_study

    if path.exists() and not force:
        _fail([f"{path} exists: choose another name, or --force to overwrite it"])
    try:
        path.write_text(starter_study())
    except OSError as error:
        _fail([f"{path}: {error.strerror or error}"])
    out.print(f"wrote {path}: bnstudy run {path} --dry-run lists its runs")


@app.command(cls=_Command)
def norms() -> None:
    """The registered norms: what one statistic averages over, whether it uses batch and
    running statistics, what it does with one value per statistic, and its options
    (`model.<norm>.<option>` in a study file)."""
    from bnstudy.norm_table import norm_rows

    headers = ["norm", "averages", "batch stats", "running stats", "at one value", "options"]
    yes = {True: "yes", False: "no"}
    rows = [
        [
            row.name,
            row.averages,
            yes[row.batch_statistics],
            yes[row.running_statistics],
            row.at_one_value,
            row.options or "-",
        ]
        for row in norm_rows()
    ]
    out.print(_fitted("norms (bnstudy.norms)", headers, rows))


@app.command(cls=_Command)
def status(sweep_dir: SweepDir) -> None:
    """Counts of run outcomes; the failed runs with their errors; the runs in flight, with who
    trains them (host, pid, device, heartbeat age); the runs still missing (stale claims and
    damaged folders marked); whether the report is current."""
    from bnstudy.overview import sweep_overview

    try:
        overview = sweep_overview(sweep_dir)
    except FileNotFoundError as error:
        _fail([str(error)])
    status, live = overview.status, overview.live
    parts = [f"{status.counts[s]} {s}" for s in sorted(status.counts)]
    parts += [f"{len(live)} running", f"{len(status.missing) - len(live)} missing"]
    out.print(f"{sweep_dir}: {overview.planned} planned: " + ", ".join(parts))
    if status.stale:
        out.print(f"{status.stale} run folders are not in the current plan (earlier configs)")
    for how, count in sorted(status.packing.items()):
        out.print(f"packing: {count} runs trained {how}", markup=False)
    _print_failures(status.failures)
    if overview.table_problem:
        out.print(
            f"runs.csv: {overview.table_problem}; bnstudy report {sweep_dir} rebuilds it from "
            "the run folders"
        )
    for entry in status.missing:
        run_id = entry[RUN_ID]
        state = "running" if run_id in live else "missing"
        out.print(f"  {state} {run_id} {_values(entry)}{_missing_note(overview, run_id)}")
    out.print(_report_line(sweep_dir, overview.report))


def _report_line(sweep_dir: Path, report: ReportAge) -> str:
    """Whether the report holds every finished run."""
    if not report.written:
        return f"report: not written yet (bnstudy report {sweep_dir})"
    if report.newer:
        results = "result" if report.newer == 1 else "results"
        return (
            f"report: {report.page} is stale: {report.newer} newer {results} "
            f"(bnstudy report {sweep_dir})"
        )
    return f"report: {report.page} is up to date"


def _values(entry: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in entry["swept"].items())


def _missing_note(overview: Overview, run_id: str) -> str:
    status = overview.status
    if run_id in status.running:
        state = "by" if run_id in overview.live else "stale claim"
        return f" ({state} {status.running[run_id].describe()})"
    if run_id in status.damaged:
        return f" (damaged, will be retrained: {status.damaged[run_id]})"
    return ""


def _comma_list(value: str | None) -> list[str] | None:
    return None if value is None else [item.strip() for item in value.split(",") if item.strip()]


def _batch_sizes(value: str | None) -> list[int | str] | None:
    """``same`` stays a word; numbers become numbers (and validation judges them)."""
    items = _comma_list(value)
    return None if items is None else [int(i) if i.lstrip("-").isdigit() else i for i in items]


@app.command(cls=_Command)
def evaluate(
    sweep_dir: SweepDir,
    test_modes: Annotated[
        str | None,
        typer.Option(
            help="Test modes, comma-separated (eval, precise, adabn, train, pix2pix). "
            "Default: each run's own.",
            show_default=False,
        ),
    ] = None,
    train_mode_batch_sizes: Annotated[
        str | None,
        typer.Option(
            help="Test batch sizes of the modes tested per batch (train, pix2pix), "
            "comma-separated: numbers or same (the normalization batch). Default: each run's "
            "own.",
            show_default=False,
        ),
    ] = None,
    eval_file: Annotated[
        Path | None,
        typer.Option(
            help="A YAML file with an eval: section of these keys (the options above win).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    jobs: Annotated[
        int,
        typer.Option(
            min=1, help="Runs at a time, each in its own process with a share of the CPU threads."
        ),
    ] = 1,
) -> None:
    """Test finished runs again from their saved models (model.pt), in test settings they were
    not tested in: no training. Their rows join runs.csv (marked evaluated_later, with the
    evaluation's provenance) and the report. Settings a run already has are skipped; runs
    without a saved model are named and left as they are."""
    from bnstudy.config import ConfigError
    from bnstudy.device import resolve_device
    from bnstudy.evaluate_saved import checked_request, evaluate_study, request_file

    asked = {"test_modes": _comma_list(test_modes)}
    asked["train_mode_batch_sizes"] = _batch_sizes(train_mode_batch_sizes)
    try:
        request = request_file(eval_file) if eval_file else {}
        request |= {key: value for key, value in asked.items() if value is not None}
        if not request:
            _fail(["nothing asked: give --test-modes, --train-mode-batch-sizes or --eval-file"])
        request = checked_request(request, str(eval_file or "the evaluation asked"))
        on = resolve_device(device)
        done = evaluate_study(sweep_dir, request, on, jobs, on_run=_print_evaluated)
    except ConfigError as error:
        _fail(error.lines())
    except (FileNotFoundError, ValueError) as error:
        _fail([str(error)])
    added = [e for e in done if e.added]
    settings, failed = sum(len(e.added) for e in added), sum(e.failed for e in added)
    out.print(
        f"{sweep_dir}: {len(done)} runs: {len(added)} evaluated ({settings} settings added, "
        f"{failed} failed), {len(done) - len(added)} left as they were"
    )
    if added:
        out.print(f"see the results: bnstudy report {sweep_dir}")


def _print_evaluated(evaluated: Evaluated) -> None:
    if evaluated.added:
        failed = f" ({evaluated.failed} failed: see runs.csv)" if evaluated.failed else ""
        added = f"  {evaluated.run_id}: added {', '.join(evaluated.added)}{failed}"
        out.print(added, markup=False)
    else:
        out.print(f"  {evaluated.run_id}: {evaluated.note}", markup=False)


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
    from bnstudy.report import write_reports

    try:
        page = write_reports(sweep_dirs, out_dir)
    except (FileNotFoundError, ValueError) as error:
        _fail([str(error)])
    except OSError as error:  # a read-only folder, a full disk, ...
        where = error.filename or sweep_dirs[0]
        _fail([f"{where}: {error.strerror or error}: fix it (permissions, free space) and rerun"])
    out.print(f"report: {page}")


def main() -> None:
    """The ``bnstudy`` command. A run stopped by Ctrl-C (exit code 130) leaves at once,
    skipping the interpreter's teardown: Python restores SIGINT's default action as it
    finalizes, so a second Ctrl-C during it would kill the process by the signal instead."""
    try:
        app()
    except SystemExit as done:
        if done.code == 130:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise
