"""Run a saved Core ML package (.mlpackage, ML program) on Linux, where Core ML itself cannot run.

The package's MIL program is read back with coremltools, its compressed weights are expanded by
coremltools' own weight-decompression graph pass (the values Core ML computes from the int8 / 4-bit /
palettized storage at load time), and each op is executed in torch. By default every op runs in the type
the program declares (an fp16 program in fp16, as Core ML's typed execution does on the device);
`fp32=True` runs all float math in fp32 instead. An op outside the table below fails with
"op X is not emulated yet" rather than with a guess.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

import mil_state


class NotEmulated(Exception):
    """The program uses an op (or an op setting) this emulator does not execute."""


def load_program(package: str | Path):
    """The package's main MIL function with every weight decompressed, and the model's spec."""
    import coremltools as ct
    from coremltools.models.utils import _apply_graph_pass
    from coremltools.optimize.coreml._quantization_passes import WeightDecompressor

    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise NotEmulated(f"{package} is not an ML program (it is a {spec.WhichOneof('Type')}); only ML programs "
                          "are emulated")
    # return_pymil_prog: stop after the pass, without compiling the program back into a model.
    program = _apply_graph_pass(model, WeightDecompressor(op_selector=lambda op: True), return_pymil_prog=True)
    return program.functions["main"], spec


# ------------------------------------------------------------------------------------------------ types

def _torch_dtype(name: str, fp32: bool) -> torch.dtype:
    if name == "fp16":
        return torch.float32 if fp32 else torch.float16
    if name not in _TYPES:
        raise NotEmulated(f"tensors of type {name} are not emulated yet")
    return _TYPES[name]


# uint16 (coremltools narrows gather indices to it from iOS 17 on) is held as int32: same values, and torch
# indexes with it.
_TYPES = {"fp32": torch.float32, "fp64": torch.float64, "int32": torch.int32, "int64": torch.int64,
          "int16": torch.int16, "uint16": torch.int32, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


def _dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(var.dtype if not types.is_tensor(var.sym_type) else var.sym_type.get_primitive())


def _value(val, fp32: bool):
    """A const's value as the emulator holds it: tensors as torch tensors, strings and flags as Python."""
    if isinstance(val, (str, bool)) or val is None:
        return val
    array = np.array(val)
    if array.dtype.kind in "US":
        return array.tolist()
    if array.dtype == np.float16 and fp32:
        array = array.astype(np.float32)
    return torch.from_numpy(array.copy())


def _ints(value) -> list[int]:
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _int(value) -> int:
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)


def _float(value) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


def _bool(value) -> bool:
    return bool(value.item()) if isinstance(value, torch.Tensor) else bool(value)


def _axis(axis, rank: int) -> int:
    axis = _int(axis)
    return axis + rank if axis < 0 else axis


# ------------------------------------------------------------------------------------------------ ops
# Each op is f(inputs, ctx) -> a tensor or a tuple of them; inputs hold the op's inputs with its defaults
# filled in, ctx says which op runs and whether float math is forced to fp32.

class Context(NamedTuple):
    op_type: str
    fp32: bool


OPS = {}


def op(*names):
    def register(func):
        for name in names:
            OPS[name] = func
        return func
    return register


def _binary(func):
    return lambda a, ctx: func(a["x"], a["y"])


for _name, _func in {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "pow": torch.pow, "maximum": torch.maximum,
    "minimum": torch.minimum, "equal": torch.eq, "not_equal": torch.ne, "less": torch.lt, "less_equal": torch.le,
    "greater": torch.gt, "greater_equal": torch.ge, "logical_and": torch.logical_and,
    "logical_or": torch.logical_or, "logical_xor": torch.logical_xor, "floor_div": torch.floor_divide,
    "mod": torch.remainder,
}.items():
    OPS[_name] = _binary(_func)


@op("real_div")
def _real_div(a, ctx):
    x, y = a["x"], a["y"]
    out = torch.div(x, y)
    return out.to(x.dtype) if not x.is_floating_point() else out


def _unary(func):
    return lambda a, ctx: func(a["x"])


