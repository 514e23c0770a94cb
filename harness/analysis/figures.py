"""Writing a report's figures: laid out, published atomically, freed."""

from __future__ import annotations

from pathlib import Path

from harness.checkpoints.atomic import atomic_write, atomic_write_bytes


def save_figure(fig, path: Path) -> Path:
    """Lay out `fig`, write it as a PNG at `path` through a temporary file, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return path


def save_text(path: Path, text: str) -> Path:
    """Publish a report's text file atomically."""
    atomic_write_bytes(Path(path), text.encode())
    return Path(path)
