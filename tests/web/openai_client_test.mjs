// tests/web/openai_client_test.mjs — the official OpenAI Node client (npm `openai`, pinned in
// package-lock.json) against `retnet serve`, as an application would use it: models,
// completions and chat completions, whole and streamed (the streamed text equals the whole
// answer for the same seed), logprobs in both shapes (greedy: the chosen token is the top
// alternative, same value), n, cancelling a stream (the server logs a 499 and frees the
// slot), and the failures surfacing as the client's typed errors with our messages: a wrong
// key (401), a model not served (404), bad requests (400 naming the field). Every check
// asserts the result, not just that nothing threw. Run by tests/web/run.sh (ctest -L web).
import OpenAI from 'openai';
import { assert, check, env, serverLog, summary, waitFor, waitIdle } from './util.mjs';

const client = new OpenAI({ baseURL: `${env.base}/v1`, apiKey: env.key, maxRetries: 0, timeout: 20000 });
const model = env.model;
const messages = [
  { role: 'system', content: 'You answer in one line.' },
  { role: 'user', content: 'Who made the heaven?' },
];
// a tiny model may end at once: ignore_eos (vLLM's, which we accept) makes lengths exact
const greedy = { model, temperature: 0, max_tokens: 12, ignore_eos: true };

async function rejects(promise, Type, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof Type, `expected ${Type.name}, got ${e && e.constructor && e.constructor.name}: ${e}`);
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, status);
    return e;
  }
  throw new Error(`expected ${Type.name} (${status}), but the call succeeded`);
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

