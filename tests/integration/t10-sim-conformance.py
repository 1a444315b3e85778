#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# llamalb-sim answers like llama-api-server 0.28.1 (docs/sim.md, "Wire format"
# and "What the simulator relies on"): JSON shapes and field order, headers,
# SSE framing byte for byte, error texts, the 404 text, keep-alive,
# pipelining, HTTP/1.0 close-delimited streams.
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (chat, connect, deadline, done, is_, like, note, ok, parse_response, raw,
                     request, sim, sse_events)

deadline(60)


def keys(body):
    """Key order of a JSON object, nested objects as (key, [subkeys])."""
    def hook(pairs):
        return pairs
    def walk(v):
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            return [(k, walk(x)) if isinstance(x, list) and x and isinstance(x[0], tuple)
                    else k for k, x in v]
        return v
    return walk(json.loads(body, object_pairs_hook=hook))


s = sim("--model-name", "llama-3-1b-low", "--id", "s1")
A = s.addr

# ---- /echo
r = request(A, "GET", "/echo")
is_((r.status, r.body), (200, b"echo test"), "/echo answers 'echo test'")
is_(r.header("x-sim-id"), "s1", "X-Sim-Id on /echo")
r = request(A, "POST", "/echo/anything", b"x")
is_(r.body, b"echo test", "/echo/... is echo too")

# ---- non-streaming chat (docs/sim.md, "What the bodies say", "Wire format")
r = chat(A, content="hello world!", model="llama-3-1b", extra={"max_completion_tokens": 8})
is_(r.status, 200, "chat 200")
cors = [r.header("access-control-allow-" + k) for k in ("origin", "methods", "headers")]
is_(cors, ["*", "*", "*"], "CORS headers")
is_(r.header("content-type"), "application/json", "content-type json")
is_(r.header("requires-tool-call"), "false", "requires-tool-call: false")
is_(r.header("content-length"), str(len(r.body)), "content-length frames the body")
j = r.json()
is_(keys(r.body), ["id", "object", "created", "model",
                   ("choices", None) if False else "choices", ("usage", ["prompt_tokens",
                   "completion_tokens", "total_tokens"])], "chat body field order")
choice = json.loads(r.body, object_pairs_hook=lambda p: p)[4][1][0]
is_([k for k, _ in choice], ["index", "message", "finish_reason", "logprobs"],
    "choice field order")
is_([k for k, _ in choice[1][1]], ["content", "role"], "message field order")
is_(j["model"], "llama-3-1b-low", "the answering model is --model-name, not the request's")
is_(j["object"], "chat.completion", "object chat.completion")
is_(j["choices"][0]["message"]["content"], "w1 w2 w3 w4 w5 w6 w7 w8", "deterministic text")
is_(j["choices"][0]["finish_reason"], "stop", "finish_reason stop")
is_(j["choices"][0]["logprobs"], None, "logprobs null")
is_(j["usage"], {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11},
    "usage: prompt bytes/4 rounded up, completion = max_completion_tokens")
like(j["id"], r"^chatcmpl-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
     "generated id is chatcmpl-<uuid4>")
is_(r.header("user"), j["id"], "user header carries the id")
ok(abs(j["created"] - time.time()) < 5, "created is now")
hdr_names = [k for k, _ in r.headers]
is_(hdr_names, ["access-control-allow-origin", "access-control-allow-methods",
                "access-control-allow-headers", "content-type", "user", "requires-tool-call",
                "x-sim-id", "content-length", "date"], "header order as hyper writes them")

r = chat(A, extra={"user": "alice-42"})
is_((r.json()["id"], r.header("user")), ("alice-42", "alice-42"), "user field -> id and header")
r = chat(A)
is_(r.json()["usage"]["completion_tokens"], 16, "default length 16")
r = chat(A, extra={"max_tokens": 3})
is_(r.json()["usage"]["completion_tokens"], 16, "max_tokens is ignored for chat (as real)")
r = request(A, "POST", "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}],
             "max_completion_tokens": 1})
is_(r.json()["usage"]["prompt_tokens"], 2, "content parts count for the prompt")

# ---- streaming (docs/sim.md, "Wire format")
r = chat(A, stream=True, extra={"max_completion_tokens": 3, "user": "u1"})
is_(r.status, 200, "stream 200")
is_([k for k, _ in r.headers], ["access-control-allow-origin", "access-control-allow-methods",
                                "access-control-allow-headers", "content-type", "cache-control",
                                "connection", "user", "requires-tool-call", "x-sim-id",
                                "transfer-encoding", "date"], "stream header order")
