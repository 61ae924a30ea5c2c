// Two versions of a diagram side by side, with bpmn-js-differ's semantic changes
// marked on both and listed below. Contract: assets/README.md.
import './shared/legacy-runtime.js';
import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';
import { diff } from 'bpmn-js-differ';

import './shared/bpmn-base.css';
import './shared/widget.css';
import './bpmn-diff.css';

import { fetchText, mountAll } from './shared/page-data.js';

const CHANGE_KINDS = {
  added: { marker: 'cx-diff-added', label: '新增' },
  removed: { marker: 'cx-diff-removed', label: '删除' },
  changed: { marker: 'cx-diff-changed', label: '修改' },
  layout: { marker: 'cx-diff-layout', label: '位置调整' },
};

const FIT_MARGIN = 0.92;

mountAll('[data-bpmn-diff]', mountDiff);

async function mountDiff(container) {
  container.classList.add('cx-bpmn-diff');
  const panes = document.createElement('div');
  panes.className = 'cx-bpmn-diff__panes';
  const oldPane = pane(container.getAttribute('data-old-label') || '旧版本');
  const newPane = pane(container.getAttribute('data-new-label') || '新版本');
  panes.append(oldPane.element, newPane.element);
  const changeList = document.createElement('div');
  changeList.className = 'cx-bpmn-diff__list';
  container.append(panes, changeList);

  const oldViewer = new NavigatedViewer({ container: oldPane.canvasHost });
  const newViewer = new NavigatedViewer({ container: newPane.canvasHost });
  const [oldXml, newXml] = await Promise.all([
    fetchText(container.getAttribute('data-old-url')),
    fetchText(container.getAttribute('data-new-url')),
  ]);
  await oldViewer.importXML(oldXml);
  await newViewer.importXML(newXml);
  fitBoth(oldViewer, newViewer);

  const changes = diff(oldViewer.getDefinitions(), newViewer.getDefinitions());
  const rows = changeRows(changes);
  for (const row of rows) {
    const kind = CHANGE_KINDS[row.kind];
    if (row.kind !== 'added') {
      addMarker(oldViewer, row.id, kind.marker);
    }
    if (row.kind !== 'removed') {
      addMarker(newViewer, row.id, kind.marker);
    }
  }
  changeList.append(changeTable(rows));
  container.chengxinDiff = { oldViewer, newViewer, changes };
  container.dispatchEvent(new CustomEvent('chengxin:bpmn-diff-ready', { detail: { changes } }));
}

function pane(title) {
  const element = document.createElement('section');
  element.className = 'cx-bpmn-diff__pane';
  const heading = document.createElement('h3');
  heading.textContent = title;
  const canvasHost = document.createElement('div');
  canvasHost.className = 'cx-bpmn-canvas';
  element.append(heading, canvasHost);
  return { element, canvasHost };
}

// Show both diagrams whole, with a little margin: the one needing the smaller
// zoom sets the view for both.
function fitBoth(oldViewer, newViewer) {
  const oldZoom = oldViewer.get('canvas').zoom('fit-viewport', 'auto');
  const newZoom = newViewer.get('canvas').zoom('fit-viewport', 'auto');
  const [leader, follower] = newZoom < oldZoom ? [newViewer, oldViewer] : [oldViewer, newViewer];
  leader.get('canvas').zoom(Math.min(oldZoom, newZoom) * FIT_MARGIN, 'auto');
  syncViewboxes(leader, follower);
}

// Moving or zooming one side moves the other, so the same region stays in view.
// The first viewer's current view is applied to the second at once.
function syncViewboxes(first, second) {
  let syncing = false;
  const follow = (source, target) => {
    source.on('canvas.viewbox.changed', ({ viewbox }) => {
      if (syncing) {
        return;
      }
      syncing = true;
      target.get('canvas').viewbox(viewbox);
      syncing = false;
    });
  };
  follow(first, second);
  follow(second, first);
  second.get('canvas').viewbox(first.get('canvas').viewbox());
}

function changeRows(changes) {
  const rows = [];
  const push = (kind, entries, describe) => {
    for (const [id, value] of Object.entries(entries)) {
      rows.push({ kind, id, ...describe(value) });
    }
  };
  const describeElement = (element) => ({ type: element.$type, name: element.name || '', detail: '' });
  push('added', changes._added, describeElement);
  push('removed', changes._removed, describeElement);
  push('changed', changes._changed, ({ model, attrs }) => ({ ...describeElement(model), detail: Object.keys(attrs).join('、') }));
  push('layout', changes._layoutChanged, describeElement);
  return rows;
}

function addMarker(viewer, id, marker) {
  if (viewer.get('elementRegistry').get(id)) {
    viewer.get('canvas').addMarker(id, marker);
  }
}

function changeTable(rows) {
  if (!rows.length) {
    const none = document.createElement('p');
    none.textContent = '两个版本没有差异。';
    return none;
  }
  const table = document.createElement('table');
  table.className = 'table';
  const head = table.createTHead().insertRow();
  for (const title of ['变化', '元素 ID', '名称', '类型', '修改的属性']) {
    const cell = document.createElement('th');
    cell.textContent = title;
    head.append(cell);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const line = body.insertRow();
    line.className = CHANGE_KINDS[row.kind].marker;
    for (const text of [CHANGE_KINDS[row.kind].label, row.id, row.name, row.type.replace('bpmn:', ''), row.detail]) {
      line.insertCell().textContent = text;
    }
  }
  return table;
}
