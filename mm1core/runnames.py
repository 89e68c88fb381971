"""The names of the MLflow layout (DESIGN.md, "MLflow layout"): what the sweep layer writes and the dashboards read.

Plain strings, no MLflow import: ``orchestrator.tracking`` (the one writer) and ``dashboards.runs`` (the reader)
both take them from here, so neither side imports the other for a tag name.

- A sweep's parent run: ``ROLE`` = ``SWEEP_ROLE``, ``SWEEP`` = the sweep's name.
- A trial's run, nested under it (``PARENT_RUN_ID``): ``ROLE`` = ``TRIAL_ROLE``, ``SWEEP``, ``TRIAL_KEY``.
"""

from __future__ import annotations

# Tags of both kinds of run.
ROLE, SWEEP = "mm1.role", "mm1.sweep"
SWEEP_ROLE, TRIAL_ROLE = "sweep", "trial"  # the values of ROLE
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own: what nests a trial's run under its sweep's
NOTE = "mlflow.note.content"  # MLflow's own: the description the UI shows for a run or an experiment

# Tags of a trial's run.
TRIAL_KEY = "mm1.trial_key"
ERROR = "mm1.error"  # the one-line cause of a FAILED or KILLED run
EARLIER_ERROR = "mm1.earlier_error"  # the error of the attempt before, once a trial is tried again
CHECKPOINT_TAG = "mm1.checkpoint"  # where the trained model was saved
CHECKPOINTS_TAG = "mm1.checkpoints"  # JSON {step: path}: the models train.save_at_steps saved, and the last one
VARIED_TAG = "mm1.varied"  # JSON {dotted path: value}: what the trial's sweep varies, as the trial has it
STOPPED_EARLY = "mm1.stopped_early"  # tag of a trial the scheduler (ASHA) stopped before train.max_steps
INIT_FROM_RUN = "mm1.init_from_run"  # the run whose checkpoint a trial started from (train.init_from)
PROFILE_TAG = "mm1.profile"  # where a profiler trace lies when it is not an artifact
NODE_TAG = "mm1.node"  # the Ray node the trial ran on
DRIVER = "mm1.driver"  # who runs it (host and pid of the sweep's driver)
ATTEMPTS = "mm1.attempts"  # how many times the trial was started
RESUMED = "mm1.resumed_from_step"  # the step a trial resumed from its saved training state
