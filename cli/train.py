"""``hyperet train``: run the staged recipe of the compact MLLM into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from hyperet.cli.console import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    console,
    device_option,
    emit_json,
    fail,
    json_option,
    log_every_option,
    os_error_message,
    plain_line,
)

from hyperet.config import (
    DEFAULT_PRESET,
    HYPERET_STAGES,
    HYPERET_STRUCTURES,
    OBJECTIVES,
    PRESETS,
    RECIPE_STAGES,
    preset,
)
from hyperet.data.mixture import VISION_LEVELS


def _budgets(name: str) -> str:
    """``"vision 1500, itc 600, lm 400, ... steps"``: a preset's step budget per stage."""
    train = preset(name).train
    return ", ".join(f"{stage} {train.budget(stage).steps}" for stage in RECIPE_STAGES) + " steps"


_STAGE_NAMES = ", ".join(RECIPE_STAGES)
_DEFAULT = preset(DEFAULT_PRESET)  # the preset's values, shown in --help (the preset decides)


@click.command(name="train")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/default"),
    show_default=True,
    help="Run directory (config.json, checkpoints/, metrics.json).",
)
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    help=f"Model size, step budgets and the defaults of the options below (default "
    f"{DEFAULT_PRESET}; resuming: the run's): "
    + "; ".join(f"{name}: {_budgets(name)}" for name in reversed(PRESETS))
    + " (itc only with an ITC --objective).",
)
@click.option(
    "--hyperet",
    "hyperet",
    type=click.Choice(HYPERET_STRUCTURES),
    help="HRA structure on the frozen ViT's q and v (none: no HyperET; preset: "
    f"{_DEFAULT.hyperet.structure}).",
)
@click.option(
    "--hyperet-stage",
    type=click.Choice(HYPERET_STAGES),
    help="Where HRA trains: pretrain = stage 1 (align), finetune = stage 2 (instruct) (preset: "
    f"{_DEFAULT.hyperet.stage}).",
)
@click.option("--curvature", type=float, help=f"HRA curvature c (preset: {_DEFAULT.hyperet.c}).")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    help="Seed of the data, the initialisation and the batch order (runs are reproducible; "
    f"preset: {_DEFAULT.seed}).",
)
@click.option(
    "--vision-level",
    type=click.Choice(VISION_LEVELS),
    help="Caption level of CLIP-style vision pretraining (stage 0a); 'mixture' draws each "
    f"pair's level from the coarse-skewed mixture of docs/mllm.md (preset: "
    f"{_DEFAULT.train.vision_level}).",
)
@click.option(
    "--objective",
    type=click.Choice(OBJECTIVES),
    help="Training objective; the ITC ones add an image-text alignment stage (itc) after vision "
    f"(preset: {_DEFAULT.train.objective}).",
)
@click.option(
    "--steps",
    "steps_items",
    multiple=True,
    metavar="STAGE=N",
    help=f"Step budget of one stage, replacing the preset's (repeatable). STAGE: {_STAGE_NAMES}"
    " (vision = 0a, itc after it with an ITC --objective, lm = 0b, align = 1, instruct = 2).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Set any config.json field by its dotted path, e.g. projector.shuffle=1 or "
    "train.stages.instruct.lr=1e-3 (repeatable; applied after the other options).",
)
@log_every_option(100, "steps")
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    help="Mid-stage checkpoint interval in steps (preset: small 500, nano 4).",
)
@click.option(
    "--resume", is_flag=True, help="Continue an interrupted run in --out (verified first)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace the hyperet run directory --out (refused, deleting nothing, when --out holds "
    "anything a run does not write).",
)
@device_option
@json_option
def command(**opts: Any) -> None:
    """Train the compact MLLM: vision (0a), LM (0b), align (1), instruct (2).

    Stages run in order into --out (config.json, checkpoints/, metrics.json); an interrupted run
    continues with --resume. HyperET (--hyperet) adds HRA matrices to the frozen ViT.

    Several processes: `torchrun --nproc-per-node N -m hyperet.cli train ...` trains with
    DistributedDataParallel (gloo on CPU, NCCL with --device cuda); batch sizes are global,
    rank 0 writes the run directory (docs/mllm.md, "Several processes").

    \b
    Examples:
      hyperet train --out runs/base                          # the default run (small preset)
      hyperet train --out runs/hra --hyperet diagonal        # with HyperET in stage 2
      hyperet train --preset nano --out /tmp/smoke --steps vision=10 --steps instruct=20
      hyperet train --out runs/itc --objective hyperbolic-itc --steps itc=300
      hyperet train --out runs/hra --resume                  # continue after Ctrl-C
      torchrun --nproc-per-node 2 -m hyperet.cli train --out runs/ddp

    \b
    Exit codes: 0 done; 2 bad options, run directory or file (one line on stderr);
    3 non-finite loss; 130 interrupted (resume with --resume). The run holds --out's lock
    (.hyperet.lock) while it trains.
    """
    if opts["resume"] and opts["force"]:
        fail("--resume and --force exclude each other", EXIT_BAD_INPUT)

    import torch  # heavy imports inside the command body

    from hyperet import distributed
    from hyperet.checkpoint import CheckpointError
    from hyperet.device import resolve_device
    from hyperet.train import NonFiniteLossError, RunDirectoryError, run_config, train

    out: Path = opts["out"]
    try:
        config = run_config(
            out,
            preset_name=opts["preset"],
            resume=opts["resume"],
            steps=opts["steps_items"],
            settings=opts["settings"],
            seed=opts["seed"],
            hyperet=opts["hyperet"],
            hyperet_stage=opts["hyperet_stage"],
            curvature=opts["curvature"],
            vision_level=opts["vision_level"],
            objective=opts["objective"],
            checkpoint_every=opts["checkpoint_every"],
        )
        device = resolve_device(opts["device"])
        distributed.init_from_env(device)  # under torchrun: join the other ranks
    except (ValueError, CheckpointError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    main_rank = distributed.is_main()
    console.quiet = not main_rank  # rank 0 alone prints
    ranks = f" ranks={distributed.world_size()}" if distributed.is_active() else ""

    console.print(
        f"[bold]hyperet train[/] preset={config.preset} seed={config.seed} "
        f"hyperet={config.hyperet.structure}"
        + (f" ({config.hyperet.stage}, c={config.hyperet.c})" if config.hyperet.enabled else "")
        + f" device={device}{ranks} threads={torch.get_num_threads()} -> {out}",
        highlight=False,
    )
    console.print("generating data and building the model ...", style="dim")
    renderer = _ProgressRenderer()
    on_event: Any = renderer
    display: Any = renderer.progress
    if not console.is_terminal:  # a log file: plain lines instead of bars
        from contextlib import nullcontext

        from hyperet.progress_log import TrainLog

        on_event, display = TrainLog(plain_line, opts["log_every"]), nullcontext()
    try:
        with display:
            metrics = train(
                config,
                out,
                resume=opts["resume"],
                force=opts["force"],
                on_event=on_event,
                device=device,
            )
    except NonFiniteLossError as err:
        fail(str(err), EXIT_NONFINITE)
    except (RunDirectoryError, CheckpointError, ValueError) as err:
        fail(str(err), EXIT_BAD_INPUT)
    except OSError as err:  # unwritable, full disk, a path under a file ...
        fail(os_error_message(err, out), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        fail(f"interrupted; continue with `hyperet train --out {out} --resume`", EXIT_INTERRUPTED)
    finally:
        distributed.shutdown()
    if not main_rank:
        return
    _render_summary(metrics)
    console.print(f"done. evaluate with: [bold]hyperet eval {out}[/]", highlight=False)
    if opts["as_json"]:
        emit_json(
            {
                "out": str(out),
                "stages": {
                    name: {
                        k: s[k] for k in ("steps", "wall_time_s", "seconds_per_step", "final_loss")
                    }
                    for name, s in metrics["stages"].items()
                },
            }
        )


class _ProgressRenderer:
    """Turns training events into rich progress bars (one per stage) on stderr."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: object) -> None:
        from hyperet.train import StageSkipped, StageStarted, StepDone

        if isinstance(event, StageStarted):
            label = event.stage + (" +HRA" if event.hyperet_active else "")
            self.tasks[event.stage] = self.progress.add_task(
                label, total=event.steps, completed=event.start_step, loss="-"
            )
        elif isinstance(event, StepDone):
            self.progress.update(
                self.tasks[event.stage], completed=event.step, loss=f"{event.loss:.4f}"
            )
        elif isinstance(event, StageSkipped):
            self.progress.console.print(f"{event.stage}: already complete (resumed)", style="dim")


def _render_summary(metrics: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="training", title_justify="left")
    for column in ("stage", "steps", "wall time (s)", "s/step", "final loss", "features"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, s in metrics["stages"].items():
        features = "HRA" if s["hyperet_active"] else ("cached" if s["cached_features"] else "live")
        final = "-" if s["final_loss"] is None else f"{s['final_loss']:.4f}"
        table.add_row(
            name,
            str(s["steps"]),
            f"{s['wall_time_s']:.1f}",
            f"{s['seconds_per_step']:.3f}",
            final,
            features if name in ("align", "instruct") else "-",
        )
    console.print(table)
