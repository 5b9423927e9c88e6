"""Matplotlib without a display, and figures saved atomically as PNG."""
from __future__ import annotations

from pathlib import Path

from toto_robot.utils.io import atomic_write


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (headless machines, worker processes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Tight layout, write PNG through a temporary file, close the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return Path(path)
