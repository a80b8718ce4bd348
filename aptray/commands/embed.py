"""``aptray embed INPUT --model M --out DIR``: sentences -> embeddings Parquet, counts as one JSON line."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aptray.config import Backend, Compose, Quantize, Source


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""

    @app.command()
    def embed(
        input: Annotated[str, typer.Argument(help="Templatize output folder (or a raw trace with --source).")],
        out: Annotated[str, typer.Option(help="Output folder (local or s3://).")],
        model: Annotated[str | None, typer.Option(help="minilm, mpnet or a local model directory.")] = None,
        cache: Annotated[str | None, typer.Option(help="Embedding cache folder (local or s3://).")] = None,
        actors: Annotated[int | None, typer.Option(help="Encoder actors.")] = None,
        gpus_per_actor: Annotated[float | None, typer.Option(help="GPUs per actor (>0 runs on CUDA).")] = None,
        backend: Annotated[Backend | None, typer.Option(
            help="Encoder backend: torch, onnx, openvino (exported once beside the model; extra embed-fast).")] = None,
        quantize: Annotated[Quantize | None, typer.Option(
            help="Exported numerics: none, int8 (ONNX, CPU), o4 (optimised fp16 ONNX, CUDA).")] = None,
        compose: Annotated[Compose | None, typer.Option(
            help="auto (default: ProcessAll prose sentences aspect by aspect), none (whole sentences) or aspects "
                 "(each aspect clause embedded on its own, the vectors side by side).")] = None,
        keep_warm: Annotated[float | None, typer.Option(
            help="Seconds the encoder actors stay loaded after the job for later jobs (0: they end with it).")] = None,
        source: Annotated[Source | None, typer.Option(help="Trace format of a raw INPUT.")] = None,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Embed each distinct sentence once; write OUT/embeddings and OUT/manifest.json."""
        from aptray.commands.common import emit, setup
        from aptray.embed.job import run_embed

        overrides = {"embed.model": model, "embed.cache": cache, "embed.actors": actors,
                     "embed.gpus_per_actor": gpus_per_actor, "embed.keep_warm_s": keep_warm,
                     "embed.backend": backend.value if backend else None,
                     "embed.quantize": quantize.value if quantize else None,
                     "embed.compose": compose.value if compose else None}
        cfg = setup(config, overrides)
        counts = run_embed(input, out, cfg, source=source.value if source else None)
        keys = ("rows", "quarantined", "distinct_sentences", "encoded", "cache_hits", "lines", "quarantine_reasons",
                "seconds")
        from aptray.commands.summary import embed_lines

        emit({k: counts[k] for k in keys if k in counts}, embed_lines(counts, out))

    @app.command("embed-cache-compact")
    def embed_cache_compact(
        cache: Annotated[str, typer.Argument(help="Embedding cache folder (local or s3://), as given to embed.")],
        model: Annotated[str | None, typer.Option(help="minilm, mpnet or a local model directory.")] = None,
        rows_per_shard: Annotated[int, typer.Option(help="Target rows per new shard.")] = 1_000_000,
        config: Annotated[str | None, typer.Option(help="YAML config.")] = None,
    ) -> None:
        """Rewrite one model's cache shards as a few large ones, one row per sentence (no embed job reading);
        its whole and its aspect-by-aspect vectors (embed.compose) each in their own folder."""
        from aptray.commands.common import emit, setup
        from aptray.embed.cache import EmbeddingCache
        from aptray.embed.registry import resolve
        from aptray.runtime import init_ray

        cfg = setup(config, {"embed.model": model})
        init_ray(cfg.ray)
        caches = {c: EmbeddingCache(cache, resolve(cfg.embed.model, cfg.embed.backend, cfg.embed.quantize, c))
                  for c in Compose if c is not Compose.AUTO}
        whole = caches.pop(Compose.NONE)
        result: dict[str, Any] = whole.compact(rows_per_shard)
        parts = [(whole.uri, result)]
        for c, composed in caches.items():  # each composition in its own folder
            if composed.shards():
                result[c.value] = composed.compact(rows_per_shard)
                parts.append((composed.uri, result[c.value]))
        emit(result, [f"{root}: {r['shards_before']} shard(s) of {r['rows_before']:,} rows -> {r['shards_after']} "
                      f"shard(s) of {r['rows_after']:,} rows" for root, r in parts])
