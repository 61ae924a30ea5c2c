// Built-ins that the bundled libraries call unguarded but that Chromium 90
// (our browser floor) lacks: Object.hasOwn (93), Array/String#at (92),
// structuredClone (98, used by diagram-js on plain viewbox objects), Array#toSorted (110).
// esbuild lowers syntax for chrome90, not library calls, hence these. Import first.

function define(target, name, value) {
  if (!(name in target)) {
    Object.defineProperty(target, name, { value, writable: true, configurable: true });
  }
}

function at(index) {
  const length = this.length;
  const offset = Math.trunc(index) || 0;
  const position = offset < 0 ? length + offset : offset;
  return position < 0 || position >= length ? undefined : this[position];
}

define(Object, 'hasOwn', (object, key) => Object.prototype.hasOwnProperty.call(Object(object), key));
define(Array.prototype, 'at', at);
define(String.prototype, 'at', at);
define(Array.prototype, 'toSorted', function toSorted(compare) {
  return Array.prototype.slice.call(this).sort(compare);
});
// Only plain data (what the libraries clone) survives this fallback.
define(globalThis, 'structuredClone', (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value))));
