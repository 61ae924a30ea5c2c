// Reading what the server put into the page: JSON script tags, URLs, the CSRF token.
// Pages carry no inline scripts (CSP), so every bundle is wired from data attributes.

/** Parse the JSON inside <script type="application/json" id="ID">; null when ID is empty. Throws when the tag is missing. */
export function readJsonScript(id) {
  if (!id) {
    return null;
  }
  const tag = document.getElementById(id);
  if (!tag) {
    throw new Error(`JSON script tag #${id} not found`);
  }
  return JSON.parse(tag.textContent);
}

/** GET a URL as text (same-origin cookies sent). Throws on a non-2xx answer. */
export async function fetchText(url) {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/xml, text/xml, */*' } });
  if (!response.ok) {
    throw new Error(`GET ${url} answered ${response.status}`);
  }
  return response.text();
}

/** GET a URL as JSON (same-origin cookies sent). Throws on a non-2xx answer. */
export async function fetchJson(url) {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!response.ok) {
    throw new Error(`GET ${url} answered ${response.status}`);
  }
  return response.json();
}

/** JSON from a script tag (data-ATTR) or, failing that, from a URL (data-ATTR-url); null when neither is set. */
export async function readJsonFromElement(element, attribute) {
  const scriptId = element.getAttribute(`data-${attribute}`);
  if (scriptId) {
    return readJsonScript(scriptId);
  }
  const url = element.getAttribute(`data-${attribute}-url`);
  return url ? fetchJson(url) : null;
}

/** The CSRF token from <meta name="csrf-token" content="...">, or '' when the page has none. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute('content') : '';
}

/** Show a short error message inside a widget's container, so a failed load is visible, not blank. */
export function showLoadError(container, message) {
  const box = document.createElement('div');
  box.className = 'cx-load-error';
  box.setAttribute('role', 'alert');
  box.textContent = message;
  container.prepend(box);
}

/** Run `mount` on every element matching `selector` once the DOM is ready; one failure does not stop the others. */
export function mountAll(selector, mount) {
  const run = () => {
    for (const element of document.querySelectorAll(selector)) {
      Promise.resolve()
        .then(() => mount(element))
        .catch((error) => {
          console.error(error);
          showLoadError(element, '加载失败，请刷新页面重试。');
        });
    }
  };
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', run, { once: true });
  } else {
    run();
  }
}
