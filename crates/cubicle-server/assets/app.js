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
  for (const v of ['new', 'list', 'session']) $(`view-${v}`).hidden = v !== view;
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
  try {
    const s = await (await api('GET', `/api/sessions/${encodeURIComponent(id)}`)).json();
    if (s.header.task) $('session-title').textContent = s.header.task;
    live = s.live;
  } catch (e) { showError(e); }
  if (!live) { setStatus('Finished. Past sessions show their output files.'); return; }
  connect(id);
}

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
      el('button', { type: 'button', textContent: `${f.path} (${f.size} bytes)`, 'aria-label': `Download ${f.path}`, on: { click: () => download(id, f.path) } }))));
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

if (!token) showError(new Error('This page needs the link `cubicle serve` printed (it carries the access token).'));
addGrant();
// `?session=ID` opens that session (e.g. the one `cubicle demo --ui` started).
const wanted = new URLSearchParams(location.search).get('session');
loadList().then(() => {
  if (wanted) openSession(wanted);
  else if (!$('sessions').querySelector('button')) show('new');
});
