// tests/web/browser_test.mjs — the page `retnet serve` answers at GET / (serving/web/index.html)
// in headless Chromium (Debian's, driven by playwright-core over the DevTools protocol), as a
// user would use it: it is served with its security headers; its own style and script run
// under that policy and nothing else is fetched from anywhere but the server; it asks for
// the API key (a wrong one shows the server's 401 message); a chat answer streams in and
// equals the server's whole answer for the same seeded request, with tokens/s and the
// finish reason shown; a bad setting shows the server's 400 naming the field; Stop ends a
// long stream, which the server logs as a client disconnect (499) and whose slot it frees;
// completion mode streams too; the key survives a reload. Saves a screenshot (web_ui.png in
// the run's folder). Run by tests/web/run.sh (ctest -L web).
import { chromium } from 'playwright-core';
import { assert, api, apiStream, check, env, serverLog, summary, waitFor, waitIdle } from './util.mjs';

const browser = await chromium.launch({ executablePath: env.chromium, timeout: 20000 });
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1180, height: 720 }, colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const origin = new URL(env.base).origin;
  const consoleErrors = [];
  const foreign = [];
  page.on('console', (m) => {
    // the refused requests this test makes on purpose (wrong key, bad setting) are logged by
    // Chromium as failed resources; anything else (a CSP refusal, a script error) is a failure
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of 40[01]/.test(m.text()))
      consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('data:') && new URL(u).origin !== origin) foreign.push(u);
  });
  const text = (sel) => page.locator(sel).textContent();
  const lastAnswer = page.locator('#transcript .msg.assistant .text').last();
  const finished = async () => {
    const f = await page.locator('#finish').textContent().catch(() => null);
    return f && f !== '…' ? f : null;
  };

  await check('GET / is the page, with its security headers', async () => {
    const res = await page.goto(env.base + '/');
    assert.equal(res.status(), 200);
    const h = res.headers();
    assert.equal(h['content-type'], 'text/html; charset=utf-8');
    assert.equal(h['cache-control'], 'no-store');
    assert.equal(h['x-content-type-options'], 'nosniff');
    const csp = h['content-security-policy'];
    assert.match(csp, /^default-src 'none'; /);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:|\*/);
    // the nonce in the header is the one on the page's style and script tags, and new each time
    const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)[1];
    const body = await res.text();
    assert.equal(body.split(`nonce="${nonce}"`).length - 1, 2, 'the nonce is on <style> and <script>');
    assert.ok(!body.includes('__RN_CSP_NONCE__'));
    const again = await fetch(env.base + '/');
    assert.notEqual(again.headers.get('content-security-policy'), csp, 'a second answer has a new nonce');
  });

  await check('the style and script run under that policy', async () => {
    // the stylesheet applied (not the browser's white default) ...
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(246, 247, 249)');
    // ... and the script did: it asked the API and found it wants a key
    await waitFor('the key form', () => page.locator('#keybox').isVisible());
    assert.equal(await text('#model'), 'API key needed');
  });

  await check('a wrong API key shows the server\'s 401 message', async () => {
    await page.fill('#api-key', 'sk-wrong');
    await page.click('#key-save');
    await waitFor('the error', () => page.locator('#error').isVisible());
    const e = await text('#error');
    assert.match(e, /^401 invalid_request_error: Incorrect API key provided/);
    assert.ok(await page.locator('#keybox').isVisible());
  });

  await check('the right key: the model\'s name from /v1/models', async () => {
    await page.fill('#api-key', env.key);
    await page.click('#key-save');
    await waitFor('the model name', async () => (await text('#model')) === env.model);
    assert.ok(!(await page.locator('#keybox').isVisible()));
    assert.ok(!(await page.locator('#error').isVisible()));
  });

  // Answers long enough to arrive as several events on a loaded machine. The server joins the
  // text of every token made while its last write was pending, so a short answer from this
  // tiny model (48 tokens take ~10 ms on one core) can come whole when the connection's thread
  // is not scheduled in time, as CI's two busy cores once showed; 1024 tokens take ~200 ms.
  const streamTokens = 1024;
  const system = 'You are a helpful assistant.';
  const question = 'In the beginning';
  await check('chat: the answer streams in, equals the whole answer (same seed), with tokens/s and the finish reason', async () => {
    await page.fill('#system', system);
    await page.fill('#temperature', '0.8');
    await page.fill('#seed', '1');
    await page.fill('#repetition_penalty', '1.3');
    await page.fill('#max_tokens', String(streamTokens));
    await page.check('#ignore_eos');  // a tiny model may end at once; streamTokens, many events
    await page.fill('#prompt', question);
    await page.click('#send');
    const finish = await waitFor('the finish reason', finished);
    const got = await lastAnswer.textContent();
    const whole = await api('/v1/chat/completions', {
      model: env.model, temperature: 0.8, seed: 1, repetition_penalty: 1.3, top_p: 0.95, max_tokens: streamTokens, ignore_eos: true,
      messages: [{ role: 'system', content: system }, { role: 'user', content: question }],
    });
    assert.equal(finish, 'length');
    assert.equal(whole.choices[0].finish_reason, 'length');
    assert.ok(got.length > 0, 'some text arrived');
    assert.equal(got, whole.choices[0].message.content, 'the streamed text is the whole answer');
    // it came as many events, appended as they arrived
    assert.ok(Number(await lastAnswer.getAttribute('data-chunks')) > 1, 'more than one streamed event');
    assert.equal(await text('#token-count'), String(whole.usage.completion_tokens));
    assert.match(await text('#tps'), /^\d+\.\d tok\/s$/);
    assert.ok(parseFloat(await text('#tps')) > 0);
    assert.equal(await page.inputValue('#prompt'), '', 'the input is cleared after a sent message');
    assert.ok(await page.locator('#send').isEnabled());
    assert.ok(!(await page.locator('#stop').isEnabled()));
    await page.screenshot({ path: `${env.work}/web_ui.png` });
  });

  await check('a bad setting shows the server\'s 400 naming the field', async () => {
    const before = await page.locator('#transcript .msg').count();
    await page.fill('#top_p', '0');
    await page.fill('#prompt', 'and the earth');
    await page.click('#send');
    await waitFor('the error', () => page.locator('#error').isVisible());
    const e = await text('#error');
    assert.match(e, /^400 invalid_request_error: .*top_p.*\(param: top_p\)$/s);
    // the turn is taken back: nothing added to the chat, the text still there to edit
    assert.equal(await page.locator('#transcript .msg').count(), before);
    assert.equal(await page.inputValue('#prompt'), 'and the earth');
    await page.fill('#top_p', '0.95');
  });

  await check('Stop ends a long stream; the server sees the disconnect and frees the slot', async () => {
    const disconnects = () => serverLog().filter((l) => l.includes('"POST /v1/chat/completions" 499')).length;
    const before = disconnects();
    await page.fill('#seed', '');
    await page.fill('#max_tokens', '30000');
    await page.click('#send');
    assert.ok(!(await page.locator('#error').isVisible()), 'the error of before is cleared');
    await waitFor('text to arrive', async () => (await lastAnswer.textContent()).length > 0);
    await page.click('#stop');
    assert.equal(await waitFor('the finish reason', finished), 'stopped');
    const n = (await lastAnswer.textContent()).length;
    assert.ok(Number(await text('#token-count')) < 30000, 'stopped before max_tokens');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await lastAnswer.textContent()).length, n, 'no text after Stop');
    assert.ok(await page.locator('#send').isEnabled());
    await waitFor('the server\'s 499 log line', () => disconnects() === before + 1);
    await waitIdle();
  });

  await check('completion mode streams the continuation of the prompt', async () => {
    // a prompt whose greedy continuation the API streams in several pieces: what a barely
    // trained model writes is arbitrary (it might be one piece, or only end-of-text tokens)
    const request = (prompt) => ({ model: env.model, prompt, temperature: 0, top_p: 0.95, max_tokens: streamTokens, ignore_eos: true });
    let prompt = null, pieces = [];
    for (const p of ['the', 'and', 'of', 'you', 'program']) {
      pieces = await apiStream('/v1/completions', request(p));
      if (pieces.length > 1) { prompt = p; break; }
    }
    assert.ok(prompt, 'some prompt streams in more than one piece');
    await page.click('#mode-completion');
    assert.ok(await page.locator('#completion').isVisible());
    assert.ok(!(await page.locator('#transcript').isVisible()));
    await page.fill('#temperature', '0');
    await page.fill('#repetition_penalty', '');
    await page.fill('#max_tokens', String(streamTokens));
    await page.fill('#prompt', prompt);
    await page.click('#send');
    const finish = await waitFor('the finish reason', finished);
    const whole = await api('/v1/completions', request(prompt));
    assert.equal(finish, 'length');
    assert.equal(whole.choices[0].finish_reason, 'length');
    assert.equal(await text('#completion .prompt'), prompt);
    assert.equal(await text('#completion .generated'), whole.choices[0].text);
    assert.equal(pieces.join(''), whole.choices[0].text);
    // it came as several events, appended as they arrived (the server joins the text of the
    // tokens made while it could not write, so the count is not the API's, and a short
    // answer on a busy machine may come whole: hence streamTokens)
    assert.ok(Number(await page.locator('#completion .generated').getAttribute('data-chunks')) > 1, 'more than one streamed event');
  });

  await check('the key is kept for the tab: a reload asks for none', async () => {
    await page.reload();
    await waitFor('the model name', async () => (await text('#model')) === env.model);
    assert.ok(!(await page.locator('#keybox').isVisible()));
  });

  await check('no console errors, no CSP refusals, nothing fetched from elsewhere', async () => {
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(foreign, []);
  });
  summary('web browser');
} catch (e) {
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
