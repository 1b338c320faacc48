"""The evaluator protocol: a user's own evaluator joins a run through a config file alone."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import textwrap

from conftest import SW_BITEXT, TINY_MODELS, cli_env, run_cli

import optical_lightning.evaluation
from optical_lightning.evaluation.protocol import Encoders, Evaluator

TOY = '''
from optical_lightning.evaluation.protocol import Evaluator


class HeldOutCount(Evaluator):
    """Counts what the run hands an evaluator, and says which encoder each stage measures."""

    def __init__(self, label: str) -> None:
        self.label, self.seen, self.skipped = label, [], {"toy-extra": "not wanted today"}

    def load(self, held_out):
        self.held_out = len(held_out.pairs)

    def __call__(self, encoders, stage):
        self.seen.append(str(stage))
        is_teacher = encoders.for_stage(stage) is encoders.teacher
        return {self.label: {"held_out": self.held_out, "teacher": float(is_teacher), "dim": encoders.student.dim}}

    def records(self):
        return {"toy.json": {"stages": self.seen}}
'''

EXPERIMENT = '''
# @package _global_
eval:
  evaluators:
    toy:
      _target_: my_evaluators.HeldOutCount
      label: toy-count
'''


def test_an_evaluator_is_added_by_a_config_file_alone(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "my_evaluators.py").write_text(textwrap.dedent(TOY))
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "toy.yaml").write_text(EXPERIMENT)
    env = cli_env()
    env["PYTHONPATH"] = f"{tmp_path / 'code'}:{env.get('PYTHONPATH', '')}"
    proc = run_cli(*TINY_MODELS, f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=toy", "retrieval=none",
                   "mcqa=none", f"data.train={SW_BITEXT}", "data.val_size=16", "trainer.max_steps=2",
                   "hydra.run.dir=run", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    toy = results["metrics"]["toy-count"]
    assert list(toy) == ["teacher_en", "zero_shot", "trained"]  # the run's stages, in order
    assert toy["teacher_en"]["teacher"] == 1.0 and toy["zero_shot"]["teacher"] == toy["trained"]["teacher"] == 0.0
    assert toy["trained"]["held_out"] == 16  # the run's held-out pairs reached the evaluator
    assert results["eval_skipped"]["toy-extra"] == "not wanted today"
    assert json.loads((tmp_path / "run" / "toy.json").read_text()) == {"stages": ["teacher_en", "zero_shot", "trained"]}
    assert "toy-count" in proc.stdout  # and in the summary table


def test_the_stage_decides_the_encoder():
    student, teacher = object(), object()
    encoders = Encoders(student, teacher)
    assert [encoders.for_stage(s) is teacher for s in ("teacher_en", "translate_dense", "translate_bm25")] == [True] * 3
    assert all(encoders.for_stage(s) is student for s in ("zero_shot", "trained", "step50"))


def test_every_evaluator_takes_at_most_eight_settings():
    """The evaluation layer is made of small parts; the command line's flat settings go through from_settings."""
    for info in pkgutil.iter_modules(optical_lightning.evaluation.__path__, "optical_lightning.evaluation."):
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and "__init__" in vars(cls):
                params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
                assert len(params) <= 8, f"{info.name}.{name} takes {len(params)} parameters"
    from optical_lightning.evaluation.loglik import LoglikMCQA
    from optical_lightning.evaluation.mcqa import MCQAEvaluator
    from optical_lightning.evaluation.retrieval import RetrievalEvaluator

    assert all(issubclass(c, Evaluator) for c in (RetrievalEvaluator, MCQAEvaluator, LoglikMCQA))