for _name, _func in {
    "abs": torch.abs, "acos": torch.acos, "asin": torch.asin, "atan": torch.atan, "atanh": torch.atanh,
    "ceil": torch.ceil, "cos": torch.cos, "cosh": torch.cosh, "erf": torch.erf, "exp": torch.exp,
    "exp2": torch.exp2, "floor": torch.floor, "logical_not": torch.logical_not, "round": torch.round,
    "sign": torch.sign, "sin": torch.sin, "sinh": torch.sinh, "sqrt": torch.sqrt, "square": torch.square,
    "tan": torch.tan, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "silu": F.silu,
    "softsign": F.softsign, "identity": lambda x: x,
}.items():
    OPS[_name] = _unary(_func)


@op("relu6")
def _relu6(a, ctx):
    return torch.clamp(a["x"], 0.0, 6.0)


@op("rsqrt")
def _rsqrt(a, ctx):
    return torch.rsqrt(a["x"] + _float(a["epsilon"]))


@op("log")
def _log(a, ctx):
    return torch.log(a["x"] + _float(a["epsilon"]))


@op("inverse")
def _inverse(a, ctx):
    return 1.0 / (a["x"] + _float(a["epsilon"]))


@op("clip")
def _clip(a, ctx):
    return torch.clamp(a["x"], _float(a["alpha"]), _float(a["beta"]))


@op("leaky_relu")
def _leaky_relu(a, ctx):
    return F.leaky_relu(a["x"], _float(a["alpha"]))


@op("elu")
def _elu(a, ctx):
    return F.elu(a["x"], _float(a["alpha"]))


@op("softplus")
def _softplus(a, ctx):
    return F.softplus(a["x"])


@op("sigmoid_hard")
def _sigmoid_hard(a, ctx):
    return torch.clamp(_float(a["alpha"]) * a["x"] + _float(a["beta"]), 0.0, 1.0)


@op("gelu")
def _gelu(a, ctx):
    x, mode = a["x"], a.get("mode", "EXACT")
    if mode == "EXACT":
        return F.gelu(x)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise NotEmulated(f"op gelu with mode {mode} is not emulated yet")


@op("softmax")
def _softmax(a, ctx):
    return torch.softmax(a["x"], dim=_int(a["axis"]))


@op("select")
def _select(a, ctx):
    return torch.where(a["cond"].bool(), a["a"], a["b"])


@op("cast")
def _cast(a, ctx):
    return a["x"].to(_torch_dtype(a["dtype"], ctx.fp32))


@op("linear")
def _linear(a, ctx):
    return F.linear(a["x"], a["weight"], a.get("bias"))


@op("matmul")
def _matmul(a, ctx):
    x, y = a["x"], a["y"]
    if _bool(a["transpose_x"]) and x.dim() > 1:
        x = x.transpose(-1, -2)
    if _bool(a["transpose_y"]) and y.dim() > 1:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


@op("einsum")
def _einsum(a, ctx):
    return torch.einsum(a["equation"], *a["values"])


