// SPDX-License-Identifier: MIT
// The official OpenAI Node SDK against llamalb with API keys on.
// Usage: node openai_key.js BASE_URL GOOD_KEY BAD_KEY LIMITED_KEY
// Prints one JSON object: what a good key got (a chat and a stream with
// usage), and the SDK's own error classes for a bad key (401) and a key
// over its limit (429), with the headers the SDK saw.
'use strict';
const OpenAI = require('openai');

async function main() {
  const [base, good, bad, limited] = process.argv.slice(2);
  const out = {};
  const msgs = [{ role: 'user', content: 'Say hello.' }];
  const ok = new OpenAI({ baseURL: base, apiKey: good, maxRetries: 0, timeout: 20000 });
  const c = await ok.chat.completions.create({ model: 'llama-3-1b', messages: msgs,
                                               max_completion_tokens: 4 });
  out.chat = { content: c.choices[0].message.content, usage: c.usage };
  const stream = await ok.chat.completions.create({
    model: 'llama-3-1b', messages: msgs, max_completion_tokens: 3, stream: true,
    stream_options: { include_usage: true } });
  let text = '';
  for await (const chunk of stream)
    if (chunk.choices.length > 0) text += chunk.choices[0].delta.content || '';
  out.stream = { text };

  const wrong = new OpenAI({ baseURL: base, apiKey: bad, maxRetries: 0, timeout: 20000 });
  try {
    await wrong.chat.completions.create({ model: 'llama-3-1b', messages: msgs });
    out.bad = { error: null };
  } catch (e) {
    out.bad = { cls: e.constructor.name, status: e.status, code: e.code, type: e.type };
  }

  const lim = new OpenAI({ baseURL: base, apiKey: limited, maxRetries: 0, timeout: 20000 });
  out.limited = [];
  for (let i = 0; i < 3; i++) {
    try {
      await lim.chat.completions.create({ model: 'llama-3-1b', messages: msgs,
                                          max_completion_tokens: 2 });
      out.limited.push({ status: 200 });
    } catch (e) {
      out.limited.push({ cls: e.constructor.name, status: e.status, code: e.code,
                         retry_after: e.headers && (e.headers['retry-after'] ||
                           (e.headers.get && e.headers.get('retry-after'))),
                         remaining: e.headers && (e.headers['x-ratelimit-remaining-requests'] ||
                           (e.headers.get && e.headers.get('x-ratelimit-remaining-requests'))) });
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
