"""Jobs that orchestrate many runs: the benchmark table and the demo. They train through
`galaxalign.training`, read finished runs through `galaxalign.runs`, and score them through
`galaxalign.evaluation`; nothing below imports them."""

__all__ = ["run_benchmark", "run_demo"]


def __getattr__(name):
    # Imported when asked for, so the CLI can read the job configs without loading torch.
    if name == "run_benchmark":
        from galaxalign.jobs.benchmark import run_benchmark

        return run_benchmark
    if name == "run_demo":
        from galaxalign.jobs.demo import run_demo

        return run_demo
    raise AttributeError(name)
