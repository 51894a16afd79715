"""A PyTorch entry point for edge-pack: `edge-pack build digits_cnn:factory --target web`.

factory() returns (module, example inputs); here a small CNN trained in about a second on scikit-learn's
bundled digits (seeded, so every call returns the same weights). `python digits_cnn.py eval.npz calibration.npz`
writes the held-out split as an .npz of ready inputs plus labels, for `edge-pack bench --eval eval.npz`, and
250 training images for full-integer quantization, `edge-pack build ... --calibration calibration.npz`.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

HELD_OUT = 297  # the last digits are the test split


class DigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, image):
        return self.head(self.features(image).flatten(1))


def _data():
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8) in [0, 1]
    return images, digits.target.astype(np.int64)


class SmallDigitsCNN(torch.nn.Module):
    """A much smaller net for the same task (4 channels, one convolution): the first stage of a cascade."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, image):
        return self.head(self.features(image).flatten(1))


def factory():
    return _trained(DigitsCNN, epochs=6)


def small_factory():
    """`digits_cnn:small_factory`: the small net, trained briefly (see digits-cascade.toml)."""
    return _trained(SmallDigitsCNN, epochs=SMALL_EPOCHS)


SMALL_EPOCHS = 3


def _trained(kind, epochs: int):
    torch.manual_seed(0)
    images, labels = _data()
    x, y = torch.from_numpy(images[:-HELD_OUT]), torch.from_numpy(labels[:-HELD_OUT])
    model = kind()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    # One thread while training: the thread count changes the rounding, and with it the weights, so a build
    # and a later bench on a machine with other settings would otherwise compare two different models.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for epoch in range(epochs):
            for start in range(0, len(x), 64):
                loss = torch.nn.functional.cross_entropy(model(x[start:start + 64]), y[start:start + 64])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), {"image": torch.from_numpy(images[:1])}


def write_eval(path: str) -> None:
    images, labels = _data()
    np.savez(path, image=images[-HELD_OUT:], labels=labels[-HELD_OUT:])


def write_calibration(path: str) -> None:
    images, _ = _data()
    np.savez(path, image=images[:-HELD_OUT][::6])  # training images only: the test split stays unseen


if __name__ == "__main__":
    write_eval(sys.argv[1] if len(sys.argv) > 1 else "eval.npz")
    if len(sys.argv) > 2:
        write_calibration(sys.argv[2])
