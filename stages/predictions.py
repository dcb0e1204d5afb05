"""Stage `predictions`: every model's replies to every benchmark row (saved: re-scoring never regenerates).

Benchmarks are loaded with their images still base64; each model decodes and generates
`benchmark.batch_size` rows at a time through the item cache, which commits every finished batch: a
killed run resumes where it stopped, and a model whose replies are all cached is never loaded. Each
model is released (a vLLM engine shut down) before the next one loads.
"""

import time

from viper.config import load_stage_params
from viper.eval.models import evaluated_identity, evaluated_models
from viper.eval.registry import BENCHMARKS, check_files, load_checked
from viper.eval.run import PREDICTION_COLUMNS, image_digests, max_images, predict, prediction_file
from viper.models import load_vlm, vlm_metrics
from viper.stage import log, run, setup, write_metrics
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, write_table
from viper.synth.runner import StepStats


def main() -> None:
    args = setup("predictions", __doc__, ["data", "models", "cold_start", "stage1", "stage2", "out", "metrics"])
    p = load_stage_params("predictions")
    b = p.benchmark
    paths = check_files(args.data, b.suite, list(b.names))
    # Images stay base64 (`image_b64`) until their batch is generated; the raw cells are not needed.
    frames = {name: load_checked(path, name, b.suite, decode=False).drop(columns=["image", "image_path"],
                                                                        errors="ignore")
              for name, path in paths.items()}
    digests = {name: image_digests(df) for name, df in frames.items()}
    most_images = max_images(frames)
    request = {"min_pixels": b.min_pixels, "max_pixels": b.max_pixels, "dtype": p.models.dtype}
    cache = open_cache()
    metrics, failures = {}, []
    with atomic_dir(args.out) as out:
        for model, (path, revision) in evaluated_models(args.models, args.cold_start, args.stage1,
                                                        args.stage2).items():
            identity = {**evaluated_identity(args.models, model, path), "backend": b.backend}
            vlm = load_vlm(args.models, p.models, b.min_pixels, b.max_pixels, b.batch_size, b.backend, path,
                           revision, engine=p.vllm, max_images=most_images)
            start, per_bench = time.perf_counter(), {}
            try:
                for name, df in frames.items():
                    stats = StepStats(f"predictions/{model}/{name}")
                    replies, failed = predict(vlm, BENCHMARKS[name], df, b.max_new_tokens, cache=cache,
                                              model=identity, request=request, stats=stats,
                                              batch_size=b.batch_size, digests=digests[name])
                    failures += [(model, name, index, detail) for index, detail in failed]
                    rows = [{"index": i, "prediction": r} for i, r in replies.items()]
                    write_table(prediction_file(out, model, name), rows, PREDICTION_COLUMNS)
                    per_bench[name] = {"rows": len(df), "cache_hits": stats.cache_hits,
                                       "cache_misses": stats.cache_misses, "model_calls": stats.model_calls,
                                       "failed": len(failed)}
                served = vlm_metrics(vlm)  # backend, whether it loaded, load and engine-start seconds
            finally:
                vlm.release()  # before the next model loads: a vLLM engine holds GPU memory until shut down
            totals = ("rows", "cache_hits", "cache_misses", "model_calls", "failed")
            metrics[model] = {**{k: sum(m[k] for m in per_bench.values()) for k in totals},
                              "seconds": round(time.perf_counter() - start, 2), **served,
                              "max_images": most_images, "benchmarks": per_bench}
            log.info("%s: %s", model, {k: v for k, v in metrics[model].items() if k != "benchmarks"})
        if failures:  # every finished reply is cached: a rerun calls the model only for these rows
            shown = "\n".join(f"  {m} / {n} / row {i}: {d}" for m, n, i, d in failures[:10])
            raise SystemExit(f"predictions: the model call failed for {len(failures)} benchmark row(s) "
                             f"(in its batch and again alone):\n{shown}\nEvery other reply is cached; fix "
                             "the cause and rerun the stage, which generates only these rows.")
    # Totals over the models beside the per-model figures (what `viper status` shows for the stage).
    totals = {k: sum(m[k] for m in metrics.values()) for k in ("cache_hits", "cache_misses", "model_calls")}
    write_metrics(args.metrics, {**metrics, **totals})


if __name__ == "__main__":
    run(main)
