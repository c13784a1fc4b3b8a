"""One self-contained HTML report: every picture inline, no external files or scripts."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; color: #1d2230; background: #f6f7fb; }
header { background: #10131c; color: #f1f3f8; padding: 22px 36px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: #aab2c8; }
main { max-width: 1120px; margin: 0 auto; padding: 12px 28px 40px; }
section { background: white; border-radius: 10px; padding: 18px 22px; margin: 18px 0; box-shadow: 0 1px 3px #0001; }
h2 { font-size: 19px; margin: 0 0 10px; }
p.note { color: #566; font-size: 14px; margin: 6px 0 10px; }
img { max-width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 6px 12px; border-bottom: 1px solid #e3e6ee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.headline { font-size: 17px; }
.reading li { margin: 4px 0; }
code { background: #eef0f6; padding: 1px 5px; border-radius: 4px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[str] = field(default_factory=list)

    def add(self, heading: str, body: str, note: str = "") -> None:
        note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
        self.sections.append(f"<section><h2>{html.escape(heading)}</h2>{note_html}{body}</section>")

    def render(self) -> str:
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{html.escape(self.title)}</h1><p>{html.escape(self.subtitle)}</p></header>"
            f"<main>{''.join(self.sections)}</main></body></html>"
        )


def image(png: bytes, alt: str) -> str:
    return f'<img src="{data_uri(png)}" alt="{html.escape(alt)}">'


def table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bullet_list(items: list[str]) -> str:
    return '<ul class="reading">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
