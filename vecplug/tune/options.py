"""``vecplug tune``'s settings: what the user chose, and defaults that learn when they did not.

sentence-transformers' usual learning rate, 2e-5, suits a ~150M-parameter
model trained for many steps; a small model in a short run learns little
from it (64 wide, synthetic task, 10 epochs: recall@10 0.15 at 2e-5, 1.0 at 8.3e-4). The default here scales with the model's width (2e-5 at
ModernBERT-base's 768, more for narrower models, less for wider ones), and
epochs and batch size follow the number of pairs, so a few hundred pairs
get enough steps and a large set is not run ten times over.
"""
from __future__ import annotations

import dataclasses
import math

from ..errors import InvalidSettingError

BASE_LEARNING_RATE = 2e-5  # sentence-transformers' recommendation for a base-sized model
BASE_WIDTH = 768
TARGET_STEPS = 400  # roughly what the losses need to move a model; epochs are chosen to reach it
MAX_EPOCHS = 10
WARMUP_RATIO = 0.1  # sentence-transformers' documented default for these losses


@dataclasses.dataclass
class TuneOptions:
    """Every knob of a run; None means "choose from the data and the model" (see ``resolved``)."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    matryoshka: tuple[int, ...] | None = None
    hard_negatives: int = 0
    eval_fraction: float = 0.1
    seed: int = 0
    force: bool = False
    device: str | None = None

    def check(self) -> None:
        """Refuse impossible values before anything loads (InvalidSettingError, exit 2 in the CLI)."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidSettingError(f"{name} must be a positive integer, got {value!r}")
        if self.learning_rate is not None and not (0 < self.learning_rate < 1):
            raise InvalidSettingError(f"learning_rate must be between 0 and 1 (try 1e-4), got {self.learning_rate!r}")
        if not (0 < self.eval_fraction <= 0.5):
            raise InvalidSettingError(f"eval_fraction must be above 0 and at most 0.5, got {self.eval_fraction!r}")
        if not isinstance(self.hard_negatives, int) or self.hard_negatives < 0:
            raise InvalidSettingError(f"hard_negatives must be 0 or more, got {self.hard_negatives!r}")
        if self.matryoshka is not None and (not self.matryoshka or any(size < 1 for size in self.matryoshka)):
            raise InvalidSettingError(f"matryoshka must list positive sizes, got {self.matryoshka!r}")

    def resolved(self, train_pairs: int, width: int, model_sizes: tuple[int, ...]) -> "TuneOptions":
        """A copy with every None filled in for ``train_pairs`` pairs and a model ``width`` wide."""
        batch_size = self.batch_size or default_batch_size(train_pairs)
        matryoshka = tuple(sorted(set(self.matryoshka or model_sizes or (width,)), reverse=True))
        if matryoshka[0] > width:
            raise InvalidSettingError(f"matryoshka size {matryoshka[0]} is wider than the model ({width})")
        if width not in matryoshka:
            matryoshka = (width, *matryoshka)
        return dataclasses.replace(
            self, batch_size=batch_size, matryoshka=matryoshka,
            epochs=self.epochs or default_epochs(train_pairs, batch_size),
            learning_rate=self.learning_rate or default_learning_rate(width),
        )


def default_learning_rate(width: int) -> float:
    """2e-5 at width 768, scaled by (768 / width) ** 1.5: 8e-4 at 64, 6e-5 at 384, 1.3e-5 at 1024."""
    return float(f"{BASE_LEARNING_RATE * (BASE_WIDTH / width) ** 1.5:.2g}")


def default_batch_size(train_pairs: int) -> int:
    """A power of two from 16 to 128, about an eighth of the pairs: in-batch negatives want big batches."""
    return int(min(128, max(16, 2 ** int(math.log2(max(train_pairs // 8, 1))))))


def default_epochs(train_pairs: int, batch_size: int) -> int:
    """Enough passes for about ``TARGET_STEPS`` steps, 1 to 10."""
    steps_per_epoch = max(1, train_pairs // batch_size)
    return int(min(MAX_EPOCHS, max(1, math.ceil(TARGET_STEPS / steps_per_epoch))))


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"768,512,256"`` as (768, 512, 256); anything else is named."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidSettingError(f"--matryoshka takes sizes like 768,512,256, got {text!r}") from None
    if not sizes:
        raise InvalidSettingError(f"--matryoshka takes sizes like 768,512,256, got {text!r}")
    return sizes
