"""Training progress people can see: a bar where someone watches, plain lines elsewhere.

A fine-tune can run for minutes. Where a person watches stderr (a terminal, a Jupyter
notebook) Lightning's ``TQDMProgressBar`` shows it, on stderr (``tqdm.auto``: a widget in
notebooks with ``ipywidgets``). Where nobody watches it directly (a script piped to a log, the
command line writing to a file) a bar would fill the log with carriage returns, so
:class:`PlainProgress` writes a few plain lines instead: the budget, every tenth of the step
budget, every validation.
``verbose=False`` silences both.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from typing import Any

from lightning.pytorch.callbacks import Callback, TQDMProgressBar

#: Prefix of every plain progress line.
PREFIX = "msft_forecast: "


def interactive_display() -> bool:
    """Whether a person sees stderr as it is written: a terminal or a Jupyter kernel."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    # ZMQInteractiveShell: the Jupyter kernel (notebooks, JupyterLab, VS Code); the terminal
    # IPython shell is a terminal and answered above
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_display(
    verbose: bool, max_steps: int, val_every: int | None
) -> tuple[bool, list[Callback]]:
    """Lightning's ``enable_progress_bar`` and the callbacks that show progress.

    Parameters
    ----------
    verbose : bool
        The setting ``verbose``; False shows nothing.
    max_steps : int
        Step budget of the fine-tune (the plain lines count against it).
    val_every : int or None
        Steps between validations; None without validation.

    Returns
    -------
    (bool, list of Callback)
        Whether Lightning draws its bar, and the extra callbacks (a :class:`PlainProgress`
        where no bar is drawn).
    """
    if not verbose:
        return False, []
    if interactive_display():
        return True, [StderrProgressBar()]
    return False, [PlainProgress(max_steps, val_every)]


def _on_stderr(make: Callable[[], Any]) -> Any:
    # Lightning's bars pass file=sys.stdout when they are made: point that at stderr for the
    # moment the bar is made, and only then
    with redirect_stdout(sys.stderr):
        return make()


class StderrProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` on stderr, where tqdm and the command line put progress:
    stdout carries results (the command line prints its forecasts there)."""

    def init_sanity_tqdm(self) -> Any:
        return _on_stderr(super().init_sanity_tqdm)

    def init_train_tqdm(self) -> Any:
        return _on_stderr(super().init_train_tqdm)

    def init_validation_tqdm(self) -> Any:
        return _on_stderr(super().init_validation_tqdm)

    def init_predict_tqdm(self) -> Any:
        return _on_stderr(super().init_predict_tqdm)

    def init_test_tqdm(self) -> Any:
        return _on_stderr(super().init_test_tqdm)


class PlainProgress(Callback):
    """Plain progress lines on stderr, for logs: no carriage returns, a dozen lines a fit.

    One line when training starts (the budget), one every tenth of the step budget (the
    training loss) and one after every validation (its loss and the best so far).
    """

    def __init__(self, max_steps: int, val_every: int | None = None) -> None:
        self.max_steps = int(max_steps)
        self.val_every = val_every
        self.every = max(1, self.max_steps // 10)
        self.best: tuple[float, int] | None = None
        self.started = False

    def _write(self, trainer: Any, text: str) -> None:
        if trainer.is_global_zero:  # one process writes under DDP
            print(PREFIX + text, file=sys.stderr, flush=True)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # the first setup: the validation of the starting point, or training
        if not self.started:
            self.started = True
            every = "" if self.val_every is None else f", validation every {self.val_every}"
            self._write(trainer, f"fine-tuning: {self.max_steps} steps at most{every}")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs, batch, batch_idx) -> None:
        step = int(trainer.global_step)
        if step % self.every == 0 or step == self.max_steps:
            loss = trainer.callback_metrics.get("train_loss")
            text = "" if loss is None else f", training loss {float(loss):.4g}"
            self._write(trainer, f"step {step}/{self.max_steps}{text}")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        loss = trainer.callback_metrics.get("val_loss")
        if loss is None or trainer.sanity_checking:
            return
        step, value = int(trainer.global_step), float(loss)
        if self.best is None or value < self.best[0]:
            self.best = (value, step)
        best = f"best {self.best[0]:.4g} at step {self.best[1]}"
        self._write(trainer, f"step {step}/{self.max_steps}: validation loss {value:.4g} ({best})")
