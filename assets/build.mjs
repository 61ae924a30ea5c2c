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

// form-js 1.23 has no translation hook (bpmn-io/form-js#77): its viewer's fixed UI strings
// are routed through translate() of shared/form-i18n.js as the bundle is made. Each snippet
// must occur exactly once, so a form-js update that moves one fails the build instead of
// quietly showing English again.
const FORM_JS_VIEWER = /[\\/]@bpmn-io[\\/]form-js-viewer[\\/]dist[\\/]index\.es\.js$/;
const FORM_I18N = join(ASSETS, 'shared', 'form-i18n.js');
const FORM_JS_TEXT = [
  ["children: valueLabel || 'Select'", "children: valueLabel || __cxText('Select')"],
  ["placeholder: 'Search',", "placeholder: __cxText('Search'),"],
  ["placeholder: disabled || readonly ? undefined : 'Search',", "placeholder: disabled || readonly ? undefined : __cxText('Search'),"],
  ["emptyListMessage = 'No results',", "emptyListMessage = __cxText('No results'),"],
  [
    "emptyListMessage: hasOptionsLeft ? 'No results' : 'All values selected',",
    "emptyListMessage: hasOptionsLeft ? __cxText('No results') : __cxText('All values selected'),",
  ],
  ['label: "Skip to search",', "label: __cxText('Skip to search'),"],
  ['title: "Remove tag",', "title: __cxText('Remove tag'),"],
  // Dates follow the page's language, not the browser's (an English browser on a Chinese page).
  ['dateFormat: getLocaleDateFlatpickrConfig(),', 'dateFormat: getLocaleDateFlatpickrConfig(__cxDateLocale()),'],
  ['placeholder: getLocaleReadableDateFormat(),', 'placeholder: __cxText(getLocaleReadableDateFormat(__cxDateLocale())),'],
  ["placeholder: use24h ? 'hh:mm' : 'hh:mm --',", "placeholder: __cxText(use24h ? 'hh:mm' : 'hh:mm --'),"],
  ["['Date and time must both be entered.', ...errors]", "[__cxText('Date and time must both be entered.'), ...errors]"],
  ['"aria-label": "Increment",', "\"aria-label\": __cxText('Increment'),"],
  ['"aria-label": "Decrement",', "\"aria-label\": __cxText('Decrement'),"],
  ["evaluatedColumns.length === 0 ? 'Nothing to show.'", "evaluatedColumns.length === 0 ? __cxText('Nothing to show.')"],
  ['children: "Nothing to show."', "children: __cxText('Nothing to show.')"],
  ['children: [currentPage + 1, " of ", chunkedData.length]', "children: [currentPage + 1, __cxText(' of '), chunkedData.length]"],
  ['"aria-label": "Previous page",', "\"aria-label\": __cxText('Previous page'),"],
  ['"aria-label": "Next page",', "\"aria-label\": __cxText('Next page'),"],
  ['children: "Browse"', "children: __cxText('Browse')"],
  ["return 'No files selected';", "return __cxText('No files selected');"],
  ['return `${files.length} files selected`;', "return __cxText('{n} files selected', files.length);"],
  ["children: [jsx(SvgAdd, {}), \" \", 'Add new']", "children: [jsx(SvgAdd, {}), \" \", __cxText('Add new')]"],
  ['`Expand all (${values.length - 1})`', "__cxText('Expand all ({n})', values.length - 1)"],
  ["children: [jsx(SvgCollapse, {}), \" \", 'Collapse']", "children: [jsx(SvgCollapse, {}), \" \", __cxText('Collapse')]"],
  ['"aria-label": `Remove list item ${itemIndex + 1}`,', "\"aria-label\": __cxText('Remove list item {n}', itemIndex + 1),"],
  ['text: "No content to show."', "text: __cxText('No content to show.')"],
  ['text: "External content couldn\'t be loaded."', "text: __cxText(\"External content couldn't be loaded.\")"],
];

let formJsTextApplied = false;

const formJsText = {
  name: 'form-js-text',
  setup(build) {
    build.onLoad({ filter: FORM_JS_VIEWER }, ({ path }) => {
      formJsTextApplied = true;
      let source = readFileSync(path, 'utf8');
      for (const [snippet, replacement] of FORM_JS_TEXT) {
        const count = source.split(snippet).length - 1;
        if (count !== 1) {
          throw new Error(`form-js text: expected "${snippet}" once in ${relative(ROOT, path)}, found ${count}`);
        }
        source = source.replace(snippet, () => replacement);
      }
      const imports = `import { translate as __cxText, dateLocale as __cxDateLocale } from ${JSON.stringify(FORM_I18N)};\n`;
      return { contents: imports + source, loader: 'js' };
    });
  },
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
    plugins: [formJsText],
  });
  if (!formJsTextApplied) {
    throw new Error('form-js text: the form-js viewer was bundled from another file than dist/index.es.js; update FORM_JS_VIEWER');
  }
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
