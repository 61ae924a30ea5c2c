// Small page behaviours wired from data attributes (no inline scripts under our CSP).
// Contract: assets/README.md.
import './app.css';

const UNREAD_DEFAULT_SECONDS = 60;

// data-confirm="…" on a link or button: ask before following or submitting.
document.addEventListener(
  'click',
  (event) => {
    const trigger = event.target.closest('a[data-confirm], button[data-confirm], input[type="submit"][data-confirm]');
    if (trigger && !window.confirm(trigger.getAttribute('data-confirm'))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

// data-confirm on a <form>: ask before any submission of it (also by Enter).
document.addEventListener(
  'submit',
  (event) => {
    const form = event.target;
    if (form.matches('form[data-confirm]') && !window.confirm(form.getAttribute('data-confirm'))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

// data-autosubmit on a select (or input): submit its form when the value changes.
document.addEventListener('change', (event) => {
  const field = event.target;
  if (field.matches('[data-autosubmit]') && field.form) {
    field.form.requestSubmit();
  }
});

// data-dismiss on a button inside .flash: remove that message.
document.addEventListener('click', (event) => {
  const button = event.target.closest('[data-dismiss]');
  if (button) {
    const flash = button.closest('.flash');
    if (flash) {
      flash.remove();
    }
  }
});

// data-nav-toggle with aria-controls="ID": open/close the nav on phone width.
document.addEventListener('click', (event) => {
  const toggle = event.target.closest('[data-nav-toggle]');
  if (!toggle) {
    return;
  }
  const nav = document.getElementById(toggle.getAttribute('aria-controls'));
  if (nav) {
    const open = nav.classList.toggle('is-open');
    toggle.setAttribute('aria-expanded', String(open));
  }
});

// .nav-badge[data-unread-url]: refresh the unread counter from {"count": n}.
function startUnreadCounters() {
  for (const badge of document.querySelectorAll('[data-unread-url]')) {
    const seconds = Number(badge.getAttribute('data-unread-interval')) || UNREAD_DEFAULT_SECONDS;
    const refresh = () => refreshUnread(badge).catch(() => {});
    setInterval(refresh, seconds * 1000);
  }
}

async function refreshUnread(badge) {
  if (document.hidden) {
    return;
  }
  const response = await fetch(badge.getAttribute('data-unread-url'), { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!response.ok) {
    return;
  }
  const { count } = await response.json();
  badge.textContent = String(count);
  badge.hidden = !count;
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', startUnreadCounters, { once: true });
} else {
  startUnreadCounters();
}
