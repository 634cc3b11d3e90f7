"""Published per-class test F1 scores on the AHE dataset, shown as fixed comparison rows."""

from __future__ import annotations

from dataclasses import dataclass

from ml.reference import HRNET_W64_F1, PAPER_F1


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
    f1=PAPER_F1,
)

HRNET_W64 = ReferenceResult(
    key="hrnet-w64",
    label="Best public fine-tune: HRNet-W64",
    # NOTE: the publication behind these numbers is not recorded in this
    # repository; add it here when known.
    source="HRNet-W64 fine-tuned on AHE, from a publication not recorded here",
    f1=HRNET_W64_F1,
)

REFERENCES = (PAPER_RESNET, HRNET_W64)
