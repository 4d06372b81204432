// A headless "browser" for the end-to-end drivers: follows redirects by hand, keeps cookies per
// origin (honouring Path, Max-Age=0 deletion and the __Host- rules loosely: loopback http is
// treated as the secure context browsers give it), and fills in and submits the HTML forms of the
// consent, confirmation and login pages. Pages are our own and oidc-provider's, so a small regex
// reader of <form> and <input> is enough; anything it cannot read fails loudly.

export class Browser {
  constructor({ timeoutMs = 10000, log = () => {} } = {}) {
    this.jar = new Map(); // origin → Map(name → value)
    this.timeoutMs = timeoutMs;
    this.log = log;
  }

  cookieHeader(url) {
    const c = this.jar.get(new URL(url).origin);
    return c && c.size ? [...c].map(([k, v]) => `${k}=${v}`).join('; ') : undefined;
  }

  store(url, res) {
    const origin = new URL(url).origin;
    const list = res.headers.getSetCookie?.() ?? [];
    for (const line of list) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const expired = attrs.some((a) => /^max-age=0$/i.test(a) || (/^expires=/i.test(a) && Date.parse(a.slice(8)) < Date.now()));
      if (!this.jar.has(origin)) this.jar.set(origin, new Map());
      if (expired || value === '') this.jar.get(origin).delete(name);
      else this.jar.get(origin).set(name, value);
    }
  }

  // One request, no redirect following. Returns { url, status, location, html, res }.
  async request(url, { method = 'GET', form, headers = {} } = {}) {
    const h = new Headers(headers);
    const cookie = this.cookieHeader(url);
    if (cookie) h.set('cookie', cookie);
    let body;
    if (form) {
      body = new URLSearchParams(form).toString();
      h.set('content-type', 'application/x-www-form-urlencoded');
      h.set('origin', new URL(url).origin);
    }
    const res = await fetch(url, { method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(this.timeoutMs) });
    this.store(url, res);
    const location = res.headers.get('location') ? new URL(res.headers.get('location'), url).href : undefined;
    const html = location ? '' : await res.text();
    this.log(`${method} ${new URL(url).origin}${new URL(url).pathname} → ${res.status}${location ? ` → ${new URL(location).origin}${new URL(location).pathname}` : ''}`);
    return { url, status: res.status, location, html, res };
  }

  // Follows redirects from `url` until a response is not a redirect, or until the next hop
  // satisfies `stop(url)` (then that URL is returned unvisited, e.g. the client's redirect URI).
  async navigate(url, { stop = () => false, maxHops = 20, ...init } = {}) {
    let page = await this.request(url, init);
    for (let hops = 0; page.location; hops++) {
      if (stop(page.location)) return { ...page, stoppedAt: page.location };
      if (hops >= maxHops) throw new Error(`more than ${maxHops} redirects from ${url}`);
      page = await this.request(page.location);
    }
    return page;
  }

  // Submits the first form of `page` (or the one whose action matches `action`), with its inputs
  // (hidden ones and any with a value) overridden by `fields`; the button named in `button`
  // (name=value) is added. Then follows redirects like navigate().
  async submit(page, { action, fields = {}, button, stop } = {}) {
    const forms = readForms(page.html);
    const form = action ? forms.find((f) => f.action.includes(action)) : forms[0];
    if (!form) throw new Error(`no form${action ? ` with action ~ ${action}` : ''} on ${page.url} (HTTP ${page.status}): ${page.html.slice(0, 300)}`);
    const data = { ...form.inputs, ...fields };
    if (button) Object.assign(data, button);
    const target = new URL(form.action || page.url, page.url).href;
    return this.navigate(target, { method: form.method, form: data, stop });
  }
}

const attr = (tag, name) => {
  const m = tag.match(new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'));
  return m ? decode(m[2] ?? m[3] ?? m[4]) : undefined;
};
const decode = (s) =>
  s.replace(/&quot;/g, '"').replace(/&#39;|&#x27;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

export function readForms(html) {
  const forms = [];
  const re = /<form\b([^>]*)>([\s\S]*?)<\/form>/gi;
  let m;
  while ((m = re.exec(html))) {
    const inputs = {};
    for (const input of m[2].match(/<input\b[^>]*>/gi) ?? []) {
      const name = attr(input, 'name');
      const type = (attr(input, 'type') ?? 'text').toLowerCase();
      if (!name || type === 'submit' || type === 'button') continue;
      inputs[name] = attr(input, 'value') ?? '';
    }
    forms.push({ action: attr(`<f ${m[1]}>`, 'action') ?? '', method: (attr(`<f ${m[1]}>`, 'method') ?? 'GET').toUpperCase(), inputs, html: m[2] });
  }
  return forms;
}