is_((r.header("content-type"), r.header("cache-control"), r.header("connection"),
     r.header("transfer-encoding")), ("text/event-stream", "no-cache", "keep-alive", "chunked"),
    "stream headers")
ev = sse_events(r.body)
first = json.loads(ev[0])
created = first["created"]


def chunk(i):
    return ('data: {"id":"u1","choices":[{"index":0,"delta":{"content":"%s","role":"assistant"},'
            '"logprobs":null,"finish_reason":null}],"created":%d,"model":"llama-3-1b-low",'
            '"system_fingerprint":"fp_44709d6fcb","object":"chat.completion.chunk"}\n\n'
            % (("w%d" if i == 1 else " w%d") % i, created))


want_events = [chunk(1), chunk(2), chunk(3), "data: [DONE]\n\n"]
is_(r.body.decode(), "".join(want_events), "SSE body byte-exact, no usage chunk by default")
head_end = r.raw.find(b"\r\n\r\n") + 4
s2 = connect(A)
s2.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 140\r\n\r\n' +
           json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True,
                       "user": "u1", "max_completion_tokens": 3}).encode().ljust(140))
data = b""
while not data.endswith(b"0\r\n\r\n"):
    c = s2.recv(65536)
    if not c:
        break
    data += c
s2.close()
body_raw = data[data.find(b"\r\n\r\n") + 4:]
created2 = json.loads(sse_events(parse_response(data)[0].body)[0])["created"]
created, old = created2, created
want_raw = b"".join(b"%x\r\n%s\r\n" % (len(e), e.encode()) for e in
                    [chunk(1), chunk(2), chunk(3), "data: [DONE]\n\n"]) + b"0\r\n\r\n"
is_(body_raw, want_raw, "one HTTP chunk per SSE event, then the last chunk")

r = chat(A, stream=True, extra={"max_completion_tokens": 2, "user": "u2",
                                "stream_options": {"include_usage": True}})
ev = sse_events(r.body)
is_(len(ev), 4, "usage: 2 tokens + usage + DONE")
u = json.loads(ev[2], object_pairs_hook=lambda p: p)
is_([k for k, _ in u], ["id", "choices", "created", "model", "system_fingerprint", "object",
                        "usage"], "usage chunk field order")
is_(json.loads(ev[2])["choices"], [], "usage chunk has empty choices")
is_(json.loads(ev[2])["usage"], {"prompt_tokens": 1, "completion_tokens": 2,
                                 "total_tokens": 3}, "usage chunk counts")
ok(all('"usage"' not in e for e in ev[:2]), "normal chunks omit usage")
ok(all('"finish_reason":null' in e for e in ev[:2]), "finish_reason null on every chunk")
is_(ev[-1], "[DONE]", "ends with [DONE]")
like(r.header("user"), "^u2$", "stream user header")

r = chat(A, stream=True, extra={"max_completion_tokens": 1})
like(json.loads(sse_events(r.body)[0])["id"], "^chatcmpl-", "stream id chatcmpl-<uuid>")

# ---- OPTIONS, errors
r = request(A, "OPTIONS", "/v1/chat/completions")
is_((r.status, r.body, r.header("content-type"), r.header("access-control-allow-origin")),
    (200, b"", "application/json", "*"), "OPTIONS -> 200 empty")
r = request(A, "POST", "/v1/chat/completions", b"not json", headers={"Content-Type": "application/json"})
is_(r.status, 400, "bad JSON -> 400")
like(r.body.decode(), r"^400 Bad Request: Fail to deserialize chat completion request: ",
     "bad JSON text")
is_(r.header("content-type"), None, "plain-text errors carry no content-type")
is_(r.header("access-control-allow-origin"), "*", "errors carry CORS")
r = request(A, "POST", "/v1/chat/completions", {"model": "x"})
is_(r.body.decode(), "400 Bad Request: Fail to deserialize chat completion request: "
    "missing field `messages` at line 1 column 14.\njson_value: {\"model\":\"x\"}",
    "missing messages: serde text with position and json_value")
r = request(A, "GET", "/v1/chat/completions")
is_(r.body.decode(), "400 Bad Request: Fail to deserialize chat completion request: "
    "EOF while parsing a value at line 1 column 0.", "GET chat parses an empty body")
r = request(A, "GET", "/v1/nope/x?y=1")
is_((r.status, r.body), (404, b"404 The requested service endpoint is not found: /v1/nope/x"),
    "unknown /v1 route: the real 404 text")
