// Mounts a form-js Form on every [data-form-schema] and hands its data to the
// enclosing <form> as a hidden JSON input, so an ordinary POST (with its CSRF
// hidden input) carries it. Contract: assets/README.md.
import './shared/legacy-runtime.js';
import { Form } from '@bpmn-io/form-js';

import '@bpmn-io/form-js/dist/assets/form-js.css';
import './shared/widget.css';
import './form-viewer.css';

import { FormI18nModule } from './shared/form-i18n.js';
import { ServerErrorsModule } from './shared/form-server-errors.js';
import { ensureHiddenInput } from './shared/hidden-input.js';
import { mountAll, readJsonScript } from './shared/page-data.js';

const DEFAULT_INPUT_NAME = 'data';

mountAll('[data-form-schema]', mountForm);

async function mountForm(container) {
  const schema = readJsonScript(container.getAttribute('data-form-schema'));
  const data = readJsonScript(container.getAttribute('data-form-data')) || {};
  const serverErrors = readJsonScript(container.getAttribute('data-form-errors')) || {};
  const readOnly = container.hasAttribute('data-form-readonly');

  const form = new Form({
    container,
    properties: { readOnly },
    serverErrors,
    additionalModules: [FormI18nModule, ServerErrorsModule],
  });
  await form.importSchema(schema, data);
  const unplaced = form.get('serverErrors').unplacedMessages();
  if (unplaced.length) {
    container.prepend(errorSummary(unplaced));
  }

  container.chengxinForm = form;
  const htmlForm = container.closest('form');
  if (htmlForm && !readOnly) {
    wireSubmission(form, container, htmlForm);
  }
}

function errorSummary(messages) {
  const box = document.createElement('div');
  box.className = 'cx-form-errors';
  box.setAttribute('role', 'alert');
  const list = document.createElement('ul');
  for (const message of messages) {
    const item = document.createElement('li');
    item.textContent = message;
    list.append(item);
  }
  box.append(list);
  return box;
}

function wireSubmission(form, container, htmlForm) {
  const input = ensureHiddenInput(htmlForm, container.getAttribute('data-form-input-name') || DEFAULT_INPUT_NAME);
  let submitting = false;

  htmlForm.addEventListener('submit', (event) => {
    // form-js renders its own <form>; its submit events bubble up here too.
    if (event.target !== htmlForm) {
      return;
    }
    submitting = true;
    try {
      // submit() shows every error, the server's standing ones included; only the form's own block.
      const { data } = form.submit();
      const skipValidation = Boolean(event.submitter && event.submitter.hasAttribute('formnovalidate'));
      if (!skipValidation && form.get('serverErrors').blocksSubmission(data)) {
        event.preventDefault();
        focusFirstError(container);
        return;
      }
      input.value = JSON.stringify(data);
    } finally {
      submitting = false;
    }
  });

  // Enter in a field or a form-js submit button submits form-js's inner form:
  // pass that on to the page's form so there is one way to submit.
  form.on('submit', () => {
    if (!submitting) {
      htmlForm.requestSubmit(defaultSubmitter(htmlForm, container));
    }
  });
}

function defaultSubmitter(htmlForm, container) {
  const buttons = htmlForm.querySelectorAll('button:not([type]), button[type="submit"], input[type="submit"]');
  return Array.from(buttons).find((button) => !container.contains(button) && !button.disabled) || null;
}

function focusFirstError(container) {
  const invalid = container.querySelector('.fjs-has-errors input, .fjs-has-errors textarea, .fjs-has-errors select, .fjs-has-errors [tabindex]');
  if (invalid) {
    invalid.focus();
    invalid.scrollIntoView({ block: 'center' });
  }
}
