"""The rows of ``functrain tricks``, as data: labelled configurations grouped in sections.

A :class:`Section` is a list of ``(label, RunConfig)`` rows with its caption; the table runs every
row of every section (rows of one structure share their compiled programs, see
:mod:`~functrain.experiments.tricks.programs`), so a new row is one more entry here.

* :func:`trick_rows` -- the classic tricks, each added to the row above (cumulative), on the MLP
  or on the lesson's convnet;
* :func:`canon_rows` -- the modern canon ("bag of tricks"), each added to one baseline on a small
  ResNet (not cumulative).

Example:
    >>> from functrain.experiments.tricks import rows
    >>> [label for label, _ in rows.trick_rows(epochs=2)][:3]
    ['baseline: SGD lr 0.01, N(0,1) init', '+ He init N(0, 2/n_in)', '+ batch norm']
    >>> rows.trick_rows(epochs=2)[2][1].batch_norm, len(rows.canon_rows(epochs=2))
    (True, 8)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from functrain.experiments.tricks.config import RunConfig

__all__ = ["CANON_CAPTION", "CLASSIC_CAPTION", "DEFAULT_HIDDEN", "DEFAULT_SGD_LR", "Row", "Section", "canon_rows",
           "trick_rows"]

DEFAULT_HIDDEN = (64,) * 6
"""The hidden widths of the default MLP: six ReLU layers of 64, deep enough for init and batch norm to matter."""

DEFAULT_SGD_LR = 0.01
"""The learning rate of the SGD rows: small, so that momentum (an effective ``lr / (1 - gamma)``) matters."""

Row = tuple[str, RunConfig]
"""One row of the table: its label and its configuration."""

CLASSIC_CAPTION = ("Each row adds one trick to the row above (cumulative), with a standard hyperparameter fixed "
                   "in advance (no per-row tuning).")
"""What the classic section's rows are."""

CANON_CAPTION = ("The canon: each row adds ONE trick to the canon baseline (not cumulative): a small ResNet (a "
                 "3x3 conv stem and two basic residual blocks with batch norm, global average pooling), SGD "
                 "with momentum 0.9 at learning rate 0.05 and a cosine decay. Label smoothing is computed in the "
                 "loss ((1 - eps) one_hot + eps / C); mixup mixes each batch with a shuffled copy of itself; "
                 "warmup ramps the learning rate from 0 over the first 10% of the steps; zero-init residual BN "
                 "starts the last batch-norm scale of each residual branch at 0 (BatchNorm(scale_init=zeros)); "
                 "drop-path ends each residual branch; SAM takes two forward-backward passes per step; the EMA "
                 "row evaluates the moving average of the weights on the test part (its validation curves "
                 "are the raw weights').")
"""What the canon section's rows are."""


class Section(NamedTuple):
    """Rows of the table that belong together.

    Attributes:
        name: a short name (``"classic"``, ``"canon"``).
        caption: what the rows are (for the report).
        rows: the ``(label, config)`` rows, in order.
        ensemble: whether an ensemble of the last row's models follows the rows.
    """

    name: str
    caption: str
    rows: list[Row]
    ensemble: bool = False


def trick_rows(*, epochs: int, hidden: tuple[int, ...] = DEFAULT_HIDDEN, batch_size: int = 64,
               model: str = "mlp", learning_rate: float = DEFAULT_SGD_LR) -> list[Row]:
    """The rows of the trick table: each adds one trick to the previous row's configuration.

    Standard hyperparameters, fixed in advance (none tuned per row): plain SGD with learning rate
    ``learning_rate`` (0.01); He-normal init ``N(0, 2/n_in)`` for the ReLU network (He et al. 2015);
    batch norm after each hidden ``Dense`` (each convolution); dropout 0.2 after each hidden ReLU
    (the convnet: before its classifier); momentum 0.9 at the same learning rate; Adam at its
    default 1e-3 (Kingma & Ba 2015) replacing SGD; global-norm clipping at ``theta = 1`` (the
    lesson's value); cosine decay of the learning rate to 0 over the run; L2 weight decay ``1e-4``
    on the kernels; early stopping with patience 5 on the validation loss, keeping the best epoch.
    The ensemble row (added by ``run_tricks``) averages the last row's models.

    Args:
        epochs: (maximum) epochs of every run.
        hidden: the MLP's hidden widths (the convnet's channels).
        batch_size: examples per step.
        model: ``"mlp"`` or ``"cnn"`` (the lesson's convnet).
        learning_rate: the learning rate of the SGD rows (the Adam rows use 1e-3).
    """
    c = RunConfig(hidden=hidden, init="standard_normal", optimizer="sgd", learning_rate=learning_rate,
                  epochs=epochs, batch_size=batch_size, model=model)
    rows = [(f"baseline: SGD lr {learning_rate:g}, N(0,1) init", c)]
    changes: tuple[tuple[str, dict[str, Any]], ...] = (
        ("+ He init N(0, 2/n_in)", {"init": "he"}),
        ("+ batch norm", {"batch_norm": True}),
        ("+ dropout 0.2", {"dropout": 0.2}),
        ("+ momentum 0.9", {"optimizer": "momentum"}),
        ("+ Adam lr 1e-3 (instead of SGD)", {"optimizer": "adam", "learning_rate": 1e-3}),
        ("+ gradient clipping (norm 1)", {"clip": 1.0}),
        ("+ cosine lr decay", {"schedule": "cosine"}),
        ("+ weight decay 1e-4 (L2)", {"weight_decay": 1e-4}),
        ("+ early stopping (patience 5)", {"early_stopping": 5}),
    )
    for label, change in changes:
        c = c._replace(**change)
        rows.append((label, c))
    return rows


def canon_rows(*, epochs: int, hidden: tuple[int, ...] = (16, 16), batch_size: int = 64) -> list[Row]:
    """The canon rows: a small-ResNet baseline, then each trick added to it alone.

    Label smoothing ``eps = 0.1`` (Szegedy et al. 2016), mixup ``alpha = 0.2`` (Zhang et al. 2018),
    a linear warmup over 10% of the steps (Goyal et al. 2017), zero-init residual BN (Goyal et al.
    2017), drop-path 0.1 (Huang et al. 2016), SAM ``rho = 0.05`` (Foret et al. 2021) and an EMA of
    the weights with decay 0.98 per step (Polyak & Juditsky 1992), as in
    ``examples/bag_of_tricks.py``.

    Args:
        epochs: epochs of every run.
        hidden: the channels of the residual blocks (the stem has ``hidden[0]``).
        batch_size: examples per step.
    """
    base = RunConfig(model="resnet", hidden=hidden, init="he", batch_norm=True, optimizer="momentum",
                     learning_rate=0.05, schedule="cosine", epochs=epochs, batch_size=batch_size)
    changes: tuple[tuple[str, dict[str, Any]], ...] = (
        ("+ label smoothing 0.1", {"label_smoothing": 0.1}),
        ("+ mixup alpha 0.2", {"mixup": 0.2}),
        ("+ warmup (10% of the steps)", {"warmup": 0.1}),
        ("+ zero-init residual BN", {"zero_init_bn": True}),
        ("+ drop-path 0.1", {"drop_path": 0.1}),
        ("+ SAM rho 0.05", {"sam": 0.05}),
        ("+ EMA of the weights (0.98)", {"ema": 0.98}),
    )
    return [("canon baseline: small ResNet, SGD momentum, cosine", base)] + [
        (label, base._replace(**change)) for label, change in changes]
