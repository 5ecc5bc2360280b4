// Inline SVG icons (no emoji: many office machines have no emoji font). Stroke icons use
// currentColor, 24x24 view box.

const svg = (body, size = 18) => `<svg viewBox="0 0 24 24" width="${size}" height="${size}" `
  + 'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" '
  + `stroke-linejoin="round" aria-hidden="true">${body}</svg>`;

const PATHS = {
  lock: '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/>',
  unlock: '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 7.6-1.7"/>',
  micOff: '<path d="M9 9v2a3 3 0 0 0 5.1 2.1M15 10V5a3 3 0 0 0-5.9-.8"/>'
    + '<path d="M19 11a7 7 0 0 1-1.2 3.9M5 11a7 7 0 0 0 11.2 5.6M12 18v3M3 3l18 18"/>',
  camOff: '<path d="M16 16v1a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h2m4 0h4a2 2 0 0 1 2 2v3'
    + 'l5-3v10"/><path d="M2 2l20 20"/>',
  mic: '<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/>',
  cam: '<rect x="2" y="6" width="14" height="12" rx="2"/><path d="M16 10l6-3v10l-6-3"/>',
  pin: '<path d="M9 4h6l-1 6 3 3H7l3-3zM12 13v8"/>',
  exit: '<path d="M10 3H5v18h5M15 8l4 4-4 4M19 12H9"/>',
  block: '<circle cx="12" cy="12" r="9"/><path d="M5.6 5.6l12.8 12.8"/>',
  stop: '<circle cx="12" cy="12" r="9"/><rect x="9" y="9" width="6" height="6" rx="1"/>',
  swap: '<path d="M4 8h13l-4-4M20 16H7l4 4"/>',
  warn: '<path d="M12 3l10 18H2zM12 10v4M12 18h.01"/>',
};

/** The SVG markup of icon `name` (see PATHS), `size` px square. */
export function icon(name, size = 18) {
  return svg(PATHS[name] || PATHS.warn, size);
}

/** A <span class="icon"> holding icon `name`. */
export function iconEl(name, size = 18) {
  const el = document.createElement('span');
  el.className = 'icon';
  el.innerHTML = icon(name, size);
  return el;
}
