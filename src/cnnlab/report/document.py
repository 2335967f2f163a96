"""A report as a list of blocks, rendered twice: Markdown beside its images, and one
self-contained HTML file (images embedded as base64 data URIs, inline CSS, nothing loaded
from anywhere else), so both always say the same thing.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class TableBlock:
    headers: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)  # right-aligned columns
    caption: str = ""


@dataclass
class Image:
    path: Path  # a PNG; Markdown links it relative to the report, HTML embeds it
    alt: str
    caption: str = ""


Block = Union[Heading, Paragraph, Bullets, Code, TableBlock, Image]

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: 0.8rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 0.85rem; }
caption { caption-side: bottom; text-align: left; color: #57606a; font-size: 0.85rem; }
"""


def render_markdown(title: str, blocks: Sequence[Block], base_dir: Path) -> str:
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * (block.level + 1) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Code):
            out += [f"```{block.language}", block.text.rstrip("\n"), "```", ""]
        elif isinstance(block, TableBlock):
            out += [markdown_table(block), ""]
        elif isinstance(block, Image):
            target = _relative(block.path, base_dir)
            out += [f"![{block.alt}]({target})", ""]
            if block.caption:
                out += [f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def markdown_table(block: TableBlock) -> str:
    """A table block as a Markdown table (numeric columns right-aligned), caption below."""
    lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
             "| " + " | ".join("---:" if i in block.numeric else "---"
                               for i in range(len(block.headers))) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
    if block.caption:
        lines += ["", block.caption]
    return "\n".join(lines)


def render_html(title: str, blocks: Sequence[Block], *, head_extra: str = "",
                body_extra: str = "") -> str:
    esc = html.escape
    parts = [f"<h1>{esc(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(block.level + 1, 6)
            parts.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Code):
            parts.append(f"<pre><code>{esc(block.text)}</code></pre>")
        elif isinstance(block, TableBlock):
            parts.append(html_table(block.headers, block.rows, block.numeric, block.caption))
        elif isinstance(block, Image):
            parts.append(html_figure(block.path, block.alt, block.caption))
    return page(title, "\n".join(parts), head_extra=head_extra, body_extra=body_extra)


def page(title: str, body: str, *, head_extra: str = "", body_extra: str = "") -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            # No network: the page may load nothing but what it carries.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n{head_extra}</head>\n"
            f"<body>\n{body}\n{body_extra}</body>\n</html>\n")


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] = frozenset(),
               caption: str = "", attrs: str = "") -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    num = ' class="num"'
    body = "".join(
        "<tr>" + "".join(f"<td{num if i in numeric else ''}>{esc(str(c))}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table{attrs}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_figure(path: Path, alt: str, caption: str = "") -> str:
    esc = html.escape
    if not Path(path).is_file():
        return f"<p><em>{esc(alt)}: {esc(Path(path).name)} is missing.</em></p>"
    src = data_uri(Path(path).read_bytes())
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img src=\"{src}\" alt=\"{esc(alt)}\">{cap}</figure>"


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _relative(path: Path, base_dir: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(base_dir).resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()
