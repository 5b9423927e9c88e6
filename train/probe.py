"""`toto-robot probe`: layer sweep of a frozen encoder with attention/average probes (hydra entry point).

    toto-robot probe encoder=toto encoder.checkpoint=runs/pretrain/<run>/final probe=sim_position
    toto-robot probe encoder=mvp_vit_b encoder.checkpoint=~/weights/mvp_vit_b.pth layers=[4,8,12]
    toto-robot probe encoder=toto encoder.checkpoint=... probe=davis probe.kwargs.root=~/data/DAVIS
    toto-robot probe encoder=toto encoder.checkpoint=... probe=ee_regression probe.kwargs.root=<demos> probe.kwargs.target=[16,17,18]

``probe=label_propagation`` / ``probe=davis`` print J with the copy-first-mask J beside it;
``probe=ee_regression`` prints ridge R^2 with the raw-pixel R^2 beside it.
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
    encoder = encoder_from_spec(OmegaConf.to_container(cfg.encoder, resolve=True, throw_on_missing=True)).to(cfg.device)
    kwargs = OmegaConf.to_container(cfg.probe.kwargs, resolve=True, throw_on_missing=True)
    if cfg.probe.dataset in ("label_propagation", "davis"):
        from toto_robot.probes.davis import davis_videos
        from toto_robot.probes.label_propagation import propagation_sweep, shapes_videos

        videos = shapes_videos(**kwargs) if cfg.probe.dataset == "label_propagation" else davis_videos(**kwargs)
        rows = propagation_sweep(encoder, videos, cfg.layers, out_dir=out)
        best = max(rows, key=lambda r: r["J&F"])
        print(f"{encoder.name}: best layer {best['layer']}/{encoder.num_layers} J {best['J']:.3f} F {best['F']:.3f} "
              f"(copy first mask J {best['copy_first_J']:.3f} F {best['copy_first_F']:.3f}, {len(videos)} clips); {out / 'label_propagation.png'}")
        if cfg.probe.dataset == "davis":
            write_davis_sequences(best, videos, kwargs, out / "davis_sequences.csv")
        return
    if cfg.probe.dataset == "ee_regression":
        from toto_robot.probes.regression import best_regression_row, regression_sweep
        from toto_robot.probes.robot_frames import robot_frames

        data = robot_frames(**kwargs)
        rows = regression_sweep(encoder, data, cfg.layers, poolings=tuple(cfg.probe.poolings), folds=cfg.probe.folds,
                                inner_folds=cfg.probe.inner_folds, out_dir=out)
        for pooling in cfg.probe.poolings:
            b = best_regression_row(rows, pooling)
            print(f"{encoder.name} {pooling}: best layer {b['layer']}/{encoder.num_layers} R^2 {b['r2']:.3f} "
                  f"(raw pixels {b['raw_pixels_r2']:.3f}, {len(data.frames)} frames, {len(set(data.groups.tolist()))} episodes)")
        print(f"regression sweep: {out / 'regression.png'}")
        return
    data = build_probe_data(cfg.probe.dataset, **kwargs)
    rows = layer_sweep(encoder, data, layers=cfg.layers, poolings=tuple(cfg.poolings), epochs=cfg.epochs, lr=cfg.lr,
                       batch_size=cfg.batch_size, seed=cfg.seed, out_dir=out)
    for pooling in cfg.poolings:
        b = best_row(rows, pooling)
        print(f"{encoder.name} {pooling}: best layer {b['layer']}/{encoder.num_layers} val_acc {b['val_acc']:.3f} (chance {data.chance():.3f})")
    print(f"layer sweep: {out / 'layer_sweep.png'}")


def write_davis_sequences(best: dict, videos, kwargs: dict, path: Path) -> None:
    """J and F of every sequence at the sweep's ``best`` layer, beside copying the first mask, and their mean."""
    from toto_robot.probes.davis import davis_sequences
    from toto_robot.probes.label_propagation import copy_first_j
    from toto_robot.utils.io import atomic_write_csv

    names = davis_sequences(**{k: kwargs[k] for k in ("root", "res", "split", "sequences", "max_sequences") if k in kwargs})
    floor = copy_first_j(videos)
    rows = [{"sequence": n, "frames": len(v[1]), "objects": int(v[1].max()), "J": j, "F": f, "copy_first_J": cj, "copy_first_F": cf}
            for n, v, j, f, cj, cf in zip(names, videos, best["per_video"], best["per_video_F"], floor["per_video"], floor["per_video_F"])]
    rows.append({"sequence": "mean", "frames": sum(len(v[1]) for v in videos), "objects": "", "J": best["J"], "F": best["F"],
                 "copy_first_J": floor["J"], "copy_first_F": floor["F"]})
    atomic_write_csv(rows, path)
    for r in rows:
        print(f"  {r['sequence']:<24} J {r['J']:.3f} F {r['F']:.3f}   copy first mask J {r['copy_first_J']:.3f} F {r['copy_first_F']:.3f}")


if __name__ == "__main__":
    main()
