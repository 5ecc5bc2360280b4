// Video tiles: one per participant (name label, muted-microphone indicator, placeholder).
import { t } from './i18n.js';

const MIC_OFF_ICON = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">'
  + '<path fill="currentColor" d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 '
  + '0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11h-2z"/>'
  + '<path stroke="currentColor" stroke-width="2.2" d="M4 3l16 18"/></svg>';

/** Build a tile. Remote tiles play sound (video not muted); our own is muted and mirrored. */
export function createTile({ id, name, self }) {
  const el = document.createElement('div');
  el.className = self ? 'tile self' : 'tile';
  if (id) el.dataset.participantId = id;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.className = self ? 'local-video' : 'remote-video';
  if (self) video.muted = true;
  const placeholder = document.createElement('div');
  placeholder.className = 'placeholder';
  const avatar = document.createElement('span');
  avatar.className = 'avatar';
  placeholder.append(avatar);
  const label = document.createElement('div');
  label.className = 'label';
  const mic = document.createElement('span');
  mic.className = 'mic-off';
  mic.innerHTML = MIC_OFF_ICON;
  mic.hidden = true;
  const nameEl = document.createElement('span');
  nameEl.className = 'name';
  label.append(mic, nameEl);
  el.append(video, placeholder, label);
  const tile = { el, video, placeholder, avatar, mic, nameEl, self: !!self, name };
  renderTileName(tile);
  return tile;
}

export function renderTileName(tile) {
  tile.nameEl.textContent = tile.self ? `${tile.name} ${t('you')}` : tile.name;
  tile.avatar.textContent = ([...tile.name.trim()][0] || '?').toUpperCase();
}

export function setTileState(tile, { micMuted, showVideo }) {
  tile.mic.hidden = !micMuted;
  tile.mic.title = t('micMuted');
  tile.placeholder.hidden = showVideo;
  tile.el.classList.toggle('no-video', !showVideo);
}

/**
 * Start playback. If the browser refuses autoplay with sound (no user gesture yet), play muted
 * and call `onSoundBlocked` so the page can offer a button.
 */
export function playVideo(video, onSoundBlocked = () => {}) {
  const p = video.play();
  if (!p) return;
  p.catch((err) => {
    if (err.name !== 'NotAllowedError' || video.muted) return;
    video.muted = true;
    video.play().catch(() => {});
    onSoundBlocked();
  });
}

/**
 * Make `stream` hold exactly `desired` tracks. Returns the tracks that were added (new to it)
 * and whether anything changed.
 */
export function syncStream(stream, desired) {
  const current = stream.getTracks();
  let changed = false;
  for (const tr of current) {
    if (!desired.includes(tr)) { stream.removeTrack(tr); changed = true; }
  }
  const added = desired.filter((tr) => !current.includes(tr));
  for (const tr of added) stream.addTrack(tr);
  return { changed: changed || added.length > 0, added };
}

/** Size the tiles (CSS variable --tile-w) so that all of them fit the grid, as large as possible. */
export function layoutGrid(grid, { gap = 12, ratio = 16 / 9, minWidth = 160 } = {}) {
  // Tiles hidden (other gallery pages, gallery.js; the kiosk's own tile) take no place.
  const n = [...grid.children].filter((el) => getComputedStyle(el).display !== 'none').length;
  if (!n) return;
  const style = getComputedStyle(grid);
  const width = grid.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const height = grid.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
  let best = 0;
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * ratio);
    best = Math.max(best, w);
  }
  grid.style.setProperty('--tile-w', `${Math.max(minWidth, Math.floor(best))}px`);
}

/** Keep the grid laid out when it is resized or tiles come and go. */
export function watchGrid(grid) {
  const relayout = () => layoutGrid(grid);
  if (window.ResizeObserver) new ResizeObserver(relayout).observe(grid);
  else window.addEventListener('resize', relayout);
  new MutationObserver(relayout).observe(grid, { childList: true });
}

const PIN_ICON = '<svg viewBox="0 0 24 24" width="15" height="15" aria-hidden="true"><path '
  + 'fill="currentColor" d="M16 3l5 5-3 1-4 4 1 5-2 2-4-4-5 5-1-1 5-5-4-4 2-2 5 1 4-4z"/></svg>';

/** The pinned participant's tile (`pinned`, by id; null for none) goes first and large. */
export function markPinned(grid, id) {
  let any = false;
  for (const el of grid.querySelectorAll('.tile')) {
    const on = !!id && el.dataset.participantId === id;
    any = any || on;
    el.classList.toggle('pinned', on);
    let icon = el.querySelector('.pin-icon');
    if (on && !icon) {
      icon = document.createElement('span');
      icon.className = 'pin-icon';
      icon.innerHTML = PIN_ICON;
      el.querySelector('.label').prepend(icon);
    } else if (!on && icon) icon.remove();
    if (icon && on) icon.title = t('pinned');
  }
  grid.classList.toggle('has-pin', any);
}
