// Cubicle web UI: plain ES module, no framework. Every request carries the
// token from the page URL; the event stream passes it as a subprotocol.
const token = new URLSearchParams(location.search).get('token') || '';
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') n.className = v;
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) n.addEventListener(ev, f);
    else if (k in n) n[k] = v;
    else n.setAttribute(k, v);
  }
  for (const k of kids) n.append(k);
  return n;
};

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) {
    let msg = `${res.status}`;
    try { msg = (await res.json()).error || msg; } catch { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

function showError(e) {
  const p = $('error');
  p.textContent = e ? String(e.message || e) : '';
  p.hidden = !e;
}

function show(view) {
  for (const v of ['new', 'list', 'session', 'devices', 'policy', 'audit', 'skills', 'settings']) $(`view-${v}`).hidden = v !== view;
  showError(null);
}

// ---- new task ----------------------------------------------------------
function addGrant() {
  const row = $('grant-row').content.firstElementChild.cloneNode(true);
  row.querySelector('.grant-remove').addEventListener('click', () => row.remove());
  $('grants').append(row);
  row.querySelector('.grant-path').focus();
}
$('add-grant').addEventListener('click', addGrant);
$('new-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const grants = [...$('grants').querySelectorAll('.grant')].map((r) => ({
    path: r.querySelector('.grant-path').value.trim(),
    writable: r.querySelector('.grant-mode').value === 'rw',
  })).filter((g) => g.path);
  const body = {
    task: $('task').value,
    grants,
    backend: $('backend').value || null,
    model: $('model').value.trim() || null,
  };
  try {
    const { id } = await (await api('POST', '/api/sessions', body)).json();
    openSession(id);
  } catch (e) { showError(e); }
});

// ---- session list ------------------------------------------------------
async function loadList() {
  show('list');
  const ul = $('sessions');
  ul.replaceChildren(el('li', { class: 'muted', textContent: 'Loading…' }));
  try {
    const { sessions } = await (await api('GET', '/api/sessions')).json();
    ul.replaceChildren(...sessions.map((s) => el('li', {},
      el('button', { type: 'button', on: { click: () => openSession(s.id, s.live) } },
        el('span', { textContent: s.task || '(chat)' }), el('br'),
        el('span', { class: 'meta', textContent: `${s.live ? '● running · ' : ''}${s.updated_at} · ${s.model} · ${s.backend}` })))));
    if (!sessions.length) ul.replaceChildren(el('li', { class: 'muted', textContent: 'No sessions yet.' }));
  } catch (e) { showError(e); }
}
$('nav-list').addEventListener('click', loadList);
$('nav-new').addEventListener('click', () => { closeStream(); show('new'); $('task').focus(); });

// ---- live session ------------------------------------------------------
let current = null; // { id, ws, tools: Map, text: node }
function closeStream() { if (current && current.ws) current.ws.close(); current = null; }

function setStatus(s) { $('session-status').textContent = s; }

async function openSession(id, live = true) {
  closeStream();
  show('session');
  $('feed').replaceChildren();
  $('prompts').replaceChildren();
  $('live-text').textContent = '';
  $('plan').replaceChildren(el('li', { class: 'muted', textContent: 'No plan yet.' }));
  $('session-title').textContent = `Session ${id}`;
  current = { id, ws: null, tools: new Map(), text: null };
  loadFiles();
  $('preview-box').hidden = true;
  let history = null;
  try {
    const s = await (await api('GET', `/api/sessions/${encodeURIComponent(id)}`)).json();
    if (s.header.task) $('session-title').textContent = s.header.task;
    live = s.live;
    history = s.entries;
  } catch (e) { showError(e); }
  $('resume').hidden = live || role.role === 'device';
  if (!live) {
    if (history) showHistory(history);
    setStatus('Finished. Resume it to continue, or look at its output files.');
    return;
  }
  connect(id);
}

