// SPDX-License-Identifier: MIT
// A client written for the real llama-api-server, run unchanged against
// llamalb-sim (or anything in front of it): the official OpenAI Node SDK.
// Usage: node openai_client.js BASE_URL   (e.g. http://127.0.0.1:8080/v1)
// Prints one JSON object with what each call returned.
'use strict';
const OpenAI = require('openai');

async function main() {
  const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'not-needed', maxRetries: 0,
                              timeout: 20000 });
  const out = {};
  const msgs = [{ role: 'user', content: 'Say hello.' }];

  const c = await client.chat.completions.create({ model: 'llama-3-1b', messages: msgs,
                                                   max_completion_tokens: 4 });
  out.chat = { id: c.id, model: c.model, content: c.choices[0].message.content,
               finish_reason: c.choices[0].finish_reason, usage: c.usage };

  const stream = await client.chat.completions.create({
    model: 'llama-3-1b', messages: msgs, max_completion_tokens: 3, stream: true,
    stream_options: { include_usage: true } });
  let text = '', chunks = 0, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.choices.length > 0) text += chunk.choices[0].delta.content || '';
    if (chunk.usage) usage = chunk.usage;
  }
  out.stream = { text, chunks, usage };

  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);

  // The real server ignores encoding_format and sends floats, so a client
  // written for it asks for floats explicitly.
  const e = await client.embeddings.create({ model: 'emb', input: ['a', 'b'],
                                             encoding_format: 'float' });
  out.embeddings = { n: e.data.length, dim: e.data[0].embedding.length, model: e.model };

  const withRaw = await client.chat.completions.create({ model: 'x', messages: msgs,
    max_completion_tokens: 1 }).withResponse();
  out.sim_id = withRaw.response.headers.get('x-sim-id');
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => { console.error(err); process.exit(1); });
