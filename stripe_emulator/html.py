"""Page scaffolding for the hosted pages and the emulator's own page: one inline stylesheet,
no external assets, no JavaScript."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

STYLES = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Ubuntu,sans-serif;
  color:#1a1a1a;background:#fff;font-size:14px;line-height:1.4}
a{color:#0074d4;text-decoration:none}a:hover{text-decoration:underline}
.App{display:flex;min-height:100vh}
.App-Overview{flex:1 1 50%;display:flex;justify-content:flex-end;padding:48px 64px 48px 32px;
  background:#fff}
.App-Payment{flex:1 1 50%;display:flex;justify-content:flex-start;padding:48px 32px 48px 64px;
  box-shadow:-15px 0 30px -22px rgba(0,0,0,.25);background:#fff}
.App-Column{width:100%;max-width:380px}
.Header{display:flex;align-items:center;gap:10px;margin-bottom:32px}
.Header-backLink{color:#1a1a1a;font-size:15px;display:inline-flex;align-items:center;gap:8px}
.Header-backArrow{font-size:18px;color:#6b7280}
.Header-business{font-weight:500;font-size:15px}
.TestModeBadge{background:#ffde92;color:#983705;font-size:11px;font-weight:700;text-transform:uppercase;
  padding:2px 6px;border-radius:4px;letter-spacing:.02em}
.ProductSummary-label{color:#6b7280;font-size:16px;font-weight:500;margin:0 0 4px}
.ProductSummary-total{font-size:36px;font-weight:600;letter-spacing:-.02em;margin:0 0 32px}
.OrderLines{list-style:none;margin:0;padding:0}
.OrderLine{display:flex;justify-content:space-between;gap:16px;padding:12px 0}
.OrderLine-name{font-weight:500}.OrderLine-detail{color:#6b7280;font-size:13px}
.OrderLine-description{color:#6b7280;font-size:13px;margin-top:2px}
.OrderLine-amount{font-weight:500;white-space:nowrap}
.Totals{border-top:1px solid #e6e6e6;margin-top:12px}
.Totals-row{display:flex;justify-content:space-between;padding:10px 0}
.Totals-row--discount{color:#0a7d48}
.Totals-row--total{border-top:1px solid #e6e6e6;font-weight:600}
.Section{margin-bottom:24px}
.Section-title{font-size:16px;font-weight:600;margin:0 0 12px}
.Field{margin-bottom:16px}
.Field label,.Field-label{display:block;color:#4b5563;font-size:13px;margin-bottom:6px}
.Input{width:100%;font:inherit;font-size:16px;padding:10px 12px;border:1px solid #d1d5db;border-radius:6px;
  box-shadow:0 1px 1px rgba(0,0,0,.03);background:#fff;color:#1a1a1a}
.Input:focus{outline:none;border-color:#0074d4;box-shadow:0 0 0 3px rgba(0,116,212,.2)}
.Input[readonly]{background:#f6f8fa;color:#4b5563}
.Input--invalid{border-color:#df1b41;color:#df1b41}
.CardGroup .Input{border-radius:0}
.CardGroup .Input:first-child{border-radius:6px 6px 0 0}
.CardGroup-row{display:flex}.CardGroup-row .Input{flex:1;margin-top:-1px}
.CardGroup-row .Input:first-child{border-radius:0 0 0 6px}.CardGroup-row .Input:last-child{border-radius:0 0 6px 0;margin-left:-1px}
.CardBrands{float:right;color:#6b7280;font-size:11px;letter-spacing:.04em}
.FieldError{color:#df1b41;font-size:13px;margin-top:6px}
.Notice{border-radius:6px;padding:12px 14px;margin-bottom:20px;font-size:14px}
.Notice--error{background:#fff5f5;border:1px solid #f5c2c7;color:#a4161a}
.Notice--info{background:#f0f7ff;border:1px solid #cfe3fb;color:#0b4a8b}
.PromotionCode{display:flex;gap:8px}.PromotionCode .Input{flex:1}
.Chip{display:inline-flex;align-items:center;gap:8px;background:#eef2f7;border-radius:6px;padding:6px 10px;font-weight:500}
.LinkButton{background:none;border:0;color:#0074d4;font:inherit;cursor:pointer;padding:0}
.Button{font:inherit;font-weight:600;border:0;border-radius:6px;padding:10px 16px;cursor:pointer;background:#eef2f7;color:#1a1a1a}
.SubmitButton{width:100%;font:inherit;font-size:16px;font-weight:600;color:#fff;background:#0074d4;border:0;
  border-radius:6px;padding:14px 16px;cursor:pointer;box-shadow:0 1px 2px rgba(0,0,0,.1);margin-top:8px}
.SubmitButton:hover{background:#0064b8}
.Footer{margin-top:32px;color:#9ca3af;font-size:12px;text-align:center}
.Center{max-width:520px;margin:80px auto;padding:0 24px;text-align:center}
.Center h1{font-size:24px;margin:0 0 12px}.Center p{color:#4b5563}
.Card{border:1px solid #e6e6e6;border-radius:8px;padding:20px;margin-bottom:20px;text-align:left}
.Page{max-width:960px;margin:40px auto;padding:0 24px}
.Page h1{font-size:24px;margin:0 0 8px}.Page h2{font-size:18px;margin:32px 0 12px}
table.Table{width:100%;border-collapse:collapse;font-size:13px}
.Table th{text-align:left;color:#6b7280;font-weight:500;border-bottom:1px solid #e6e6e6;padding:8px}
.Table td{border-bottom:1px solid #f0f0f0;padding:8px;vertical-align:top}
.Muted{color:#6b7280}.Mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.Status{display:inline-block;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600;background:#eef2f7}
.Status--ok{background:#d7f7c2;color:#05690d}.Status--bad{background:#ffe7f2;color:#b3093c}
.Status--warn{background:#fcedb9;color:#a82c00}
.Challenge{max-width:420px;margin:60px auto;border:1px solid #e6e6e6;border-radius:8px;padding:28px;text-align:center}
.Challenge-buttons{display:flex;gap:12px;justify-content:center;margin-top:24px}
.Challenge-buttons button{min-width:120px}
.Button--primary{background:#0074d4;color:#fff}
@media (max-width: 991px){
  .App{flex-direction:column}
  .App-Overview,.App-Payment{justify-content:center;padding:24px 20px;box-shadow:none}
  .App-Column{max-width:480px}
  .ProductSummary-total{margin-bottom:16px}
}
"""


def page(title: str, body: str, *, status_class: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{STYLES}</style>\n</head>\n"
        f"<body class=\"{status_class}\">\n{body}\n</body>\n</html>\n"
    )


def e(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


def date(timestamp: int | float | None, *, with_time: bool = False) -> str:
    if timestamp is None:
        return ""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%b %d, %Y, %H:%M UTC" if with_time else "%b %d, %Y")
