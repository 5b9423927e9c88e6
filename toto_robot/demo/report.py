"""A run report written twice from one structure: ``report.md`` and a self-contained ``report.html``."""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from toto_robot.utils.io import atomic_write


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text, `code` allowed)
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (file, caption)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)  # (header, rows)


class Report:
    """Collects sections, then writes Markdown (figures linked) and HTML (figures embedded)."""

    def __init__(self, title: str, out_dir: str | Path):
        self.title = title
        self.out_dir = Path(out_dir)
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        s = Section(title)
        self.sections.append(s)
        return s

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for s in self.sections:
            lines += [f"## {s.title}", ""]
            for p in s.text:
                lines += [p, ""]
            for header, rows in s.tables:
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
                lines.append("")
            for path, caption in s.figures:
                rel = os.path.relpath(path, self.out_dir)
                lines += [f"![{caption}]({rel})", f"*{caption}*", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        def inline(text: str) -> str:
            parts = html.escape(text).split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        out = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
            "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px}"
            "img{max-width:100%}figcaption{font-style:italic;color:#555}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for s in self.sections:
            out.append(f"<h2>{html.escape(s.title)}</h2>")
            out += [f"<p>{inline(p)}</p>" for p in s.text]
            for header, rows in s.tables:
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
                out.append("</table>")
            for path, caption in s.figures:
                out.append(f"<figure>{_embed(Path(path), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self) -> tuple[Path, Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        md, page = self.out_dir / "report.md", self.out_dir / "report.html"
        with atomic_write(md, "w") as f:
            f.write(self.to_markdown())
        with atomic_write(page, "w") as f:
            f.write(self.to_html())
        return md, page


_MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".mp4": "video/mp4"}


def _embed(path: Path, caption: str) -> str:
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return f"<a href='{html.escape(str(path))}'>{html.escape(caption)}</a>"
    data = base64.b64encode(path.read_bytes()).decode()
    if mime == "video/mp4":
        return f"<video controls loop src='data:{mime};base64,{data}'></video>"
    return f"<img alt='{html.escape(caption)}' src='data:{mime};base64,{data}'>"