def _same_padding(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def _padding(a, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """(begin, end) per spatial dim, in MIL's order, from pad_type and pad."""
    pad_type, spatial = a["pad_type"], x.shape[2:]
    if pad_type == "valid":
        return [0] * (2 * len(spatial))
    if pad_type == "custom":
        return _ints(a["pad"])
    if pad_type in ("same", "same_lower"):
        return [p for size, k, s, d in zip(spatial, kernel, strides, dilations)
                for p in _same_padding(size, k, s, d, pad_type == "same_lower")]
    raise NotEmulated(f"pad_type {pad_type} is not emulated yet")


def _torch_pad(pads: list[int]) -> list[int]:
    """MIL's (begin, end) per dim, first dim first, as F.pad wants it: last dim first."""
    pairs = [pads[i:i + 2] for i in range(0, len(pads), 2)]
    return [p for pair in reversed(pairs) for p in pair]


@op("conv")
def _conv(a, ctx):
    x, weight = a["x"], a["weight"]
    dims = x.dim() - 2
    strides, dilations = _ints(a["strides"]), _ints(a["dilations"])
    pads = _padding(a, x, list(weight.shape[2:]), strides, dilations)
    if any(pads):
        x = F.pad(x, _torch_pad(pads))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    return conv(x, weight, a.get("bias"), stride=strides, dilation=dilations, groups=_int(a["groups"]))


def _pool(a, ctx, kind: str):
    x = a["x"]
    dims = x.dim() - 2
    kernel, strides = _ints(a["kernel_sizes"]), _ints(a["strides"])
    pads = _padding(a, x, kernel, strides, [1] * dims)
    begin, end = pads[0::2], pads[1::2]
    ceil_mode = _bool(a.get("ceil_mode", False))
    if begin == end and all(p <= k // 2 for p, k in zip(begin, kernel)):
        padding = begin  # torch pads symmetrically itself, with its own (identical) edge rules
    else:
        fill = -math.inf if kind == "max" else 0.0
        x = F.pad(x, _torch_pad(pads), value=fill)
        padding = [0] * dims
    if kind == "max":
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
        return pool(x, kernel, strides, padding, ceil_mode=ceil_mode)
    if padding == [0] * dims and any(pads) and _bool(a["exclude_padding_from_average"]):
        raise NotEmulated("op avg_pool with asymmetric padding excluded from the average is not emulated yet")
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dims]
    return pool(x, kernel, strides, padding, ceil_mode=ceil_mode,
                count_include_pad=not _bool(a["exclude_padding_from_average"]))


OPS["max_pool"] = lambda a, ctx: _pool(a, ctx, "max")
OPS["avg_pool"] = lambda a, ctx: _pool(a, ctx, "avg")


@op("batch_norm")
def _batch_norm(a, ctx):
    return F.batch_norm(a["x"], a["mean"], a["variance"], a.get("gamma"), a.get("beta"), training=False,
                        eps=_float(a["epsilon"]))


@op("instance_norm")
def _instance_norm(a, ctx):
    return F.instance_norm(a["x"], weight=a.get("gamma"), bias=a.get("beta"), eps=_float(a["epsilon"]))


@op("layer_norm")
def _layer_norm(a, ctx):
    x = a["x"]
    axes = sorted(_axis(v, x.dim()) for v in _ints(a["axes"])) if a.get("axes") is not None else list(range(x.dim()))
    gamma, beta, eps = a.get("gamma"), a.get("beta"), _float(a["epsilon"])
    if axes == list(range(x.dim() - len(axes), x.dim())):
        shape = list(x.shape[x.dim() - len(axes):])
        return F.layer_norm(x, shape, gamma, beta, eps)
    mean = x.mean(dim=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    out = (x - mean) / torch.sqrt(var + eps)
    out = out * gamma if gamma is not None else out
    return out + beta if beta is not None else out


def _reduce(func):
    def run(a, ctx):
        x = a["x"]
        keep = _bool(a["keep_dims"])
        if a.get("axes") is None:
            axes = list(range(x.dim()))
        else:
            axes = [_axis(v, x.dim()) for v in _ints(a["axes"])]
        return func(x, axes, keep)
    return run


for _name, _func in {
    "reduce_mean": lambda x, d, k: x.mean(dim=d, keepdim=k),
    "reduce_sum": lambda x, d, k: x.sum(dim=d, keepdim=k),
    "reduce_max": lambda x, d, k: x.amax(dim=d, keepdim=k),
    "reduce_min": lambda x, d, k: x.amin(dim=d, keepdim=k),
    "reduce_prod": lambda x, d, k: _prod(x, d, k),
    "reduce_sum_square": lambda x, d, k: (x * x).sum(dim=d, keepdim=k),
    "reduce_l2_norm": lambda x, d, k: torch.sqrt((x * x).sum(dim=d, keepdim=k)),
    "reduce_log_sum_exp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
}.items():
    OPS[_name] = _reduce(_func)


def _prod(x, dims, keep):
    for dim in sorted(dims, reverse=True):
        x = x.prod(dim=dim, keepdim=keep)
    return x


@op("reduce_argmax", "reduce_argmin")
def _arg_reduce(a, ctx):
    func = torch.argmax if ctx.op_type == "reduce_argmax" else torch.argmin
    return func(a["x"], dim=_int(a["axis"]), keepdim=_bool(a["keep_dims"])).to(torch.int32)


@op("reshape")
def _reshape(a, ctx):
    x, shape = a["x"], _ints(a["shape"])
    if 0 in shape:
        # iOS 15/16: a 0 copies the input's dim at the same index; iOS 17: counted from the right
        offset = x.dim() - len(shape)
        shape = [(x.shape[i + offset] if 0 <= i + offset < x.dim() else 1) if s == 0 else s
                 for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("transpose")
def _transpose(a, ctx):
    return a["x"].permute(_ints(a["perm"]))


@op("expand_dims")
def _expand_dims(a, ctx):
    x = a["x"]
    rank = x.dim() + len(_ints(a["axes"]))
    for axis in sorted(_axis(v, rank) for v in _ints(a["axes"])):
        x = x.unsqueeze(axis)
    return x


@op("squeeze")
def _squeeze(a, ctx):
    x = a["x"]
    if a.get("axes") is None:
        return x.squeeze()
    for axis in sorted((_axis(v, x.dim()) for v in _ints(a["axes"])), reverse=True):
        x = x.squeeze(axis)
    return x


@op("flatten2d")
def _flatten2d(a, ctx):
    x, axis = a["x"], _axis(a["axis"], a["x"].dim())
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _windows(a, shape) -> list:
    """slice_by_index / slice_update's begin, end, stride and masks as one index per dimension: an int
    where squeeze_mask drops the dimension, else a slice (a list of positions for strides other than 1)."""
    rank = len(shape)
    begin, end = _ints(a["begin"]), _ints(a["end"])
    stride = _ints(a["stride"]) if a.get("stride") is not None else [1] * rank
    begin_mask = _ints(a["begin_mask"]) if a.get("begin_mask") is not None else [0] * rank
    end_mask = _ints(a["end_mask"]) if a.get("end_mask") is not None else [0] * rank
    squeeze_mask = _ints(a["squeeze_mask"]) if a.get("squeeze_mask") is not None else [0] * rank
    windows = []
    for dim in range(rank):
        size = shape[dim]
        if squeeze_mask[dim]:
            windows.append(begin[dim] + size if begin[dim] < 0 else begin[dim])
            continue
        window = slice(None if begin_mask[dim] else begin[dim], None if end_mask[dim] else end[dim], stride[dim])
        start, stop, step = window.indices(size)
        windows.append(slice(start, max(stop, start)) if step == 1 else list(range(start, stop, step)))
    return windows


def _take(x, windows: list):
    for dim, window in reversed(list(enumerate(windows))):
        if isinstance(window, list):
            x = x.index_select(dim, torch.tensor(window, dtype=torch.long))
        elif isinstance(window, slice):
            x = x.narrow(dim, window.start, window.stop - window.start)
        else:
            x = x.select(dim, window)
    return x


@op("slice_by_index")
def _slice_by_index(a, ctx):
    return _take(a["x"], _windows(a, a["x"].shape))


@op("slice_update")
def _slice_update(a, ctx):
    """x with the slice slice_by_index would read replaced by update (the KV cache write of a stateful
    decoder)."""
    x = a["x"].clone()
    windows = _windows(a, x.shape)
    if any(isinstance(w, list) for w in windows):
        raise NotEmulated("slice_update with a stride other than 1 is not emulated yet")
    x[tuple(windows)] = a["update"].to(x.dtype)
    return x


@op("slice_by_size")
def _slice_by_size(a, ctx):
    x = a["x"]
    for dim, (start, size) in enumerate(zip(_ints(a["begin"]), _ints(a["size"]))):
        start = start + x.shape[dim] if start < 0 else start
        x = x.narrow(dim, start, x.shape[dim] - start if size == -1 else size)
    return x


@op("concat")
def _concat(a, ctx):
    values = [v.reshape(1) if v.dim() == 0 else v for v in a["values"]]  # scalars join as 1-element vectors
    axis = _axis(a["axis"], values[0].dim())
    if _bool(a.get("interleave", False)):
        stacked = torch.stack(values, dim=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return torch.cat(values, dim=axis)


@op("stack")
def _stack(a, ctx):
    values = list(a["values"])
    return torch.stack(values, dim=_axis(a["axis"], values[0].dim() + 1))


@op("split")
def _split(a, ctx):
    x = a["x"]
    axis = _axis(a["axis"], x.dim())
    if a.get("split_sizes") is not None:
        return tuple(torch.split(x, _ints(a["split_sizes"]), dim=axis))
    return tuple(torch.chunk(x, _int(a["num_splits"]), dim=axis))


def _wrap(indices: torch.Tensor, size: int) -> torch.Tensor:
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


@op("gather")
def _gather(a, ctx):
    x, indices = a["x"], a["indices"]
    axis = _axis(a["axis"], x.dim())
    if _int(a.get("batch_dims", 0)) != 0:
        raise NotEmulated("op gather with batch_dims is not emulated yet")
    flat = x.index_select(axis, _wrap(indices, x.shape[axis]).reshape(-1))
    return flat.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1:]))


@op("gather_along_axis")
def _gather_along_axis(a, ctx):
    x, axis = a["x"], _axis(a["axis"], a["x"].dim())
    return torch.gather(x, axis, _wrap(a["indices"], x.shape[axis]))


@op("gather_nd")
def _gather_nd(a, ctx):
    x, indices = a["x"], a["indices"].long()
    if _int(a.get("batch_dims", 0)) != 0:
        raise NotEmulated("op gather_nd with batch_dims is not emulated yet")
    depth = indices.shape[-1]
    return x[tuple(_wrap(indices[..., i], x.shape[i]) for i in range(depth))]


@op("tile")
def _tile(a, ctx):
    return a["x"].repeat(_ints(a["reps"]))


@op("fill")
def _fill(a, ctx):
    value = a["value"]
    dtype = value.dtype if isinstance(value, torch.Tensor) else torch.float32
    return torch.full(_ints(a["shape"]), _float(value) if dtype.is_floating_point else _int(value), dtype=dtype)


@op("fill_like")
def _fill_like(a, ctx):
    value = a["value"]
    return torch.full(tuple(a["ref_tensor"].shape), value.item() if isinstance(value, torch.Tensor) else value,
                      dtype=value.dtype if isinstance(value, torch.Tensor) else torch.float32)


@op("shape")
def _shape(a, ctx):
    return torch.tensor(list(a["x"].shape), dtype=torch.int32)


@op("range_1d")
def _range_1d(a, ctx):
    start = a["start"]
    dtype = start.dtype if isinstance(start, torch.Tensor) else torch.int32
    values = [v.item() if isinstance(v, torch.Tensor) else v for v in (a["start"], a["end"], a["step"])]
    return torch.arange(*values, dtype=dtype)


@op("cumsum")
def _cumsum(a, ctx):
    x, axis = a["x"], _axis(a["axis"], a["x"].dim())
    if _bool(a["reverse"]):
        x = x.flip(axis)
    out = torch.cumsum(x, dim=axis).to(x.dtype)
    if _bool(a["exclusive"]):
        out = out - x
    return out.flip(axis) if _bool(a["reverse"]) else out


@op("band_part")
def _band_part(a, ctx):
    x = a["x"]
    lower, upper = _int(a["lower"]), _int(a["upper"])
    rows = torch.arange(x.shape[-2]).unsqueeze(1)
    cols = torch.arange(x.shape[-1]).unsqueeze(0)
    keep = torch.ones(rows.shape[0], cols.shape[1], dtype=torch.bool)
    if lower >= 0:
        keep &= rows - cols <= lower
    if upper >= 0:
        keep &= cols - rows <= upper
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype))