r = request(A, "GET", "/index.html")
is_((r.status, r.header("content-type")), (404, "text/html"), "static miss: 404 text/html")

# ---- /v1/models, /v1/info
r = request(A, "GET", "/v1/models")
is_(keys(r.body)[0], "object", "models: object first")
m = r.json()
is_((m["object"], m["data"][0]["id"], m["data"][0]["object"], m["data"][0]["owned_by"]),
    ("list", "llama-3-1b-low", "model", "Not specified"), "models list")
is_([k for k, _ in json.loads(r.body, object_pairs_hook=lambda p: p)[1][1][0]],
    ["id", "created", "object", "owned_by"], "model field order")
r = request(A, "POST", "/v1/info")
i = r.json()
is_((i["version"], i["port"], i["chat_model"]["name"], i["chat_model"]["prompt_template"]),
    ("0.28.1", str(s.port), "llama-3-1b-low", "Llama3Chat"), "/v1/info (any method)")
is_(keys(r.body)[:4], ["type", "version", "ggml_plugin_version", "port"], "info field order")

# ---- completions, embeddings, responses
r = request(A, "POST", "/v1/completions", {"prompt": "12345678", "max_tokens": 2, "stream": True})
j = r.json()
is_((r.header("content-type"), j["object"], j["choices"][0]["text"], j["usage"]["prompt_tokens"]),
    ("application/json", "text_completion", "w1 w2", 2),
    "completions: max_tokens honoured, stream ignored")
like(j["id"], "^cmpl-", "completions id")
r = request(A, "POST", "/v1/completions", {"model": "x"})
like(r.body.decode(), r"^400 Bad Request: Fail to deserialize completions request: missing field "
     "`prompt`", "completions without prompt")
r = request(A, "POST", "/v1/embeddings", {"input": ["a", "bb"], "model": "e"})
j = r.json()
is_((j["object"], len(j["data"]), len(j["data"][0]["embedding"]), j["model"], j["data"][1]["index"]),
    ("list", 2, 8, "llama-3-1b-low", 1), "embeddings")
is_(keys(r.body), ["object", "data", "model", ("usage", ["prompt_tokens", "completion_tokens",
                                                         "total_tokens"])], "embeddings order")
r = request(A, "POST", "/v1/responses", {"input": "hello", "max_output_tokens": 2})
j = r.json()
is_((j["object"], j["status"], j["output"][0]["content"][0]["text"]),
    ("response", "completed", "w1 w2"), "responses")

# ---- files and chunks (in memory, per instance)
bnd = "XyZ"
mp = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
      "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
      "Content-Type: text/plain\r\n\r\none two three four five\r\n--%s--\r\n" % (bnd, bnd, bnd)).encode()
r = request(A, "POST", "/v1/files", mp, headers={"Content-Type": "multipart/form-data; boundary=" + bnd})
f = r.json()
like(f["id"], r"^file_[0-9a-f-]{36}$", "upload gives file_<uuid>")
is_((f["bytes"], f["filename"], f["object"]), (23, "a.txt", "file"), "file object")
r = request(A, "GET", "/v1/files")
is_([x["id"] for x in r.json()["data"]], [f["id"]], "list files")
r = request(A, "GET", "/v1/files/" + f["id"])
is_(r.json()["filename"], "a.txt", "get file")
r = request(A, "GET", "/v1/files/%s/content" % f["id"])
is_(r.body, b"one two three four five", "file content")
r = request(A, "GET", "/v1/files/download/" + f["id"])
is_((r.body, r.header("content-disposition")), (b"one two three four five",
                                                'attachment; filename="a.txt"'), "download")
r = request(A, "POST", "/v1/chunks", {"id": f["id"], "filename": "a.txt", "chunk_capacity": 10})
c = r.json()
is_((c["id"], "".join(c["chunks"])), (f["id"], "one two three four five"), "chunks cover the file")
ok(all(len(x) <= 10 for x in c["chunks"]), "chunks within capacity")
r = request(A, "DELETE", "/v1/files/" + f["id"])
is_(r.json(), {"id": f["id"], "object": "file", "deleted": True}, "delete")
r = request(A, "GET", "/v1/files/" + f["id"])
is_(r.status, 500, "deleted file is gone")
r = request(A, "GET", "/v1/files/nope")
like(r.body.decode(), "^500 Internal Server Error: ", "id must start with file_")

