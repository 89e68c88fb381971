"""The MLflow writer on a real sqlite store: an experiment ``mm1 sweep run`` creates takes the sweep's description."""

from __future__ import annotations

from pathlib import Path

from mm1core.runnames import NOTE
from orchestrator.tracking import Tracker


def test_a_new_experiment_takes_the_description_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    created = tracker.experiment_id("ablations", description="Fig. 4 - connector x tokens x resolution")
    assert tracker.client.get_experiment(created).tags[NOTE] == "Fig. 4 - connector x tokens x resolution"

    tracker.client.set_experiment_tag(created, NOTE, "written by hand in the UI")
    assert tracker.experiment_id("ablations", description="another sweep's description") == created
    assert tracker.client.get_experiment(created).tags[NOTE] == "written by hand in the UI"

    plain = tracker.experiment_id("no-description")  # a sweep without one: no empty note
    assert NOTE not in tracker.client.get_experiment(plain).tags
