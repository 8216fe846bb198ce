"""The endpoint's OpenAPI request bodies (from the contract) and a `/docs` page that works offline.

FastAPI's own /docs loads Swagger UI from a CDN, and no installed package ships its files;
this page is plain HTML and a little script that reads `/openapi.json` from the server
itself and lets a reader send a request.
"""

from __future__ import annotations

from typing import Any

from driftloop.data.contract import ColumnType
from driftloop.serving.requests import RequestSchema

_JSON_TYPES = {
    ColumnType.numeric: {"type": "number"},
    ColumnType.categorical: {"type": "string"},
    ColumnType.boolean: {"type": "boolean"},
    ColumnType.timestamp: {"type": "string", "format": "date-time"},
}


def _field(schema: RequestSchema, name: str) -> dict[str, Any]:
    column = schema.contract.columns[name]
    spec: dict[str, Any] = dict(_JSON_TYPES[column.type])
    if column.allowed is not None:
        spec["enum"] = [str(a) for a in column.allowed]
    if column.min is not None:
        spec["minimum"] = column.min
    if column.max is not None:
        spec["maximum"] = column.max
    if column.nullable:
        spec["nullable"] = True
    if column.description:
        spec["description"] = column.description
    return spec


def request_body_schema(schema: RequestSchema, events: bool) -> dict[str, Any]:
    """OpenAPI `requestBody` of /invocations (events=False) or /events (events=True)."""
    contract = schema.contract
    if events:
        names = list(contract.columns)
        required = list(contract.id_columns)
        about = "Known facts of rows not yet in the lake; merged per id, later fields win."
    else:
        names = [*schema.required, *schema.optional]
        required = list(schema.required)
        about = "Raw request-time fields; outcome columns are not asked for."
    record = {
        "type": "object",
        "properties": {n: _field(schema, n) for n in names},
        "required": required,
        "description": about,
    }
    rows = {"type": "array", "items": record, "maxItems": schema.max_rows}
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}, "maxItems": schema.max_rows},
        },
        "required": ["columns", "data"],
    }
    body = {
        "oneOf": [
            {"type": "object", "properties": {"dataframe_records": rows}},
            {"type": "object", "properties": {"dataframe_split": split}},
        ]
    }
    return {"required": True, "content": {"application/json": {"schema": body}}}


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
code,pre,textarea{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f5f5f5;padding:.6em;overflow:auto;max-height:24em}
.op{border:1px solid #ddd;border-radius:6px;margin:.8em 0;padding:.4em .8em}
.m{display:inline-block;min-width:4em;font-weight:bold}.get{color:#1565c0}.post{color:#2e7d32}
textarea{width:100%;height:10em}
</style></head><body>
<h1 id="title">{{title}}</h1><p id="about"></p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>.
Metrics: <a href="/metrics">/metrics</a>. Request fields: <a href="/schema">/schema</a>.</p>
<div id="ops">Loading /openapi.json ...</div>
<script>
async function main() {
  const spec = await (await fetch('/openapi.json')).json();
  document.getElementById('about').textContent = spec.info.description || '';
  const ops = document.getElementById('ops'); ops.textContent = '';
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const div = document.createElement('div'); div.className = 'op';
      const head = document.createElement('div');
      head.innerHTML = `<span class="m ${method}">${method.toUpperCase()}</span> <code></code> `;
      head.querySelector('code').textContent = path;
      head.append(op.summary || ''); div.append(head);
      const body = op.requestBody && op.requestBody.content['application/json'].schema;
      const text = document.createElement('textarea');
      const out = document.createElement('pre');
      if (body) {
        const details = document.createElement('details');
        details.innerHTML = '<summary>request body schema</summary><pre></pre>';
        details.querySelector('pre').textContent = JSON.stringify(body, null, 1);
        div.append(details);
        text.value = '{"dataframe_records": [{}]}'; div.append(text);
      }
      const button = document.createElement('button'); button.textContent = 'Send';
      button.onclick = async () => {
        const init = {method: method.toUpperCase()};
        if (body) { init.body = text.value; init.headers = {'Content-Type': 'application/json'}; }
        const response = await fetch(path, init);
        out.textContent = response.status + ' ' + response.statusText + '\\n' +
          await response.text();
      };
      div.append(button, out); ops.append(div);
    }
  }
}
main().catch(e => { document.getElementById('ops').textContent = 'failed: ' + e; });
</script></body></html>
"""