@op("topk")
def _topk(a, ctx):
    x, axis = a["x"], _axis(a["axis"], a["x"].dim())
    values, indices = torch.topk(x, _int(a["k"]), dim=axis, largest=not _bool(a["ascending"]))
    return values, indices.to(torch.int32)


@op("argsort")
def _argsort(a, ctx):
    x = a["x"]
    return torch.argsort(x, dim=_axis(a["axis"], x.dim()), descending=not _bool(a["ascending"]),
                         stable=True).to(torch.int32)


@op("pad")
def _pad(a, ctx):
    x, mode = a["x"], a["mode"]
    pads = _torch_pad(_ints(a["pad"]))
    if mode == "constant":
        return F.pad(x, pads, value=_float(a["constant_val"]))
    return F.pad(x, pads, mode={"reflect": "reflect", "replicate": "replicate"}[mode])


@op("upsample_nearest_neighbor")
def _upsample_nearest(a, ctx):
    scale = (_float(a["scale_factor_height"]), _float(a["scale_factor_width"]))
    return F.interpolate(a["x"], scale_factor=scale, mode="nearest")


@op("scaled_dot_product_attention")
def _sdpa(a, ctx):
    mask = a.get("attn_mask")
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(a["query"].dtype)
    return F.scaled_dot_product_attention(a["query"], a["key"], a["value"], attn_mask=mask)


