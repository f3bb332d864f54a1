"""Plain progress lines for non-terminal stderr (`hyperet train` / `hyperet eval`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hyperet.cli import console as console_module
from hyperet.cli.main import main

from hyperet.progress_log import EvalLog, StepLog, TrainLog, format_duration
from hyperet.train import StageFinished, StageSkipped, StageStarted, StepDone

LINE = re.compile(
    r"^train (\w+) (\d+)/(\d+) loss (\d+\.\d{4}) \| (\d+\.\d\d|-) steps/s \| ETA (\S+)$"
)


def fake_clock(times: list[float]):
    it = iter(times)
    return lambda: next(it)


def test_step_log_rate_and_eta_from_the_clock() -> None:
    lines: list[str] = []
    # start at t=10; step 50 at t=20 -> 5 steps/s, 150 left -> 30 s
    log = StepLog(lines.append, every=50, clock=fake_clock([10.0, 20.0, 50.0]))
    log.start("lm", total=200)
    for step in range(1, 101):
        log.step("lm", step, loss=2.0 + 1 / step)
    assert lines == [
        "train lm 50/200 loss 2.0200 | 5.00 steps/s | ETA 30s",
        "train lm 100/200 loss 2.0100 | 2.50 steps/s | ETA 40s",
    ]


def test_resumed_stage_counts_steps_from_where_it_resumed() -> None:
    lines: list[str] = []
    log = StepLog(lines.append, every=10, clock=fake_clock([0.0, 4.0]))
    log.start("instruct", total=100, start_step=60)
    log.step("instruct", 70, loss=1.0)  # 10 steps in 4 s, 30 left
    assert lines == ["train instruct 70/100 loss 1.0000 | 2.50 steps/s | ETA 12s"]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59.4, 60, 3599, 3600, 7322)] == [
        "0s", "59s", "1m00s", "59m59s", "1h00m00s", "2h02m02s",
    ]  # fmt: skip


def test_train_log_turns_events_into_lines() -> None:
    lines: list[str] = []
    log = TrainLog(lines.append, every=2, clock=fake_clock([0.0, 1.0, 2.0]))
    log(StageSkipped("vision"))
    log(StageStarted("align", 4, 0, cached_features=True, hyperet_active=True))
    for step in range(1, 5):
        log(StepDone("align", step, 4, loss=0.5, lr=1e-3))
    log(StageFinished("align", {"wall_time_s": 62.0}))
    assert lines == [
        "train vision: already complete (resumed)",
        "train align +HRA started: 4 steps",
        "train align 2/4 loss 0.5000 | 2.00 steps/s | ETA 1s",
        "train align 4/4 loss 0.5000 | 2.00 steps/s | ETA 0s",
        "train align finished in 1m02s",
    ]


def test_eval_log_every_n_batches_and_at_the_end() -> None:
    lines: list[str] = []
    # clock: created 0; vqa 10 -> 1; vqa 20 -> line at 2, 3; vqa 25 -> line at 4, 5;
    # multiple_choice starts at 5 -> line at 6
    log = EvalLog(lines.append, every=2, clock=fake_clock([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    for done in (10, 20, 25):
        log("vqa", done, 25)
    log("multiple_choice", 8, 8)
    assert lines == [
        "eval vqa 20/25 | 10.00 items/s | ETA 0s",
        "eval vqa 25/25 | 6.25 items/s | ETA 0s",
        "eval multiple_choice 8/8 | 8.00 items/s | ETA 0s",
    ]


def test_step_log_refuses_a_bad_interval() -> None:
    with pytest.raises(ValueError, match=r"^every"):
        StepLog(print, every=0)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stderr


def test_cli_prints_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, err = _cli("train", "--preset", "nano", "--out", str(out), "--log-every", "3")
    assert code == 0, err
    steps = [LINE.match(line) for line in err.splitlines() if LINE.match(line)]
    # 4 stages x 6 steps, a line at steps 3 and 6 of each
    assert [(m[1], m[2]) for m in steps] == [
        (stage, step) for stage in ("vision", "lm", "align", "instruct") for step in ("3", "6")
    ]
    assert all(m[3] == "6" for m in steps)
    assert "\x1b[" not in err  # no terminal control sequences in a log file
    code, err = _cli("eval", str(out), "--limit", "8", "--log-every", "1")
    assert code == 0, err
    assert re.search(r"^eval vqa 32/32 \| \d+\.\d\d items/s \| ETA 0s$", err, re.M)


def test_cli_keeps_progress_bars_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_module.console, "_force_terminal", True)
    assert console_module.console.is_terminal
    code, err = _cli("train", "--preset", "nano", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert not any(LINE.match(line) for line in err.splitlines())
    assert "━" in err or "\x1b[" in err  # rich drew a bar
