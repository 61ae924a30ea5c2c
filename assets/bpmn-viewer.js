// Read-only BPMN diagram with an instance's (or a process's) progress on it:
// coloured markers for completed / active / overdue elements and overlays with
// counts and average durations. Contract: assets/README.md.
import './shared/legacy-runtime.js';
import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';

import './shared/bpmn-base.css';
import './shared/widget.css';
import './bpmn-viewer.css';

import { fetchText, mountAll, readJsonFromElement } from './shared/page-data.js';

const STATE_MARKERS = [
  ['completed', 'cx-completed'],
  ['active', 'cx-active'],
  ['overdue', 'cx-overdue'],
];

const LEGEND = [
  ['cx-completed', '已完成'],
  ['cx-active', '进行中'],
  ['cx-overdue', '已超期'],
];

mountAll('[data-bpmn-viewer]', mountViewer);

async function mountViewer(container) {
  const canvasHost = document.createElement('div');
  canvasHost.className = 'cx-bpmn-canvas';
  container.classList.add('cx-bpmn-viewer');
  container.append(canvasHost);

  const viewer = new NavigatedViewer({ container: canvasHost });
  container.chengxinViewer = viewer;
  const [xml, state] = await Promise.all([fetchText(container.getAttribute('data-xml-url')), readJsonFromElement(container, 'state')]);
  await viewer.importXML(xml);
  viewer.get('canvas').zoom('fit-viewport', 'auto');
  if (state) {
    applyState(viewer, state);
  }
  if (container.getAttribute('data-legend') !== 'off') {
    container.append(legend());
  }
  container.dispatchEvent(new CustomEvent('chengxin:bpmn-ready', { detail: { viewer } }));
}

/** Mark elements by state and add count/duration overlays; ids missing from the diagram are skipped with a warning. */
export function applyState(viewer, state) {
  const canvas = viewer.get('canvas');
  const registry = viewer.get('elementRegistry');
  const overlays = viewer.get('overlays');
  const known = (id) => {
    if (registry.get(id)) {
      return true;
    }
    console.warn(`BPMN state names element ${id}, which this diagram does not have`);
    return false;
  };

  for (const [stateKey, marker] of STATE_MARKERS) {
    for (const id of (state[stateKey] || []).filter(known)) {
      canvas.addMarker(id, marker);
    }
  }
  for (const [id, stats] of Object.entries(state.counts || {}).filter(([id]) => known(id))) {
    addStatsOverlays(overlays, id, stats);
  }
}

function addStatsOverlays(overlays, elementId, { count, avg_hours: avgHours }) {
  if (count !== undefined && count !== null) {
    const badge = document.createElement('div');
    badge.className = 'cx-bpmn-count';
    badge.textContent = String(count);
    badge.title = avgHours === undefined || avgHours === null ? `${count} 件` : `${count} 件，平均耗时 ${formatHours(avgHours)}`;
    overlays.add(elementId, 'cx-stats', { position: { top: -10, right: 10 }, html: badge });
  }
  if (avgHours !== undefined && avgHours !== null) {
    const duration = document.createElement('div');
    duration.className = 'cx-bpmn-duration';
    duration.textContent = `均 ${formatHours(avgHours)}`;
    overlays.add(elementId, 'cx-stats', { position: { bottom: -4, left: 0 }, html: duration });
  }
}

function formatHours(hours) {
  const value = Number(hours);
  if (value >= 48) {
    return `${(value / 24).toFixed(1)} 天`;
  }
  return `${value.toFixed(1)} 小时`;
}

function legend() {
  const list = document.createElement('ul');
  list.className = 'cx-bpmn-legend';
  for (const [marker, label] of LEGEND) {
    const item = document.createElement('li');
    const swatch = document.createElement('span');
    swatch.className = `cx-bpmn-swatch ${marker}`;
    item.append(swatch, label);
    list.append(item);
  }
  return list;
}
