"""The run directory: is it new, unfinished (resumable) or complete, and what may a rerun do to it.

A run directory is complete when it holds ``results.json`` (written last, atomically). Rerunning a
command into an existing directory (``hydra.run.dir=DIR``, a requeued SLURM job, a rerun sweep):

* complete, same settings: nothing is redone; the run reports the results it has (``rerun=true``
  replaces them);
* complete, other settings: refused, naming the keys that differ (a new ``hydra.run.dir``, or
  ``rerun=true``);
* unfinished with a checkpoint: resumed from the newest one (``ckpt_path=auto``), unless a setting
  that changes training differs from the saved ``config.yaml`` (refused, naming the keys, unless
  ``allow_config_change=true``).

Every check reads files only, so it runs before any model loads, and a refused rerun changes nothing.
Training data files count as settings: ``data_files`` records each one's size and sha256, so a file
replaced between an interruption and its resume is refused like any other changed setting. One run
at a time: :func:`locked` holds an exclusive lock on the folder for the whole run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optical_lightning.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

RESULTS = "results.json"
CONFIG = "config.yaml"
LOCK = ".run.lock"
#: keys a run records beside its settings that older run directories lack: compared only when both have them
RECORDED_SINCE = ("data_files", "distill.module",  # the module's config repeats the weights and the OT head
                  "eval.evaluators",  # repeats retrieval and mcqa
                  "distill.module.loss_terms.anchor", "distill.module.loss_terms.spread",  # repeat the weights below
                  "distill.module.loss_terms.base_plan",
                  "eval.evaluators.mcqa.quantize")  # repeats mcqa.quantize
#: settings added later whose default does what older runs did: an older record without one had that value
DEFAULTS_SINCE = {"distill.anchor_weight": 0.0,  # the English anchor term: off
                  "distill.spread_weight": 0.0,  # the spread term: off
                  "distill.base_plan_weight": 0.0,  # transport along the base model's plan: off
                  "mcqa.quantize": "none",  # letter scoring in the weights' own dtype
                  "ot.center": False, "distill.module.loss_terms.ot.head.center": False}  # the plain cosine cost
#: settings that moved since older run directories recorded them (old dotted prefix -> new), and the
#: evaluators' builders then and now, so that those directories still match the same settings today
RETRIEVAL_KEYS = ("data_dir", "lang", "sets", "domain_sets", "scoring", "metrics", "max_queries", "batch_size",
                  "cache_dir", "seed", "top_k", "bitext_val", "bitext_val_long", "precision", "faiss", "_target_")
MOVED = {**{f"eval.{k}": f"retrieval.{k}" for k in RETRIEVAL_KEYS},
         "callbacks.learning_curve.suite.": "callbacks.learning_curve.evaluators.retrieval.",
         "callbacks.learning_curve.mcqa.": "callbacks.learning_curve.evaluators.mcqa."}
RETARGETED = {"optical_lightning.evaluation.EvalSuite": "optical_lightning.evaluation.retrieval.RetrievalEvaluator.from_settings",
              "optical_lightning.evaluation.mcqa.MCQAEvaluator": "optical_lightning.evaluation.mcqa.MCQAEvaluator.from_settings"}
#: keys of older records that no longer exist and set nothing (the learning curve's evaluation stages)
RETIRED = ("callbacks.learning_curve.evaluators.retrieval.zero_shot",
           "callbacks.learning_curve.evaluators.retrieval.upper_bound")
# What a run writes; ``rerun=true`` removes these (results.json first, so the folder never looks complete).
OUTPUTS = (RESULTS, "per_query.json", "mcqa.json", "mcqa-val.json", "student", "plots", "csv", "checkpoints", "wandb")

# Settings that say where things go or how a run is driven, not what it computes (and every *cache_dir:
# caches never change a result).
BOOKKEEPING = ("paths", "logger", "ckpt_path", "keep_checkpoints", "rerun", "allow_config_change", "tags", "task_name",
               "optimized_metric", "trainer.enable_progress_bar")
# Settings that may change between the attempts of one training: they do not change its steps.
NOT_TRAINING = (*BOOKKEEPING, "eval", "retrieval", "mcqa", "callbacks", "save_student", "report", "trainer.log_every_n_steps",
                "data.num_workers", "data.teacher_cache")


@dataclass
class RunDir:
    """What an earlier attempt left in ``path``."""

    path: Path
    results: dict[str, Any] | None = None  # results.json of a complete run
    checkpoint: Path | None = None  # the newest resumable checkpoint
    checkpoint_step: int = 0
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # resumed with these changes (key: old, new)

    @property
    def complete(self) -> bool:
        return self.results is not None


def checkpoint_step(path: Path) -> int:
    """The global step a Lightning checkpoint was saved at; a one-line error naming the file if it is unreadable."""
    import torch

    try:  # mmap: only the small pickled header is read, not the weights
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        return int(ckpt["global_step"])
    except Exception as e:  # noqa: BLE001 - any failure means the file cannot be resumed from
        why = " ".join(str(e).split())[:160] or type(e).__name__
        raise DataError(f"checkpoint {path} is corrupt or not a Lightning checkpoint ({why}); delete it "
                        f"(rm {path}) to resume from an older one or start over, or set ckpt_path=null") from e


def newest_checkpoint(run_dir: Path) -> tuple[Path | None, int]:
    """The checkpoint with the most steps among ``checkpoints/*.ckpt`` and SLURM's ``hpc_ckpt_*.ckpt``.

    Not simply ``last.ckpt``: Lightning writes ``last-v1.ckpt`` beside an existing ``last.ckpt`` it
    did not write itself (a copied or moved run directory), and a requeued SLURM job saves ``hpc_ckpt_*``.
    """
    candidates = [*sorted((run_dir / "checkpoints").glob("*.ckpt")), *sorted(run_dir.glob("hpc_ckpt_*.ckpt"))]
    best: tuple[int, float, Path] | None = None
    for path in candidates:
        key = (checkpoint_step(path), path.stat().st_mtime, path)
        best = key if best is None or key[:2] > best[:2] else best
    return (best[2], best[0]) if best else (None, 0)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and empty dicts stay values)."""
    if isinstance(config, dict) and config:
        flat: dict[str, Any] = {}
        for k, v in config.items():
            flat.update(flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix[:-1]: config}


def differences(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two resolved configs, except those under ``ignore``.

    Paths inside each config's own run directory or project root compare relative to them, so a
    copied or moved run directory still matches its config.
    """
    a, b = _relative(_current_names(flatten(old))), _relative(flatten(new))
    a = {**{k: v for k, v in DEFAULTS_SINCE.items() if k in b}, **a}
    unrecorded = tuple(key for key in RECORDED_SINCE  # written before the run recorded it
                       if not any(k == key or k.startswith(f"{key}.") for k in a))
    if a.get("distill.train") is False and b.get("distill.train") is False:  # untrained: the loss settings do nothing
        unrecorded = (*unrecorded, *{k for k in a.keys() | b.keys() if k.startswith("distill.") and k != "distill.train"})
    skipped = lambda k: k.endswith("cache_dir") or any(k == p or k.startswith(f"{p}.") for p in (*ignore, *unrecorded))  # noqa: E731
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if not skipped(k) and a.get(k) != b.get(k) and not _moved_target(k, a.get(k), b.get(k))}


def _current_names(flat: dict[str, Any]) -> dict[str, Any]:
    """An older record's settings under today's names (:data:`MOVED`, :data:`RETARGETED`, :data:`RETIRED`)."""
    if any(k.startswith("retrieval.") for k in flat):  # recorded with today's names
        return flat
    out = {}
    for key, value in flat.items():
        for old, new in MOVED.items():
            if key == old or (old.endswith(".") and key.startswith(old)):
                key = new + key[len(old):]
                break
        if key not in RETIRED:
            out[key] = RETARGETED.get(value, value) if key.endswith("_target_") and isinstance(value, str) else value
    return out


def _moved_target(key: str, old: Any, new: Any) -> bool:
    """The same object of this package under a new module path (a package move, e.g.
    ``optical_lightning.optim.f`` -> ``optical_lightning.training.optim.f``), which changes no setting."""
    return (key.endswith("_target_") and isinstance(old, str) and isinstance(new, str)
            and old.startswith("optical_lightning.") and new.startswith("optical_lightning.")
            and old.rsplit(".", 1)[-1] == new.rsplit(".", 1)[-1])


def _relative(flat: dict[str, Any]) -> dict[str, Any]:
    """Paths under the run directory or the project root (``paths.root_dir``) with those folders as placeholders."""
    roots = [(flat.get(k), f"<{k}>") for k in ("paths.output_dir", "paths.root_dir")]
    roots = [(str(Path(r).resolve()), name) for r, name in roots if isinstance(r, str) and r]
    roots.sort(key=lambda r: -len(r[0]))  # the run directory usually lies inside the root: replace it first

    def relative(value: Any) -> Any:
        if isinstance(value, list):
            return [relative(v) for v in value]
        if not isinstance(value, str) or not value.startswith(("/", ".")):
            return value
        text = str(Path(value).resolve())
        for root, name in roots:
            if text == root or text.startswith(root + "/"):
                return name + text[len(root):]
        return text

    return {k: relative(v) for k, v in flat.items()}


def _listed(changes: dict[str, tuple[Any, Any]], limit: int = 6) -> str:
    shown = [f"{k} ({old!r} -> {new!r})" for k, (old, new) in list(changes.items())[:limit]]
    more = len(changes) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def plan_run_dir(path: Path, config: dict[str, Any], *, rerun: bool, allow_config_change: bool,
                 resume: bool) -> RunDir:
    """What a run with the resolved ``config`` may do in ``path`` (see the module docstring); raise if
    it may not. ``resume``: ``ckpt_path=auto``, the only setting under which a checkpoint left by an
    earlier attempt is picked up (and read, so a corrupt one is named here)."""
    state = RunDir(path)
    if rerun:  # the outputs are removed by clear_outputs() once every other check has passed
        return state
    results = path / RESULTS
    if results.is_file():
        try:
            state.results = json.loads(results.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{results}: not valid JSON ({e}); delete it, or add rerun=true, to run into {path}") from e
        changed = differences(state.results.get("config", {}), config, BOOKKEEPING)
        if changed:
            raise ConfigError(f"{path} holds a complete run with other settings: {_listed(changed)}; "
                              f"choose a new hydra.run.dir, or add rerun=true to replace it")
        return state
    if not resume:
        return state
    state.checkpoint, state.checkpoint_step = newest_checkpoint(path)
    saved = path / CONFIG
    if state.checkpoint is not None and saved.is_file():
        state.changed = differences(yaml.safe_load(saved.read_text(encoding="utf-8")) or {}, config, NOT_TRAINING)
    if state.changed and not allow_config_change:
        raise ConfigError(f"{path} holds an unfinished run (checkpoint at step {state.checkpoint_step}) "
                          f"with other training settings: {_listed(state.changed)}; rerun with the saved settings to "
                          f"resume, add allow_config_change=true to continue with these, or choose a new hydra.run.dir")
    return state


def clear_outputs(run_dir: Path) -> None:
    """Remove what an earlier run wrote (``rerun=true``), ``results.json`` first."""
    for name in OUTPUTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    log.info("rerun=true: removed the earlier outputs of %s", run_dir)


def file_fingerprint(path: Path) -> str:
    """``<bytes> bytes, sha256 <first 16 hex>`` of a file; ``missing`` if it is not a file (the data
    module names the problem later). Reading is cheap next to training: ~0.1 s for 50 MB."""
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stat().st_size} bytes, sha256 {digest.hexdigest()[:16]}"


def data_fingerprints(files: dict[str, Iterable[str]]) -> dict[str, str]:
    """``{"data.train[0]": fingerprint, ...}``: keyed by the setting that names the file, not by its path,
    so that a moved project still matches its run directories while a changed file does not."""
    return {f"{key}[{i}]": file_fingerprint(Path(p)) for key, paths in files.items() for i, p in enumerate(paths)}


def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").split()
    except OSError:
        return "another process"
    return f"process {text[0]} on {text[1]}" if len(text) >= 2 else "another process"


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (``<run_dir>/.run.lock``, ``flock``) until the block ends.

    Two runs writing into one folder mix their outputs (one run's ``config.yaml`` beside the other's
    ``results.json``, every metrics row twice), so the second refuses in one line naming the holder.
    The kernel drops the lock when its process dies, so a killed run never leaves the folder locked.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise ConfigError(f"{run_dir} is in use by another run ({_lock_holder(path)}); wait for it to end, "
                          f"or choose another hydra.run.dir") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
