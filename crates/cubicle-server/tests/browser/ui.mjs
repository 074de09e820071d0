// Drives the web UI in headless Chromium: start a task with the scripted
// model, answer its question, approve its command, watch the plan complete,
// open the output file, then show a pairing QR code. Run by tests/browser.rs, which starts the server and
// passes CUBICLE_URL, CHROMIUM and SHOTS (the screenshot folder). Prints one
// JSON line with what it saw; exits non-zero on any failure.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const url = process.env.CUBICLE_URL;
const shots = process.env.SHOTS;
mkdirSync(shots, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'cubicle-chromium-'));
const seen = { steps: [] };
const step = async (page, name) => {
  seen.steps.push(name);
  await page.screenshot({ path: join(shots, `${String(seen.steps.length).padStart(2, '0')}-${name}.png`), fullPage: true });
};

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM,
  headless: true,
  acceptDownloads: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 1100, height: 900 },
});
let code = 0;
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(60_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(url);
  await page.getByLabel('What outcome do you want?').waitFor();
  seen.first_render_ms = Date.now() - t0;
  await step(page, 'new-task');

  await page.getByLabel('What outcome do you want?').fill('Write a report');
  // The grant row the form starts with is left empty (no folders).
  await page.getByLabel('Where commands run').selectOption('host');
  await page.getByRole('button', { name: 'Start' }).click();

  const question = page.getByRole('form', { name: 'Question from the agent' });
  await question.waitFor();
  seen.question = await question.innerText();
  await step(page, 'question');
  await question.getByRole('button', { name: 'EUR' }).click();

  const approval = page.getByRole('group', { name: 'Approval needed' });
  await approval.waitFor();
  seen.approval = await approval.innerText();
  await step(page, 'approval');
  await approval.getByRole('button', { name: 'Allow once' }).click();

  await page.locator('#plan li[data-status="completed"]').nth(1).waitFor();
  seen.plan = await page.locator('#plan').innerText();
  await page.getByText('Done — send a message to continue, or stop.').waitFor();
  await step(page, 'plan-done');

  const file = page.getByRole('button', { name: 'Download report.md' });
  await file.waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), file.click()]);
  seen.download_name = download.suggestedFilename();
  seen.download = readFileSync(await download.path(), 'utf8');
  await page.getByRole('button', { name: 'Preview report.md' }).click();
  await page.locator('#preview .markdown h1').waitFor();
  seen.preview = await page.locator('#preview').innerHTML();
  await step(page, 'output');

  // Pair a device: the QR code and the one-time code appear.
  await page.getByRole('button', { name: 'Devices' }).click();
  await page.getByLabel('What may the device do?').selectOption('control');
  await page.getByRole('button', { name: 'Show pairing code' }).click();
  await page.locator('#pair-offer').waitFor();
  seen.pair_code = await page.locator('#pair-code').innerText();
  seen.qr_width = await page.locator('#pair-qr').evaluate((img) => img.naturalWidth);
  await step(page, 'pair');

  // Policy (effective values and where they come from) and the audit log.
  await page.getByRole('button', { name: 'Policy' }).click();
  await page.locator('#policy-table tbody tr').first().waitFor();
  seen.policy = await page.locator('#policy-table').innerText();
  await step(page, 'policy');
  await page.getByRole('button', { name: 'Audit log' }).click();
  await page.locator('#audit-verify').filter({ hasText: /intact|changed/ }).waitFor();
  seen.audit = await page.locator('#audit-verify').innerText();
  await step(page, 'audit');

  // Skills: drop a .skill file (SKILL_FILE, made by the test) on the page.
  await page.getByRole('button', { name: 'Skills' }).click();
  await page.getByText('No skills installed yet.').waitFor();
  await page.locator('#skill-file').setInputFiles(process.env.SKILL_FILE);
  await page.locator('#skills li.skill').first().waitFor();
  seen.skills = await page.locator('#skills').innerText();
  await step(page, 'skills');

  // A skill's private preferences: add one, save it.
  await page.getByRole('button', { name: 'Edit your preferences for expense-report' }).click();
  await page.getByRole('button', { name: 'Add a preference' }).click();
  await page.getByLabel('Name 1').fill('currency');
  await page.getByLabel('Value 1').fill('EUR');
  await page.getByRole('button', { name: 'Save preferences' }).click();
  await page.getByText('Saved 1 preference(s) for expense-report.').waitFor();
  seen.prefs = await page.locator('#prefs-panel').innerText();
  await step(page, 'prefs');

  // A plugin from a marketplace (MARKET_DIR, a folder made by the test).
  await page.getByLabel(/Add a marketplace/).fill(process.env.MARKET_DIR);
  await page.locator('#market-form').getByRole('button', { name: 'Add' }).click();
  await page.getByRole('button', { name: 'Install invoices@finance' }).click();
  await page.getByText(/Installed invoices with skills invoices:file-invoice/).waitFor();
  // The message comes first; the marketplace list is fetched again after it.
  await page.locator('#marketplaces').getByText('Installed', { exact: true }).waitFor();
  seen.plugins = await page.locator('#marketplaces').innerText();
  await step(page, 'plugin');

  // Settings: provider, model, server address and an API key.
  await page.getByRole('button', { name: 'Settings' }).click();
  const settings = page.locator('#view-settings');
  await settings.getByLabel('Provider').selectOption('openai');
  await settings.getByLabel('Model', { exact: true }).fill('qwen2.5-coder:7b');
  await settings.getByLabel(/Server address/).fill('http://127.0.0.1:8080/v1');
  await settings.getByLabel('API key', { exact: true }).fill('sk-browser-secret');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Saved. New sessions use these settings.').waitFor();
  seen.settings_key_status = await page.locator('#set-key-status').innerText();
  seen.settings_key_field = await settings.getByLabel('API key', { exact: true }).inputValue();
  await step(page, 'settings');
  // The same screens at phone width (artefacts for a person to look at).
  const wide = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, 'phone-settings.png'), fullPage: true });
  await page.getByRole('button', { name: 'Skills' }).click();
  await page.getByRole('button', { name: 'Install invoices@finance' }).or(page.getByText('Installed', { exact: true })).first().waitFor();
  await page.screenshot({ path: join(shots, 'phone-skills.png'), fullPage: true });
  if (wide) await page.setViewportSize(wide);

  // Time to first render, warm: the app showing its session list (page,
  // script and one API call) against the pairing page, a static form from
  // the same server, as the peer. Reported, never asserted.
  const render = async (target, ready) => {
    const t = Date.now();
    await page.goto(target);
    await ready.waitFor();
    return Date.now() - t;
  };
  const app = [], peer = [];
  for (let i = 0; i < 5; i++) {
    app.push(await render(url, page.locator('#sessions li button').first()));
    peer.push(await render(new URL('/pair', url).href, page.locator('#code')));
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  seen.render_ms = { app: median(app), pair_page: median(peer) };
  seen.page_errors = errors;
} catch (e) {
  seen.error = String(e && e.stack || e);
  code = 1;
  try { const p = context.pages()[0]; if (p) await p.screenshot({ path: join(shots, 'failure.png'), fullPage: true }); } catch { /* best effort */ }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(seen));
process.exit(code);
