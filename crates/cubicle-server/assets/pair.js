// Pairing page: the code comes from the URL fragment (never sent to a
// server) or is typed; the token it earns opens the app.
const $ = (id) => document.getElementById(id);
const frag = new URLSearchParams(location.hash.slice(1));
if (frag.get('code')) $('code').value = frag.get('code');
if (frag.get('fp')) {
  const p = $('fingerprint');
  p.textContent = `The computer's certificate fingerprint is ${frag.get('fp')}. If your browser warned about the certificate, check that it shows this fingerprint.`;
  p.hidden = false;
}
history.replaceState(null, '', location.pathname);
$('redeem-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = $('error');
  err.hidden = true;
  try {
    const res = await fetch('/api/pair/redeem', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code: $('code').value, name: $('name').value }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `pairing failed (${res.status})`);
    location.replace(`/?token=${encodeURIComponent(body.token)}`);
  } catch (e) {
    err.textContent = String(e.message || e);
    err.hidden = false;
  }
});
