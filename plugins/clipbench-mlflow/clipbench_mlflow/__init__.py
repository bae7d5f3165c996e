"""Log clipbench runs to MLflow, through clipbench's reporting hooks (a complete tracker plugin).

One MLflow run per clipbench run (one method's result file): parameters at the
start, the loss of every epoch, every cell's accuracies and costs, the suite
numbers and the result file at the end.  It uses MLflow's client API with
explicit run ids (no global "active run"), does nothing unless
MLFLOW_TRACKING_URI is set, and never stops a benchmark: a tracker failure is
one warning, then the run goes on unlogged.
"""

from __future__ import annotations

import json
import os
import warnings

from clipbench import hookimpl, run_id

EXPERIMENT_ENV = "CLIPBENCH_MLFLOW_EXPERIMENT"


class Tracker:
    """The MLflow side of the hooks: which MLflow run belongs to which clipbench run (by clipbench.run_id)."""

    def __init__(self):
        self.runs: dict[str, str] = {}
        self.client = None
        self.broken = False

    def enabled(self) -> bool:
        return bool(os.environ.get("MLFLOW_TRACKING_URI")) and not self.broken

    def _client(self):
        if self.client is None:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        return self.client

    def guard(self, what: str, fn, *args) -> None:
        if not self.enabled():
            return
        try:
            fn(*args)
        except Exception as exc:  # a tracker never stops a benchmark
            self.broken = True
            warnings.warn(f"clipbench-mlflow stopped logging ({what} failed: {type(exc).__name__}: {exc}); "
                          "the clipbench run goes on.", stacklevel=2)

    # ------------------------------------------------------------- the hooks' work

    def start(self, run) -> None:
        from mlflow.entities import Param, RunTag

        cfg = run["config"]
        client = self._client()
        name = os.environ.get(EXPERIMENT_ENV) or f"clipbench/{cfg['suite']}"
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        created = client.create_run(experiment_id, run_name=f"{cfg['method']} on {cfg['suite']} ({cfg['model']})",
                                    tags={"clipbench.run_id": run_id(run),
                                          "clipbench.method": cfg["method"], "clipbench.suite": cfg["suite"]})
        self.runs[run_id(run)] = created.info.run_id
        params = {"method": cfg["method"], "suite": cfg["suite"], "model": cfg["model"],
                  "pretrained": cfg.get("pretrained"), "shots": cfg["shots"], "precision": cfg.get("precision"),
                  "run_id": run_id(run), "model_fingerprint": cfg["model_fingerprint"]}
        params.update({f"option.{k}": v for k, v in cfg.get("method_config", {}).items()})
        params.update({f"tuned.{task}.{k}": v for task, values in (cfg.get("tuned") or {}).items()
                       for k, v in values.items()})
        client.log_batch(created.info.run_id,
                         params=[Param(k, str(v)[:500]) for k, v in sorted(params.items())],
                         tags=[RunTag("clipbench.hyperparameters", "tuned" if cfg.get("tuned") else "paper")])

    def epoch(self, run, task, seed, epoch, loss) -> None:
        self._client().log_metric(self.runs[run_id(run)], f"{task}/seed{seed}/loss", loss, step=epoch)

    def cell(self, run, cell) -> None:
        from mlflow.entities import Metric

        prefix = f"{cell['task']}/seed{cell['seed']}"
        values = {f"{prefix}/id": cell["id"]}
        if "new" in cell:
            values[f"{prefix}/new"] = cell["new"]
        values.update({f"{prefix}/shift/{k}": v for k, v in cell["shifts"].items()})
        values.update({f"{prefix}/probe/{k}": v for k, v in cell["probes"].items()})
        values.update({f"{prefix}/cost/{k}": v for k, v in cell["cost"].items() if isinstance(v, (int, float))})
        self._client().log_batch(self.runs[run_id(run)],
                                 metrics=[Metric(k, float(v), 0, 0) for k, v in sorted(values.items())])

    def finish(self, run, summary) -> None:
        from mlflow.entities import Metric

        mlflow_id = self.runs.pop(run_id(run))
        overall = summary.get("overall", {})
        metrics = [Metric(f"suite/{k}", float(v["mean"]), 0, 0) for k, v in sorted(overall.items())
                   if isinstance(v, dict) and isinstance(v.get("mean"), (int, float))]
        metrics += [Metric(f"{task}/score", float(s["score"]["mean"]), 0, 0) for task, s in summary["tasks"].items()]
        client = self._client()
        client.log_batch(mlflow_id, metrics=metrics)
        client.log_text(mlflow_id, json.dumps(run, indent=1, sort_keys=True), "result.json")
        client.set_tag(mlflow_id, "clipbench.config_hash", run["config_hash"])  # of the finished result file
        client.set_terminated(mlflow_id, "FINISHED")

    def fail(self, run, error) -> None:
        mlflow_id = self.runs.pop(run_id(run), None)
        if mlflow_id is not None:
            self._client().set_tag(mlflow_id, "clipbench.error", error[:500])
            self._client().set_terminated(mlflow_id, "FAILED")


TRACKER = Tracker()


@hookimpl
def clipbench_run_started(run):
    TRACKER.guard("starting the run", TRACKER.start, run)


@hookimpl
def clipbench_epoch_finished(run, task, seed, epoch, epochs, loss):
    if run_id(run) in TRACKER.runs:
        TRACKER.guard("logging the loss", TRACKER.epoch, run, task, seed, epoch, loss)


@hookimpl
def clipbench_cell_finished(run, cell):
    if run_id(run) in TRACKER.runs:
        TRACKER.guard("logging a cell", TRACKER.cell, run, cell)


@hookimpl
def clipbench_run_finished(run, summary):
    if run_id(run) in TRACKER.runs:
        TRACKER.guard("finishing the run", TRACKER.finish, run, summary)


@hookimpl
def clipbench_run_failed(run, error):
    TRACKER.guard("marking the run failed", TRACKER.fail, run, error)
