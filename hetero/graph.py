"""The channel graph of a network, derived once from the ``nn.Module`` itself.

:func:`derive_graph` traces the module with ``torch.fx`` at an example input and follows the
channel dimension through every op. The result, a :class:`ChannelGraph`, is the one description of
how a network's channels hang together:

- **units**: sets of channels that must share one index. A conv or linear starts a unit with its
  output channels; a residual add, an SE gate (``x * s``) or a repeated call joins units; a
  depthwise or grouped conv passes its input's unit through (a grouped conv keeps whole groups, so
  its unit's width moves in multiples of the group width). *Fixed* units are never widened or
  pruned: the image's channels, every output of the network (each tensor of a tuple, dict or
  NamedTuple output), a tensor built in forward (CoordConv's coordinates), the channels an op
  reads whose meaning depends on the channel positions (a channel shuffle, a split at fixed
  offsets, a softmax over channels), and an excluded sub-module's inputs and outputs.
- **layouts**: which units a tensor's channels come from, in order. ``torch.cat`` and a constant
  ``F.pad`` of the channels concatenate layouts, so a conv that reads them knows the channel
  offsets of every unit; ``flatten`` keeps the layout and records how many positions each channel
  spans; ``chunk`` / ``split`` at unit boundaries cut it.
- **ops**: every conv, linear, batch norm and activation call of the *eval-mode* forward with its
  layouts and output size, so the network's cost is a closed-form polynomial in the unit widths,
  in both accountings (:mod:`hetero.complexity`). Parts only the training forward runs (auxiliary
  heads) are resized with the network but not costed.
- **params**: per-channel parameters used in forward (a layer scale ``x * self.gamma``), members
  of the unit they scale.

Anything the graph cannot follow is refused by :class:`UnsupportedModel` with one line naming the
op, its module path and what to do (``exclude=`` the sub-module, or :func:`register_op`), before
anything is trained. A conv is recognised by what its forward does (``F.conv2d`` with the module's
own weight), not by its class.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.fx as fx
from torch import nn

from hetero.complexity import CostModel, CostTerms

__all__ = ["ChannelGraph", "ConvOp", "LinearOp", "NormOp", "ActOp", "OpaqueOp", "Layout", "Unit",
           "UnsupportedModel", "derive_graph", "register_op", "OP_KINDS", "PAPER_ACTIVATIONS"]

# Activation modules the paper's accounting counts: 1 FLOP per output element, once per module
# (the paper's Table 1 counts exactly so). h-swish is built around an nn.ReLU6 and so counts through it;
# EfficientNet's swish and SE's sigmoid count 0.
PAPER_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

# Leaf modules that act on each channel alone: their output layout is their input's.
_CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Hardtanh, nn.Identity,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d, nn.Upsample, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
    nn.ReplicationPad2d, nn.InstanceNorm2d,
)
# Functions (torch's, by name) and tensor methods that act on each channel alone.
_CHANNELWISE_FUNCTIONS = frozenset({
    "relu", "relu_", "relu6", "silu", "gelu", "hardswish", "hardsigmoid", "sigmoid", "tanh",
    "leaky_relu", "elu", "selu", "celu", "mish", "softplus", "hardtanh", "dropout", "dropout2d",
    "alpha_dropout", "feature_alpha_dropout", "max_pool2d", "_max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_max_pool2d", "interpolate",
    "upsample", "clamp", "clip", "exp", "abs", "neg", "sqrt", "rsqrt", "square", "erf",
    "stochastic_depth", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like",
    "randn_like", "instance_norm", "pos",
})
_CHANNELWISE_METHODS = frozenset({
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min",
    "clamp_max", "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "to",
    "type", "type_as", "abs", "neg", "exp", "sqrt", "rsqrt", "square", "requires_grad_",
})
_ELEMENTWISE = {operator.add, operator.mul, operator.sub, operator.truediv, operator.iadd,
                operator.imul, operator.isub, operator.itruediv, torch.add, torch.mul, torch.sub,
                torch.div, torch.maximum, torch.minimum}
_ELEMENTWISE_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "maximum",
                        "minimum", "pow"}
_RESHAPES = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "std", "var", "logsumexp"}
_SPLITS = {"chunk", "split", "tensor_split", "split_with_sizes"}
_PERMUTES = {"permute", "transpose", "movedim", "swapaxes", "swapdims"}
_NON_TENSOR = {"size", "dim", "numel", "ndimension"}
_FIX_HINT = ("leave that sub-module unpruned with --exclude {path} (exclude= in Python), or "
             "describe the op with hetero.register_op")

OP_KINDS = ("channelwise", "fixed")
_USER_RULES: dict[object, str] = {}


def register_op(op: type[nn.Module] | Callable | str, kind: str = "channelwise") -> None:
    """Tell the channel graph how an op it does not know treats channels.

    ``op``: a module class (its instances are not traced into), a function that appears in the
    traced graph (a torch function or one wrapped with ``torch.fx.wrap``), or a tensor method's
    name. ``kind``: ``"channelwise"``: every output channel is computed from the same input
    channel alone and the op has no parameters across channels (an activation); its output
    carries its input's channels. ``"fixed"``: it may mix channels but has no weights or FLOPs
    worth counting: the channels it reads are kept as they are (never pruned or widened), and
    its output is a fixed tensor.
    """
    if kind not in OP_KINDS:
        raise ValueError(f"register_op kind must be one of {', '.join(OP_KINDS)}, got {kind!r}")
    _USER_RULES[op] = kind


class UnsupportedModel(ValueError):
    """The channel graph cannot follow this network (names the op and its module path)."""


@dataclass(frozen=True)
class Layout:
    """The units a tensor's channels come from, in channel order; ``repeat`` > 1 after a
    flatten, where each channel spans ``repeat`` consecutive features (channel-major)."""

    units: tuple[int, ...]
    repeat: int = 1


@dataclass(frozen=True)
class ConvOp:
    path: str
    inputs: Layout
    output: Layout
    kernel: int                 # kh * kw
    out_hw: int                 # output positions (batch size 1)
    in_size: tuple[int, ...]    # input spatial size (to rebuild the op alone, e.g. to time it)
    group_width: int | None     # None: dense conv; else input channels per group (1: depthwise)
    bias: bool


@dataclass(frozen=True)
class LinearOp:
    path: str
    inputs: Layout
    output: Layout
    bias: bool


@dataclass(frozen=True)
class NormOp:
    path: str
    layout: Layout
    hw: int


@dataclass(frozen=True)
class ActOp:
    path: str
    layout: Layout
    hw: int


@dataclass(frozen=True)
class OpaqueOp:
    """An excluded sub-module: its cost, counted once at the trace, never changes."""

    path: str
    macs_flops: int
    macs_params: int
    paper_flops: int
    paper_params: int


@dataclass
class Unit:
    """Channels that share one index. ``layers``: the convs/linears whose outputs carry them."""

    id: int
    width: int                   # at the traced (regular) widths
    layers: list[str] = field(default_factory=list)
    granularity: int = 1         # widths move in multiples of this (a grouped conv's group width)
    fixed: bool = False          # image channels, network outputs, ... (see the module doc)
    feeds_classifier: bool = False

    def step(self, divisor: int = 1) -> int:
        """What this unit's width moves in: a multiple of ``divisor`` (below 1: 1) and of its
        granularity."""
        return math.lcm(max(int(divisor), 1), self.granularity)


@dataclass
class ChannelGraph:
    """What :func:`derive_graph` found. Unit ids index :attr:`units`."""

    units: list[Unit]
    ops: list[ConvOp | LinearOp | NormOp | ActOp | OpaqueOp]   # the eval-mode forward's
    image_unit: int
    layer_unit: dict[str, int]               # prunable layer path -> its unit, forward order
    modules: dict[str, Layout]               # conv/linear/bn path -> its output layout
    module_inputs: dict[str, Layout]         # conv/linear path -> its input layout
    params: dict[str, tuple[Layout, int]] = field(default_factory=dict)  # per-channel
    # parameter path -> (its layout, the dimension its channels run along)
    group_widths: dict[str, int] = field(default_factory=dict)  # grouped conv -> group width
    train_only: tuple[str, ...] = ()         # modules only the training forward calls (aux heads)
    cost: CostModel = field(init=False)

    def __post_init__(self) -> None:
        self.cost = CostModel(_cost_terms(self))

    # ------------------------------------------------------------------ views
    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layer_unit)

    @property
    def coupled_groups(self) -> tuple[tuple[str, ...], ...]:
        """The layers of every unit with more than one, in unit order (a config's ``groups``)."""
        return tuple(tuple(u.layers) for u in self.units if len(u.layers) > 1)

    def free_units(self) -> list[Unit]:
        return [u for u in self.units if not u.fixed]

    def unit_widths(self, layer_widths: dict[str, int], in_channels: int) -> list[int]:
        """Width of every unit (fixed ones at their traced width, the image at ``in_channels``)."""
        widths = [u.width for u in self.units]
        widths[self.image_unit] = in_channels
        for layer, unit in self.layer_unit.items():
            widths[unit] = int(layer_widths[layer])
        return widths

    def channels(self, layout: Layout, widths: Sequence[int]) -> int:
        return sum(widths[u] for u in layout.units) * layout.repeat


# ---------------------------------------------------------------------------- tracing
_GRAPH_MODULES = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


class _PathTracer(fx.Tracer):
    """fx tracer that remembers the module being traced, to name it when tracing fails.

    Excluded sub-modules and modules with a user rule are leaves (not traced into). A conv,
    linear or batch norm is a leaf only when its forward is its torch class's own: a subclass
    with its own forward is traced, so the graph sees what that forward does.
    """

    def __init__(self, leaves: Iterable[str] = ()) -> None:
        super().__init__()
        self.current: list[str] = []
        self.leaves = frozenset(leaves)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaves or type(m) in _USER_RULES:
            return True
        base = next((b for b in _GRAPH_MODULES if isinstance(m, b)), None)
        if base is not None and _own_forward(type(m)):
            return False
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        # No ``finally``: when tracing fails, the innermost module stays on top to be named.
        self.current.append(self.path_of_module(m))
        result = super().call_module(m, forward, args, kwargs)
        self.current.pop()
        return result


def _own_forward(cls: type) -> bool:
    """Whether ``cls`` (a conv, linear or norm subclass) overrides its torch class's forward."""
    torch_class = next(c for c in cls.__mro__ if c.__module__.startswith("torch.nn"))
    return cls.forward is not torch_class.forward


def _trace(model: nn.Module, leaves: Iterable[str] = ()) -> fx.GraphModule:
    tracer = _PathTracer(leaves)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... for untraceable Python
        where = tracer.current[-1] if tracer.current else ""
        fix = (f"; or leave it unpruned with --exclude {where} (exclude= in Python)" if where
               else "")
        raise UnsupportedModel(
            f"cannot trace {type(model).__name__} at {where or 'the top-level module'!r} "
            f"({type(exc).__name__}: {_first_line(exc)}); hetero needs a network torch.fx can "
            f"trace (no Python control flow on tensor values){fix}") from exc
    return fx.GraphModule(tracer.root, graph)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class _RunFailed(Exception):
    def __init__(self, where: str, cause: BaseException) -> None:
        super().__init__(where)
        self.where, self.cause = where, cause


def _check_runs(model: nn.Module, example: torch.Tensor) -> None:
    """Run the model once in eval mode: "does not run at this input" is one line with torch's
    cause and the innermost module it failed in (no traceback printed first)."""
    stack: list[str] = []

    def enter(path: str):
        def hook(_module, _args) -> None:
            stack.append(path)
        return hook

    def leave(_module, _args, _output) -> None:  # returns None: the output stays
        stack.pop()

    handles = []
    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(path)))
        handles.append(module.register_forward_hook(leave))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception as exc:
        raise UnsupportedModel(_size_message(model, example, _RunFailed(
            stack[-1] if stack else "", exc), training=False)) from exc
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


