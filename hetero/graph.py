"""The channel graph of a network, derived once from the ``nn.Module`` itself.

:func:`derive_graph` traces the module with ``torch.fx`` at an example input and follows the
channel dimension through every op. The result, a :class:`ChannelGraph`, is the one description of
how a network's channels hang together:

- **units**: sets of channels that must share one index. A conv or linear starts a unit with its
  output channels; a residual add, an SE gate (``x * s``) or a repeated call joins units; a
  depthwise or grouped conv passes its input's unit through (a grouped conv keeps whole groups, so
  its unit's width moves in multiples of the group width). The image's channels and the network's
  outputs are *fixed* units: never widened or pruned.
- **layouts**: which units a tensor's channels come from, in order. ``torch.cat`` concatenates
  layouts, so a conv that reads a concatenation knows the channel offsets of every unit it reads;
  ``flatten`` keeps the layout and records how many positions each channel spans.
- **ops**: every conv, linear, batch norm and activation call with its layouts and output size, so
  the network's cost is a closed-form polynomial in the unit widths, in both accountings
  (:mod:`hetero.complexity`).

Anything the graph cannot follow (an op that mixes channels in an unknown way, such as
``PixelShuffle``, or Python control flow on tensor values) is refused by :class:`UnsupportedModel`,
naming the op and its module path, before anything is trained.
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from hetero.complexity import CostModel, CostTerms

__all__ = ["ChannelGraph", "ConvOp", "LinearOp", "NormOp", "ActOp", "Layout", "Unit",
           "UnsupportedModel", "derive_graph", "PAPER_ACTIVATIONS"]

# Activation modules the paper's accounting counts: 1 FLOP per output element, once per module
# (the paper's Table 1 counts exactly so). h-swish is built around an nn.ReLU6 and so counts through it;
# EfficientNet's swish and SE's sigmoid count 0.
PAPER_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

# Leaf modules that act on each channel alone: their output layout is their input's.
_CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.LeakyReLU, nn.ELU, nn.Mish, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample,
    nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.Softmax,
)
_ELEMENTWISE = {operator.add, operator.mul, operator.sub, operator.truediv, operator.iadd,
                operator.imul, torch.add, torch.mul, torch.sub, torch.div}
_ELEMENTWISE_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}


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


@dataclass
class Unit:
    """Channels that share one index. ``layers``: the convs/linears whose outputs carry them."""

    id: int
    width: int                   # at the traced (regular) widths
    layers: list[str] = field(default_factory=list)
    granularity: int = 1         # widths move in multiples of this (a grouped conv's group width)
    fixed: bool = False          # image channels or network outputs
    feeds_classifier: bool = False

    def step(self, divisor: int = 1) -> int:
        """What this unit's width moves in: a multiple of ``divisor`` (below 1: 1) and of its
        granularity."""
        return math.lcm(max(int(divisor), 1), self.granularity)


@dataclass
class ChannelGraph:
    """What :func:`derive_graph` found. Unit ids index :attr:`units`."""

    units: list[Unit]
    ops: list[ConvOp | LinearOp | NormOp | ActOp]
    image_unit: int
    layer_unit: dict[str, int]               # prunable layer path -> its unit, forward order
    modules: dict[str, Layout]               # conv/linear/bn path -> its output layout
    module_inputs: dict[str, Layout]         # conv/linear path -> its input layout
    cost: CostModel = field(init=False)
    group_widths: dict[str, int] = field(init=False)  # grouped conv path -> its group width

    def __post_init__(self) -> None:
        self.cost = CostModel(_cost_terms(self))
        self.group_widths = {op.path: op.group_width for op in self.ops
                             if isinstance(op, ConvOp) and op.group_width is not None}

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
class _PathTracer(fx.Tracer):
    """fx tracer that remembers the module being traced, to name it when tracing fails."""

    def __init__(self) -> None:
        super().__init__()
        self.current: list[str] = []

    def call_module(self, m, forward, args, kwargs):
        # No ``finally``: when tracing fails, the innermost module stays on top to be named.
        self.current.append(self.path_of_module(m))
        result = super().call_module(m, forward, args, kwargs)
        self.current.pop()
        return result


def _trace(model: nn.Module) -> fx.GraphModule:
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, ... for untraceable Python
        where = tracer.current[-1] if tracer.current else "the top-level module"
        raise UnsupportedModel(
            f"cannot trace {type(model).__name__} at {where!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); hetero needs a network torch.fx can trace "
            "(no Python control flow on tensor values)") from exc
    return fx.GraphModule(tracer.root, graph)


def derive_graph(model: nn.Module, example: torch.Tensor) -> ChannelGraph:
    """The channel graph of ``model`` at input ``example`` (batch size 1 recommended)."""
    gm = _trace(model)
    was_training = model.training
    model.eval()
    try:
        # ShapeProp prints the op's traceback before it raises: the error below says it once.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(example)
    except Exception as exc:
        cause = exc.__cause__ or exc   # ShapeProp wraps the op's own error
        raise UnsupportedModel(
            f"{type(model).__name__} does not run on input of shape {tuple(example.shape)}: "
            f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}") from exc
    finally:
        model.train(was_training)
    return _Walker(gm, example).walk()


class _Walker:
    """One pass over the fx graph: layouts per node, a union-find over units, the op list."""

    def __init__(self, gm: fx.GraphModule, example: torch.Tensor) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.parent: list[int] = []
        self.width: list[int] = []
        self.granularity: dict[int, int] = {}
        self.layers: dict[str, int] = {}          # producer path -> unit
        self.passthrough: dict[str, int] = {}     # depthwise/grouped conv path -> unit
        self.layout: dict[fx.Node, Layout | None] = {}
        self.free_pad: set[fx.Node] = set()       # tensors zero-padded along channels
        self.ops: list = []
        self.acts: dict[str, ActOp] = {}          # last call per module
        self.module_out: dict[str, Layout] = {}
        self.module_in: dict[str, Layout] = {}
        self.image = self._new_unit(int(example.shape[1]))
        self.outputs: set[int] = set()

    # -- union-find
    def _new_unit(self, width: int) -> int:
        self.parent.append(len(self.parent))
        self.width.append(width)
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
        wa = [self.width[self.find(u)] for u in a.units]
        wb = [self.width[self.find(u)] for u in b.units]
        if wa != wb or a.repeat != b.repeat:
            raise self._unsupported(node, f"combines tensors whose channels come from different "
                                          f"groups ({wa} vs {wb})")
        for ua, ub in zip(a.units, b.units, strict=True):
            self.union(ua, ub, node)
        return a

    # -- errors
    def _where(self, node: fx.Node) -> str:
        stack = node.meta.get("nn_module_stack")
        if node.op == "call_module":
            return str(node.target)
        if stack:
            return str(list(stack.values())[-1][0] if isinstance(list(stack.values())[-1], tuple)
                       else list(stack)[-1])
        return node.name

    def _unsupported(self, node: fx.Node, why: str) -> UnsupportedModel:
        op = (type(self.modules[node.target]).__name__ if node.op == "call_module"
              else getattr(node.target, "__name__", str(node.target)))
        return UnsupportedModel(f"unsupported op {op} at {self._where(node)!r}: it {why}; hetero "
                                "can widen and shrink networks of convs, linears, batch norms, "
                                "channel-wise ops, adds, SE gating, concatenation and flatten")

    # -- helpers
    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs),
                        lambda n: found.append(n) if self.layout.get(n) is not None else None)
        return found

    @staticmethod
    def hw(shape: tuple[int, ...]) -> int:
        return math.prod(shape[2:]) if len(shape) > 2 else 1

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
            for arg in self.tensor_args(node):
                self.outputs.update(self.layout[arg].units)
            return None
        if node.op == "call_module":
            return self.visit_module(node, self.modules[node.target])
        return self.visit_function(node)

    def visit_module(self, node: fx.Node, module: nn.Module) -> Layout | None:
        args = self.tensor_args(node)
        source = self.layout[args[0]] if args else None
        path, out_shape = str(node.target), self.shape(node)
        if isinstance(module, nn.Conv2d):
            return self.conv(node, path, module, source, out_shape)
        if isinstance(module, nn.Linear):
            return self.linear(node, path, module, source)
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            self.module_out[path] = source
            self.ops.append(NormOp(path, source, self.hw(out_shape)))
            return source
        if isinstance(module, nn.Flatten):
            return self.reshape(node, source, self.shape(args[0]), out_shape)
        if isinstance(module, _CHANNELWISE_MODULES) or (
                not any(True for _ in module.parameters()) and self._keeps_channels(node, args)):
            if isinstance(module, PAPER_ACTIVATIONS):
                self.acts[path] = ActOp(path, source, self.hw(out_shape))
            return source
        raise self._unsupported(node, "changes or mixes channels in a way the graph cannot follow")

    def _keeps_channels(self, node: fx.Node, args: list[fx.Node]) -> bool:
        out = self.shape(node)
        return (len(args) == 1 and out is not None and len(out) >= 2
                and self.shape(args[0]) is not None and out[1] == self.shape(args[0])[1])

    def conv(self, node, path, conv: nn.Conv2d, source: Layout | None, out_shape) -> Layout:
        if source is None or source.repeat != 1:
            raise self._unsupported(node, "reads a tensor whose channels the graph lost")
        kernel = math.prod(conv.kernel_size)
        hw = self.hw(out_shape)
        in_size = tuple(self.shape(node.args[0])[2:])
        if conv.groups == 1:
            output = self.producer(node, path, conv.out_channels, source)
            self.ops.append(ConvOp(path, source, output, kernel, hw, in_size, None,
                                   conv.bias is not None))
            return output
        if conv.out_channels != conv.in_channels or len(source.units) != 1:
            raise self._unsupported(node, f"is a grouped conv (groups={conv.groups}) whose output "
                                          "channels differ from its input's or that reads a "
                                          "concatenation")
        unit = self.find(source.units[0])
        if unit == self.find(self.image):
            raise self._unsupported(node, "is a grouped conv on the image channels")
        group_width = conv.in_channels // conv.groups
        self.granularity[unit] = math.lcm(self.granularity.get(unit, 1), group_width)
        self.passthrough[path] = unit
        self.module_out[path], self.module_in[path] = source, source
        self.ops.append(ConvOp(path, source, source, kernel, hw, in_size, group_width,
                               conv.bias is not None))
        return source

    def producer(self, node, path: str, width: int, source: Layout) -> Layout:
        """The output layout of a conv/linear: a new unit, or its unit from an earlier call."""
        if path in self.layers:
            self.unify(self.module_in[path], source, node)
            return Layout((self.layers[path],))
        unit = self._new_unit(width)
        self.layers[path] = unit
        self.module_in[path] = source
        self.module_out[path] = Layout((unit,))
        return Layout((unit,))

    def linear(self, node, path, linear: nn.Linear, source: Layout | None) -> Layout:
        in_shape = self.shape(node.args[0])
        if source is None or in_shape is None or len(in_shape) != 2:
            raise self._unsupported(node, "is a linear layer on a tensor that is not (batch, "
                                          "features)")
        output = self.producer(node, path, linear.out_features, source)
        self.ops.append(LinearOp(path, source, output, linear.bias is not None))
        return output

    def reshape(self, node, source: Layout | None, in_shape, out_shape) -> Layout | None:
        if source is None or in_shape is None or out_shape is None:
            return None
        if len(out_shape) >= 2 and out_shape[1] == in_shape[1]:
            return source if len(out_shape) > 2 or len(in_shape) == 2 else Layout(
                source.units, source.repeat * self.hw(in_shape))
        if len(out_shape) == 2 and out_shape[1] == in_shape[1] * self.hw(in_shape):
            return Layout(source.units, source.repeat * self.hw(in_shape))
        raise self._unsupported(node, f"reshapes {in_shape} to {out_shape}, moving channels")

    def visit_function(self, node: fx.Node) -> Layout | None:
        args = self.tensor_args(node)
        out = self.shape(node)
        if not args or out is None:
            return None  # shapes, sizes and other Python values
        target = node.target
        if target in (torch.cat, torch.concat):
            return self.concat(node, args, out)
        if target in (torch.flatten, torch.reshape) or target in ("flatten", "view", "reshape"):
            return self.reshape(node, self.layout[args[0]], self.shape(args[0]), out)
        if target is torch.nn.functional.pad:
            return self.pad(node, args[0], out)
        if target in _ELEMENTWISE or target in _ELEMENTWISE_METHODS:
            return self.elementwise(node, args, out)
        first = self.shape(args[0])
        if len(out) >= 2 and first is not None and len(first) >= 2 and out[1] == first[1]:
            return self.elementwise(node, args, out)
        raise self._unsupported(node, f"changes the channel dimension ({first} -> {out})")

    def concat(self, node, args, out) -> Layout:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim not in (1, 1 - len(out)):
            raise self._unsupported(node, f"concatenates along dim {dim}, not channels")
        parts = [self.layout[a] for a in node.args[0]]
        if any(p.repeat != 1 for p in parts):
            raise self._unsupported(node, "concatenates flattened tensors")
        return Layout(tuple(u for p in parts for u in p.units))

    def pad(self, node, arg: fx.Node, out) -> Layout:
        before = self.shape(arg)
        if before is not None and out[1] == before[1]:
            return self.layout[arg]
        # A parameter-free zero-pad shortcut: its channels follow whatever it is added to.
        self.free_pad.add(node)
        return Layout(())

    def elementwise(self, node, args, out) -> Layout:
        """add / mul / sub / div and other shape-preserving ops: operands that carry channels
        (dim 1 > 1) are joined; broadcast operands (dim 1 == 1) and scalars ride along."""
        carrying = [a for a in args if (s := self.shape(a)) is not None and len(s) >= 2
                    and s[1] == out[1] and (out[1] > 1 or len(args) == 1)]
        padded = [a for a in carrying if a in self.free_pad]
        real = [a for a in carrying if a not in self.free_pad]
        if not real:
            if padded:
                self.free_pad.add(node)
                return Layout(())
            return self.layout[args[0]]
        result = self.layout[real[0]]
        for other in real[1:]:
            result = self.unify(result, self.layout[other], node)
        return result

    # -- result
    def _finish(self) -> ChannelGraph:
        roots = sorted({self.find(u) for u in range(len(self.parent))})
        fixed_roots = {self.find(self.image)} | {self.find(u) for u in self.outputs}
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
        members = sorted({**self.layers, **self.passthrough}.items(),
                         key=lambda item: first_call.get(item[0], 0))
        for path, raw in members:
            index = unit_of(raw)
            if not units[index].fixed:
                layer_unit[path] = index
                units[index].layers.append(path)
        for root in roots:
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
        _check_widths(units)
        return ChannelGraph(units, ops, image, layer_unit, modules, inputs)


def _remap_op(op, remap):
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
        if isinstance(op, ConvOp):
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
