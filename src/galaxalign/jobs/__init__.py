"""Jobs that orchestrate many runs or much data: the benchmark table, the demo, and embedding a
survey catalogue shard by shard. They train through
`galaxalign.training`, read finished runs through `galaxalign.runs`, and score them through
`galaxalign.evaluation`; nothing below imports them."""

__all__ = ["EmbedConfig", "embed_catalogue", "run_benchmark", "run_demo"]


def __getattr__(name):
    # Imported when asked for, so the CLI can read the job configs without loading torch.
    if name == "run_benchmark":
        from galaxalign.jobs.benchmark import run_benchmark

        return run_benchmark
    if name == "run_demo":
        from galaxalign.jobs.demo import run_demo

        return run_demo
    if name in ("embed_catalogue", "EmbedConfig"):
        from galaxalign.jobs import embed

        return getattr(embed, name)
    raise AttributeError(name)