try {
  await check('models.list and models.retrieve', async () => {
    const list = await client.models.list();
    assert.deepEqual(list.data.map((m) => [m.id, m.object, m.owned_by]), [[model, 'model', 'retnet.cpp']]);
    const alias = await client.models.retrieve('tiny-alias');
    assert.equal(alias.id, 'tiny-alias');
    assert.ok(Number.isInteger(alias.created) && alias.created > 1.6e9);
  });

  let whole;
  await check('completions.create with logprobs (greedy: the chosen token is the top one)', async () => {
    whole = await client.completions.create({ ...greedy, prompt: 'In the beginning', logprobs: 3 });
    assert.equal(whole.object, 'text_completion');
    assert.equal(whole.model, model);
    assert.equal(whole.choices.length, 1);
    const c = whole.choices[0];
    assert.equal(c.finish_reason, 'length');
    assert.equal(typeof c.text, 'string');
    assert.equal(whole.usage.completion_tokens, 12);
    assert.ok(whole.usage.prompt_tokens > 1);
    assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + 12);
    const lp = c.logprobs;
    assert.equal(lp.tokens.length, 12);
    assert.equal(lp.token_logprobs.length, 12);
    assert.equal(lp.top_logprobs.length, 12);
    assert.equal(lp.text_offset[0], 0);
    for (let i = 0; i < 12; i++) {
      const alts = Object.values(lp.top_logprobs[i]);
      assert.ok(alts.length >= 1 && alts.length <= 3, `top_logprobs[${i}] has ${alts.length} entries`);
      assert.ok(lp.token_logprobs[i] <= 0);
      assert.ok(Math.abs(Math.max(...alts) - lp.token_logprobs[i]) < 1e-6, `token ${i} is not the likeliest`);
      if (i > 0) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1]);
    }
  });

  await check('completions.create streamed = whole, with the usage chunk', async () => {
    const chunks = await collect(await client.completions.create({
      ...greedy, prompt: 'In the beginning', stream: true, stream_options: { include_usage: true } }));
    const text = chunks.flatMap((c) => c.choices.map((ch) => ch.text)).join('');
    assert.equal(text, whole.choices[0].text);
    assert.ok(chunks.length > 2, 'more than one event');
    const finish = chunks.flatMap((c) => c.choices).map((ch) => ch.finish_reason).filter(Boolean);
    assert.deepEqual(finish, ['length']);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.usage);
  });

  await check('completions: a seed makes sampling repeatable; n and a prompt list', async () => {
    const sampled = { model, prompt: 'And God said', temperature: 0.9, top_p: 0.95, max_tokens: 10, seed: 7, ignore_eos: true };
    const a = await client.completions.create(sampled);
    const b = await client.completions.create({ ...sampled, stream: true });
    assert.equal((await collect(b)).flatMap((c) => c.choices.map((ch) => ch.text)).join(''), a.choices[0].text);
    const n = await client.completions.create({ ...sampled, n: 2 });
    assert.deepEqual(n.choices.map((c) => c.index), [0, 1]);
    assert.equal(n.choices[0].text, a.choices[0].text, 'choice 0 of n draws as n = 1 does');
    const list = await client.completions.create({ ...sampled, prompt: ['x', 'And God said'] });
    assert.equal(list.choices.length, 2);
    assert.equal(list.choices[1].text, a.choices[0].text, 'a prompt in a list gives what it gives alone');
  });

  let chat;
  await check('chat.completions.create with logprobs and top_logprobs', async () => {
    chat = await client.chat.completions.create({ ...greedy, messages, logprobs: true, top_logprobs: 2 });
    assert.equal(chat.object, 'chat.completion');
    assert.ok(chat.id.startsWith('chatcmpl-'));
    const c = chat.choices[0];
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.equal(c.finish_reason, 'length');
    assert.equal(chat.usage.completion_tokens, 12);
    const entries = c.logprobs.content;
    assert.equal(entries.length, 12);
    for (const e of entries) {
      assert.equal(e.top_logprobs.length, 2);
      assert.equal(e.top_logprobs[0].logprob, e.logprob, 'greedy: the chosen token is the top one');
      assert.ok(e.top_logprobs[1].logprob <= e.top_logprobs[0].logprob);
      assert.ok(Array.isArray(e.bytes) && e.bytes.length > 0);
    }
    // the entries' bytes are the answer's bytes (where they make whole characters)
    const bytes = Buffer.from(entries.flatMap((e) => e.bytes));
    if (!c.message.content.includes('\uFFFD')) assert.equal(bytes.toString('utf8'), c.message.content);
  });

  await check('chat.completions.create streamed = whole: deltas, logprobs, usage', async () => {
    const chunks = await collect(await client.chat.completions.create({
      ...greedy, messages, logprobs: true, top_logprobs: 2, stream: true, stream_options: { include_usage: true } }));
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
    const choices = chunks.flatMap((c) => c.choices);
    assert.equal(choices[0].delta.role, 'assistant');
    assert.equal(choices.map((ch) => ch.delta.content || '').join(''), chat.choices[0].message.content);
    assert.deepEqual(choices.map((ch) => ch.finish_reason).filter(Boolean), ['length']);
    const entries = choices.flatMap((ch) => (ch.logprobs && ch.logprobs.content) || []);
    assert.deepEqual(entries, chat.choices[0].logprobs.content);
    assert.deepEqual(chunks[chunks.length - 1].usage, chat.usage);
  });

  await check('a stream the client aborts ends there; the server logs 499 and frees the slot', async () => {
    const disconnects = () => serverLog().filter((l) => l.includes('"POST /v1/chat/completions" 499')).length;
    const before = disconnects();
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 30000, ignore_eos: true, stream: true });
    // the client's way to cancel (stream.controller.abort()): iteration just ends, no error
    let got = 0;
    for await (const c of stream) {
      if (c.choices.length && c.choices[0].delta.content && ++got === 5) stream.controller.abort();
    }
    assert.ok(stream.controller.signal.aborted);
    assert.ok(got >= 5 && got < 1000, `iteration went on for ${got} events after the abort`);
    await waitFor('the server\'s 499 log line', () => disconnects() === before + 1);
    await waitIdle();
    // an aborted request that had not been answered yet: APIUserAbortError
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(client.chat.completions.create({ model, messages }, { signal: controller.signal }),
                         OpenAI.APIUserAbortError);
  });

  await check('a wrong API key: AuthenticationError 401 invalid_api_key', async () => {
    const wrong = new OpenAI({ baseURL: `${env.base}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const e = await rejects(wrong.models.list(), OpenAI.AuthenticationError, 401);
    assert.equal(e.code, 'invalid_api_key');
    assert.equal(e.message, '401 Incorrect API key provided');
    const e2 = await rejects(wrong.chat.completions.create({ model, messages }), OpenAI.AuthenticationError, 401);
    assert.equal(e2.code, 'invalid_api_key');
  });

  await check('a model not served: NotFoundError 404 model_not_found', async () => {
    const e = await rejects(client.chat.completions.create({ model: 'gpt-4o', messages }), OpenAI.NotFoundError, 404);
    assert.equal(e.code, 'model_not_found');
    assert.match(e.message, /^404 .*gpt-4o/);
    await rejects(client.models.retrieve('gpt-4o'), OpenAI.NotFoundError, 404);
  });

  await check('bad requests: BadRequestError 400 with our message and the field', async () => {
    let e = await rejects(client.completions.create({ model, prompt: 'x', top_p: 0 }), OpenAI.BadRequestError, 400);
    assert.equal(e.param, 'top_p');
    assert.equal(e.type, 'invalid_request_error');
    assert.match(e.message, /^400 .*top_p/);
    e = await rejects(client.chat.completions.create({ model, messages: [{ role: 'tool', content: 'x', tool_call_id: 'a' }] }),
                      OpenAI.BadRequestError, 400);
    assert.equal(e.param, 'messages[0].role');
    e = await rejects(client.chat.completions.create({ model, messages, top_logprobs: 2 }), OpenAI.BadRequestError, 400);
    assert.match(e.message, /logprobs/);
    e = await rejects(client.completions.create({ model, prompt: 'x', max_tokens: 1 << 20 }), OpenAI.BadRequestError, 400);
    assert.equal(e.param, 'max_tokens');
  });
  summary('openai client');
} catch (e) {
  process.exit(1);
}
