// BPMN Modeler for analysts: Camunda 7 properties panel (our modeling convention,
// see DESIGN.md), token simulation, and a save button that POSTs the XML.
// Contract: assets/README.md.
import './shared/legacy-runtime.js';
import Modeler from 'bpmn-js/lib/Modeler';
import { BpmnPropertiesPanelModule, BpmnPropertiesProviderModule, CamundaPlatformPropertiesProviderModule } from 'bpmn-js-properties-panel';
import CamundaBehaviorsModule from 'camunda-bpmn-js-behaviors/lib/camunda-platform';
import camundaModdle from 'camunda-bpmn-moddle/resources/camunda.json';
import TokenSimulationModule from 'bpmn-js-token-simulation';

import ChineseLabelsModule from './shared/bpmn-zh.js';

import './shared/bpmn-base.css';
import '@bpmn-io/properties-panel/dist/assets/properties-panel.css';
import 'bpmn-js-token-simulation/assets/css/bpmn-js-token-simulation.css';
import './shared/widget.css';
import './bpmn-modeler.css';

import { csrfToken, fetchText, mountAll } from './shared/page-data.js';

const ERROR_MARKER = 'cx-error';

mountAll('[data-bpmn-modeler]', mountModeler);

async function mountModeler(container) {
  const { canvasHost, panelHost, saveButton, status, problems } = buildLayout(container);
  const modeler = new Modeler({
    container: canvasHost,
    propertiesPanel: { parent: panelHost },
    additionalModules: [
      BpmnPropertiesPanelModule,
      BpmnPropertiesProviderModule,
      CamundaPlatformPropertiesProviderModule,
      CamundaBehaviorsModule,
      TokenSimulationModule,
      ChineseLabelsModule,
    ],
    moddleExtensions: { camunda: camundaModdle },
  });
  // Browser tests and the page's own scripts reach the instance here.
  window.chengxinModeler = modeler;
  container.chengxinModeler = modeler;

  const xmlUrl = container.getAttribute('data-xml-url');
  if (xmlUrl) {
    await modeler.importXML(await fetchText(xmlUrl));
  } else {
    await modeler.createDiagram();
  }
  modeler.get('canvas').zoom('fit-viewport', 'auto');

  const saveUrl = container.getAttribute('data-save-url');
  if (!saveUrl) {
    saveButton.hidden = true;
    return;
  }
  let dirty = false;
  modeler.on('commandStack.changed', () => {
    dirty = true;
    status.textContent = '有未保存的修改';
  });
  window.addEventListener('beforeunload', (event) => {
    if (dirty) {
      event.preventDefault();
    }
  });

  const save = async () => {
    saveButton.disabled = true;
    status.textContent = '正在保存…';
    try {
      const saved = await postDiagram(modeler, saveUrl, status, problems);
      dirty = dirty && !saved;
      container.dispatchEvent(new CustomEvent('chengxin:bpmn-saved', { detail: { ok: saved } }));
    } finally {
      saveButton.disabled = false;
    }
  };
  container.chengxinSave = save;
  saveButton.addEventListener('click', save);
  container.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 's') {
      event.preventDefault();
      save();
    }
  });
}

/** POST the diagram XML; shows the outcome in `status`/`problems` and returns true when the server accepted it. */
async function postDiagram(modeler, saveUrl, status, problems) {
  clearProblems(modeler, problems);
  const { xml } = await modeler.saveXML({ format: true });
  let response;
  try {
    response = await fetch(saveUrl, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/xml', 'X-CSRFToken': csrfToken(), Accept: 'application/json' },
      body: xml,
    });
  } catch (error) {
    status.textContent = '保存失败：无法连接服务器';
    return false;
  }
  if (response.ok) {
    status.textContent = `已保存 ${new Date().toLocaleTimeString('zh-CN')}`;
    return true;
  }
  const body = await response.json().catch(() => ({}));
  status.textContent = `保存失败（${response.status}）${body.message ? '：' + body.message : ''}`;
  showProblems(modeler, problems, body.errors);
  return false;
}

// 422 bodies are either a definition error list [{element_id, message, line}] or a field dict.
function showProblems(modeler, problems, errors) {
  const items = Array.isArray(errors)
    ? errors.map((error) => ({ elementId: error.element_id, text: error.element_id ? `${error.element_id}：${error.message}` : error.message }))
    : Object.entries(errors || {}).map(([field, messages]) => ({ text: `${field}：${[].concat(messages).join('；')}` }));
  const canvas = modeler.get('canvas');
  const registry = modeler.get('elementRegistry');
  for (const { elementId, text } of items) {
    const item = document.createElement('li');
    item.textContent = text;
    problems.append(item);
    if (elementId && registry.get(elementId)) {
      canvas.addMarker(elementId, ERROR_MARKER);
    }
  }
  problems.hidden = items.length === 0;
}

function clearProblems(modeler, problems) {
  const canvas = modeler.get('canvas');
  for (const element of modeler.get('elementRegistry').getAll()) {
    canvas.removeMarker(element, ERROR_MARKER);
  }
  problems.replaceChildren();
  problems.hidden = true;
}

function buildLayout(container) {
  container.classList.add('cx-bpmn-modeler');
  const toolbar = document.createElement('div');
  toolbar.className = 'cx-bpmn-modeler__toolbar';
  const saveButton = document.createElement('button');
  saveButton.type = 'button';
  saveButton.className = 'btn btn-primary';
  saveButton.textContent = '保存';
  const status = document.createElement('span');
  status.className = 'cx-bpmn-modeler__status';
  status.setAttribute('role', 'status');
  toolbar.append(saveButton, status);

  const problems = document.createElement('ul');
  problems.className = 'cx-bpmn-modeler__problems';
  problems.setAttribute('role', 'alert');
  problems.hidden = true;

  const body = document.createElement('div');
  body.className = 'cx-bpmn-modeler__body';
  const canvasHost = document.createElement('div');
  canvasHost.className = 'cx-bpmn-canvas';
  canvasHost.tabIndex = 0;
  const panelHost = document.createElement('div');
  panelHost.className = 'cx-bpmn-modeler__panel';
  body.append(canvasHost, panelHost);

  container.append(toolbar, problems, body);
  return { canvasHost, panelHost, saveButton, status, problems };
}