def _size_message(model: nn.Module, example: torch.Tensor, failed: _RunFailed, *,
                  training: bool) -> str:
    shape = "x".join(str(s) for s in example.shape[1:])
    where = f" at {failed.where!r}" if failed.where else ""
    mode = (" in training (a part only the training forward runs, e.g. an auxiliary head)"
            if training else "")
    fix = ("pass an input size it takes (--input-size), or drop its auxiliary heads "
           "(--aux-weight 0)" if training else "pass an input size it takes (--input-size)")
    return (f"{type(model).__name__} does not run on input {shape}{mode}{where}: "
            f"{type(failed.cause).__name__}: {_first_line(failed.cause)}; {fix}")


class _Shapes(fx.Interpreter):
    """Runs the traced graph once, recording every node's output shape(s) in ``node.meta`` and
    the cost of every excluded sub-module's call."""

    def __init__(self, gm: fx.GraphModule, opaque: frozenset[str]) -> None:
        super().__init__(gm)
        self.opaque = opaque
        self.opaque_cost: dict[fx.Node, OpaqueOp] = {}

    def run_node(self, n: fx.Node):
        try:
            result = super().run_node(n)
        except Exception as exc:
            raise _RunFailed(_where(n), exc) from exc
        if isinstance(result, torch.Tensor):
            n.meta["hetero_shape"] = tuple(result.shape)
        elif isinstance(result, (tuple, list)) and result and all(
                isinstance(r, torch.Tensor) for r in result):
            n.meta["hetero_shapes"] = [tuple(r.shape) for r in result]
        if n.op == "call_module" and n.target in self.opaque:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            self.opaque_cost[n] = _measure(str(n.target), self.fetch_attr(n.target), args, kwargs)
        return result