// A past session, rebuilt from its transcript entries.
function showHistory(entries) {
  const feed = $('feed');
  const tools = new Map();
  for (const e of entries) {
    if (e.agent) continue;
    if (e.type === 'user_message') {
      const text = e.message.content.filter((b) => b.type === 'text').map((b) => b.text).join('\n');
      if (text) feed.append(el('div', { class: 'user', textContent: text }));
    } else if (e.type === 'model_response') {
      for (const b of e.message.content) {
        if (b.type === 'text' && b.text) feed.append(el('div', { class: 'assistant', textContent: b.text }));
        if (b.type === 'tool_use') {
          const pre = el('pre');
          const d = el('details', { class: 'tool' }, el('summary', { textContent: b.name }), el('pre', { textContent: JSON.stringify(b.input, null, 2) }), pre);
          tools.set(b.id, { d, pre });
          feed.append(d);
        }
      }
    } else if (e.type === 'tool_result') {
      const t = tools.get(e.call_id);
      if (t) {
        t.pre.textContent = e.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
        if (e.is_error) t.d.classList.add('error');
      }
    } else if (e.type === 'plan') {
      onEvent({ type: 'plan', todos: e.todos });
    }
  }
}

$('resume').addEventListener('click', async () => {
  if (!current) return;
  const id = current.id;
  try {
    await api('POST', `/api/sessions/${encodeURIComponent(id)}/resume`, {});
    $('resume').hidden = true;
    $('feed').append(el('p', { class: 'notice', textContent: 'Resumed — send a message to continue.' }));
    current.tools.clear();
    setStatus('Resumed.');
    connect(id);
  } catch (e) { showError(e); }
});

