"""The running counts of a robustness sweep: correct answers per (model, perturbation,
strength), split by class, what each model predicted, and how many items of each class were
seen. They give the rows, the per-class accuracies, the majority-class and chance baselines,
and the collapsed-model check (a model that answers one class for nearly every item).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from modfuse import distributed as dist_utils
from modfuse.robustness.sanity.flags import COLLAPSE_SHARE, Flag

#: A point of the sweep: (model name, perturbation name, strength).
Point = tuple[str, str, float]


class Tally:
    """Counts of a sweep, added batch by batch and summed over ranks.

    Args:
        points: Every (model, perturbation, strength) the sweep scores.
        num_classes: The number of classes (the widest model's logits).

    Examples:
        >>> t = Tally([("m", "clean", 0.0)], num_classes=3)
        >>> t.count_labels(torch.tensor([0, 0, 2]))
        >>> t.add(("m", "clean", 0.0), torch.tensor([0, 0, 2]), torch.tensor([0, 1, 0]))
        tensor([ True, False, False])
        >>> t.correct[("m", "clean", 0.0)], t.per_class[("m", "clean", 0.0)], t.labels
        (1, [1, 0, 0], [2, 0, 1])
    """

    def __init__(self, points: Iterable[Point], num_classes: int) -> None:
        self.num_classes = num_classes
        self.points = list(points)
        self.correct = {p: 0 for p in self.points}
        self.per_class = {p: [0] * num_classes for p in self.points}
        self.predicted = {p: [0] * num_classes for p in self.points}
        self.labels = [0] * num_classes
        self.total = 0

    def count_labels(self, labels: torch.Tensor) -> None:
        """Count one batch's labels (once per batch, whatever the number of points)."""
        self.total += len(labels)
        counts = torch.bincount(labels.detach().cpu(), minlength=self.num_classes)
        self.labels = [a + int(b) for a, b in zip(self.labels, counts.tolist())]

    def add(self, point: Point, labels: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """Count one batch's answers at ``point``; returns which items were right (B,)."""
        right = predicted == labels
        self.correct[point] += int(right.sum())
        k = self.num_classes
        by_class = torch.bincount(labels[right].detach().cpu(), minlength=k).tolist()
        answers = torch.bincount(predicted.detach().cpu(), minlength=k).tolist()
        self.per_class[point] = [a + b for a, b in zip(self.per_class[point], by_class)]
        self.predicted[point] = [a + b for a, b in zip(self.predicted[point], answers)]
        return right

    # ------------------------------------------------------------------ files and ranks
    def state(self) -> dict[str, Any]:
        """A JSON-able copy of the counts (the resume file's content)."""
        return {
            "total": self.total,
            "labels": self.labels,
            "points": [
                [list(p), self.correct[p], self.per_class[p], self.predicted[p]]
                for p in self.points
            ],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Counts saved by :meth:`state` (of a sweep with the same points and classes)."""
        self.total = int(state["total"])
        self.labels = [int(v) for v in state["labels"]]
        for (n, p, v), c, per_class, predicted in state["points"]:
            point = (n, p, float(v))
            self.correct[point] = int(c)
            self.per_class[point] = [int(x) for x in per_class]
            self.predicted[point] = [int(x) for x in predicted]

    def all_reduce(self) -> None:
        """Sum every count over the ranks of a torchrun evaluation (no-op in one process)."""
        flat = [self.total, *self.labels]
        for p in self.points:
            flat += [self.correct[p], *self.per_class[p], *self.predicted[p]]
        summed = dist_utils.all_reduce_sum(torch.tensor(flat, dtype=torch.long)).tolist()
        k = self.num_classes
        self.total, self.labels = summed[0], summed[1 : 1 + k]
        at = 1 + k
        for p in self.points:
            self.correct[p] = summed[at]
            self.per_class[p] = summed[at + 1 : at + 1 + k]
            self.predicted[p] = summed[at + 1 + k : at + 1 + 2 * k]
            at += 1 + 2 * k

    # ------------------------------------------------------------------ what reports read
    def baselines(self) -> dict[str, Any]:
        """The majority-class and uniform-chance accuracies on the items seen.

        Examples:
            >>> t = Tally([], num_classes=4)
            >>> t.count_labels(torch.tensor([1, 1, 1, 2]))
            >>> t.baselines()
            {'n': 4, 'classes': 4, 'majority': 0.75, 'majority_class': 1, 'chance': 0.25}
        """
        return class_baselines(self.labels)

    def per_class_rows(self) -> list[dict[str, Any]]:
        """Per point and class: correct answers, items of that class, accuracy (None for a
        class with no items) and how many items the model assigned to the class."""
        out = []
        for n, p, v in self.points:
            per_class = self.per_class[(n, p, v)]
            predicted = self.predicted[(n, p, v)]
            out.append(
                {
                    "model": n,
                    "perturbation": p,
                    "strength": v,
                    "correct": per_class,
                    "n": list(self.labels),
                    "accuracy": [c / t if t else None for c, t in zip(per_class, self.labels)],
                    "predicted": predicted,
                }
            )
        return out


def class_baselines(labels: list[int]) -> dict[str, Any]:
    """Majority-class and uniform-chance accuracy for items with these class counts.

    Examples:
        >>> class_baselines([3, 1])
        {'n': 4, 'classes': 2, 'majority': 0.75, 'majority_class': 0, 'chance': 0.5}
    """
    n = sum(labels)
    k = len(labels)
    top = max(range(k), key=lambda i: labels[i]) if k else None
    return {
        "n": n,
        "classes": k,
        "majority": labels[top] / n if n and top is not None else float("nan"),
        "majority_class": top,
        "chance": 1 / k if k else float("nan"),
    }


def collapse_flags(tally: Tally, models: Iterable[str]) -> tuple[list[Flag], tuple[bool, str]]:
    """Flag each model that gave one class to more than :data:`COLLAPSE_SHARE` of the clean
    items (with the coverage :func:`modfuse.robustness.sanity.rows.check_statuses` reads).

    Examples:
        >>> t = Tally([("m", "clean", 0.0)], num_classes=2)
        >>> y = torch.tensor([0] * 7 + [1] * 3)
        >>> t.count_labels(y)
        >>> _ = t.add(("m", "clean", 0.0), y, torch.zeros(10, dtype=torch.long))
        >>> flags, _ = collapse_flags(t, ["m"])
        >>> flags[0].detail
        'class 0 for 10 of 10 clean items (100%); majority baseline 0.700, clean accuracy 0.700'
    """
    models = list(models)
    if tally.total == 0:
        return [], (False, "no item was evaluated")
    flags = []
    majority = tally.baselines()["majority"]
    for name in models:
        answers = tally.predicted[(name, "clean", 0.0)]
        top = max(range(len(answers)), key=lambda i: answers[i])
        share = answers[top] / tally.total
        if share > COLLAPSE_SHARE:
            acc = tally.correct[(name, "clean", 0.0)] / tally.total
            detail = (
                f"class {top} for {answers[top]} of {tally.total} clean items ({share:.0%}); "
                f"majority baseline {majority:.3f}, clean accuracy {acc:.3f}"
            )
            flags.append(Flag("single_class_predictions", name, detail))
    what = f"{len(models)} model(s): the classes of their {tally.total} clean answers"
    return flags, (True, what)