def _measure(path: str, module: nn.Module, args, kwargs) -> OpaqueOp:
    """FLOPs and params of one call of an excluded sub-module, in both accountings."""
    from torch.utils.flop_counter import FlopCounterMode

    extra = {"elements": 0}
    acts: dict[nn.Module, int] = {}

    def on_norm(_m, _i, out):
        extra["elements"] += 2 * out.numel()

    def on_act(m, _i, out):
        acts[m] = out.numel()

    handles = [m.register_forward_hook(on_norm if isinstance(m, nn.modules.batchnorm._BatchNorm)
                                       else on_act)
               for m in module.modules()
               if isinstance(m, (nn.modules.batchnorm._BatchNorm, *PAPER_ACTIVATIONS))]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    macs = counter.get_total_flops() // 2
    weights = sum(p.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                  for p in m.parameters(recurse=False))
    norms = sum(p.numel() for m in module.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)
                for p in m.parameters(recurse=False))
    return OpaqueOp(path, macs, weights, macs + extra["elements"] + sum(acts.values()),
                    weights + norms)


def _where(node: fx.Node) -> str:
    """The module path a node belongs to (its own target for a module call)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        last = list(stack.values())[-1]
        return str(last[0] if isinstance(last, tuple) else list(stack)[-1])
    return ""


def _propagate(gm: fx.GraphModule, model: nn.Module, example: torch.Tensor,
               opaque: frozenset[str], *, training: bool) -> dict[fx.Node, OpaqueOp]:
    """Shapes of every node (modules in eval mode: batch statistics stay untouched)."""
    was_training = model.training
    model.eval()
    try:
        shapes = _Shapes(gm, opaque)
        with torch.no_grad():
            shapes.run(example)
    except _RunFailed as failed:
        raise UnsupportedModel(_size_message(model, example, failed, training=training)
                               ) from failed.cause
    finally:
        model.train(was_training)
    return shapes.opaque_cost


def _signature(gm: fx.GraphModule) -> list[tuple[str, str]]:
    return [(n.op, str(n.target)) for n in gm.graph.nodes]


def _module_calls(gm: fx.GraphModule) -> Counter:
    return Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")


def derive_graph(model: nn.Module, example: torch.Tensor, *,
                 exclude: Iterable[str] = ()) -> ChannelGraph:
    """The channel graph of ``model`` at input ``example`` (batch size 1 recommended).

    ``exclude``: module paths to treat as opaque blocks, left unpruned (the channels they read
    and write are fixed; their cost is counted once).
    """
    exclude = frozenset(exclude)
    names = dict(model.named_modules())
    for path in sorted(exclude):
        if path not in names or not path:
            raise ValueError(f"exclude {path!r}: the network has no sub-module of that name "
                             f"(its top-level ones: {', '.join(n for n, _ in model.named_children())})")
    _check_runs(model, example)
    was_training = model.training
    try:
        model.eval()
        eval_gm = _trace(model, exclude)
        model.train()
        train_gm = _trace(model, exclude)
    finally:
        model.train(was_training)
    eval_calls, train_calls = _module_calls(eval_gm), _module_calls(train_gm)
    if eval_calls - train_calls:
        extra = sorted(eval_calls - train_calls)[0]
        raise UnsupportedModel(f"{type(model).__name__} calls {extra!r} in eval mode but not in "
                               "training; the graph follows networks whose eval-mode forward is "
                               "a part of their training forward")
    same = _signature(eval_gm) == _signature(train_gm)
    gm = eval_gm if same else train_gm
    cost = _propagate(gm, model, example, exclude, training=not same)
    graph = _Walker(gm, model, example, exclude, cost, None if same else eval_calls).walk()
    if not same:
        _check_eval_cost(graph, eval_gm, example, exclude, model)
    return graph


def _check_eval_cost(graph: ChannelGraph, eval_gm: fx.GraphModule, example: torch.Tensor,
                     exclude: frozenset[str], model: nn.Module) -> None:
    """The training graph's eval part must cost what the eval-mode graph alone costs."""
    alone = _Walker(eval_gm, model, example, exclude,
                    _propagate(eval_gm, model, example, exclude, training=False), None).walk()
    for accounting in ("macs", "paper"):
        ours = graph.cost([u.width for u in graph.units], accounting)
        theirs = alone.cost([u.width for u in alone.units], accounting)
        if ours != theirs:
            raise UnsupportedModel(
                f"{type(model).__name__}: its eval-mode forward costs {theirs.flops} MACs alone "
                f"but {ours.flops} as part of the training forward; the graph follows networks "
                "whose training forward only adds training-only parts (auxiliary heads)")


def _is_torch(target) -> bool:
    """A function from torch (or torchvision, or Python's operators): matched by name."""
    module = getattr(target, "__module__", None) or ""
    return module.split(".")[0] in ("torch", "torchvision", "_operator", "operator", "builtins")


