"""Layer sweep: probe every layer of a frozen encoder (one feature pass), table + plot.

    rows = layer_sweep(encoder, data, out_dir="runs/probe/x")   # writes layer_sweep.csv/.png, result.json

Features come from ``toto_robot.encoders.features`` (float16 tokens of every layer, one forward per batch).
The paper's finding (Sec. 4.3) is that the best layer of a decoder-only model sits near the
middle of the stack; ``result.json`` records the best layer so an encoder can be built at it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from toto_robot.encoders.base import Encoder
from toto_robot.encoders.features import extract_tokens
from toto_robot.probes.datasets import ProbeData
from toto_robot.probes.probe import train_probe
from toto_robot.utils.plots import pyplot, save_figure
from toto_robot.utils.io import atomic_save_json, atomic_write_csv


def layer_sweep(encoder: Encoder, data: ProbeData, layers: list[int] | None = None, poolings=("attention", "average"),
                epochs: int = 60, lr: float = 1e-2, batch_size: int = 64, seed: int = 0, out_dir: str | Path | None = None) -> list[dict]:
    layers = list(range(1, encoder.num_layers + 1)) if layers is None else list(layers)
    tr = extract_tokens(encoder, data.x_train, layers, desc=f"{encoder.name} train features")
    va = extract_tokens(encoder, data.x_val, layers, desc=f"{encoder.name} val features")
    ytr, yva = torch.from_numpy(data.y_train), torch.from_numpy(data.y_val)
    rows = []
    for pooling in poolings:
        for l in tqdm(layers, desc=f"probe {pooling}", unit="layer", leave=False):
            res = train_probe(tr[l], ytr, va[l], yva, data.num_classes, pooling=pooling, epochs=epochs, lr=lr,
                              batch_size=batch_size, seed=seed)
            rows.append({"encoder": encoder.name, "dataset": data.name, "layer": l, "depth": l / encoder.num_layers,
                         "pooling": pooling, "train_acc": res.train_acc, "val_acc": res.val_acc,
                         "val_correct": res.val_correct})
    if out_dir is not None:
        write_sweep(rows, Path(out_dir), chance=data.chance())
    return rows


def best_row(rows: list[dict], pooling: str | None = None) -> dict:
    rows = [r for r in rows if pooling is None or r["pooling"] == pooling]
    return max(rows, key=lambda r: (r["val_acc"], -abs(r["depth"] - 0.5)))


def write_sweep(rows: list[dict], out: Path, chance: float | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items() if k != "val_correct"} for r in rows]  # per-item outcomes stay in memory / stage results
    atomic_write_csv(rows, out / "layer_sweep.csv")
    best = {p: best_row(rows, p) for p in sorted({r["pooling"] for r in rows})}
    atomic_save_json({"best": best, "chance": chance}, out / "result.json")
    plot_sweep(rows, out / "layer_sweep.png", chance)


def plot_sweep(rows: list[dict], path: Path, chance: float | None = None) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.0, 3.6), dpi=120)
    encoders = list(dict.fromkeys(r["encoder"] for r in rows))
    poolings = list(dict.fromkeys(r["pooling"] for r in rows))
    styles = ["-", "--", ":", "-."]
    for enc in encoders:  # one colour per encoder, one line style per pooling
        for k, pooling in enumerate(poolings):
            pts = sorted((r["depth"], r["val_acc"]) for r in rows if r["encoder"] == enc and r["pooling"] == pooling)
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=4, ls=styles[k % len(styles)], color=f"C{encoders.index(enc)}", label=f"{enc} / {pooling}")
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", label="majority class")
    ax.set_xlabel("relative depth of probed layer")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"probe by layer: {rows[0]['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path)
