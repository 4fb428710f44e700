"""Split a network into a handful of ordered layer groups (input -> head).

Groups are defined by module-name prefixes (hand-written per family) or found
generically for Hugging Face models (the largest block list). Either way each
trainable parameter lands in exactly one group, so freezing by group is exact.
"""
from __future__ import annotations

import math

from torch import nn

from .base import LayerGroup


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def groups_from_params(net: nn.Module, assignment: list[tuple[str, list[str]]],
                       explicit_modules: dict[str, list[str]] | None = None) -> list[LayerGroup]:
    """Build groups from (group name, parameter names) pairs, in order.

    A module belongs to a group when all parameters below it do; parameter-free
    modules (activations, dropout) follow their nearest ancestor, so a group's
    `module_names` lists every BatchNorm and Dropout a freezer has to switch.
    """
    owner: dict[str, str] = {}
    for group, names in assignment:
        for n in names:
            if n in owner:
                raise AssertionError(f"parameter {n} is in groups {owner[n]} and {group}")
            owner[n] = group
    params = dict(net.named_parameters())
    missing = [n for n in params if n not in owner]
    if missing:
        raise AssertionError(f"parameters in no group: {missing[:5]}")
    # By identity, so a tied weight reached under a second name still finds its group.
    owner_of = {id(params[n]): g for n, g in owner.items()}

    module_group: dict[str, str | None] = {}
    for mname, module in net.named_modules():
        below = {owner_of[id(p)] for p in module.parameters()}
        if len(below) == 1:
            module_group[mname] = below.pop()
        elif below:
            module_group[mname] = None
        else:   # no parameters: inherit from the closest ancestor seen so far
            parent = mname.rpartition(".")[0] if "." in mname else ""
            module_group[mname] = module_group.get(parent) if mname else None
    explicit_modules = explicit_modules or {}
    for group, prefixes in explicit_modules.items():
        for mname in module_group:
            if mname and any(_under(mname, p) for p in prefixes):
                module_group[mname] = group

    groups = []
    for group, names in assignment:
        if not names:
            continue
        modules = [m for m, g in module_group.items() if g == group and m]
        groups.append(LayerGroup(group, list(names), modules, sum(params[n].numel() for n in names)))
    if not groups or groups[-1].name != "head":
        raise AssertionError("the last layer group must be the head")
    return groups


def groups_from_prefixes(net: nn.Module, spec: list[tuple[str, list[str]]]) -> list[LayerGroup]:
    """Groups given as (name, module prefixes); the first matching group wins a parameter."""
    assignment: dict[str, list[str]] = {name: [] for name, _ in spec}
    for pname, _ in net.named_parameters():
        for name, prefixes in spec:
            if any(_under(pname, p) for p in prefixes):
                assignment[name].append(pname)
                break
    return groups_from_params(net, list(assignment.items()), explicit_modules=dict(spec))


def chunk(items: list, max_chunks: int) -> list[list]:
    """Split `items` into at most `max_chunks` consecutive, nearly equal runs."""
    if not items:
        return []
    size = math.ceil(len(items) / max_chunks)
    return [items[i:i + size] for i in range(0, len(items), size)]


def block_stages(names: list[str], max_groups: int, label: str) -> list[tuple[str, list[str]]]:
    """Name consecutive chunks of block prefixes: layer0, layers2-3, ..."""
    out = []
    for part in chunk(names, max_groups):
        first, last = part[0].rpartition(".")[2], part[-1].rpartition(".")[2]
        out.append((f"{label}{first}" if first == last else f"{label}s{first}-{last}", part))
    return out


def largest_block_list(root: nn.Module, prefix: str = "") -> tuple[str, nn.ModuleList] | None:
    """The nn.ModuleList holding the most parameters (e.g. encoder.layer of a BERT)."""
    best, best_size = None, 0
    for name, module in root.named_modules(prefix=prefix):
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, module), size
    return best


def generic_groups(net: nn.Module, body_prefix: str, head_prefixes: list[str],
                   max_block_groups: int = 10) -> list[LayerGroup]:
    """Groups for a model whose backbone sits under `body_prefix`.

    embeddings = what comes before the main block list, blocks in up to
    `max_block_groups` chunks, neck = what follows the blocks (final norms),
    head = parameters under `head_prefixes`.
    """
    body = net.get_submodule(body_prefix) if body_prefix else net
    found = largest_block_list(body, prefix=body_prefix)
    pnames = [n for n, _ in net.named_parameters()]
    head = [n for n in pnames if any(_under(n, p) for p in head_prefixes)]
    rest = [n for n in pnames if n not in set(head)]
    if found is None:
        return groups_from_params(net, [("body", rest), ("head", head)], explicit_modules={"head": head_prefixes})
    list_name, blocks = found
    block_prefixes = [f"{list_name}.{i}" for i in range(len(blocks))]
    stages = block_stages(block_prefixes, max_block_groups, "layer")
    before: list[str] = []
    after: list[str] = []
    staged: dict[str, list[str]] = {name: [] for name, _ in stages}
    seen_blocks = False
    for n in rest:
        stage = next((s for s, prefixes in stages if any(_under(n, p) for p in prefixes)), None)
        if stage is not None:
            staged[stage].append(n)
            seen_blocks = True
        elif seen_blocks:
            after.append(n)
        else:
            before.append(n)
    assignment = [("embeddings", before)] + [(s, staged[s]) for s, _ in stages] + [("neck", after), ("head", head)]
    # Parameter-free head modules (a classifier's dropout) still belong to the head.
    return groups_from_params(net, assignment, explicit_modules={"head": head_prefixes})


def check_groups(net: nn.Module, groups: list[LayerGroup]) -> None:
    """Raise AssertionError unless every trainable parameter is in exactly one group and the head is last."""
    seen: dict[str, str] = {}
    for g in groups:
        for n in g.param_names:
            assert n not in seen, f"{n} in {seen[n]} and {g.name}"
            seen[n] = g.name
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable <= set(seen), f"parameters in no group: {sorted(trainable - set(seen))[:5]}"
    assert set(seen) <= {n for n, _ in net.named_parameters()}, "a group names a parameter the net lacks"
    assert groups[-1].name == "head", "the last group must be the head"