function connect(id) {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/sessions/${encodeURIComponent(id)}/events`;
  const ws = new WebSocket(url, ['cubicle.v1', `cubicle.token.${token}`]);
  current.ws = ws;
  setStatus('Connecting…');
  ws.addEventListener('open', () => setStatus('Working…'));
  ws.addEventListener('message', (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { showError(e); } });
  ws.addEventListener('close', (c) => {
    if (current && current.ws === ws && c.code === 4000) { current.tools.clear(); $('feed').replaceChildren(); connect(id); }
  });
}

function flushText() { if (current) current.text = null; $('live-text').textContent = ''; }

function onEvent(ev) {
  const feed = $('feed');
  switch (ev.type) {
    case 'session_started':
      feed.append(el('p', { class: 'notice', textContent: `Model ${ev.model} · ${ev.backend}${ev.isolated ? '' : ' (NOT isolated)'} · ${ev.grants.map((g) => `${g.path}${g.writable ? ' (read-write)' : ' (read-only)'}`).join(', ') || 'no folders'}` }));
      break;
    case 'text_delta':
      if (ev.agent) break;
      if (!current.text) { current.text = el('div', { class: 'assistant' }); feed.append(current.text); }
      current.text.textContent += ev.text;
      $('live-text').textContent += ev.text;
      break;
    case 'tool_call_started': {
      flushText();
      const pre = el('pre', { textContent: '' });
      const d = el('details', { class: 'tool' }, el('summary', { textContent: `${ev.agent ? `[${ev.agent}] ` : ''}${ev.summary || ev.name}` }),
        el('pre', { textContent: JSON.stringify(ev.input, null, 2) }), pre);
      current.tools.set(ev.call_id, { d, pre });
      feed.append(d);
      break;
    }
    case 'tool_output': {
      const t = current.tools.get(ev.call_id);
      if (t) t.pre.textContent += ev.text;
      break;
    }
    case 'tool_call_finished': {
      const t = current.tools.get(ev.call_id);
      if (t) {
        t.pre.textContent = ev.output;
        if (ev.is_error) t.d.classList.add('error');
        t.d.querySelector('summary').textContent += ` — ${ev.is_error ? 'failed' : 'done'} (${ev.duration_ms} ms)`;
      }
      if (/write|edit|bash/.test(current.tools.get(ev.call_id)?.d.textContent || '')) loadFiles();
      break;
    }
    case 'plan':
      $('plan').replaceChildren(...ev.todos.map((t) => el('li', { 'data-status': t.status },
        `${t.status === 'completed' ? '☑' : t.status === 'in_progress' ? '▶' : '☐'} `,
        t.status === 'in_progress' && t.activeForm ? t.activeForm : t.content,
        el('span', { class: 'visually-hidden', textContent: ` (${t.status.replace('_', ' ')})` }))));
      break;
    case 'question': showQuestion(ev); break;
    case 'approval_request': showApproval(ev); break;
    case 'notice': feed.append(el('p', { class: 'notice', textContent: `${ev.level}: ${ev.message}` })); break;
    case 'turn_started': setStatus('Working…'); break;
    case 'turn_ended':
      flushText();
      setStatus(ev.reason.kind === 'done' ? 'Done — send a message to continue, or stop.' : `Stopped: ${ev.reason.detail || ev.reason.message || ev.reason.kind}`);
      loadFiles();
      break;
    case 'session_ended':
      setStatus('Session ended.');
      $('prompts').replaceChildren();
      loadFiles();
      break;
    default: break;
  }
}

async function sendOp(op) {
  try { await api('POST', `/api/sessions/${encodeURIComponent(current.id)}/ops`, op); } catch (e) { showError(e); }
}

function showQuestion(ev) {
  if (document.body.classList.contains('watch-only')) {
    $('prompts').append(el('p', { class: 'notice', textContent: `The agent asks: ${ev.questions.map((q) => q.question).join(' ')} (answer on a device that may control)` }));
    return;
  }
  const card = el('form', { class: 'card', 'aria-label': 'Question from the agent' });
  const answers = ev.questions.map(() => ({ selected: [], text: null }));
  ev.questions.forEach((q, i) => {
    const text = el('input', { id: `q-${ev.id}-${i}`, placeholder: 'Or write your own answer' });
    const opts = el('div', { class: 'options', role: 'group', 'aria-label': q.header });
    for (const o of q.options) {
      const b = el('button', { type: 'button', textContent: o.label, title: o.description, 'aria-pressed': 'false' });
      b.addEventListener('click', () => {
        const sel = answers[i].selected;
        const on = b.getAttribute('aria-pressed') !== 'true';
        if (!q.multiSelect) { sel.length = 0; opts.querySelectorAll('button').forEach((x) => x.setAttribute('aria-pressed', 'false')); }
        if (on) sel.push(o.label); else sel.splice(sel.indexOf(o.label), 1);
        b.setAttribute('aria-pressed', String(on));
        if (!q.multiSelect && ev.questions.length === 1) submit();
      });
      opts.append(b);
    }
    text.addEventListener('input', () => { answers[i].text = text.value || null; });
    card.append(el('p', {}, el('strong', { textContent: `${q.header}: ` }), q.question), opts,
      el('label', { htmlFor: text.id, textContent: 'Your answer' }), text);
  });
  const submit = () => { card.remove(); sendOp({ type: 'answer', id: ev.id, answers }); };
  card.append(el('button', { type: 'submit', class: 'primary', textContent: 'Answer' }));
  card.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  $('prompts').append(card);
  card.querySelector('button')?.focus();
}

function showApproval(ev) {
  if (document.body.classList.contains('watch-only')) {
    $('prompts').append(el('p', { class: 'notice', textContent: `Waiting for approval: ${ev.summary}` }));
    return;
  }
  const card = el('div', { class: 'card', role: 'group', 'aria-label': 'Approval needed' });
  const decide = (decision) => { card.remove(); sendOp({ type: 'approve', id: ev.id, decision }); };
  card.append(
    el('p', {}, el('strong', { textContent: 'Allow this? ' }), ev.summary),
    el('p', { class: 'reason', textContent: `Why you are asked: ${ev.reason} (${ev.tool})` }),
    el('div', { class: 'options' },
      el('button', { type: 'button', textContent: 'Allow once', on: { click: () => decide('allow_once') } }),
      el('button', { type: 'button', textContent: 'Allow for this session', on: { click: () => decide('allow_session') } }),
      el('button', { type: 'button', class: 'danger', textContent: 'Deny', on: { click: () => decide('deny') } })));
  $('prompts').append(card);
  card.querySelector('button').focus();
}

async function loadFiles() {
  if (!current) return;
  const id = current.id;
  try {
    const { files } = await (await api('GET', `/api/sessions/${encodeURIComponent(id)}/files`)).json();
    $('files').replaceChildren(...files.map((f) => el('li', {},
      el('button', { type: 'button', textContent: `${f.path} (${f.size} bytes)`, 'aria-label': `Download ${f.path}`, on: { click: () => download(id, f.path) } }),
      ' ',
      el('button', { type: 'button', class: 'preview-btn', textContent: 'Preview', 'aria-label': `Preview ${f.path}`, on: { click: () => showPreview(id, f.path) } }))));
    if (!files.length) $('files').replaceChildren(el('li', { class: 'muted', textContent: 'None yet.' }));
  } catch (e) { showError(e); }
}

async function download(id, path) {
  try {
    const res = await api('GET', `/api/sessions/${encodeURIComponent(id)}/files/${path.split('/').map(encodeURIComponent).join('/')}`);
    const url = URL.createObjectURL(await res.blob());
    const a = el('a', { href: url, download: path.split('/').pop() });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { showError(e); }
}

const filePath = (path) => path.split('/').map(encodeURIComponent).join('/');
let previewUrl = null;
async function showPreview(id, path) {
  const box = $('preview');
  if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
  $('preview-box').hidden = false;
  $('preview-title').textContent = `Preview: ${path}`;
  box.replaceChildren(el('p', { class: 'muted', textContent: 'Loading…' }));
  try {
    const p = await (await api('GET', `/api/sessions/${encodeURIComponent(id)}/preview/${filePath(path)}`)).json();
    if (p.kind === 'table') {
      const [head, ...body] = p.rows;
      const table = el('table', {},
        el('caption', { class: 'visually-hidden', textContent: `${path}${p.sheet ? `, sheet ${p.sheet}` : ''}` }),
        el('thead', {}, el('tr', {}, ...(head || []).map((c) => el('th', { scope: 'col', textContent: c })))),
        el('tbody', {}, ...body.map((r) => el('tr', {}, ...r.map((c) => el('td', { textContent: c }))))));
      box.replaceChildren(...(p.sheet ? [el('p', { class: 'muted', textContent: `Sheet ${p.sheet}` })] : []), el('div', { class: 'table-wrap' }, table),
        ...(p.truncated ? [el('p', { class: 'muted', textContent: 'Only the start is shown; download the file to see all of it.' })] : []));
    } else if (p.kind === 'markdown') {
      // Rendered by the server with raw HTML escaped and unsafe links dropped.
      const doc = el('div', { class: 'markdown' });
      doc.innerHTML = p.html;
      box.replaceChildren(doc);
    } else if (p.kind === 'media') {
      const res = await api('GET', `/api/sessions/${encodeURIComponent(id)}/files/${filePath(path)}`);
      previewUrl = URL.createObjectURL(new Blob([await res.arrayBuffer()], { type: p.mime }));
      box.replaceChildren(p.mime === 'application/pdf'
        ? el('iframe', { src: previewUrl, title: path, class: 'pdf' })
        : el('img', { src: previewUrl, alt: path }));
    } else if (p.kind === 'text') {
      box.replaceChildren(el('pre', { textContent: p.text }));
    } else {
      box.replaceChildren(el('p', { class: 'muted', textContent: `${p.reason}.` }));
    }
  } catch (e) { showError(e); }
}

// ---- policy and audit (owner only) --------------------------------------
async function loadPolicy() {
  closeStream();
  show('policy');
  try {
    const p = await (await api('GET', '/api/policy')).json();
    $('policy-notices').replaceChildren(...p.notices.map((n) => el('li', { textContent: n })));
    $('policy-table').tBodies[0].replaceChildren(...p.settings.map((s) => el('tr', {},
      el('th', { scope: 'row', textContent: s.key }), el('td', {}, el('code', { textContent: s.value })), el('td', { textContent: s.origin }))));
  } catch (e) { showError(e); }
}
async function loadAudit() {
  closeStream();
  show('audit');
  try {
    const a = await (await api('GET', '/api/audit?limit=200')).json();
    const v = a.verify || {};
    $('audit-verify').textContent = v.ok
      ? `✔ The log is intact: ${v.records} records in ${v.files} file(s)${v.keyed ? ', sealed with your key' : ''}.`
      : `✘ The log has been changed: ${v.first_bad}`;
    $('audit-verify').className = v.ok ? 'status ok' : 'status error';
    $('audit-table').tBodies[0].replaceChildren(...(a.records || []).map((r) => {
      const { kind: _k, ...detail } = r.detail || {};
      return el('tr', {}, el('td', { textContent: r.seq }), el('td', { textContent: r.ts }), el('td', { textContent: r.kind.replace(/_/g, ' ') }),
        el('td', { textContent: r.session || '' }), el('td', {}, el('code', { textContent: JSON.stringify(detail) })));
    }));
  } catch (e) { showError(e); }
}
$('nav-policy').addEventListener('click', loadPolicy);

// ---- skills (owner only) -------------------------------------------------
async function loadSkills() {
  closeStream();
  show('skills');
  try {
    const l = await (await api('GET', '/api/skills')).json();
    $('skills').replaceChildren(...l.skills.map((k) => el('li', { class: 'skill skill-row' },
      el('div', {}, el('strong', { textContent: k.name }), ` — ${k.source}${k.person_only ? ', you invoke it' : ''}${k.model_only ? ', the agent invokes it' : ''}`,
        el('br'), el('span', { class: 'meta', textContent: k.description })),
      el('button', { type: 'button', textContent: 'Preferences', 'aria-label': `Edit your preferences for ${k.name}`,
        on: { click: () => openPrefs(k.name) } }))));
    if (!l.skills.length) $('skills').replaceChildren(el('li', { class: 'muted', textContent: 'No skills installed yet.' }));
    $('skill-notices').replaceChildren(...l.notices.map((n) => el('li', { textContent: n })));
  } catch (e) { showError(e); }
  await loadMarketplaces();
}

// A skill's private preferences: key/value rows; removed rows are unset.
let prefsSkill = null;
let prefsKeys = [];
function prefRow(key = '', value = '') {
  const n = $('prefs-rows').children.length + 1;
  const row = el('li', { class: 'pref' },
    el('label', {}, `Name ${n}`, el('input', { class: 'pref-key', value: key, autocomplete: 'off', placeholder: 'currency' })),
    el('label', {}, `Value ${n}`, el('input', { class: 'pref-value', value, autocomplete: 'off', placeholder: 'EUR' })));
  row.append(el('button', { type: 'button', textContent: 'Remove', 'aria-label': `Remove preference ${key || n}`, on: { click: () => row.remove() } }));
  $('prefs-rows').append(row);
  return row;
}
function showPrefs(p) {
  prefsKeys = p.entries.map((e) => e.key);
  $('prefs-rows').replaceChildren();
  for (const e of p.entries) prefRow(e.key, e.value);
  $('prefs-notes').textContent = p.notes
    ? `Also given to the agent, from ${p.path.replace(/\.toml$/, '.md')}: ${p.notes}`
    : `Kept in ${p.path}.`;
}
async function openPrefs(name) {
  try {
    const p = await (await api('GET', `/api/skills/${encodeURIComponent(name)}/prefs`)).json();
    prefsSkill = name;
    $('prefs-title').textContent = `Your preferences for ${name}`;
    $('prefs-result').textContent = '';
    showPrefs(p);
    $('prefs-panel').hidden = false;
    ($('prefs-rows').querySelector('input') || $('prefs-add')).focus();
  } catch (e) { showError(e); }
}
$('prefs-add').addEventListener('click', () => prefRow().querySelector('input').focus());
$('prefs-close').addEventListener('click', () => { $('prefs-panel').hidden = true; prefsSkill = null; });
$('prefs-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  if (!prefsSkill) return;
  const set = {};
  for (const r of $('prefs-rows').querySelectorAll('.pref')) {
    const key = r.querySelector('.pref-key').value.trim();
    if (key) set[key] = r.querySelector('.pref-value').value;
  }
  const unset = prefsKeys.filter((k) => !(k in set));
  try {
    const p = await (await api('POST', `/api/skills/${encodeURIComponent(prefsSkill)}/prefs`, { set, unset })).json();
    showPrefs(p);
    showError(null);
    $('prefs-result').textContent = `Saved ${p.entries.length} preference(s) for ${prefsSkill}.`;
  } catch (e) { showError(e); }
});

// Plugin marketplaces: add one, install a plugin from it.
async function loadMarketplaces() {
  try {
    const l = await (await api('GET', '/api/plugins')).json();
    $('marketplaces').replaceChildren(...l.marketplaces.map((m) => el('li', { class: 'market' },
      el('strong', { textContent: m.name }), el('span', { class: 'meta', textContent: ` — ${m.source}${m.description ? ` · ${m.description}` : ''}` }),
      m.error ? el('p', { class: 'error', textContent: m.error }) : '',
      el('ul', {}, ...m.plugins.map((p) => el('li', { class: 'offer' },
        el('span', {}, el('span', { textContent: `${p.name}${p.version ? ` ${p.version}` : ''}` }), el('br'),
          el('span', { class: 'meta', textContent: p.description || '' })),
        p.installed
          ? el('span', { class: 'meta', textContent: 'Installed' })
          : el('button', { type: 'button', textContent: 'Install', 'aria-label': `Install ${p.spec}`, on: { click: () => installPlugin(p.spec) } })))))));
    if (!l.marketplaces.length) $('marketplaces').replaceChildren(el('li', { class: 'muted', textContent: 'No marketplaces added yet.' }));
  } catch (e) {
    $('marketplaces').replaceChildren(el('li', { class: 'muted', textContent: String(e.message || e) }));
  }
}
async function installPlugin(spec) {
  $('market-result').textContent = `Installing ${spec}…`;
  try {
    const r = await (await api('POST', '/api/plugins/install', { spec })).json();
    $('market-result').textContent = `Installed ${r.record.plugin}${r.skills.length ? ` with skills ${r.skills.join(', ')}` : ''}. New sessions can use it.${r.warnings.length ? ` Warnings: ${r.warnings.join('; ')}` : ''}`;
    await loadMarketplaces();
  } catch (e) { $('market-result').textContent = ''; showError(e); }
}
$('market-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const source = $('market-source').value.trim();
  if (!source) return;
  $('market-result').textContent = `Adding ${source}…`;
  try {
    const m = await (await api('POST', '/api/plugins/marketplaces', { source })).json();
    $('market-source').value = '';
    showError(null);
    $('market-result').textContent = `Added marketplace ${m.name} with ${m.plugins.length} plugin(s).`;
    await loadMarketplaces();
  } catch (e) { $('market-result').textContent = ''; showError(e); }
});

// ---- settings (owner only) -------------------------------------------------
function showSettings(s) {
  const sel = $('set-provider');
  sel.replaceChildren(el('option', { value: '', textContent: 'Automatic (from the environment)' }),
    ...s.providers.map((p) => el('option', { value: p, textContent: p === 'anthropic' ? 'Anthropic' : p === 'openai' ? 'OpenAI-compatible (OpenAI, llama.cpp, Ollama, vLLM)' : p })));
  sel.value = s.provider || '';
  $('set-model').value = s.model || '';
  $('set-base-url').value = s.base_url || '';
  $('set-key').value = '';
  $('set-key-clear').checked = false;
  $('set-key').placeholder = s.api_key_stored ? '•••••••• (stored; type a new one to replace it)' : 'paste your API key';
  $('set-key-status').textContent = (s.api_key_stored ? 'A key is stored in your secret store.' : 'No key is stored.')
    + (s.api_key_env ? ` ${s.api_key_env} is set in the environment and is used instead.` : '');
  $('settings-location').textContent = `Kept in ${s.location}.`;
}
async function loadSettings() {
  closeStream();
  show('settings');
  $('settings-result').textContent = '';
  try { showSettings(await (await api('GET', '/api/settings')).json()); } catch (e) { showError(e); }
}
$('nav-settings').addEventListener('click', loadSettings);
$('settings-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = {
    provider: $('set-provider').value,
    model: $('set-model').value,
    base_url: $('set-base-url').value,
    clear_api_key: $('set-key-clear').checked,
  };
  const key = $('set-key').value.trim();
  if (key) body.api_key = key;
  try {
    showSettings(await (await api('POST', '/api/settings', body)).json());
    showError(null);
    $('settings-result').textContent = 'Saved. New sessions use these settings.';
  } catch (e) { showError(e); }
});
async function importSkill(file) {
  if (!file) return;
  try {
    const res = await fetch('/api/skills/import', { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: file });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `import failed (${res.status})`);
    $('skill-result').textContent = `Installed ${body.name}.${body.warnings.length ? ` Warnings: ${body.warnings.join('; ')}` : ''}`;
    await loadSkills();
  } catch (e) { showError(e); }
}
$('nav-skills').addEventListener('click', loadSkills);
const drop = $('skill-drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); importSkill(e.dataTransfer.files[0]); });
drop.addEventListener('click', () => $('skill-file').click());
drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); $('skill-file').click(); } });
$('skill-file').addEventListener('change', (e) => importSkill(e.target.files[0]));
$('nav-audit').addEventListener('click', loadAudit);

$('refresh-files').addEventListener('click', loadFiles);
$('stop').addEventListener('click', () => current && sendOp({ type: 'stop' }));
$('interrupt').addEventListener('click', () => current && sendOp({ type: 'interrupt' }));
$('message-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('message').value.trim();
  if (!text || !current) return;
  $('feed').append(el('div', { class: 'user', textContent: text }));
  $('message').value = '';
  sendOp({ type: 'message', text });
});

// ---- devices and pairing (owner only) ----------------------------------
async function loadDevices() {
  closeStream();
  show('devices');
  const ul = $('devices');
  try {
    const { devices } = await (await api('GET', '/api/devices')).json();
    ul.replaceChildren(...devices.map((d) => el('li', { class: 'device' },
      el('span', { textContent: `${d.name} — ${d.scope === 'control' ? 'watch and control' : 'watch only'} · paired ${d.paired_at}` }),
      el('button', { type: 'button', class: 'danger', textContent: 'Revoke', 'aria-label': `Revoke ${d.name}`,
        on: { click: async () => { try { await api('DELETE', `/api/devices/${encodeURIComponent(d.id)}`); loadDevices(); } catch (e) { showError(e); } } } }))));
    if (!devices.length) ul.replaceChildren(el('li', { class: 'muted', textContent: 'No paired devices.' }));
  } catch (e) { showError(e); }
}
$('nav-devices').addEventListener('click', loadDevices);
$('pair-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const o = await (await api('POST', '/api/pairing', { scope: $('pair-scope').value })).json();
    $('pair-qr').src = `data:image/svg+xml;base64,${btoa(o.qr_svg)}`;
    $('pair-code').textContent = o.code;
    $('pair-page').textContent = o.pair_page;
    $('pair-fp').textContent = o.fingerprint
      ? `The device's browser will warn about the certificate; it is this computer's own. Its SHA-256 fingerprint is ${o.fingerprint}.`
      : 'Remote access is off: this server listens on this computer only. Start it with `cubicle serve --remote 0.0.0.0:8443` (your policy must allow it).';
    $('pair-offer').hidden = false;
  } catch (e) { showError(e); }
});

// A paired device sees only what its scope allows.
let role = { role: 'owner' };
async function loadRole() {
  try { role = await (await api('GET', '/api/me')).json(); } catch { /* shown elsewhere */ }
  if (role.role !== 'device') return;
  document.querySelectorAll('[data-owner-only], #nav-new, #message-form').forEach((n) => { n.hidden = true; });
  if (role.scope !== 'control') document.body.classList.add('watch-only');
}

if (!token) showError(new Error('This page needs the link `cubicle serve` printed (it carries the access token).'));
addGrant();
// `?session=ID` opens that session (e.g. the one `cubicle demo --ui` started).
const wanted = new URLSearchParams(location.search).get('session');
loadRole().then(loadList).then(() => {
  if (wanted) openSession(wanted);
  else if (!$('sessions').querySelector('button') && role.role !== 'device') show('new');
});
