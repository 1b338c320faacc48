"""A run directory made before a package move still matches its config: moved ``_target_`` paths change no setting."""

from __future__ import annotations

from optical_lightning.training.rundir import differences


def test_a_moved_target_is_no_difference_but_another_object_and_other_keys_are():
    old = {"optim": {"scheduler": {"_target_": "optical_lightning.optim.linear_warmup_decay", "warmup_ratio": 0.1}},
           "logger": {"_target_": "optical_lightning.tracking.ResumableCSVLogger"}}
    moved = {"optim": {"scheduler": {"_target_": "optical_lightning.training.optim.linear_warmup_decay",
                                     "warmup_ratio": 0.1}},
             "logger": {"_target_": "optical_lightning.reporting.tracking.ResumableCSVLogger"}}
    assert differences(old, moved, ignore=()) == {}
    other = {"optim": {"scheduler": {"_target_": "optical_lightning.training.optim.cosine", "warmup_ratio": 0.2}},
             "logger": {"_target_": "pytorch_lightning.loggers.ResumableCSVLogger"}}
    assert set(differences(old, other, ignore=())) == {"optim.scheduler._target_", "optim.scheduler.warmup_ratio",
                                                       "logger._target_"}
