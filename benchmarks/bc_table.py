"""Success tables from finished ``toto-robot compare`` runs: each row is one encoder of one comparison folder, every row is
scored on the same seeded evaluation episodes, so rows are compared pairwise (exact McNemar) against a reference row.

    python benchmarks/bc_table.py toto=runs/four/two_cameras:toto random=runs/four/two_cameras:random \\
        mae=runs/four/two_cameras:mae "one camera=runs/four/one_camera:toto" --reference toto
    python benchmarks/bc_table.py toto=runs/four/grid_lr5e4:toto,runs/four_ps1/grid_lr5e4:toto \\
        random=runs/four/grid_lr5e4:random,runs/four_ps1/grid_lr5e4:random     # one row over several runs (pipeline seeds)

For each task, and pooled over the tasks: successes / episodes over every seed, the 95% Wilson interval, the spread of the
per-seed rates, and the reference minus the row with the episodes only one of them solved and the exact two-sided McNemar
p-value. A row may join several runs (``FOLDER:ENCODER,FOLDER:ENCODER``, e.g. one per pipeline seed): their episodes
are pooled in the order given, so rows joining runs of the same evaluation episodes in the same order pair up.
``FOLDER:ENCODER@TASK+TASK`` takes only those tasks of a run (e.g. the cabinets of a four-task compare whose picks another
run of the row holds). Rows missing a task are left blank there; the pooled column uses the tasks every row has. ``--markdown`` prints
a markdown table instead; ``--json`` writes everything.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from toto_robot.utils.stats import mcnemar_exact, wilson_interval


def outcomes(folder: Path, encoder: str) -> dict[str, dict[int, list[int]]]:
    """{task: {seed: per-episode success}} of one encoder's finished runs in a compare folder."""
    out: dict[str, dict[int, list[int]]] = {}
    for ev in sorted((folder / "runs").glob(f"*/{encoder}/seed*/eval.json")):
        task, seed = ev.parts[-4], int(ev.parts[-2][len("seed"):])
        out.setdefault(task, {})[seed] = json.loads(ev.read_text())["per_episode"]
    if not out:
        raise SystemExit(f"{folder}: no finished runs of encoder {encoder!r} (runs/<task>/{encoder}/seed*/eval.json)")
    return out


def joined_outcomes(sources: str) -> dict[str, dict[tuple[int, int], list[int]]]:
    """``FOLDER:ENCODER[@TASK+TASK][,...]`` -> {task: {(run, seed): per-episode success}}, the runs in the order given."""
    out: dict[str, dict] = {}
    for k, where in enumerate(sources.split(",")):
        folder, _, encoder = where.rpartition(":")
        encoder, _, only = encoder.partition("@")
        found = outcomes(Path(folder), encoder)
        tasks = only.split("+") if only else sorted(found)
        if missing := [t for t in tasks if t not in found]:
            raise SystemExit(f"{folder}: encoder {encoder!r} has no finished runs of {', '.join(missing)} (it has {', '.join(sorted(found))})")
        for task in tasks:
            out.setdefault(task, {}).update({(k, seed): v for seed, v in found[task].items()})
    return out


def cell(per_seed: dict) -> dict:
    flat = [x for s in sorted(per_seed) for x in per_seed[s]]
    k, n = int(sum(flat)), len(flat)
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n, "ci": [lo, hi], "seed_std": float(np.std([np.mean(v) for v in per_seed.values()])),
            "seeds": sorted(per_seed), "flat": flat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="+", help="LABEL=FOLDER:ENCODER[,FOLDER:ENCODER...]")
    ap.add_argument("--reference", help="the row every other is tested against (default: the first)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    rows = {}
    for spec in args.rows:
        label, _, where = spec.partition("=")
        rows[label] = {t: cell(v) for t, v in joined_outcomes(where).items()}
    ref = args.reference or next(iter(rows))
    if ref not in rows:
        raise SystemExit(f"--reference {ref!r} is not a row ({', '.join(rows)})")
    tasks = sorted({t for r in rows.values() for t in r})
    common = [t for t in tasks if all(t in r for r in rows.values())]
    common = common if len(common) > 1 else []  # one task: nothing to pool
    for r in rows.values():
        if common:
            r["pooled"] = cell({(i, 0): r[t]["flat"] for i, t in enumerate(common)})
    cols = tasks + (["pooled"] if common else [])
    for label, r in rows.items():  # paired against the reference on the same episodes
        for c in cols:
            if c in r and c in rows[ref] and label != ref and rows[ref][c]["seeds"] == r[c]["seeds"] and rows[ref][c]["n"] == r[c]["n"]:
                r[c]["vs_ref"] = mcnemar_exact(rows[ref][c]["flat"], r[c]["flat"])

    def fmt(c: dict | None) -> str:
        if c is None:
            return ""
        s = f"{c['k']}/{c['n']} = {c['rate']:.0%} [{c['ci'][0]:.0%}, {c['ci'][1]:.0%}]"
        if "vs_ref" in c:
            m = c["vs_ref"]
            s += f" ({ref} {m['a_only']}:{m['b_only']}, p={m['p']:.2g})"
        return s

    if args.markdown:
        print("| row | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for label, r in rows.items():
            print(f"| {label} | " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    else:
        for label, r in rows.items():
            print(f"{label}:")
            for c in cols:
                if c in r:
                    print(f"  {c:16} {fmt(r[c])}  seed std {r[c]['seed_std']:.2f}")
    print(f"successes / episodes over every seed, 95% Wilson interval; ({ref} a:b, p): episodes only {ref} solved : only the row "
          f"solved, exact two-sided McNemar on the same seeded episodes" + (f"; pooled over {', '.join(common)}" if common else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({k: {c: {kk: vv for kk, vv in v.items() if kk != "flat"} for c, v in r.items()}
                                               for k, r in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
