// The paged gallery and last-N (docs/protocol.md `shown` and `forwarded`). Remote tiles are
// shown 3x3 per page, ordered as the server chooses videos: the pinned participant, then the
// speakers (most recent first), then join order; so page 1 shows whom the server forwards first.
// The client tells the server which tiles its page shows (`shown`), and shows a placeholder for
// the tiles whose video the server does not forward to it.
import { layoutGrid } from './tiles.js';

export const PAGE_SIZE = 9; // 3x3; a server that forwards more (last_n 16) gets 4x4 pages
export const MAX_PAGE_SIZE = 49;
export const SHOWN_INTERVAL_MS = 600; // the server takes 20 `shown` per 10 s: stay well under

export class Gallery {
  /**
   * @param {HTMLElement} grid the tiles' container (remote tiles carry data-participant-id)
   * @param {(msg: object) => boolean} send
   * @param {{onForwarded?: () => void}} opts onForwarded: the forwarded set changed
   */
  constructor(grid, send, { onForwarded = () => {} } = {}) {
    this.grid = grid;
    this.send = send;
    this.onForwarded = onForwarded;
    this.page = 0;
    this.pageSize = PAGE_SIZE;
    this.pinned = null;
    this.speakers = []; // most recent speaker first
    this.forwarded = null; // Set of ids, or null: every video comes (no `forwarded` yet, or off)
    this.started = false;
    this.lastShown = null;
    this.lastSentAt = -Infinity;
    this.timer = null;
    this.nav = document.createElement('nav');
    this.nav.className = 'gallery-pager';
    this.nav.hidden = true;
    this.prevBtn = pagerButton('‹', 'Trang trước / Previous page', () => this.turn(-1));
    this.label = document.createElement('span');
    this.label.className = 'gallery-page';
    this.nextBtn = pagerButton('›', 'Trang sau / Next page', () => this.turn(1));
    this.nav.append(this.prevBtn, this.label, this.nextBtn);
    Object.assign(this.nav.style, {
      display: 'flex', justifyContent: 'center', alignItems: 'center', gap: '12px',
    });
    grid.after(this.nav);
  }

  /** Begin telling the server what is shown (after `joined`). */
  start() {
    this.started = true;
    this.layout();
  }

  /** A call ended: forget everything about it. */
  reset() {
    clearTimeout(this.timer);
    Object.assign(this, {
      timer: null, started: false, page: 0, pageSize: PAGE_SIZE, pinned: null, speakers: [],
      forwarded: null, lastShown: null, lastSentAt: -Infinity,
    });
    this.layout();
  }

  setPinned(id) {
    this.pinned = id || null;
    this.layout();
  }

  /** `speakers` from the server: they move to the front (most recent first). */
  setSpeakers(ids) {
    const now = Array.isArray(ids) ? ids.filter((x) => typeof x === 'string') : [];
    this.speakers = [...now, ...this.speakers.filter((id) => !now.includes(id))].slice(0, 50);
    this.layout();
  }

  /** `forwarded` from the server: whose video comes; the others show their placeholder. */
  setForwarded(ids, lastN) {
    this.forwarded = new Set(Array.isArray(ids) ? ids : []);
    const size = Number.isInteger(lastN) && lastN > 0
      ? Math.min(MAX_PAGE_SIZE, Math.max(PAGE_SIZE, lastN)) : PAGE_SIZE;
    if (size !== this.pageSize) {
      this.pageSize = size;
      this.layout();
    }
    this.onForwarded();
  }

  /** Whether the server forwards `id`'s video to us. */
  forwards(id) {
    return this.forwarded === null || this.forwarded.has(id);
  }

  remoteTiles() {
    return [...this.grid.querySelectorAll('.tile:not(.self)')];
  }

  /** Remote tiles in gallery order: pinned, speakers (most recent first), then join order. */
  ordered() {
    const rank = (el) => {
      const id = el.dataset.participantId;
      if (id && id === this.pinned) return -1;
      const i = this.speakers.indexOf(id);
      return i >= 0 ? i : this.speakers.length;
    };
    return this.remoteTiles()
      .map((el, i) => ({ el, i, r: rank(el) }))
      .sort((a, b) => a.r - b.r || a.i - b.i)
      .map((x) => x.el);
  }

  pages() {
    return Math.max(1, Math.ceil(this.remoteTiles().length / this.pageSize));
  }

  turn(delta) {
    this.page = Math.min(Math.max(0, this.page + delta), this.pages() - 1);
    this.layout();
  }

  /** The participant ids of the tiles on the current page, in gallery order. */
  shownIds() {
    const start = this.page * this.pageSize;
    return this.ordered().slice(start, start + this.pageSize)
      .map((el) => el.dataset.participantId).filter(Boolean);
  }

  /** Show the current page's tiles (in order), hide the others, and tell the server. */
  layout() {
    const pages = this.pages();
    this.page = Math.min(this.page, pages - 1);
    const start = this.page * this.pageSize;
    this.ordered().forEach((el, i) => {
      const on = i >= start && i < start + this.pageSize;
      el.style.display = on ? '' : 'none';
      el.style.order = String(el.classList.contains('pinned') ? -1 : i + 1);
    });
    this.nav.hidden = pages <= 1;
    this.nav.style.display = pages <= 1 ? 'none' : 'flex';
    this.label.textContent = `${this.page + 1} / ${pages}`;
    this.prevBtn.disabled = this.page === 0;
    this.nextBtn.disabled = this.page >= pages - 1;
    layoutGrid(this.grid);
    this.schedule();
  }

  /** Send `shown` when the page's content changed, at most every SHOWN_INTERVAL_MS. */
  schedule() {
    if (!this.started || this.timer) return;
    const wait = Math.max(0, this.lastSentAt + SHOWN_INTERVAL_MS - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.started) return;
      const ids = this.shownIds();
      const key = JSON.stringify(ids);
      if (key === this.lastShown) return;
      if (!this.send({ type: 'shown', participant_ids: ids })) return;
      this.lastShown = key;
      this.lastSentAt = performance.now();
    }, wait);
  }
}

function pagerButton(text, label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'ctrl';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.title = label;
  b.addEventListener('click', onClick);
  return b;
}
