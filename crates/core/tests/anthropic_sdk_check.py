"""Replays what `dialect::messages` encodes through the official `anthropic` Python SDK.

Not part of `cargo test` (it needs the SDK installed); run it after changing the encoder:

    MODELWAY_SDK_CHECK_DIR=/tmp/sdk-check \
        cargo test -p modelway-core --lib dialect::messages::tests::every_stream
    python3 -m venv /tmp/anth && /tmp/anth/bin/pip install anthropic
    /tmp/anth/bin/python crates/core/tests/anthropic_sdk_check.py /tmp/sdk-check

The test writes, per stream case, `<case>.sse` (the encoder's bytes), `<case>.json` (the
message the Rust test's accumulator built from them) and `<case>.message.json` (the same
answer encoded whole by `encode_response`), plus `error_mid_stream.sse`. A local server on
127.0.0.1 answers `POST /v1/messages` with them; for every case the SDK's
`messages.stream(...).get_final_message()` must equal `<case>.json`, the non-streaming
`messages.create(...)` answer must validate strictly as `anthropic.types.Message` and say
the same, and the error stream must raise the SDK's status error with `overloaded_error`.
Exit status 0 when every case passes.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
from anthropic.types import Message


def without_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: without_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [without_nulls(x) for x in v]
    return v


def serve(root: Path) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            case = self.headers["x-case"]
            if body.get("stream"):
                data, ctype = (root / f"{case}.sse").read_bytes(), "text/event-stream; charset=utf-8"
            else:
                data, ctype = (root / f"{case}.message.json").read_bytes(), "application/json"
            self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_check")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(root: Path) -> int:
    server = serve(root)
    client = anthropic.Anthropic(
        api_key="sk-test", base_url=f"http://127.0.0.1:{server.server_address[1]}", max_retries=0, timeout=10
    )
    params: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    failures, cases = [], sorted(p.stem for p in root.glob("*.sse") if p.stem != "error_mid_stream")
    for case in cases:
        headers = {"x-case": case}
        want = without_nulls(json.loads((root / f"{case}.json").read_text()))
        with client.messages.stream(**params, extra_headers=headers) as stream:
            final = stream.get_final_message()
        # Strict validation, not the SDK's lenient `construct`.
        streamed = without_nulls(Message.model_validate(final.model_dump()).model_dump(mode="json"))
        whole = client.messages.create(**params, extra_headers=headers)
        whole = without_nulls(Message.model_validate(whole.model_dump()).model_dump(mode="json"))
        for what, got in (("stream", streamed), ("create", {**whole, "id": want["id"]})):
            if got != want:
                failures.append(f"{case} ({what}):\n  got  {got}\n  want {want}")
        print(f"ok   {case}: {[b['type'] for b in streamed['content']]} {streamed['stop_reason']}")
    try:
        with client.messages.stream(**params, extra_headers={"x-case": "error_mid_stream"}) as stream:
            stream.get_final_message()
        failures.append("error_mid_stream: no exception")
    except anthropic.APIStatusError as e:
        kind = e.body.get("error", {}).get("type") if isinstance(e.body, dict) else None
        if kind != "overloaded_error":
            failures.append(f"error_mid_stream: error type {kind!r}, body {e.body!r}")
        else:
            print(f"ok   error_mid_stream: {type(e).__name__} {kind}")
    server.shutdown()
    for f in failures:
        print("FAIL", f)
    failed = {f.split(" ", 1)[0].rstrip(":") for f in failures}
    total = len(cases) + 1
    print(f"{total - len(failed)} of {total} cases agree with anthropic {anthropic.__version__}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
