// Cubicle's page helper. Runs in an isolated world of the page (the page's
// own scripts cannot see or change it), installed on first use and kept in
// that world's global until the document goes away.
//
// The snapshot is text-first: plain lines for the page's text, `- role
// "name" [ref=eN]` lines for what can be acted on. Refs live in a WeakMap,
// so an element keeps its ref across snapshots and a removed element's ref
// reports itself as stale. Every walk is bounded in nodes, characters and
// time, so a 50 MB document costs no more than a large one.
(() => {
  if (globalThis.__cubicle) return globalThis.__cubicle;

  const refOf = new WeakMap();
  const byRef = new Map();
  let nextRef = 1;

  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'META', 'LINK', 'TITLE', 'OPTION', 'OPTGROUP', 'DATALIST']);
  const BLOCK = new Set(['P', 'DIV', 'SECTION', 'ARTICLE', 'HEADER', 'FOOTER', 'ASIDE', 'NAV', 'MAIN', 'UL', 'OL', 'LI', 'DL', 'DT', 'DD',
    'TABLE', 'THEAD', 'TBODY', 'TFOOT', 'TR', 'BLOCKQUOTE', 'PRE', 'FIGURE', 'FIGCAPTION', 'BR', 'HR', 'FORM', 'FIELDSET', 'LEGEND',
    'ADDRESS', 'DETAILS', 'CAPTION', 'BODY', 'HTML', 'CENTER']);
  const LANDMARK = new Set(['navigation', 'main', 'form', 'dialog', 'alertdialog', 'banner', 'contentinfo', 'complementary', 'search', 'region']);
  const INTERACTIVE = new Set(['link', 'button', 'textbox', 'searchbox', 'checkbox', 'radio', 'combobox', 'listbox', 'slider', 'spinbutton',
    'switch', 'tab', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'option', 'treeitem']);
  const INPUT_ROLE = {
    checkbox: 'checkbox', radio: 'radio', button: 'button', submit: 'button', reset: 'button', image: 'button', range: 'slider',
    number: 'spinbutton', search: 'searchbox', file: 'button', color: 'button',
  };
  const TAG_ROLE = {
    BUTTON: 'button', TEXTAREA: 'textbox', NAV: 'navigation', MAIN: 'main', DIALOG: 'dialog', SUMMARY: 'button',
    H1: 'heading', H2: 'heading', H3: 'heading', H4: 'heading', H5: 'heading', H6: 'heading', FORM: 'form',
  };

  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);
  const quote = (s) => JSON.stringify(s);

  function roleOf(el) {
    const explicit = el.getAttribute('role');
    if (explicit) return explicit.split(' ')[0].toLowerCase();
    const tag = el.tagName;
    if (tag === 'A') return el.hasAttribute('href') ? 'link' : null;
    if (tag === 'INPUT') {
      const type = (el.getAttribute('type') || 'text').toLowerCase();
      if (type === 'hidden') return 'hidden';
      return INPUT_ROLE[type] || 'textbox';
    }
    if (tag === 'SELECT') return el.multiple || el.size > 1 ? 'listbox' : 'combobox';
    if (el.isContentEditable && !(el.parentElement && el.parentElement.isContentEditable)) return 'textbox';
    return TAG_ROLE[tag] || null;
  }

  function nameOf(el, role) {
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const doc = el.ownerDocument;
      const t = squash(by.split(/\s+/).map((id) => { const n = doc.getElementById(id); return n ? n.textContent : ''; }).join(' '));
      if (t) return t;
    }
    const aria = squash(el.getAttribute('aria-label'));
    if (aria) return aria;
    const tag = el.tagName;
    if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') {
      if (tag === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type)) return squash(el.value) || (el.type === 'submit' ? 'Submit' : '');
      if (tag === 'INPUT' && el.type === 'image') return squash(el.alt) || 'Submit';
      if (el.labels && el.labels.length) {
        const t = squash(Array.from(el.labels).map(ownText).join(' '));
        if (t) return t;
      }
      return squash(el.getAttribute('placeholder')) || squash(el.title) || squash(el.getAttribute('name'));
    }
    if (tag === 'IMG') return squash(el.alt);
    if (role === 'textbox') return squash(el.title);
    let t = squash(el.textContent);
    if (!t) {
      const img = el.querySelector && el.querySelector('img[alt]');
      t = img ? squash(img.alt) : '';
    }
    return t || squash(el.title);
  }

  // A label's text without the text of the controls inside it.
  function ownText(n) {
    if (n.nodeType === 3) return n.data;
    if (n.nodeType !== 1 || ['SELECT', 'TEXTAREA', 'OPTION', 'SCRIPT', 'STYLE'].includes(n.tagName)) return '';
    let t = '';
    for (let c = n.firstChild; c; c = c.nextSibling) t += ownText(c);
    return t;
  }

  function refFor(el) {
    let r = refOf.get(el);
    if (!r) {
      r = 'e' + nextRef++;
      refOf.set(el, r);
      byRef.set(r, new WeakRef(el));
    }
    return r;
  }

  function visible(el) {
    if (el.checkVisibility) return el.checkVisibility({ opacityProperty: true, visibilityProperty: true });
    return el.getClientRects().length > 0;
  }

  function describe(el, role) {
    let line = '- ' + role;
    const name = clip(nameOf(el, role), 150);
    if (name) line += ' ' + quote(name);
    if (role === 'heading') line += ' [level=' + el.tagName.slice(1) + ']';
    if (INTERACTIVE.has(role) || el.isContentEditable) line += ' [ref=' + refFor(el) + ']';
    if (el.disabled || el.getAttribute('aria-disabled') === 'true') line += ' [disabled]';
    if (el.checked === true || el.getAttribute('aria-checked') === 'true') line += ' [checked]';
    if (el.getAttribute('aria-expanded') === 'true') line += ' [expanded]';
    if (el.getAttribute('aria-selected') === 'true') line += ' [selected]';
    if (el.required) line += ' [required]';
    if (el.tagName === 'SELECT') {
      const opts = Array.from(el.options);
      const chosen = opts.filter((o) => o.selected).map((o) => squash(o.label));
      line += ' = ' + quote(chosen.join(', '));
      const shown = opts.slice(0, 12).map((o) => squash(o.label));
      line += ' (options: ' + shown.join(', ') + (opts.length > 12 ? ', …+' + (opts.length - 12) : '') + ')';
    } else if (role === 'textbox' || role === 'searchbox' || role === 'spinbutton' || role === 'slider') {
      if (el.type === 'password') line += el.value ? ' = "••••"' : '';
      else if (typeof el.value === 'string' && el.value) line += ' = ' + quote(clip(el.value, 200));
      else if (el.isContentEditable && el.textContent) line += ' = ' + quote(clip(squash(el.textContent), 200));
      if (el.tagName === 'INPUT' && !['text', 'search', 'number', 'range'].includes(el.type)) line += ' [type=' + el.type + ']';
    } else if (role === 'link') {
      const href = el.getAttribute('href') || '';
      if (href && !href.startsWith('javascript:')) line += ' → ' + clip(href, 150);
    }
    return line;
  }

  class Walk {
    constructor(opts) {
      this.lines = [];
      this.chars = 0;
      this.nodes = 0;
      this.buf = '';
      this.maxNodes = opts.maxNodes;
      this.maxChars = opts.maxChars;
      this.deadline = performance.now() + opts.budgetMs;
      this.truncated = null;
      this.mute = 0;
    }
    full() {
      if (this.truncated) return true;
      if (this.nodes > this.maxNodes) this.truncated = 'the page has more than ' + this.maxNodes + ' elements';
      else if (this.chars > this.maxChars) this.truncated = 'the digest passed ' + this.maxChars + ' characters';
      else if ((this.nodes & 255) === 0 && performance.now() > this.deadline) this.truncated = 'the page took too long to digest';
      return !!this.truncated;
    }
    emit(depth, text) {
      const line = '  '.repeat(depth) + text;
      this.lines.push(line);
      this.chars += line.length + 1;
    }
    flush(depth) {
      const t = squash(this.buf);
      this.buf = '';
      if (t) this.emit(depth, clip(t, 2000));
    }
    children(node, depth) {
      for (let c = node.firstChild; c; c = c.nextSibling) {
        if (this.full()) return;
        this.node(c, depth);
      }
    }
    node(n, depth) {
      if (n.nodeType === 3) {
        if (this.mute) return;
        this.buf += n.data;
        if (this.buf.length > 4000) this.flush(depth);
        return;
      }
      if (n.nodeType !== 1) return;
      this.nodes++;
      const el = n;
      const tag = el.tagName;
      if (SKIP.has(tag) || el.getAttribute('aria-hidden') === 'true') return;
      if (!visible(el)) return;
      const role = roleOf(el);
      if (role === 'hidden' || (role === 'presentation' && el.children.length === 0)) return;
      if (role && INTERACTIVE.has(role)) {
        this.flush(depth);
        this.emit(depth, describe(el, role));
        return;
      }
      if (role === 'heading') {
        this.flush(depth);
        this.emit(depth, describe(el, role));
        if (el.querySelector('a[href],button,input,select,textarea')) this.interactiveOnly(el, depth + 1);
        return;
      }
      if (tag === 'IMG') {
        const alt = squash(el.alt);
        if (alt) this.buf += ' [image: ' + clip(alt, 100) + '] ';
        return;
      }
      if (tag === 'IFRAME' || tag === 'FRAME') {
        this.flush(depth);
        this.frame(el, depth);
        return;
      }
      if (LANDMARK.has(role)) {
        this.flush(depth);
        const name = clip(squash(el.getAttribute('aria-label')) || squash(el.getAttribute('name')), 80);
        this.emit(depth, '- ' + role + (name ? ' ' + quote(name) : '') + ':');
        this.children(el.shadowRoot || el, depth + 1);
        this.flush(depth + 1);
        return;
      }
      if (tag === 'LABEL' && el.control) {
        // The control's line carries the label as its name.
        this.mute++;
        this.children(el, depth);
        this.mute--;
        return;
      }
      const block = BLOCK.has(tag);
      if (block) this.flush(depth);
      if (tag === 'LI') this.buf += '• ';
      if (el.shadowRoot) this.children(el.shadowRoot, depth);
      else this.children(el, depth);
      if (tag === 'TD' || tag === 'TH') this.buf += ' | ';
      else if (block) this.flush(depth);
    }
    interactiveOnly(root, depth) {
      for (const el of root.querySelectorAll('a[href],button,input,select,textarea')) {
        const role = roleOf(el);
        if (role && role !== 'hidden' && visible(el)) this.emit(depth, describe(el, role));
      }
    }
    frame(el, depth) {
      const title = squash(el.title || el.name || '');
      const src = el.getAttribute('src') || '';
      let doc = null;
      try { doc = el.contentDocument; } catch (e) { doc = null; }
      if (doc && doc.body) {
        this.emit(depth, '- iframe' + (title ? ' ' + quote(title) : '') + (src ? ' (' + clip(src, 150) + ')' : '') + ':');
        this.children(doc.body, depth + 1);
        this.flush(depth + 1);
      } else {
        this.emit(depth, '- iframe' + (title ? ' ' + quote(title) : '') + ' (another site: ' + clip(src, 150) + '; its content is not shown — open it with browser_navigate to read it)');
      }
    }
  }

  // Login, CAPTCHA and payment pages pause the agent: it asks the person.
  function gates(doc) {
    const found = [];
    const q = (sel) => Array.from(doc.querySelectorAll(sel)).some((e) => visible(e));
    if (q('input[type=password]')) found.push('login');
    if (q('.g-recaptcha,.h-captcha,.cf-turnstile,iframe[src*="recaptcha"],iframe[src*="hcaptcha"],iframe[src*="challenges.cloudflare.com"],iframe[src*="arkoselabs"],iframe[title*="captcha" i]')) found.push('captcha');
    if (q('input[autocomplete^="cc-"],input[name*="cardnumber" i],input[name*="card_number" i],input[id*="cardnumber" i],input[name*="cvc" i],input[name*="cvv" i],iframe[src*="js.stripe.com"],iframe[src*="braintree"],iframe[src*="adyen"],iframe[name*="paypal"]')) found.push('payment');
    return found;
  }

  function pages(lines, pageChars) {
    const out = [];
    let cur = [], size = 0;
    for (const l of lines) {
      if (size + l.length + 1 > pageChars && cur.length) { out.push(cur); cur = []; size = 0; }
      cur.push(l.length > pageChars ? clip(l, pageChars) : l);
      size += l.length + 1;
    }
    if (cur.length || !out.length) out.push(cur);
    return out;
  }

  function resolve(ref) {
    const weak = byRef.get(ref);
    if (!weak) {
      return { error: 'there is no element ' + ref + ' on this page: the page has changed or was reloaded since the snapshot that showed it. Call browser_snapshot for fresh refs.' };
    }
    const el = weak.deref();
    if (!el || !el.isConnected) {
      return { error: 'element ' + ref + ' is no longer on the page (it was removed or replaced). Call browser_snapshot for fresh refs.' };
    }
    return { el };
  }

  function label(el) {
    const role = roleOf(el) || el.tagName.toLowerCase();
    return role + ' ' + quote(clip(nameOf(el, role), 80));
  }

  function sensitive(el) {
    if (el.tagName !== 'INPUT' && el.tagName !== 'TEXTAREA') return null;
    const ac = (el.getAttribute('autocomplete') || '').toLowerCase();
    const id = ((el.name || '') + ' ' + (el.id || '')).toLowerCase();
    if (el.type === 'password' || ac.includes('password')) return 'password';
    if (ac.startsWith('cc-') || /card.?num|cardnumber|cvc|cvv|security.?code/.test(id)) return 'payment';
    return null;
  }

  const api = {
    snapshot(opts) {
      const w = new Walk(opts);
      const body = document.body || document.documentElement;
      if (body) { w.children(body, 0); w.flush(0); }
      const all = pages(w.lines, opts.pageChars);
      const page = Math.min(Math.max(1, opts.page), all.length);
      return {
        url: location.href, title: document.title, text: all[page - 1].join('\n'), page, pages: all.length,
        truncated: w.truncated, gates: gates(document), lines: w.lines.length, chars: w.chars,
      };
    },
    text(opts) {
      let root = document.body || document.documentElement;
      if (opts.ref) { const r = resolve(opts.ref); if (r.error) return r; root = r.el; }
      const raw = root ? (root.innerText || root.textContent || '') : '';
      const t = raw.replace(/\n{3,}/g, '\n\n').slice(0, opts.maxChars);
      const count = Math.max(1, Math.ceil(t.length / opts.pageChars));
      const page = Math.min(Math.max(1, opts.page), count);
      return { url: location.href, title: document.title, text: t.slice((page - 1) * opts.pageChars, page * opts.pageChars), page, pages: count, truncated: raw.length > opts.maxChars };
    },
    point(ref) {
      const r = resolve(ref);
      if (r.error) return r;
      const el = r.el;
      if (el.disabled) return { error: label(el) + ' (' + ref + ') is disabled' };
      el.scrollIntoView({ block: 'center', inline: 'center', behavior: 'instant' });
      const rects = el.getClientRects();
      const rect = rects.length ? rects[0] : el.getBoundingClientRect();
      if (!rect || rect.width === 0 || rect.height === 0) return { error: label(el) + ' (' + ref + ') is not visible on the page' };
      let x = rect.left + rect.width / 2, y = rect.top + rect.height / 2;
      const root = el.getRootNode();
      const hit = (root.elementFromPoint ? root : el.ownerDocument).elementFromPoint(x, y);
      if (hit && hit !== el && !el.contains(hit) && !(hit.shadowRoot && hit.shadowRoot.contains(el)) && !(el.tagName === 'LABEL' || hit.tagName === 'LABEL')) {
        return { error: label(el) + ' (' + ref + ') is covered by ' + label(hit) + '; close or scroll away what covers it first' };
      }
      // Same-origin frames: add each frame's offset in its parent.
      let win = el.ownerDocument.defaultView;
      while (win && win !== win.parent && win.frameElement) {
        const fe = win.frameElement;
        const fr = fe.getBoundingClientRect();
        x += fr.left + fe.clientLeft;
        y += fr.top + fe.clientTop;
        win = win.parent;
      }
      return { x, y, label: label(el), text: squash(el.textContent || el.value || '').slice(0, 200), type: (el.type || '').toLowerCase(), form_payment: !!(el.form && Array.from(el.form.elements).some((f) => sensitive(f) === 'payment')),
        may_navigate: !!(el.closest('a[href]') || (el.form && ['submit', 'image'].includes((el.type || '').toLowerCase()))) };
    },
    focus(ref, clear) {
      const r = resolve(ref);
      if (r.error) return r;
      const el = r.el;
      const kind = sensitive(el);
      if (kind) return { refused: kind, label: label(el) };
      const editable = el.isContentEditable || el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit', 'reset', 'image', 'file', 'hidden', 'range', 'color'].includes(el.type));
      if (!editable) return { error: label(el) + ' (' + ref + ') is not a text field; use browser_click or browser_select instead' };
      if (el.disabled || el.readOnly) return { error: label(el) + ' (' + ref + ') is read-only' };
      el.scrollIntoView({ block: 'center', behavior: 'instant' });
      el.focus();
      if (clear) {
        if (el.isContentEditable) { const s = el.ownerDocument.getSelection(); s.selectAllChildren(el); }
        else { el.select(); }
      } else if (!el.isContentEditable && typeof el.value === 'string') {
        try { el.setSelectionRange(el.value.length, el.value.length); } catch (e) { /* type=email has no selection */ }
      }
      return { ok: true, label: label(el) };
    },
    select(ref, wanted) {
      const r = resolve(ref);
      if (r.error) return r;
      const el = r.el;
      if (el.tagName !== 'SELECT') return { error: label(el) + ' (' + ref + ') is not a drop-down list; use browser_click for custom menus' };
      if (el.disabled) return { error: label(el) + ' (' + ref + ') is disabled' };
      const opts = Array.from(el.options);
      const picked = [];
      for (const w of wanted) {
        const o = opts.find((o) => o.value === w) || opts.find((o) => squash(o.label) === squash(w)) || opts.find((o) => squash(o.label).toLowerCase() === squash(w).toLowerCase());
        if (!o) return { error: 'no option ' + quote(w) + ' in ' + label(el) + '; the options are: ' + opts.map((o) => squash(o.label)).join(', ') };
        picked.push(o);
      }
      if (picked.length > 1 && !el.multiple) return { error: label(el) + ' takes only one option' };
      for (const o of opts) o.selected = picked.includes(o);
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
      return { selected: picked.map((o) => squash(o.label)) };
    },
    scroll(ref, dy) {
      if (ref) {
        const r = resolve(ref);
        if (r.error) return r;
        r.el.scrollIntoView({ block: 'center', behavior: 'instant' });
      } else {
        window.scrollBy({ top: dy * window.innerHeight, behavior: 'instant' });
      }
      const h = document.documentElement.scrollHeight;
      return { y: Math.round(window.scrollY), height: h, viewport: window.innerHeight };
    },
    contains(text) {
      const b = document.body;
      return !!b && (b.innerText || '').includes(text);
    },
    info() {
      return { url: location.href, title: document.title, ready: document.readyState, gates: gates(document) };
    },
  };
  globalThis.__cubicle = api;
  return api;
})()
