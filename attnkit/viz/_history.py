"""``AttentionHistory``: a Keras callback that draws a layer's attention once per epoch.

Exported as :class:`attnkit.viz.AttentionHistory`. Frames are PNGs drawn by
:mod:`attnkit.viz`; with ``gif=True`` they are joined into one looping GIF with Pillow (which
comes with matplotlib).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

import attnkit.viz._plots as _plots
from attnkit.errors import MissingDependencyError, PlotError
from attnkit.inspection import attention_weights, find_attention_layer, sample_count

__all__ = ["AttentionHistory"]


class AttentionHistory(keras.callbacks.Callback):
    """Record and draw a layer's attention on fixed inputs as training goes, one frame per epoch.

    At the end of every ``every``-th epoch (counting from 1, as Keras' progress bar does) it
    reads the weights of the ``AttentionLayer`` named ``layer_name`` on ``inputs`` with
    :func:`attnkit.attention_weights`, appends ``(epoch, weights)`` to :attr:`history` (all
    samples) and writes sample ``sample``'s picture to ``directory/epoch_{epoch:03d}.png``:
    a heat map for 2-D weights per sample (``seq``), bars for 1-D (many-to-one). With
    ``gif=True`` the frames of the run become ``directory/attention.gif`` when training ends.
    ``history`` and the frames restart at each ``fit``.

    Example::

        frames = attnkit.viz.AttentionHistory("attention", x_val[:4], "frames", gif=True)
        model.fit(x, y, epochs=20, callbacks=[frames])
        first, last = frames.history[0][1], frames.history[-1][1]

    Args:
        layer_name: name of the ``AttentionLayer`` to watch.
        inputs: fixed model inputs (array, list/tuple or dict of arrays), ideally a few samples.
        directory: where the frames go (created).
        every: record every this many epochs.
        gif: also assemble the frames into ``attention.gif`` at the end of training.
        sample: which of the inputs' samples the frames show.
        query_labels: row labels of the heat maps (e.g. that sample's tokens).
        key_labels: column labels of the heat maps, or bar labels.

    Attributes:
        history: list of (epoch, weights (N, ...)) in recording order.
        frames: the PNG paths written during the last ``fit``.
        gif_path: the GIF written at the end of the last ``fit``, or None.
    """

    def __init__(
        self,
        layer_name: str,
        inputs: Any,
        directory: str | Path,
        *,
        every: int = 1,
        gif: bool = False,
        sample: int = 0,
        query_labels: Sequence | None = None,
        key_labels: Sequence | None = None,
    ) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer. Received: every={every!r}")
        count = sample_count(inputs)
        if isinstance(sample, bool) or not isinstance(sample, int) or not -count <= sample < count:
            raise ValueError(
                f"sample must index one of the {count} input samples. Received: sample={sample!r}"
            )
        # Fail now rather than after the first epoch of a long fit.
        _plots.figure_class()
        if gif:
            _pillow()
        self.layer_name = layer_name
        self.inputs = inputs
        self.directory = Path(directory)
        self.every = every
        self.gif = bool(gif)
        self.sample = sample
        self.query_labels = query_labels
        self.key_labels = key_labels
        self.history: list[tuple[int, np.ndarray]] = []
        self.frames: list[Path] = []
        self.gif_path: Path | None = None

    def on_train_begin(self, logs=None) -> None:
        find_attention_layer(self.model, self.layer_name)  # a typo fails before epoch 1
        self.history, self.frames, self.gif_path = [], [], None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        number = epoch + 1
        if number % self.every:
            return

        weights = attention_weights(self.model, self.layer_name, self.inputs)
        self.history.append((number, weights))
        shown = weights[self.sample]
        path = self.directory / f"epoch_{number:03d}.png"
        title = f"{self.layer_name}, epoch {number}"
        if shown.ndim == 2:
            _plots.heatmap(
                shown,
                query_labels=self.query_labels,
                key_labels=self.key_labels,
                title=title,
                path=path,
            )
        elif shown.ndim == 1:
            _plots.vector(shown, labels=self.key_labels, title=title, path=path)
        else:
            raise PlotError(
                f"layer '{self.layer_name}' gives weights of shape {weights.shape[1:]} per "
                "sample; AttentionHistory draws 2-D (heat map) or 1-D (bars) weights"
            )
        self.frames.append(path)

    def on_train_end(self, logs=None) -> None:
        if self.gif and self.frames:
            self.gif_path = _write_gif(self.frames, self.directory / "attention.gif")


def _pillow():
    """PIL.Image (Pillow comes with matplotlib), or MissingDependencyError."""
    try:
        from PIL import Image
    except ImportError as error:
        raise MissingDependencyError(
            f"AttentionHistory(gif=True) writes the GIF with Pillow, which is not installed "
            f"here: {_plots.INSTALL}"
        ) from error
    return Image


def _write_gif(frames: list[Path], path: Path, milliseconds: int = 600) -> Path:
    """The PNG frames as one looping GIF, ``milliseconds`` per frame."""
    image_module = _pillow()
    images = []
    for frame in frames:
        with image_module.open(frame) as image:
            images.append(image.convert("RGB"))
    # Frames come from figures of one size; resize any stray so Pillow keeps them all.
    size = images[0].size
    images = [image if image.size == size else image.resize(size) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=milliseconds, loop=0)
    return path
