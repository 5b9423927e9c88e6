"""`toto-robot probe`: layer sweep of a frozen encoder with attention/average probes (hydra entry point).

    toto-robot probe encoder=toto encoder.checkpoint=runs/pretrain/<run>/final probe=sim_position
    toto-robot probe encoder=mvp_vit_b encoder.checkpoint=~/weights/mvp_vit_b.pth layers=[4,8,12]
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toto_robot.encoders import encoder_from_spec
from toto_robot.probes import best_row, build_probe_data, layer_sweep
from toto_robot.utils.io import atomic_write


@hydra.main(config_path="pkg://toto_robot.configs", config_name="probe", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.yaml", "w") as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    encoder = encoder_from_spec(OmegaConf.to_container(cfg.encoder, resolve=True)).to(cfg.device)
    if cfg.probe.dataset == "label_propagation":
        from toto_robot.probes.label_propagation import propagation_sweep, shapes_videos

        rows = propagation_sweep(encoder, shapes_videos(**cfg.probe.kwargs), cfg.layers, out_dir=out)
        best = max(rows, key=lambda r: r["J"])
        print(f"{encoder.name}: best layer {best['layer']}/{encoder.num_layers} J {best['J']:.3f}; {out / 'label_propagation.png'}")
        return
    data = build_probe_data(cfg.probe.dataset, **cfg.probe.kwargs)
    rows = layer_sweep(encoder, data, layers=cfg.layers, poolings=tuple(cfg.poolings), epochs=cfg.epochs, lr=cfg.lr,
                       batch_size=cfg.batch_size, seed=cfg.seed, out_dir=out)
    for pooling in cfg.poolings:
        b = best_row(rows, pooling)
        print(f"{encoder.name} {pooling}: best layer {b['layer']}/{encoder.num_layers} val_acc {b['val_acc']:.3f} (chance {data.chance():.3f})")
    print(f"layer sweep: {out / 'layer_sweep.png'}")


if __name__ == "__main__":
    main()
