"""Where the network is cut: ``split(model, name)`` -> (head, tail).

The model is traced with torch.fx, the module ``name`` kept as one opaque
call, and the graph is partitioned:

* the **head** computes the named module's output and everything it
  depends on (its ancestors in the graph);
* the **tail** computes everything else;
* what **crosses** the cut is every value the head computes and the tail
  uses.  It is listed, in order, in ``head.crossing`` / ``tail.crossing``:
  the named module's output always comes first (kind ``"feature"``: this is
  what a bottleneck unit codes); further tensors the tail needs have kind
  ``"tensor"``; sizes read off head tensors (``x.shape[-2:]``) have kind
  ``"size"`` and are computed by the head when that saves sending the tensor
  (the receiver knows them from the deployment or from the codec header).

``head(x)`` returns the one crossing value itself when only one crosses and
a tuple otherwise; ``tail`` takes exactly what ``head`` returns, so
``tail(head(x))`` equals ``model(x)``.  Head and tail share their modules and
parameters with ``model``; nothing is copied.

What crosses at the split points of the papers' networks (Ahuja et al., CVPR 2023):

* torchvision ResNet-50 at ``layer4.2``, ``layer4.1``, ``layer4.0``,
  ``layer3.4`` (and any whole residual block or stage): the block's output
  only.  Residual connections live inside a block, so the cut after a block
  is a single tensor.
* DeepLabv3-ResNet50 at ``backbone.layer4.1`` or ``backbone.layer3.5``: the
  block's output and the input image's (H, W), which the tail needs for the
  final interpolation to the input size.  The tail returns the model's dict
  (``{"out": logits}``).
* DeepLabv3-ResNet50 at ``classifier.0.convs.1``: the ASPP is five parallel
  branches on one input, so cutting after one branch is not a single-tensor
  cut.  The definition here: the head computes everything up to and
  including that branch (the backbone, then branch 1); the tail computes the
  other four branches, the concatenation, the projection and the rest.  So
  three values cross: branch 1's output (256 channels, the feature the unit
  codes), the ASPP input (the backbone's 2048-channel output, which the
  other branches need; kind ``"tensor"``, not coded by the unit) and the
  input's (H, W).  A rate at this point that counts only the feature's bits
  leaves the ASPP input's cost out; ``split(..., single_tensor=True)``
  refuses such cuts instead.

Inside a residual block (``layer4.2.conv2``) the skip connection crosses as a
second tensor in the same way.

The model must be traceable by torch.fx (no control flow on tensor values);
the named module must be called exactly once in ``forward``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Dict, Iterable, List, Set, Tuple

import torch
from torch import fx, nn

FEATURE, TENSOR, SIZE = "feature", "tensor", "size"

# Reading these off a tensor gives metadata, not data: cheap to compute on
# either side of the cut, and sent as a few integers if it must cross.
_METADATA_ATTRS = frozenset({"shape", "dtype", "device", "ndim"})
_METADATA_METHODS = frozenset({"size", "dim"})


@dataclass(frozen=True)
class CrossingValue:
    """One value that crosses the cut.

    ``name`` is the fx node's name; ``kind`` is ``"feature"``, ``"tensor"``
    or ``"size"``; ``producer`` is the module that computes it (its dotted
    name), or the function/method name, or ``"input"``.
    """

    name: str
    kind: str
    producer: str


class _CutTracer(fx.Tracer):
    """The default tracer, with the cut module kept whole (one call_module node)."""

    def __init__(self, cut_name: str) -> None:
        super().__init__()
        self.cut_name = cut_name

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name == self.cut_name or super().is_leaf_module(module, qualified_name)


def split(model: nn.Module, name: str, *, single_tensor: bool = False) -> Tuple[fx.GraphModule, fx.GraphModule]:
    """Cuts ``model`` right after the module called ``name``: returns (head, tail).

    ``single_tensor=True`` raises ValueError unless the named module's output
    is the only tensor that crosses (sizes may still cross).
    See the module docstring for what crosses at the papers' split points.
    """
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        raise ValueError(f"{type(model).__name__} has no submodule {name!r}")
    graph = _CutTracer(name).trace(model)
    cut_node = _the_call_of(graph, name)
    head_nodes = _head_nodes(graph, cut_node)
    crossing = _crossing_nodes(graph, head_nodes, cut_node)
    description = tuple(_describe(node, cut_node) for node in crossing)
    extra_tensors = [d for d in description[1:] if d.kind == TENSOR]
    if single_tensor and extra_tensors:
        raise ValueError(f"cutting after {name!r} is not a single-tensor cut: the tail also needs "
                         + ", ".join(f"{d.name} (from {d.producer})" for d in extra_tensors))
    head = _build_head(model, graph, head_nodes, crossing)
    tail = _build_tail(model, graph, head_nodes, crossing)
    for part in (head, tail):  # plain attributes, not submodules or buffers
        setattr(part, "crossing", description)
        setattr(part, "cut_name", name)
    return head, tail


def _the_call_of(graph: fx.Graph, name: str) -> fx.Node:
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
    if len(calls) != 1:
        raise ValueError(f"module {name!r} is called {len(calls)} times in the traced forward; "
                         "a cut needs exactly one call")
    return calls[0]


def _inputs(node: fx.Node) -> List[fx.Node]:
    return list(node.all_input_nodes)


def _ancestors(node: fx.Node) -> Set[fx.Node]:
    seen: Set[fx.Node] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(_inputs(current))
    return seen


def _is_metadata(node: fx.Node, metadata: Set[fx.Node]) -> bool:
    if node.op == "call_function" and node.target is getattr and node.args[1] in _METADATA_ATTRS:
        return True
    if node.op == "call_method" and node.target in _METADATA_METHODS:
        return True
    return (node.op == "call_function" and node.target in (operator.getitem, len)
            and isinstance(node.args[0], fx.Node) and node.args[0] in metadata)


def _depends_on_input(graph: fx.Graph) -> Set[fx.Node]:
    """Nodes computed from the model's inputs (the rest, parameters and constants, are free)."""
    dependent: Set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(i in dependent for i in _inputs(node)):
            dependent.add(node)
    return dependent


