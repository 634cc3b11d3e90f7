"""Published per-class test F1 scores on the AHE dataset, shown as fixed comparison rows."""

from __future__ import annotations

from dataclasses import dataclass

AHE_CLASSES = (
    "altar",
    "apse",
    "bell_tower",
    "column",
    "dome(inner)",
    "dome(outer)",
    "flying_buttress",
    "gargoyle",
    "stained_glass",
    "vault",
)


@dataclass(frozen=True)
class ReferenceResult:
    key: str
    label: str
    source: str
    f1: dict[str, float]

    @property
    def macro_f1(self) -> float:
        return sum(self.f1.values()) / len(self.f1)


PAPER_RESNET = ReferenceResult(
    key="paper",
    label="Paper: ResNet",
    source=(
        "Llamas et al., Classification of Architectural Heritage Images Using Deep Learning "
        "Techniques, Applied Sciences 7(10):992, 2017"
    ),
    f1=dict(zip(AHE_CLASSES, (0.906, 0.874, 0.903, 0.953, 0.967, 0.937, 0.805, 0.923, 0.990, 0.925))),
)

HRNET_W64 = ReferenceResult(
    key="hrnet-w64",
    label="Best public fine-tune: HRNet-W64",
    # NOTE: the publication behind these numbers is not recorded in this
    # repository; add it here when known.
    source="Best public fine-tune on the AHE test set",
    f1=dict(zip(AHE_CLASSES, (0.937, 0.909, 0.944, 0.946, 0.949, 0.936, 0.940, 0.979, 0.966, 0.936))),
)

REFERENCES = (PAPER_RESNET, HRNET_W64)
