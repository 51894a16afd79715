"""Core ML state (iOS 18 stateful programs, e.g. a decoder's KV cache) in the MIL emulator: a State holds
each state tensor across predictions, as the MLState an app makes with model.make_state(), and these ops
read and write it. The program reads a state (read_state), computes a new value (a slice_update of the
cache) and stores it (coreml_update_state, which also returns it; write_state does the same without)."""
from __future__ import annotations

import torch


class State:
    """The values of a program's states, zeros until written (Core ML's fresh MLState is unspecified;
    a decoder's mask never lets it read a position it has not written)."""

    def __init__(self, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]]):
        self.values = {name: torch.zeros(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()}


class Cell:
    """One state as the program's variable: the op that writes it replaces the value in its State."""

    def __init__(self, state: State, name: str):
        self.state, self.name = state, name

    @property
    def value(self) -> torch.Tensor:
        return self.state.values[self.name]

    def write(self, value: torch.Tensor) -> None:
        self.state.values[self.name] = value.to(self.value.dtype)


def _read_state(a, ctx):
    return a["input"].value


def _update_state(a, ctx):
    a["state"].write(a["value"])
    return a["state"].value


def _write_state(a, ctx):
    a["input"].write(a["data"])
    return ()


OPS = {"read_state": _read_state, "coreml_update_state": _update_state, "write_state": _write_state}
