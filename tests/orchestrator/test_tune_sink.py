"""When a trial's metrics go to Tune: held back for a while, sent at once when something needs them."""

from __future__ import annotations

from orchestrator.trainable import TuneSink


def _sink_with(step: int, metrics: dict[str, float], **options) -> TuneSink:
    sink = TuneSink(**options)
    sink.log_metrics(metrics, step)
    return sink


def test_step_metrics_wait_for_the_report_interval():
    assert not _sink_with(10, {"train/loss": 2.0}, every_s=60)._due()
    assert _sink_with(10, {"train/loss": 2.0}, every_s=0)._due()


def test_eval_metrics_and_resume_state_steps_go_at_once():
    assert _sink_with(30, {"eval/loss": 1.5}, every_s=60)._due()  # the scheduler decides on them
    assert _sink_with(100, {"train/loss": 2.0}, every_s=60, state_every=100)._due()  # a resumed trial skips to here
    assert not _sink_with(90, {"train/loss": 2.0}, every_s=60, state_every=100)._due()