def _head_nodes(graph: fx.Graph, cut_node: fx.Node) -> Set[fx.Node]:
    """The cut's ancestors, plus metadata of head tensors that would not cross otherwise."""
    dependent = _depends_on_input(graph)
    head = {n for n in _ancestors(cut_node) if n in dependent}
    head.update(n for n in graph.nodes if n.op == "placeholder")
    metadata: Set[fx.Node] = set()
    for node in graph.nodes:
        if _is_metadata(node, metadata):
            metadata.add(node)
    tensor_needs = {i for n in graph.nodes if n not in head and n.op != "output" and n not in metadata
                    for i in _inputs(n)}
    for node in graph.nodes:  # topological order, so chains like x.shape[-2:] move whole
        if node in metadata and node not in head:
            sources = [i for i in _inputs(node) if i in dependent]
            if sources and all(i in head for i in sources) and not any(
                    i in tensor_needs for i in sources if i not in metadata):
                head.add(node)
    return head


def _crossing_nodes(graph: fx.Graph, head: Set[fx.Node], cut_node: fx.Node) -> List[fx.Node]:
    dependent = _depends_on_input(graph)
    used = {i for n in graph.nodes if n not in head for i in _inputs(n) if i in head and i in dependent}
    used.discard(cut_node)
    return [cut_node] + [n for n in graph.nodes if n in used]


def _describe(node: fx.Node, cut_node: fx.Node) -> CrossingValue:
    if node is cut_node:
        kind = FEATURE
    elif node.op in ("call_function", "call_method") and (
            node.target is getattr or node.target in (operator.getitem, len) or node.target in _METADATA_METHODS):
        kind = SIZE
    else:
        kind = TENSOR
    return CrossingValue(node.name, kind, _producer(node))


def _producer(node: fx.Node) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "call_module":
        return str(node.target)
    if node.op == "call_function" and node.target in (getattr, operator.getitem, len):
        source = node.args[0]
        inner = _producer(source) if isinstance(source, fx.Node) else repr(source)
        what = f".{node.args[1]}" if node.target is getattr else f"[{_index_repr(node.args[1])}]"
        return f"{inner}{what}" if node.target is not len else f"len({inner})"
    return getattr(node.target, "__name__", str(node.target))


def _index_repr(index: object) -> str:
    if isinstance(index, slice):
        return ":".join("" if v is None else str(v) for v in (index.start, index.stop))
    return repr(index)


def _copy_free(graph: fx.Graph, node: fx.Node, env: Dict[fx.Node, fx.Node]) -> fx.Node:
    """Copies a parameter/constant node (and its free inputs) into ``graph`` on demand."""
    if node not in env:
        for i in _inputs(node):
            _copy_free(graph, i, env)
        env[node] = graph.node_copy(node, lambda n: env[n])
    return env[node]


def _build_head(model: nn.Module, graph: fx.Graph, head: Set[fx.Node],
                crossing: List[fx.Node]) -> fx.GraphModule:
    new = fx.Graph()
    env: Dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node in head:
            for i in _inputs(node):
                if i not in env:
                    _copy_free(new, i, env)
            env[node] = new.node_copy(node, lambda n: env[n])
    values = [env[n] for n in crossing]
    new.output(values[0] if len(values) == 1 else tuple(values))
    return fx.GraphModule(model, new, class_name=f"{type(model).__name__}Head")


def _build_tail(model: nn.Module, graph: fx.Graph, head: Set[fx.Node],
                crossing: List[fx.Node]) -> fx.GraphModule:
    new = fx.Graph()
    env: Dict[fx.Node, fx.Node] = {}
    received = new.placeholder("crossing")
    if len(crossing) == 1:
        env[crossing[0]] = received
    else:
        for index, node in enumerate(crossing):
            env[node] = new.call_function(operator.getitem, (received, index))
    for node in graph.nodes:
        if node in head or node.op == "output":
            continue
        for i in _inputs(node):
            if i not in env:
                _copy_free(new, i, env)
        env[node] = new.node_copy(node, lambda n: env[n])
    output = next(n for n in graph.nodes if n.op == "output")
    new.output(fx.node.map_arg(output.args[0], lambda n: env[n] if n in env else _copy_free(new, n, env)))
    return fx.GraphModule(model, new, class_name=f"{type(model).__name__}Tail")


def feature_of(crossing: object) -> torch.Tensor:
    """The feature (the named module's output) among what ``head`` returned."""
    return crossing[0] if isinstance(crossing, tuple) else crossing  # type: ignore[index,return-value]


def with_feature(crossing: object, feature: torch.Tensor) -> object:
    """What ``head`` returned, with the feature replaced (e.g. by a bottleneck's reconstruction)."""
    return (feature,) + crossing[1:] if isinstance(crossing, tuple) else feature  # type: ignore[index,operator]


def crossing_summary(crossing: Iterable[CrossingValue]) -> str:
    """One line per crossing value, for logs and error messages."""
    return "\n".join(f"{c.kind:8s} {c.name} (from {c.producer})" for c in crossing)


__all__ = ["CrossingValue", "crossing_summary", "feature_of", "split", "with_feature"]
