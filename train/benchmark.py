"""`toto-robot benchmark`: CortexBench's MetaWorld protocol on frozen encoders; table, plots, protocol (hydra entry point)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.policies.benchmark import BenchmarkConfig, run_benchmark
from toto_robot.utils.config import ConfigError


def encoder_specs(c: dict) -> dict[str, dict]:
    """The chosen labels' build specs; a spec still holding ``???`` names the override it needs."""
    labels = c["encoders"]
    if isinstance(labels, str):
        labels = [labels]
    unknown = [label for label in labels if label not in c["encoder_specs"]]
    if unknown:
        raise ConfigError(f"encoders {unknown} have no entry in encoder_specs (known: {', '.join(c['encoder_specs'])}); "
                          f"add one with +encoder_specs.<label>={{name: ..., checkpoint: ...}}")
    specs = {}
    for label in labels:
        spec = dict(c["encoder_specs"][label])
        missing = [k for k, v in spec.items() if v == "???"]
        if missing:
            raise ConfigError(f"encoder {label!r} needs {', '.join(f'encoder_specs.{label}.{k}=...' for k in missing)}")
        specs[label] = spec
    return specs


@hydra.main(config_path="pkg://toto_robot.configs", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True)
    out = run_benchmark(BenchmarkConfig(encoders=encoder_specs(c), out_dir=str(c["out_dir"]), suite=c["suite"], tasks=c["tasks"],
                                        fast=c["fast"], demos_dir=c["demos_dir"], camera=c["camera"], overrides=c["protocol"] or {},
                                        workers=c["workers"], eval_batch=c["eval_batch"]))
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
