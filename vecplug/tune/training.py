"""Train with sentence-transformers: CachedMultipleNegativesRankingLoss inside MatryoshkaLoss.

The settings follow sentence-transformers' documentation for these losses:
the no-duplicates batch sampler (a repeated text in a batch would be a
false negative), 10% warmup, the model's own query/document prompts on the
columns they belong to, bf16 where the GPU has it. Every file the trainer
writes goes under ``work``, a folder inside the run's staging folder:
nothing lands in the working directory (``trainer_output``).
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from .options import WARMUP_RATIO
from .pairs import Pair

MINI_BATCH = 16  # CachedMNRL's forward chunk: memory stays flat whatever the batch size


def train(base_directory: Path, prompts: dict, max_tokens: int, pairs: list[Pair], negatives, options,
          work: Path, save_to: Path, quiet: bool = False) -> None:
    """Fine-tune the model in ``base_directory`` on ``pairs`` and save it, in sentence-transformers' layout, to ``save_to``."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    try:  # sentence-transformers 6 moved these; 5 has them here
        from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss, MatryoshkaLoss
        from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    except ImportError:
        from sentence_transformers.losses import CachedMultipleNegativesRankingLoss, MatryoshkaLoss
        from sentence_transformers.training_args import BatchSamplers

    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bars = not quiet and sys.stderr.isatty()
    with no_progress_bars(not bars):
        model = SentenceTransformer(str(base_directory), device=device)
    model.prompts = {name: prompt for name, prompt in prompts.items() if prompt}  # saved with the model
    model.max_seq_length = max_tokens
    columns = {"query": [pair.query for pair in pairs], "positive": [pair.positive for pair in pairs]}
    document_columns = ["positive"]
    extra = [[pair.negative] if pair.negative is not None else [] for pair in pairs]
    if negatives:
        extra = [own + mined for own, mined in zip(extra, negatives)]
    for index in range(len(extra[0]) if extra else 0):
        name = f"negative_{index + 1}"
        columns[name] = [row[index] for row in extra]
        document_columns.append(name)
    column_prompts = {"query": prompts.get("query", "")}
    column_prompts.update({name: prompts.get("document", "") for name in document_columns})
    loss = MatryoshkaLoss(model, CachedMultipleNegativesRankingLoss(model, mini_batch_size=MINI_BATCH),
                          matryoshka_dims=list(options.matryoshka))
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    arguments = Arguments(
        output_dir=str(work), num_train_epochs=options.epochs, per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate, **warmup(), bf16=bf16,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts={name: prompt for name, prompt in column_prompts.items() if prompt} or None,
        seed=options.seed, data_seed=options.seed, save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=not bars, use_cpu=device == "cpu", dataloader_drop_last=False,
    )
    with no_progress_bars(not bars):  # the trainer computes model-card examples as it starts, with a bar
        trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=Dataset.from_dict(columns),
                                             loss=loss)
    if arguments.disable_tqdm:  # no terminal: no loss lines either
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    # stdout is the command's (--json): the trainer's lines go aside
    with contextlib.redirect_stdout(sys.stderr), no_progress_bars(not bars):
        trainer.train()
        # No model card: sentence-transformers' would quote the user's own pairs (a folder
        # shared or pushed to a hub would leak them); vecplug_tune.json records the run instead.
        model.save(str(save_to), create_model_card=False)


@contextlib.contextmanager
def no_progress_bars(active: bool):
    """No loading/saving/model-card bars from transformers and sentence-transformers (no terminal, or --quiet)."""
    if not active:
        yield
        return
    import os

    from transformers.utils import logging

    before = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch: sentence-transformers' model card bar
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.enable_progress_bar()
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def warmup() -> dict:
    """10% warmup, spelled as the installed transformers wants it (5 took ``warmup_ratio``'s job into ``warmup_steps``)."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"warmup_steps": WARMUP_RATIO}
    return {"warmup_ratio": WARMUP_RATIO}