# ---- keep-alive and pipelining
sock = connect(A)
reqs = (b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n" +
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n" +
        b'{"messages":[{"role":"user","content":"x"}],"stream":true,"user":"p"}'[:65] +
        b"GET /v1/models HTTP/1.1\r\nHost: t\r\n\r\n")
body = b'{"messages":[{"role":"user","content":"x"}],"stream":true,"user":"p"}'
reqs = (b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n" +
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body + b"GET /v1/models HTTP/1.1\r\nHost: t\r\n\r\n")
sock.sendall(reqs)
data = b""
got = []
end = time.time() + 5
while len(got) < 3 and time.time() < end:
    data += sock.recv(65536)
    while True:
        resp, rest = parse_response(data)
        if resp is None or (resp.header("transfer-encoding") and not data.endswith(b"")):
            break
        got.append(resp)
        data = rest
is_([g.status for g in got], [200, 200, 200], "three pipelined answers")
if len(got) == 3:
    is_((got[0].body, sse_events(got[1].body)[-1], got[2].json()["object"]),
        (b"echo test", "[DONE]", "list"), "pipelined answers in order")
r = request(A, "GET", "/echo", conn=sock)
is_(r.body, b"echo test", "connection still usable after pipelining")
sock.close()

# chunked request body and Expect: 100-continue
body = json.dumps({"messages": [{"role": "user", "content": "abcd"}], "max_completion_tokens": 1}).encode()
out = raw(A, b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
          b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
resp, _ = parse_response(out)
is_((resp.status, json.loads(resp.body)["choices"][0]["message"]["content"]), (200, "w1"),
    "chunked request body")
is_(resp.header("connection"), "close", "Connection: close answered with connection: close")
sock = connect(A)
sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
             b"Content-Length: %d\r\n\r\n" % len(body))
first = sock.recv(100)
is_(first, b"HTTP/1.1 100 Continue\r\n\r\n", "100 Continue before the body")
sock.sendall(body)
r = request(A, "GET", "/echo", conn=sock)  # the chat answer is read first
sock.close()

# ---- HTTP/1.0: close-delimited stream, keep-alive on request
body = b'{"messages":[{"role":"user","content":"x"}],"stream":true,"user":"h","max_completion_tokens":2}'
out = raw(A, b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
resp, _ = parse_response(out)
ok(out.startswith(b"HTTP/1.0 200 OK\r\n"), "HTTP/1.0 answer")
is_(resp.header("transfer-encoding"), None, "no chunked encoding for HTTP/1.0")
is_(sse_events(resp.body)[-1], "[DONE]", "close-delimited body ends with [DONE] then EOF")
ok(resp.body.endswith(b"data: [DONE]\n\n"), "no chunk framing in the HTTP/1.0 body")
out = raw(A, b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", timeout=1,
          read_until_close=False)
resp, _ = parse_response(out)
is_((resp.body, resp.header("connection")), (b"echo test", "keep-alive"), "HTTP/1.0 keep-alive")

# ---- bad request heads
out = raw(A, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
like(out.decode(errors="replace"), r"^HTTP/1.1 400 Bad Request\r\n", "invalid head -> 400, close")

# ---- API key (only checked when Authorization is present: docs/sim.md,
# "What the simulator relies on")
k = sim("--api-key", "sekret", name="k1")
is_(request(k.addr, "GET", "/v1/models").status, 200, "no Authorization: accepted")
r = request(k.addr, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
is_((r.status, r.body), (401, b"401 Unauthorized: Invalid API key."), "wrong key -> 401")
is_(request(k.addr, "GET", "/v1/models", headers={"Authorization": "Bearer sekret"}).status, 200,
    "right key")

# ---- embeddings on a chat-only server, stats
n = sim("--no-embeddings", name="n1")
r = request(n.addr, "POST", "/v1/embeddings", {"input": "x"})
is_((r.status, r.body.decode()), (500, "500 Internal Server Error: Computing embeddings is only "
    "supported in the embeddings and rag modes."), "--no-embeddings: the real 500")
st = request(A, "GET", "/sim/stats").json()
is_((st["id"], st["model"], st["in_flight"], st["queued"]), ("s1", "llama-3-1b-low", 1, 0),
    "stats (the stats request itself is in flight)")
ok(st["requests"] >= 40 and st["routes"]["chat"] >= 10 and st["routes"]["files"] >= 7,
   "stats count requests per route")
is_(s.stop(), 0, "SIGTERM: exit 0")
done()
