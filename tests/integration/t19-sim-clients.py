#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Clients written against the real llama-api-server work unchanged against
# llamalb-sim: curl (plain and -N streaming) and the OpenAI Node SDK from npm
# (tests/clients; `npm ci` is run here when node_modules is missing).
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import deadline, done, is_, like, note, ok, sim

deadline(240)
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "..", "clients")

s = sim("--model-name", "llama-3-1b-low", "--id", "c1", "--ttft-ms", "20",
        "--tokens-per-sec", "200")
base = "http://%s" % s.addr
body = json.dumps({"model": "llama-3-1b", "messages": [{"role": "user", "content": "hi"}],
                   "max_completion_tokens": 3})

# ---- curl
curl = shutil.which("curl")
ok(curl is not None, "curl is installed")
p = subprocess.run([curl, "-sS", "--max-time", "10", "-H", "Content-Type: application/json",
                    "-d", body, base + "/v1/chat/completions"], capture_output=True, timeout=20)
j = json.loads(p.stdout)
is_((j["model"], j["choices"][0]["message"]["content"]), ("llama-3-1b-low", "w1 w2 w3"),
    "curl non-streaming chat")
sbody = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                    "max_completion_tokens": 3, "stream": True})
p = subprocess.run([curl, "-sSN", "--max-time", "10", "-H", "Content-Type: application/json",
                    "-d", sbody, base + "/v1/chat/completions"], capture_output=True, timeout=20)
events = [e for e in p.stdout.decode().split("\n\n") if e]
is_(len(events), 4, "curl -N stream: 3 chunks and [DONE]")
is_(events[-1], "data: [DONE]", "curl -N stream ends with [DONE]")
is_("".join(json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1]),
    "w1 w2 w3", "curl -N stream text")
p = subprocess.run([curl, "-sS", "-0", "-N", "--max-time", "10", "-d", sbody,
                    base + "/v1/chat/completions"], capture_output=True, timeout=20)
ok(p.stdout.decode().endswith("data: [DONE]\n\n"), "curl --http1.0 close-delimited stream")

# ---- OpenAI Node SDK
node = shutil.which("node")
npm = shutil.which("npm")
ok(node is not None and npm is not None, "node and npm are installed")
if not os.path.isdir(os.path.join(CLIENTS, "node_modules", "openai")):
    note("installing the openai package (npm ci)")
    p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, capture_output=True,
                       timeout=180)
    ok(p.returncode == 0, "npm ci")
    if p.returncode != 0:
        note(p.stderr.decode(errors="replace")[-2000:])
p = subprocess.run([node, os.path.join(CLIENTS, "openai_client.js"), base + "/v1"],
                   capture_output=True, timeout=60)
ok(p.returncode == 0, "the SDK script ran")
if p.returncode != 0:
    note(p.stderr.decode(errors="replace")[-3000:])
out = json.loads(p.stdout or b"{}")
chat = out.get("chat", {})
is_((chat.get("model"), chat.get("content"), chat.get("finish_reason")),
    ("llama-3-1b-low", "w1 w2 w3 w4", "stop"), "SDK chat.completions.create")
like(chat.get("id", ""), "^chatcmpl-", "SDK sees the chatcmpl id")
is_(chat.get("usage", {}).get("completion_tokens"), 4, "SDK usage")
st = out.get("stream", {})
is_((st.get("text"), st.get("chunks")), ("w1 w2 w3", 4), "SDK stream with for await (+usage chunk)")
is_((st.get("usage") or {}).get("total_tokens"), 6, "SDK stream usage")
is_(out.get("models"), ["llama-3-1b-low"], "SDK models.list")
is_(out.get("embeddings"), {"n": 2, "dim": 8, "model": "llama-3-1b-low"}, "SDK embeddings")
is_(out.get("sim_id"), "c1", "SDK sees X-Sim-Id")
is_(s.stop(), 0, "sim exits 0")
done()
