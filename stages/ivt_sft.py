"""Stage `ivt_sft` (ivt/dvc.yaml): supervised fine-tuning of the base VLM on the teacher-corrected traces
(TRL's SFTTrainer, loss on the reply only; the same trainer as the ViPER cold start)."""

import io

import pandas as pd
from PIL import Image

from viper.config import load_stage_params
from viper.models import resolve
from viper.rl.cold_start import train_sft
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir


def main() -> None:
    args = setup("ivt_sft", __doc__, ["traces", "models", "out", "metrics"])
    p = load_stage_params("ivt_sft")
    table = pd.read_parquet(f"{args.traces}/traces.parquet")
    examples = [{"prompt": [{"role": "user", "content": r.prompt}],
                 "completion": [{"role": "assistant", "content": r.completion}],
                 "images": [Image.open(io.BytesIO(r.image)).convert("RGB")]} for r in table.itertuples()]
    base, _ = resolve(args.models, "vlm")
    with atomic_dir(args.out) as tmp:
        rows = train_sft(base, examples, tmp, p.ivt.sft, p.seed, p.models.device, p.models.dtype,
                         p.ivt.min_pixels, p.ivt.max_pixels)
    write_metrics(args.metrics, {"examples": len(examples), "steps": len(rows), "loss_first": rows[0]["loss"],
                                 "loss_last": rows[-1]["loss"], "init": base})


if __name__ == "__main__":
    run(main)
