"""metrics.jsonl as the record of one run, and a failing wandb that must not stop training."""

import json
import logging

from harness.metrics import MetricsLogger, truncate_metrics
from harness.run_config import parse_config


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_resumed_run_drops_the_records_after_its_checkpoint_and_a_partial_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3, 4, 5)]
    lines.insert(3, json.dumps({"step": 3, "tokens": 96, "eval/lm_loss": 2.5}))
    path.write_text("\n".join(lines) + "\n" + '{"step": 6, "lo')  # killed mid-write
    assert truncate_metrics(path, 3) == 3  # steps 4, 5 and the partial line
    assert [r["step"] for r in records(path)] == [1, 2, 3, 3]
    assert records(path)[3]["eval/lm_loss"] == 2.5
    assert truncate_metrics(path, 3) == 0 and not list(tmp_path.glob(".*"))
    assert truncate_metrics(tmp_path / "absent.jsonl", 3) == 0


class DyingWandb:
    """A wandb run whose service process died after `alive` calls."""

    def __init__(self, alive):
        self.alive, self.logged = alive, []

    def log(self, record, step):
        if len(self.logged) >= self.alive:
            raise ConnectionResetError("Connection lost")
        self.logged.append(step)

    def finish(self):
        raise ConnectionResetError("Connection lost")


def test_a_failing_wandb_warns_once_and_metrics_go_on(tmp_path, caplog):
    cfg = parse_config(
        ["--train.max_steps", "5", "--run.output_dir", str(tmp_path), "--logging.wandb", "disabled"]
    )
    logger = MetricsLogger(cfg, enabled=True)
    logger.wandb = DyingWandb(alive=2)
    with caplog.at_level(logging.WARNING, logger="harness.metrics"):
        for step in range(1, 6):
            logger.log({"step": step, "loss": float(step)})
        logger.close()
    assert [r["step"] for r in records(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "wandb log failed (ConnectionResetError" in warnings[0]
    assert "metrics go on to" in warnings[0] and logger.wandb is None


def test_a_dying_wandb_finish_is_a_warning(tmp_path, caplog):
    cfg = parse_config(
        ["--train.max_steps", "5", "--run.output_dir", str(tmp_path), "--logging.wandb", "disabled"]
    )
    logger = MetricsLogger(cfg, enabled=True)
    logger.wandb = DyingWandb(alive=10)
    with caplog.at_level(logging.WARNING, logger="harness.metrics"):
        logger.log({"step": 1})
        logger.close()
    assert len(caplog.records) == 1 and "wandb finish failed" in caplog.records[0].getMessage()
