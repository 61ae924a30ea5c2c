// Bundles the page assets into webapp/static/dist/ (served by the app itself; no CDN).
// Usage: npm run build. The output folder is rebuilt from scratch each run, so the
// result depends only on the sources and package-lock.json.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const ASSETS = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(ASSETS);
const OUTDIR = join(ROOT, 'webapp', 'static', 'dist');

// Entry name -> source; each yields NAME.js and, when it imports CSS, NAME.css.
const ENTRIES = {
  'form-viewer': 'form-viewer.js',
  'form-editor': 'form-editor.js',
  'bpmn-viewer': 'bpmn-viewer.js',
  'bpmn-modeler': 'bpmn-modeler.js',
  'bpmn-diff': 'bpmn-diff.js',
  charts: 'charts.js',
  app: 'app.js',
};

async function build() {
  rmSync(OUTDIR, { recursive: true, force: true });
  const entryPoints = Object.fromEntries(Object.entries(ENTRIES).map(([name, source]) => [name, join(ASSETS, source)]));
  await esbuild.build({
    entryPoints,
    outdir: OUTDIR,
    bundle: true,
    format: 'iife',
    minify: true,
    sourcemap: false,
    // Domestic Chromium-based browsers in government offices lag behind upstream.
    target: ['chrome90'],
    charset: 'utf8',
    legalComments: 'eof',
    define: { 'process.env.NODE_ENV': '"production"' },
    // The bpmn icon CSS names legacy font files beside its embedded ones; copy, never fetch.
    loader: { '.eot': 'file', '.svg': 'file', '.ttf': 'file', '.woff': 'file', '.woff2': 'file' },
    assetNames: 'assets/[name]-[hash]',
    logLevel: 'warning',
  });
  const manifest = writeManifest();
  report(manifest);
}

// File -> short content hash, for the app to append as ?v= (cache busting without renaming).
function writeManifest() {
  const manifest = {};
  for (const file of listFiles(OUTDIR)) {
    const content = readFileSync(join(OUTDIR, file));
    manifest[file] = createHash('sha256').update(content).digest('hex').slice(0, 12);
  }
  writeFileSync(join(OUTDIR, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return manifest;
}

function listFiles(folder) {
  return readdirSync(folder, { recursive: true })
    .map(String)
    .filter((file) => statSync(join(folder, file)).isFile())
    .map((file) => file.split('\\').join('/'))
    .sort();
}

function report(manifest) {
  const lines = Object.keys(manifest).map((file) => {
    const kib = (statSync(join(OUTDIR, file)).size / 1024).toFixed(1).padStart(8);
    return `${kib} KiB  ${file}`;
  });
  console.log(`built ${relative(ROOT, OUTDIR)}/\n${lines.join('\n')}`);
}

build().catch((error) => {
  console.error(error.message || error);
  process.exit(1);
});
