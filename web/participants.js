// Remote participants: one tile each in the grid, and a MediaStream built from the subscriber
// connection's mid -> participant mapping (never from track ids: the server reuses m-lines).
import { createTile, playVideo, renderTileName, setTileState, syncStream } from './tiles.js';

export class Roster {
  /**
   * @param {HTMLElement} grid
   * @param {object} participants id -> {id, name, muted: {audio, video}, stream}; kept in place
   * @param {object} opts
   * @param {(id: string) => boolean} [opts.videoBlocked] true while the server sends us no video
   *   of participant `id` (audio-only, or not among the videos it forwards: last-N)
   * @param {(id: string) => boolean} [opts.videoComing] true when the server forwards `id`'s
   *   video though no m-line carries it yet (last-N video slots: one switches to it at its
   *   next keyframe, then `slot` moves the track here); the tile counts as showing video
   * @param {() => void} [opts.onChange] participants, tracks or mute states changed
   * @param {(blocked: boolean) => void} [opts.onSoundBlocked] autoplay with sound refused / allowed
   */
  constructor(grid, participants, {
    videoBlocked = () => false, videoComing = () => false, onChange = () => {}, onSoundBlocked = () => {},
  } = {}) {
    this.grid = grid;
    this.participants = participants;
    this.tiles = new Map(); // participant id -> tile
    this.videoBlocked = videoBlocked;
    this.videoComing = videoComing;
    this.onChange = onChange;
    this.onSoundBlocked = onSoundBlocked;
    this.watchedTracks = new WeakSet();
    this.soundBlocked = false;
    this._blocked = () => {
      this.soundBlocked = true;
      this.onSoundBlocked(true);
    };
  }

  /**
   * Whether `p` publishes video that reaches us: camera not muted, and a video m-line for it.
   * Not whether frames arrive now (`track.muted`): the server sends only to visible tiles, so
   * the `tiles` report must not wait for frames.
   */
  publishesVideo(p) {
    return !p.muted.video && p.stream.getVideoTracks().some((tr) => tr.readyState === 'live');
  }

  /** Whether the tile of `p` shows video (else its placeholder). */
  showsVideo(p) {
    return this.publishesVideo(p) && !this.videoBlocked(p.id)
      && p.stream.getVideoTracks().some((tr) => !tr.muted);
  }

  /** The remote tiles, for the `tiles` report: [{participant_id, el, hasVideo}]. */
  list() {
    return [...this.tiles].map(([id, tile]) => ({
      participant_id: id,
      el: tile.el,
      // A slot switches only to a tile the server believes visible: a forwarded camera counts
      // before its track arrives (else neither would wait for the other forever).
      hasVideo: !!this.participants[id] && (this.publishesVideo(this.participants[id])
        || (!this.participants[id].muted.video && this.videoComing(id))),
    }));
  }

  /** Unmute every remote tile after a user gesture. */
  enableSound() {
    if (!this.soundBlocked) return;
    this.soundBlocked = false;
    for (const tile of this.tiles.values()) {
      tile.video.muted = false;
      playVideo(tile.video, this._blocked);
    }
    this.onSoundBlocked(false);
  }

  refresh(p) {
    const tile = this.tiles.get(p.id);
    if (!tile) return;
    setTileState(tile, { micMuted: !!p.muted.audio, showVideo: this.showsVideo(p) });
  }

  refreshAll() {
    for (const p of Object.values(this.participants)) this.refresh(p);
  }

  add(info, selfId) {
    if (!info || !info.id || info.id === selfId) return;
    let p = this.participants[info.id];
    const name = typeof info.name === 'string' && info.name ? info.name : info.id;
    if (!p) {
      p = { id: info.id, name, muted: { audio: false, video: false }, stream: new MediaStream() };
      this.participants[p.id] = p;
      const tile = createTile({ id: p.id, name });
      this.tiles.set(p.id, tile);
      this.grid.append(tile.el);
    } else {
      p.name = name;
      this.tiles.get(p.id).name = name;
      renderTileName(this.tiles.get(p.id));
    }
    if (info.muted) p.muted = { audio: !!info.muted.audio, video: !!info.muted.video };
    this.applyTracks();
  }

  setMuted(id, kind, muted) {
    const p = this.participants[id];
    if (!p || (kind !== 'audio' && kind !== 'video')) return;
    p.muted[kind] = !!muted;
    this.refresh(p);
    this.onChange();
  }

  remove(id) {
    const tile = this.tiles.get(id);
    if (tile) {
      tile.video.srcObject = null;
      tile.el.remove();
      this.tiles.delete(id);
    }
    delete this.participants[id];
    this.onChange();
  }

  /** Remove every participant and empty the grid (our own tile too). */
  clear() {
    this.entries = [];
    for (const id of [...this.tiles.keys()]) this.remove(id);
    this.grid.replaceChildren();
  }

  /** Put each mapped receiver track into its participant's MediaStream; drop unmapped ones. */
  applyTracks(entries = this.entries || []) {
    this.entries = entries;
    const want = new Map();
    for (const e of entries) {
      if (!want.has(e.participant_id)) want.set(e.participant_id, []);
      want.get(e.participant_id).push(e.track);
    }
    for (const p of Object.values(this.participants)) {
      const { changed, added } = syncStream(p.stream, want.get(p.id) || []);
      for (const tr of added) {
        if (this.watchedTracks.has(tr)) continue;
        this.watchedTracks.add(tr);
        const refresh = () => { this.refreshAll(); this.onChange(); };
        for (const ev of ['mute', 'unmute', 'ended']) tr.addEventListener(ev, refresh);
      }
      const tile = this.tiles.get(p.id);
      if (changed && tile) {
        tile.video.srcObject = p.stream.getTracks().length ? p.stream : null;
        if (tile.video.srcObject) playVideo(tile.video, this._blocked);
      }
      this.refresh(p);
    }
    this.onChange();
  }
}