def _dims(value, ndim: int) -> tuple[int, ...] | None:
    """Normalised dimension argument(s), or None for "all"."""
    if value is None:
        return None
    values = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(int(v) % ndim for v in values)


def _arg(node: fx.Node, index: int, name: str, default=None):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


class _Walker:
    """One pass over the fx graph: layouts per node, a union-find over units, the op list.

    ``eval_calls``: how often the eval-mode forward calls each module, when the graph walked is
    the training forward's: later calls (auxiliary heads) are resized but not costed.
    """

    def __init__(self, gm: fx.GraphModule, root: nn.Module, example: torch.Tensor,
                 exclude: frozenset[str], opaque_cost: dict[fx.Node, OpaqueOp],
                 eval_calls: Counter | None) -> None:
        self.gm, self.root, self.exclude, self.opaque_cost = gm, root, exclude, opaque_cost
        self.modules = dict(root.named_modules())
        self.eval_calls, self.calls = eval_calls, Counter()
        self.parent: list[int] = []
        self.width: list[int] = []
        self.granularity: dict[int, int] = {}
        self.fixed_raw: set[int] = set()
        self.layers: dict[str, int] = {}          # producer path -> unit
        self.passthrough: dict[str, int] = {}     # depthwise/grouped conv path -> unit
        self.grouped: dict[str, int] = {}         # grouped conv path -> group width
        self.train_only: dict[str, None] = {}     # modules only the training forward calls
        self.layout: dict[fx.Node, Layout | None] = {}
        self.pieces: dict[fx.Node, list[Layout | None]] = {}   # split results, tuple outputs
        self.structure: dict[fx.Node, tuple] = {}               # NamedTuple built in forward
        self.built: dict[fx.Node, Layout] = {}                  # tensors built in forward
        self.param_view: dict[fx.Node, str] = {}                # views of a 1-D parameter
        self.params: dict[str, tuple[Layout, int]] = {}
        self.free_pad: set[fx.Node] = set()       # tensors zero-padded along channels
        self.ops: list = []
        self.acts: dict[str, ActOp] = {}          # last call per module
        self.module_out: dict[str, Layout] = {}
        self.module_in: dict[str, Layout] = {}
        self.image = self._new_unit(int(example.shape[1]))

    # -- union-find
    def _new_unit(self, width: int, *, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.width.append(width)
        if fixed:
            self.fixed_raw.add(len(self.parent) - 1)
        return len(self.parent) - 1

    def find(self, u: int) -> int:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def union(self, a: int, b: int, node: fx.Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.width[ra] != self.width[rb]:
            raise self._unsupported(node, f"joins channel groups of widths {self.width[ra]} and "
                                          f"{self.width[rb]}")
        self.parent[rb] = ra
        g = math.lcm(self.granularity.get(ra, 1), self.granularity.get(rb, 1))
        self.granularity[ra] = g

    def unify(self, a: Layout, b: Layout, node: fx.Node) -> Layout:
        """Join two layouts channel by channel; where their units do not line up (a constant
        pad added to a conv's output), both sides keep every channel: they are fixed."""
        wa = [self.width[self.find(u)] for u in a.units]
        wb = [self.width[self.find(u)] for u in b.units]
        if wa != wb or a.repeat != b.repeat:
            self.fix(a)
            self.fix(b)
            return a
        for ua, ub in zip(a.units, b.units, strict=True):
            self.union(ua, ub, node)
        return a

    def fix(self, layout: Layout | None) -> None:
        if layout is not None:
            self.fixed_raw.update(layout.units)

    def is_fixed(self, layout: Layout) -> bool:
        roots = {self.find(u) for u in self.fixed_raw | {self.image}}
        return all(self.find(u) in roots for u in layout.units)

    def count(self, path: str) -> bool:
        """Count a call of module ``path``; whether the eval-mode forward makes it too."""
        self.calls[path] += 1
        evaluated = self.eval_calls is None or self.calls[path] <= self.eval_calls.get(path, 0)
        if not evaluated:
            self.train_only[path] = None
        return evaluated

    # -- errors
    def _unsupported(self, node: fx.Node, why: str) -> UnsupportedModel:
        op = (type(self.modules[node.target]).__name__ if node.op == "call_module"
              else getattr(node.target, "__name__", str(node.target)))
        where = _where(node)
        if not where:  # in the network's own forward: no sub-module to leave out
            return UnsupportedModel(
                f"unsupported op {op} in {type(self.root).__name__}.forward: it {why}; describe "
                "the op with hetero.register_op, or --exclude the sub-modules it reads")
        return UnsupportedModel(f"unsupported op {op} at {where!r}: it {why}; "
                                + _FIX_HINT.format(path=where))

    # -- helpers
    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        return node.meta.get("hetero_shape") if isinstance(node, fx.Node) else None

    def nodes_in(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), found.append)
        return found

    def carriers(self, node: fx.Node) -> list[fx.Node]:
        """The arguments that carry channels the graph follows."""
        return [n for n in self.nodes_in(node) if self.layout.get(n) is not None]

    def arg_layout(self, node) -> Layout | None:
        """A tensor argument's layout; a tensor built in forward gets a fixed unit."""
        if not isinstance(node, fx.Node):
            return None
        if self.layout.get(node) is not None:
            return self.layout[node]
        shape = self.shape(node)
        if shape is None or len(shape) < 2:
            return None
        if node not in self.built:
            self.built[node] = Layout((self._new_unit(shape[1], fixed=True),))
        return self.built[node]

    @staticmethod
    def hw(shape: tuple[int, ...]) -> int:
        return math.prod(shape[2:]) if len(shape) > 2 else 1

    def fixed_output(self, node: fx.Node) -> Layout | None:
        """A new fixed layout for an op whose channels the graph does not follow."""
        shapes = node.meta.get("hetero_shapes")
        if shapes is not None:
            self.pieces[node] = [Layout((self._new_unit(s[1], fixed=True),)) if len(s) >= 2
                                 else None for s in shapes]
            return None
        shape = self.shape(node)
        if shape is None or len(shape) < 2:
            return None
        return Layout((self._new_unit(shape[1], fixed=True),))

    def keep_fixed(self, node: fx.Node) -> Layout | None:
        """The "kept" rule: the op's inputs keep every channel, its output is fixed."""
        for arg in self.nodes_in(node):
            self.fix(self.arg_layout(arg))
        return self.fixed_output(node)

    # -- the walk
    def walk(self) -> ChannelGraph:
        for node in self.gm.graph.nodes:
            self.layout[node] = self.visit(node)
        return self._finish()

    def visit(self, node: fx.Node) -> Layout | None:
        if node.op == "placeholder":
            return Layout((self.image,))
        if node.op == "get_attr":
            return None
        if node.op == "output":
            self.mark_outputs(node.args[0])
            return None
        if node.op == "call_module":
            return self.visit_module(node, self.modules[node.target])
        return self.visit_call(node)

    def mark_outputs(self, value) -> None:
        """Every tensor the network returns keeps its channels (tuple, dict, NamedTuple)."""
        if isinstance(value, fx.Node):
            if value in self.structure:
                self.mark_outputs(self.structure[value])
            for piece in self.pieces.get(value, ()):
                self.fix(piece)
            self.fix(self.layout.get(value))
        elif isinstance(value, dict):
            for item in value.values():
                self.mark_outputs(item)
        elif isinstance(value, (tuple, list)):
            for item in value:
                self.mark_outputs(item)

    # -- modules
    def visit_module(self, node: fx.Node, module: nn.Module) -> Layout | None:
        path, out_shape = str(node.target), self.shape(node)
        evaluated = self.count(path)
        if path in self.exclude:
            if evaluated and node in self.opaque_cost:
                self.ops.append(self.opaque_cost[node])
            return self.keep_fixed(node)
        source = self.arg_layout(node.args[0]) if node.args else None
        if isinstance(module, nn.Conv2d):
            return self.conv(node, path, module, source, evaluated)
        if isinstance(module, nn.Linear):
            return self.linear(node, path, module, source, evaluated)
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            return self.norm(node, path, source, evaluated)
        if isinstance(module, nn.Flatten):
            return self.reshape(node, source, self.shape(node.args[0]), out_shape)
        rule = _USER_RULES.get(type(module))
        if isinstance(module, nn.ChannelShuffle) or rule == "fixed":
            return self.keep_fixed(node)
        if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            return self.softmax(node, module.dim)
        if isinstance(module, _CHANNELWISE_MODULES) or rule == "channelwise":
            if isinstance(module, PAPER_ACTIVATIONS) and evaluated and source is not None:
                self.acts[path] = ActOp(path, source, self.hw(out_shape))
            return source
        raise self._unsupported(node, "changes or mixes channels in a way the graph cannot follow")

    def conv(self, node, path, conv: nn.Conv2d, source: Layout | None, evaluated: bool) -> Layout:
        if source is None or source.repeat != 1:
            raise self._unsupported(node, "reads a tensor whose channels the graph lost")
        kernel = math.prod(conv.kernel_size)
        hw = self.hw(self.shape(node))
        in_size = tuple(self.shape(node.args[0])[2:])
        if conv.groups == 1:
            output = self.producer(node, path, conv.out_channels, source, evaluated)
            if evaluated:
                self.ops.append(ConvOp(path, source, output, kernel, hw, in_size, None,
                                       conv.bias is not None))
            return output
        if conv.out_channels != conv.in_channels or len(source.units) != 1:
            raise self._unsupported(node, f"is a grouped conv (groups={conv.groups}) whose output "
                                          "channels differ from its input's or that reads a "
                                          "concatenation")
        unit = self.find(source.units[0])
        group_width = conv.in_channels // conv.groups
        self.granularity[unit] = math.lcm(self.granularity.get(unit, 1), group_width)
        self.passthrough[path] = unit
        self.grouped[path] = group_width
        self.module_out[path], self.module_in[path] = source, source
        if evaluated:
            self.ops.append(ConvOp(path, source, source, kernel, hw, in_size, group_width,
                                   conv.bias is not None))
        return source

    def producer(self, node, path: str, width: int, source: Layout, evaluated: bool) -> Layout:
        """The output layout of a conv/linear: a new unit, or its unit from an earlier call."""
        if path in self.layers:
            self.unify(self.module_in[path], source, node)
            return Layout((self.layers[path],))
        unit = self._new_unit(width)
        self.layers[path] = unit
        self.module_in[path] = source
        self.module_out[path] = Layout((unit,))
        return Layout((unit,))

    def linear(self, node, path, linear: nn.Linear, source: Layout | None,
               evaluated: bool) -> Layout:
        in_shape = self.shape(node.args[0])
        if source is None or in_shape is None or len(in_shape) != 2:
            raise self._unsupported(node, "is a linear layer on a tensor that is not (batch, "
                                          "features)")
        output = self.producer(node, path, linear.out_features, source, evaluated)
        if evaluated:
            self.ops.append(LinearOp(path, source, output, linear.bias is not None))
        return output

    def norm(self, node, path: str, source: Layout | None, evaluated: bool) -> Layout:
        if source is None or self.shape(node) is None:
            raise self._unsupported(node, "normalises a tensor whose channels the graph lost")
        self.module_out[path] = source
        if evaluated:
            self.ops.append(NormOp(path, source, self.hw(self.shape(node))))
        return source

    # -- functions and methods
    def visit_call(self, node: fx.Node) -> Layout | None:
        method = node.op == "call_method"
        target = node.target
        name = target if method else getattr(target, "__name__", "")
        torchish = method or _is_torch(target)
        if target is operator.getitem:
            return self.getitem(node)
        if isinstance(target, type) and issubclass(target, tuple):   # a NamedTuple output
            self.structure[node] = node.args
            return None
        if torchish and name in ("conv2d", "linear", "batch_norm"):
            return self.functional_module(node, name)
        carriers = self.carriers(node)
        if not carriers:
            self.track_param_view(node, name)
            return None  # shapes, sizes, built tensors and other Python values
        out = self.shape(node)
        rule = _USER_RULES.get(name if method else target)
        if rule is not None:
            return self.keep_fixed(node) if rule == "fixed" else self.layout[carriers[0]]
        if not torchish:
            raise self._unsupported(node, "is a function the graph does not know")
        return self.torch_call(node, name, method, carriers, out)

    def torch_call(self, node, name: str, method: bool, carriers, out) -> Layout | None:
        first = self.layout[carriers[0]]
        if name in ("getattr", *_NON_TENSOR) or (out is None and "hetero_shapes" not in node.meta
                                                 and name not in _SPLITS):
            return None
        if name in ("cat", "concat", "concatenate"):
            return self.concat(node, out)
        if name in _RESHAPES:
            return self.reshape(node, first, self.shape(carriers[0]), out)
        if name == "pad":
            return self.pad(node, carriers[0], out)
        if name in _SPLITS:
            return self.split(node, name, carriers[0])
        if name in ("channel_shuffle", "native_channel_shuffle", "pixel_shuffle",
                    "pixel_unshuffle") and self.is_fixed(first) or name in (
                        "channel_shuffle", "native_channel_shuffle"):
            return self.keep_fixed(node)
        if name in ("softmax", "log_softmax", "softmin"):
            return self.softmax(node, _arg(node, 1, "dim"))
        if name in _REDUCTIONS:
            return self.reduce(node, carriers[0], out)
        if name in _PERMUTES:
            return self.permute(node, name, carriers[0], first)
        if name in ("expand", "expand_as"):
            return first if out[1] == self.shape(carriers[0])[1] else self.keep_fixed(node)
        if (node.target in _ELEMENTWISE or name in _ELEMENTWISE_METHODS and method
                or name in ("add", "mul", "sub", "div", "maximum", "minimum")):
            return self.elementwise(node, out)
        channelwise = _CHANNELWISE_METHODS if method else _CHANNELWISE_FUNCTIONS
        if name in channelwise and node.args and node.args[0] is carriers[0]:
            return first
        raise self._unsupported(node, "is an op the channel graph does not model")

    def functional_module(self, node: fx.Node, name: str) -> Layout | None:
        """``F.conv2d`` / ``F.linear`` / ``F.batch_norm`` with a module's own parameters (a
        subclass's forward, e.g. ``self._conv_forward``): that module's call."""
        kind = {"conv2d": nn.Conv2d, "linear": nn.Linear,
                "batch_norm": nn.modules.batchnorm._BatchNorm}[name]
        weight = _arg(node, 3 if name == "batch_norm" else 1, "weight")
        if name == "batch_norm" and weight is None:
            weight = _arg(node, 1, "running_mean")
        owner = self.owner(weight, kind)
        if owner is None:
            raise self._unsupported(node, "computes with a weight built in forward (e.g. a "
                                          "standardised weight), which the graph cannot slice")
        module = self.modules[owner]
        evaluated = self.count(owner)
        source = self.arg_layout(node.args[0])
        if name == "conv2d":
            if _arg(node, 6, "groups", 1) != module.groups:
                raise self._unsupported(node, "calls its conv with other groups than its own")
            return self.conv(node, owner, module, source, evaluated)
        if name == "linear":
            return self.linear(node, owner, module, source, evaluated)
        return self.norm(node, owner, source, evaluated)

    def owner(self, weight, kind: type) -> str | None:
        """The module path whose parameter ``weight`` is, if it is a ``kind``'s own."""
        if not isinstance(weight, fx.Node) or weight.op != "get_attr":
            return None
        path, _, _ = str(weight.target).rpartition(".")
        return path if isinstance(self.modules.get(path), kind) else None

    def track_param_view(self, node: fx.Node, name: str) -> None:
        """``self.gamma.view(1, -1, 1, 1)`` and the like: still the per-channel parameter."""
        base = node.args[0] if node.args else None
        path = (str(base.target) if isinstance(base, fx.Node) and base.op == "get_attr"
                else self.param_view.get(base))
        if path is None or name not in (*_RESHAPES, "getitem", "expand", "expand_as"):
            return
        param = self._parameter(path)
        shape = self.shape(node)
        if param is not None and param.dim() == 1 and shape is not None and \
                sorted(s for s in shape if s != 1) == sorted(s for s in param.shape if s != 1):
            self.param_view[node] = path

    def _parameter(self, path: str) -> torch.Tensor | None:
        try:
            return self.root.get_parameter(path)
        except AttributeError:
            try:
                return self.root.get_buffer(path)
            except AttributeError:
                return None

    def getitem(self, node: fx.Node) -> Layout | None:
        base, index = node.args[0], node.args[1]
        if base in self.pieces:
            return self.pieces[base][index] if isinstance(index, int) else None
        if base in self.structure:
            self.structure[node] = (self.structure[base][index],)
            return self.layout.get(self.structure[base][index])
        if self.layout.get(base) is None:
            self.track_param_view(node, "getitem")
            return None
        in_shape, out = self.shape(base), self.shape(node)
        if out is None:
            return None
        if self._keeps_channel_dim(index, len(in_shape)) and len(out) >= 2 and out[1] == in_shape[1]:
            return self.layout[base]
        return self.keep_fixed(node)  # picks channels at fixed positions: they are kept

    @staticmethod
    def _keeps_channel_dim(index, ndim: int) -> bool:
        entries = list(index) if isinstance(index, tuple) else [index]
        if any(e is Ellipsis for e in entries):
            at = entries.index(Ellipsis)
            filler = ndim - sum(1 for e in entries if e is not None and e is not Ellipsis)
            entries = entries[:at] + [slice(None)] * filler + entries[at + 1:]
        head = (entries + [slice(None), slice(None)])[:2]
        return all(isinstance(e, slice) and e == slice(None) for e in head)

    def concat(self, node, out) -> Layout:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim not in (1, 1 - len(out)):
            raise self._unsupported(node, f"concatenates along dim {dim}, not channels")
        parts = [self.arg_layout(a) for a in node.args[0]]
        if any(p is None for p in parts):
            raise self._unsupported(node, "concatenates something that is not a tensor of "
                                          "channels")
        if any(p.repeat != 1 for p in parts):
            raise self._unsupported(node, "concatenates flattened tensors")
        return Layout(tuple(u for p in parts for u in p.units))

    def reshape(self, node, source: Layout | None, in_shape, out_shape) -> Layout | None:
        if source is None or in_shape is None or out_shape is None:
            return None
        if len(out_shape) >= 2 and out_shape[1] == in_shape[1]:
            return source if len(out_shape) > 2 or len(in_shape) == 2 else Layout(
                source.units, source.repeat * self.hw(in_shape))
        if len(out_shape) == 2 and out_shape[1] == in_shape[1] * self.hw(in_shape):
            return Layout(source.units, source.repeat * self.hw(in_shape))
        grouping = (len(out_shape) == len(in_shape) + 1 and out_shape[0] == in_shape[0]
                    and out_shape[1] * out_shape[2] == in_shape[1]
                    and out_shape[3:] == in_shape[2:])
        if grouping or self.is_fixed(source):  # a channel shuffle's first step: kept
            return self.keep_fixed(node)
        raise self._unsupported(node, f"reshapes {in_shape} to {out_shape}, moving channels")

    def pad(self, node, arg: fx.Node, out) -> Layout:
        before = self.shape(arg)
        source = self.layout[arg]
        if before is not None and out[1] == before[1]:
            return source
        amounts = _arg(node, 1, "pad")
        mode = _arg(node, 2, "mode", "constant")
        constant = isinstance(amounts, (tuple, list)) and all(isinstance(a, int) for a in amounts)
        if constant and mode == "constant" and len(amounts) >= 2 * (len(out) - 1):
            low, high = amounts[2 * (len(out) - 2)], amounts[2 * (len(out) - 2) + 1]
            if low >= 0 and high >= 0 and source.repeat == 1:
                # Constant channels around the input's: fixed units where they are added.
                pads = [(self._new_unit(n, fixed=True),) if n else () for n in (low, high)]
                return Layout(pads[0] + source.units + pads[1])
            return self.keep_fixed(node)
        if not constant:
            # A parameter-free zero-pad shortcut whose amount follows the tensors it joins:
            # its channels follow whatever it is added to.
            self.free_pad.add(node)
            return Layout(())
        raise self._unsupported(node, f"pads the channels in mode {mode!r}")

    def split(self, node: fx.Node, name: str, arg: fx.Node) -> None:
        """``chunk`` / ``split`` along channels: pieces at unit boundaries keep their units
        (``chunk``'s equal pieces joined, so they stay equal); anything else is kept."""
        shapes, source, in_shape = node.meta.get("hetero_shapes"), self.layout[arg], self.shape(arg)
        if shapes is None or in_shape is None:
            raise self._unsupported(node, "splits a tensor the graph cannot follow")
        dim = _arg(node, 2 if name != "chunk" else 2, "dim", 0)
        if int(dim) % len(in_shape) != 1:
            self.pieces[node] = [source] * len(shapes)
            return None
        pieces = self._cut(source, [s[1] for s in shapes])
        if pieces is None or name != "chunk":
            self.fix(source)
            pieces = pieces or [Layout((self._new_unit(s[1], fixed=True),)) for s in shapes]
        else:
            for piece in pieces[1:]:
                self.unify(pieces[0], piece, node)
        self.pieces[node] = pieces
        return None

    def _cut(self, layout: Layout, sizes: list[int]) -> list[Layout] | None:
        if layout.repeat != 1:
            return None
        pieces, units = [], list(layout.units)
        for size in sizes:
            taken = []
            while size > 0 and units:
                size -= self.width[self.find(units[0])]
                taken.append(units.pop(0))
            if size != 0:
                return None
            pieces.append(Layout(tuple(taken)))
        return pieces

    def softmax(self, node, dim) -> Layout | None:
        source = self.layout[self.carriers(node)[0]]
        ndim = len(self.shape(node))
        if dim is None or int(dim) % ndim == 1:
            return self.keep_fixed(node)  # normalises across channels: they are kept
        return source

    def reduce(self, node, arg: fx.Node, out) -> Layout | None:
        dims = _dims(_arg(node, 1, "dim"), len(self.shape(arg)))
        if dims is None or 0 in dims or 1 in dims:
            return self.keep_fixed(node)
        return self.layout[arg]

    def permute(self, node, name: str, arg: fx.Node, source: Layout) -> Layout | None:
        ndim = len(self.shape(arg))
        rest = [a for a in node.args[1:]]
        if name == "permute":
            order = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
            moved = [int(d) % ndim for d in order][:2] != [0, 1]
        else:
            moved = bool({int(d) % ndim for d in rest[:2]} & {0, 1})
        if not moved:
            return source
        if self.is_fixed(source):
            return self.keep_fixed(node)
        raise self._unsupported(node, f"moves the channel dimension ({self.shape(arg)} -> "
                                      f"{self.shape(node)})")

    def elementwise(self, node, out) -> Layout:
        """add / mul / sub / div: operands that carry channels (dim 1 > 1) are joined; broadcast
        operands (dim 1 == 1) and scalars ride along; a per-channel parameter becomes a member
        of the result's units; a tensor built in forward fixes the channels it meets."""
        tensors = [n for n in self.nodes_in(node) if self.shape(n) is not None
                   or n in self.param_view]
        carrying, params = [], []
        for n in tensors:
            shape = self.shape(n)
            at = len(shape) - len(out) + 1 if shape is not None else -1
            size = shape[at] if shape is not None and 0 <= at < len(shape) else 1
            if self.layout.get(n) is not None:
                if len(shape) >= 2 and shape[1] == out[1] and (out[1] > 1 or len(tensors) == 1):
                    carrying.append(n)
                elif size == 1 and out[1] > 1:
                    self.fix(self.layout[n])  # broadcast: it must stay one channel wide
            elif size == out[1] and out[1] > 1:
                param = self._param_of(n, at)
                if param is not None:
                    params.append(param)
                else:
                    carrying.append(n)  # built in forward: a fixed unit
        padded = [n for n in carrying if n in self.free_pad]
        real = [n for n in carrying if n not in self.free_pad]
        if not real:
            if padded:
                self.free_pad.add(node)
                return Layout(())
            return self.layout[self.carriers(node)[0]]
        result = self.arg_layout(real[0])
        for other in real[1:]:
            result = self.unify(result, self.arg_layout(other), node)
        for path, dim in params:
            if path in self.params:
                self.unify(self.params[path][0], result, node)
            else:
                self.params[path] = (result, dim)
        return result

    def _param_of(self, node: fx.Node, at: int) -> tuple[str, int] | None:
        if node in self.param_view:
            return self.param_view[node], 0
        if node.op == "get_attr" and self._parameter(str(node.target)) is not None:
            return str(node.target), at
        return None

    # -- result
    def _finish(self) -> ChannelGraph:
        train_only_units = {self.find(u) for p, u in self.layers.items() if p in self.train_only}
        evaluated_units = {self.find(u) for p, u in self.layers.items() if p not in self.train_only}
        fixed_roots = ({self.find(self.image)} | {self.find(u) for u in self.fixed_raw}
                       | (train_only_units - evaluated_units))
        order: dict[int, int] = {}
        units: list[Unit] = []

        def unit_of(raw: int) -> int:
            root = self.find(raw)
            if root not in order:
                order[root] = len(units)
                units.append(Unit(len(units), self.width[root],
                                  granularity=self.granularity.get(root, 1),
                                  fixed=root in fixed_roots))
            return order[root]

        image = unit_of(self.image)
        layer_unit: dict[str, int] = {}
        # Forward order: the first call of each module (one pass, not one scan per layer).
        first_call: dict[str, int] = {}
        for i, node in enumerate(self.gm.graph.nodes):
            if node.op == "call_module":
                first_call.setdefault(str(node.target), i)
            elif node.op == "get_attr":
                first_call.setdefault(str(node.target).rpartition(".")[0], i)
        members = sorted({**self.layers, **self.passthrough}.items(),
                         key=lambda item: first_call.get(item[0], 0))
        for path, raw in members:
            index = unit_of(raw)
            if not units[index].fixed:
                layer_unit[path] = index
                units[index].layers.append(path)
        for root in sorted({self.find(u) for u in range(len(self.parent))}):
            unit_of(root)

        def remap(layout: Layout) -> Layout:
            return Layout(tuple(unit_of(u) for u in layout.units), layout.repeat)

        ops = [_remap_op(op, remap) for op in [*self.ops, *self.acts.values()]]
        for op in ops:
            if isinstance(op, (ConvOp, LinearOp)) and all(units[u].fixed for u in op.output.units) \
                    and not all(units[u].fixed for u in op.inputs.units):
                for u in op.inputs.units:
                    units[u].feeds_classifier = True
        modules = {p: remap(lay) for p, lay in self.module_out.items()}
        inputs = {p: remap(lay) for p, lay in self.module_in.items()}
        params = {p: (remap(lay), dim) for p, (lay, dim) in self.params.items()}
        _check_widths(units)
        return ChannelGraph(units, ops, image, layer_unit, modules, inputs, params=params,
                            group_widths=dict(self.grouped), train_only=tuple(self.train_only))


def _remap_op(op, remap):
    if isinstance(op, OpaqueOp):
        return op
    if isinstance(op, (ConvOp, LinearOp)):
        return replace(op, inputs=remap(op.inputs), output=remap(op.output))
    return replace(op, layout=remap(op.layout))


def _check_widths(units: list[Unit]) -> None:
    for unit in units:
        if not unit.fixed and unit.width % unit.granularity:
            raise UnsupportedModel(f"layer {unit.layers[0]!r} has {unit.width} channels, not a "
                                   f"multiple of its group width {unit.granularity}")


# ---------------------------------------------------------------------------- cost
def _cost_terms(graph: ChannelGraph) -> dict[str, CostTerms]:
    """FLOPs and params of every op as polynomials in the unit widths, per accounting.

    Params of a module count once however often it is called; FLOPs count every call.
    """
    terms = {key: CostTerms() for key in ("macs_flops", "macs_params", "paper_flops",
                                          "paper_params")}
    counted: set[str] = set()
    for op in graph.ops:
        first = op.path not in counted
        counted.add(op.path)
        if isinstance(op, OpaqueOp):
            for key in terms:
                terms[key].constant += getattr(op, key) if first or key.endswith("flops") else 0
        elif isinstance(op, ConvOp):
            _conv_terms(op, terms, params=first)
        elif isinstance(op, LinearOp):
            _linear_terms(op, terms, params=first)
        elif isinstance(op, NormOp):
            for u in op.layout.units:
                terms["paper_flops"].add_linear(u, 2 * op.hw * op.layout.repeat)
                if first:
                    terms["paper_params"].add_linear(u, 2)
        else:
            for u in op.layout.units:
                terms["paper_flops"].add_linear(u, op.hw * op.layout.repeat)
    return terms


def _both(terms: dict[str, CostTerms], metric: str):
    return terms[f"macs_{metric}"], terms[f"paper_{metric}"]


def _conv_terms(op: ConvOp, terms: dict[str, CostTerms], *, params: bool) -> None:
    for flops in _both(terms, "flops"):
        _add_macs(op, flops)
    if params:
        for p in _both(terms, "params"):
            _conv_cost(op, p, op.kernel)
            if op.bias:
                for u in op.output.units:
                    p.add_linear(u, 1)


def _add_macs(op: ConvOp | LinearOp, terms: CostTerms) -> None:
    """Add the op's multiply-accumulates (a polynomial in unit widths) to ``terms``; a linear's
    are also its weights."""
    if isinstance(op, ConvOp):
        _conv_cost(op, terms, op.kernel * op.out_hw)
        return
    for u_in in op.inputs.units:
        for u_out in op.output.units:
            terms.add_product(u_in, u_out, op.inputs.repeat)


def _conv_cost(op: ConvOp, terms: CostTerms, scale: int) -> None:
    if op.group_width is not None:  # weights: out channels x group width
        for u in op.output.units:
            terms.add_linear(u, scale * op.group_width)
        return
    for u_in in op.inputs.units:
        for u_out in op.output.units:
            terms.add_product(u_in, u_out, scale)


def _linear_terms(op: LinearOp, terms: dict[str, CostTerms], *, params: bool) -> None:
    targets = list(_both(terms, "flops")) + (list(_both(terms, "params")) if params else [])
    for t in targets:
        _add_macs(op, t)
    if params and op.bias:
        for t in _both(terms, "params"):
            for u in op.output.units:
                t.add_linear(u, 1)
