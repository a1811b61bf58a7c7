// tests/web/util.mjs — what both Node tests of tests/web/ share: the server run.sh started
// (its address, key, model name and log), named checks that count passes and stop at the
// first failure, and polling for things that happen shortly after an event (a slot freed, a
// log line written).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

export const env = {
  base: process.env.RN_BASE_URL,
  key: process.env.RN_API_KEY,
  model: process.env.RN_MODEL,
  serverLog: process.env.RN_SERVER_LOG,
  work: process.env.RN_WORK,
  chromium: process.env.RN_CHROMIUM,
};
for (const [k, v] of Object.entries(env)) {
  if (!v && k !== 'chromium') throw new Error(`tests/web: ${k} is not set; run this through tests/web/run.sh`);
}

let passed = 0;
// Runs one named check; the first failure ends the test with its name and the reason.
export async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    console.error(`FAIL: ${name}: ${e && e.stack ? e.stack : e}`);
    throw e;
  }
  passed++;
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}
export function summary(what) {
  console.log(`${what}: ${passed} passed, 0 failed`);
}

// Polls cond() (sync or async) every 50 ms until it is truthy or ms pass; throws with `what`.
export async function waitFor(what, cond, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The server's access log lines (stderr) so far.
export function serverLog() {
  return readFileSync(env.serverLog, 'utf8').split('\n');
}

// Waits until no sequence is running or waiting (GET /health, which needs no key).
export async function waitIdle(ms = 5000) {
  await waitFor('the server to have no sequence left (GET /health)', async () => {
    const h = await (await fetch(env.base + '/health')).json();
    return h.active_sequences === 0 && h.waiting_requests === 0 ? h : null;
  }, ms);
}

// A direct call to the API (with the key), for answers to compare with.
export async function api(path, body) {
  const res = await fetch(env.base + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${env.key}` },
    body: JSON.stringify(body),
  });
  const j = await res.json();
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(j)}`);
  return j;
}

// The same call streamed ("stream": true): the text of each event that carries some, in order.
export async function apiStream(path, body) {
  const res = await fetch(env.base + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${env.key}` },
    body: JSON.stringify({ ...body, stream: true }),
  });
  assert.equal(res.status, 200, `${path} (stream): ${res.status}`);
  const pieces = [];
  for (const block of (await res.text()).split('\n\n')) {
    const data = block.startsWith('data: ') ? block.slice(6) : '';
    if (!data || data === '[DONE]') continue;
    for (const ch of JSON.parse(data).choices || []) {
      const t = ch.text !== undefined ? ch.text : (ch.delta && ch.delta.content) || '';
      if (t) pieces.push(t);
    }
  }
  return pieces;
}

export { assert };
