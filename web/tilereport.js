// The `tiles` report (docs/protocol.md): the size (CSS px x devicePixelRatio) of each remote
// participant's tile and whether its video can be seen (tile on screen, page visible, the
// participant has video). Sent on start and whenever that changes; at most once per interval.

export const TILES_INTERVAL_MS = 500;

export class TileReporter {
  /**
   * @param {() => Array<{participant_id: string, el: HTMLElement, hasVideo: boolean}>} list
   * @param {(msg: object) => boolean} send
   * @param {HTMLElement} grid
   */
  constructor(list, send, grid, intervalMs = TILES_INTERVAL_MS) {
    this.list = list;
    this.send = send;
    this.intervalMs = intervalMs;
    this.started = false;
    this.stopped = false;
    this.timer = null;
    this.lastKey = null;
    this.lastSentAt = -Infinity;
    this.intersecting = new WeakMap(); // tile element -> bool (from the IntersectionObserver)
    this.observed = new Set();
    this.schedule = this.schedule.bind(this);
    this.io = window.IntersectionObserver ? new IntersectionObserver((entries) => {
      for (const e of entries) this.intersecting.set(e.target, e.isIntersecting);
      this.schedule();
    }) : null;
    this.ro = window.ResizeObserver ? new ResizeObserver(this.schedule) : null;
    if (this.ro) this.ro.observe(grid);
    window.addEventListener('resize', this.schedule);
    document.addEventListener('visibilitychange', this.schedule);
  }

  /** Begin reporting (after `joined`): the first report goes out at once. */
  start() {
    this.started = true;
    this.schedule();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.io) this.io.disconnect();
    if (this.ro) this.ro.disconnect();
    window.removeEventListener('resize', this.schedule);
    document.removeEventListener('visibilitychange', this.schedule);
  }

  /** Something may have changed: report within the interval (coalesced). */
  schedule() {
    if (this.stopped) return;
    this._observe();
    if (!this.started || this.timer) return;
    const wait = Math.max(0, this.lastSentAt + this.intervalMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this._flush();
    }, wait);
  }

  /** The report as it would be sent now. */
  current() {
    const dpr = window.devicePixelRatio || 1;
    const pageVisible = document.visibilityState !== 'hidden';
    return this.list()
      .map(({ participant_id, el, hasVideo }) => {
        const r = el.getBoundingClientRect();
        const onScreen = this.intersecting.has(el) ? this.intersecting.get(el) : inViewport(r);
        return {
          participant_id,
          width: Math.round(r.width * dpr),
          height: Math.round(r.height * dpr),
          visible: pageVisible && onScreen && hasVideo && r.width > 0 && r.height > 0,
        };
      })
      .sort((a, b) => (a.participant_id < b.participant_id ? -1 : a.participant_id > b.participant_id ? 1 : 0));
  }

  _observe() {
    const els = new Set(this.list().map((x) => x.el));
    for (const el of els) {
      if (this.observed.has(el)) continue;
      this.observed.add(el);
      if (this.io) this.io.observe(el);
      if (this.ro) this.ro.observe(el);
    }
    for (const el of this.observed) {
      if (els.has(el)) continue;
      this.observed.delete(el);
      if (this.io) this.io.unobserve(el);
      if (this.ro) this.ro.unobserve(el);
    }
  }

  _flush() {
    if (this.stopped) return;
    const tiles = this.current();
    const key = JSON.stringify(tiles);
    if (key === this.lastKey) return;
    if (!this.send({ type: 'tiles', tiles })) return;
    this.lastKey = key;
    this.lastSentAt = performance.now();
  }
}

function inViewport(r) {
  return r.bottom > 0 && r.right > 0 && r.top < window.innerHeight && r.left < window.innerWidth;
}