OPS.update(mil_state.OPS)


# ------------------------------------------------------------------------------------------------ running

class Emulator:
    """One loaded package: predict(inputs) -> outputs, like Core ML's MLModel.predict; a stateful program
    (iOS 18) takes the State from make_state() too, as predict(inputs, state) does on the device."""

    def __init__(self, package: str | Path, fp32: bool = False):
        self.function, self.spec = load_program(package)
        self.fp32 = fp32
        missing = sorted({o.op_type for o in self.function.operations if o.op_type != "const"} - set(OPS))
        if missing:
            raise NotEmulated(f"op {missing[0]} is not emulated yet"
                              + (f" (nor {', '.join(missing[1:])})" if len(missing) > 1 else ""))
        self.constants = {o.outputs[0].name: _value(o.outputs[0].val, fp32)
                          for o in self.function.operations if o.op_type == "const"}
        self.steps = [(o, self._defaults(o), Context(o.op_type, fp32))
                      for o in self.function.operations if o.op_type != "const"]
        from coremltools.converters.mil.mil import types

        self.states = {name: (tuple(var.sym_type.wrapped_type().get_shape()),
                              _torch_dtype(types.builtin_to_string(var.sym_type.wrapped_type().get_primitive()), fp32))
                       for name, var in self.function.inputs.items() if types.is_state(var.sym_type)}
        self.inputs = {name: _dtype_name(var) for name, var in self.function.inputs.items() if name not in self.states}
        self.outputs = [var.name for var in self.function.outputs]

    def _defaults(self, o) -> dict:
        given = set(o.inputs)
        return {k: _value(v.val if hasattr(v, "val") else v, self.fp32)
                for k, v in o.default_inputs().items() if k not in given}

    def make_state(self) -> mil_state.State:
        return mil_state.State(self.states)

    def predict(self, inputs: dict[str, np.ndarray], state: mil_state.State | None = None) -> dict[str, np.ndarray]:
        env = dict(self.constants)
        if self.states and state is None:
            raise ValueError(f"the program keeps state ({', '.join(self.states)}): pass one from make_state()")
        env.update({name: mil_state.Cell(state, name) for name in self.states})
        for feature in self.spec.description.input:
            _check_shape(feature, inputs.get(feature.name))
        for name, dtype in self.inputs.items():
            env[name] = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(_torch_dtype(dtype, self.fp32))
        with torch.no_grad():
            for o, defaults, ctx in self.steps:
                args = dict(defaults)
                for key, var in o.inputs.items():
                    args[key] = [env[v.name] for v in var] if isinstance(var, (list, tuple)) else env[var.name]
                result = OPS[o.op_type](args, ctx)
                results = result if isinstance(result, tuple) else (result,)
                for var, value in zip(o.outputs, results):
                    env[var.name] = value
        return {name: _numpy(env[name]) for name in self.outputs}


def _check_shape(feature, value) -> None:
    """Refuse what Core ML refuses: a missing input, or a shape outside what the package declares."""
    if value is None:
        raise ValueError(f"input {feature.name} is missing")
    array = feature.type.multiArrayType
    ranges = array.shapeRange.sizeRanges
    enumerated = [tuple(s.shape) for s in array.enumeratedShapes.shapes]
    if ranges:
        fits = len(ranges) == value.ndim and all(r.lowerBound <= d and (r.upperBound < 0 or d <= r.upperBound)
                                                 for r, d in zip(ranges, value.shape))
        allowed = " × ".join(f"{r.lowerBound}..{r.upperBound}" for r in ranges)
    elif enumerated:
        fits, allowed = tuple(value.shape) in enumerated, " or ".join(map(str, enumerated))
    else:
        fits, allowed = tuple(value.shape) == tuple(array.shape), str(tuple(array.shape))
    if not fits:
        raise ValueError(f"input {feature.name} has shape {tuple(value.shape)}; the package takes {allowed}")


def _numpy(value) -> np.ndarray:
    tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensor.detach().contiguous().numpy()
