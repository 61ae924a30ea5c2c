// form-js Editor on every [data-form-editor], with a live preview below it; the
// schema JSON is kept in a hidden input of the enclosing <form> so an ordinary
// POST saves it. Contract: assets/README.md.
import './shared/legacy-runtime.js';
import { Form, FormEditor } from '@bpmn-io/form-js';

import '@bpmn-io/form-js/dist/assets/form-js.css';
import '@bpmn-io/form-js/dist/assets/form-js-editor.css';
import '@bpmn-io/form-js/dist/assets/properties-panel.css';
import './shared/widget.css';
import './form-viewer.css';
import './form-editor.css';

import { FormI18nModule } from './shared/form-i18n.js';
import { ensureHiddenInput } from './shared/hidden-input.js';
import { mountAll, readJsonScript } from './shared/page-data.js';

const DEFAULT_INPUT_NAME = 'schema';
const PREVIEW_DELAY_MS = 300;
const EXPORTER = { name: 'chengxin', version: '1' };

mountAll('[data-form-editor]', mountEditor);

async function mountEditor(container) {
  const schema = readJsonScript(container.getAttribute('data-form-schema')) || emptySchema();
  const { editorHost, previewHost } = buildLayout(container);

  const editor = new FormEditor({ container: editorHost, exporter: EXPORTER });
  await editor.importSchema(schema);
  const preview = new Form({ container: previewHost, additionalModules: [FormI18nModule] });

  const htmlForm = container.closest('form');
  const input = htmlForm ? ensureHiddenInput(htmlForm, container.getAttribute('data-form-input-name') || DEFAULT_INPUT_NAME) : null;

  const refresh = async () => {
    const current = editor.saveSchema();
    if (input) {
      input.value = JSON.stringify(current);
    }
    await preview.importSchema(current);
  };
  await refresh();

  let timer = null;
  editor.on('changed', () => {
    clearTimeout(timer);
    timer = setTimeout(() => refresh().catch(console.error), PREVIEW_DELAY_MS);
  });
  if (htmlForm) {
    // Save what is on screen even if the user submits within the debounce delay.
    htmlForm.addEventListener('submit', () => {
      input.value = JSON.stringify(editor.saveSchema());
    });
  }
  container.chengxinFormEditor = editor;
}

function emptySchema() {
  return { type: 'default', components: [], schemaVersion: 16 };
}

function buildLayout(container) {
  const editorHost = document.createElement('div');
  editorHost.className = 'cx-form-editor__editor';
  const previewSection = document.createElement('section');
  previewSection.className = 'cx-form-editor__preview';
  const heading = document.createElement('h3');
  heading.textContent = '预览';
  const previewHost = document.createElement('div');
  previewSection.append(heading, previewHost);
  container.classList.add('cx-form-editor');
  container.append(editorHost, previewSection);
  return { editorHost, previewHost };
}

