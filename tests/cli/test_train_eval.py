"""`hyperet train` and `hyperet eval` end to end (nano preset) and their bad-input exits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from hyperet.cli.main import main


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "run"
    result = _run("train", "--preset", "nano", "--out", str(out), "--json")
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.stderr
    return out


def test_train_writes_a_run_directory(trained: Path) -> None:
    assert (trained / "config.json").is_file() and (trained / "tokenizer.json").is_file()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert list(metrics["stages"]) == ["vision", "lm", "align", "instruct"]
    for stage, m in metrics["stages"].items():
        assert len(m["losses"]) == m["steps"]
        assert m["seed"] == 0 and m["package_version"] and m["config"]["preset"] == "nano"
        for name in ("config.json", "model.safetensors", "state.safetensors", "metrics.json"):
            assert (trained / "checkpoints" / stage / name).is_file()


def test_eval_prints_tables_and_json(trained: Path) -> None:
    result = _run("eval", str(trained), "--limit", "12", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["scenes"] == 12
    assert {"vqa", "text_only_prior", "majority_baseline", "multiple_choice"} <= set(payload)
    assert "VQA exact match" in result.stderr and "multiple choice" in result.stderr


def test_train_json_summary_and_same_seed_determinism(trained: Path, tmp_path: Path) -> None:
    result = _run("train", "--preset", "nano", "--out", str(tmp_path / "again"), "--json")
    assert result.exit_code == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    first = json.loads((trained / "metrics.json").read_text())
    assert {k: v["losses"] for k, v in again["stages"].items()} == {
        k: v["losses"] for k, v in first["stages"].items()
    }
    summary = json.loads(result.stdout)
    assert set(summary["stages"]) == set(first["stages"])


def test_resume_continues_an_interrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _run("train", "--preset", "nano", "--out", str(out), "--steps", "instruct=0")
    assert first.exit_code == 0
    # the directory is complete for 0 instruct steps; asking for more is a different config
    bad = _run("train", "--out", str(out), "--resume", "--steps", "instruct=4")
    assert bad.exit_code == 2 and "different config" in bad.stderr
    same = _run("train", "--out", str(out), "--resume")
    assert same.exit_code == 0 and "already complete" in same.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--preset", "nano", "--steps", "eyes=3"], "steps"),
        (["train", "--preset", "nano", "--curvature", "-1"], "hyperet.c"),
        (["train", "--preset", "nano", "--resume", "--force"], "exclude"),
        (["train", "--preset", "tiny"], "tiny"),
    ],
)
def test_train_bad_options_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = _run(*args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_train_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    result = _run("train", "--preset", "nano", "--out", str(tmp_path))
    assert result.exit_code == 2 and "not empty" in result.stderr
    result = _run("train", "--out", str(tmp_path / "none"), "--resume")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_eval_bad_run_directories_exit_2(trained: Path, tmp_path: Path) -> None:
    result = _run("eval", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "not found" in result.stderr
    (tmp_path / "config.json").write_text("{}")
    result = _run("eval", str(tmp_path))
    assert result.exit_code == 2 and "invalid config" in result.stderr
    assert "Traceback" not in result.stderr


def test_non_finite_loss_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hyperet.model.mllm as mllm

    def nan_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")

    monkeypatch.setattr(mllm, "next_token_loss", nan_loss)
    result = _run("train", "--preset", "nano", "--out", str(tmp_path / "run"))
    assert result.exit_code == 3
    assert "non-finite" in result.stderr and "stage 'lm' at step 1" in result.stderr
    assert not (tmp_path / "run" / "checkpoints" / "lm").exists()
