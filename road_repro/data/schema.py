"""The unified example schema every loader maps onto.

Two shapes cover the paper's four task types:

* :class:`QAExample` -- extractive machine reading comprehension (MRC) with unanswerable questions
  (SQuAD 2.0 style). ``answers`` holds the gold spans; an unanswerable question has none.
* :class:`ClassificationExample` -- a sentence or sentence pair with an integer label (NLI,
  sentiment, paraphrase). The label order of each task is fixed in :data:`LABELS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from road_repro.data.unusable import UnusableRow
from road_repro.errors import DataError

#: Task types of paper Table 1, each with its own task-shared head in ROaD MTL.
TASK_TYPES = ("mrc", "nli", "sentiment", "paraphrase")

#: Fixed label order per classification task (index = class id). MNLI/SNLI follow the GLUE order.
LABELS: dict[str, tuple[str, ...]] = {
    "nli": ("entailment", "neutral", "contradiction"),
    "sentiment": ("1", "2", "3", "4", "5"),
    "paraphrase": ("not_duplicate", "duplicate"),
}


@dataclass(frozen=True)
class Answer:
    """A gold answer span: its text and the character offset where it starts in the context."""

    text: str
    start: int


@dataclass(frozen=True)
class QAExample:
    """One question over one context; no answers means unanswerable."""

    id: str
    context: str
    question: str
    answers: tuple[Answer, ...] = ()
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers

    def validate(self, where: str) -> "QAExample":
        """Raise :class:`DataError` naming ``where`` (file and row) if the example is inconsistent
        (:class:`UnusableRow` for an empty context or question, which the loaders skip and count)."""
        if not self.context.strip():
            raise UnusableRow(f"{where}: question {self.id!r} has an empty context", "empty context")
        if not self.question.strip():
            raise UnusableRow(f"{where}: question {self.id!r} is empty", "empty question")
        for a in self.answers:
            if a.start < 0 or self.context[a.start : a.start + len(a.text)] != a.text:
                found = self.context[max(a.start, 0) : max(a.start, 0) + len(a.text)]
                raise DataError(
                    f"{where}: question {self.id!r}: answer {a.text!r} is not at offset {a.start} "
                    f"of its context (found {found!r})"
                )
        return self


@dataclass(frozen=True)
class ClassificationExample:
    """A sentence (``text_b`` empty) or sentence pair with a class id in the task's :data:`LABELS`."""

    id: str
    text_a: str
    label: int
    text_b: str = ""
    task: str = field(default="nli")

    def validate(self, where: str) -> "ClassificationExample":
        """Raise :class:`DataError` naming ``where`` if the label is out of range, :class:`UnusableRow` if the
        text is empty (a row real releases contain, skipped by the loaders)."""
        if self.task not in LABELS:
            raise DataError(f"{where}: unknown classification task {self.task!r} (known: {sorted(LABELS)})")
        if not self.text_a.strip():
            raise UnusableRow(f"{where}: example {self.id!r} has an empty text", "empty text")
        n = len(LABELS[self.task])
        if not isinstance(self.label, int) or not 0 <= self.label < n:
            raise DataError(f"{where}: example {self.id!r}: label {self.label!r} is outside 0..{n - 1} for {self.task}")
        return self
