"""Cutting a network between layer groups, for the frozen-prefix cache (feature_cache.py).

A net that can be cut has `prefix_cuts`: {cut: n}, where `cut` is the index of
a layer group (the first one that trains; groups[:cut] form the frozen prefix)
and `n` counts the net's own forward steps inside that prefix. Then
`forward_from(cut, prefix(cut, **batch))` computes exactly `net(**batch)`.
The head cut (cut = index of the head group) is not listed: it is
`head_logits(features(**batch))`, which every net with `supports_feature_split` has.
"""
from __future__ import annotations

from .base import LayerGroup


def step_cuts(groups: list[LayerGroup], step_modules: list[str]) -> dict[int, int]:
    """{cut: steps before it} for a forward that is a plain sequence of steps.

    `step_modules` names, per step in forward order, the module (as in
    net.named_modules()) whose group the step belongs to; a step of no group
    (a parameter-free activation) follows the step before it. A cut is clean
    when the groups come in order along the steps and every group below the
    head has a step, so the steps of groups[:cut] are exactly the first ones.
    """
    owner = {m: i for i, g in enumerate(groups) for m in g.module_names}
    head = len(groups) - 1
    seen: list[int] = []
    for module in step_modules:
        seen.append(owner.get(module, seen[-1] if seen else 0))
    if not seen or seen != sorted(seen) or set(seen) != set(range(head)):
        return {}
    return {cut: sum(1 for g in seen if g < cut) for cut in range(1, head)}
