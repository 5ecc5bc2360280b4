// The live meeting of the selected room: participants with their mute state and buttons (mute
// audio / video, pin, remove), the lobby (admit / deny), lock / unlock and end the meeting.
// Refreshed by the console's 2 s poll and after every action.
import { t } from './i18n.js';
import { $, confirmButton, fmtTime, h, table, toast } from './console-views.js';
import { iconEl } from './icons.js';

const roleText = (role) => (t(`role.${role}`) === `role.${role}` ? role : t(`role.${role}`));

export class LivePanel {
  /**
   * @param {import('./console-api.js').Api} api
   * @param {() => object|null} currentRoom the selected room (RoomOut)
   * @param {(room: object) => void} roomChanged a new RoomOut (after lock / unlock)
   */
  constructor(api, currentRoom, roomChanged) {
    this.api = api;
    this.currentRoom = currentRoom;
    this.roomChanged = roomChanged;
    this.visible = false;
    this.pinned = {}; // room name -> the participant we pinned (the API does not report it)
    this.participants = [];
    this.lobby = [];
    this.seq = 0; // drops answers for a room that is no longer shown
    this.recordings = [];
    $('lock-btn').addEventListener('click', () => this.toggleLock());
    $('record-btn').addEventListener('click', () => this.toggleRecording());
  }

  show(room) {
    this.visible = !!room;
    if (!room) return;
    this.participants = [];
    this.lobby = [];
    this.renderToolbar(room);
    this.render(room);
    this.refresh();
  }

  hide() {
    this.visible = false;
    this.seq += 1;
  }

  async refresh() {
    const room = this.currentRoom();
    if (!this.visible || !room) return;
    const seq = ++this.seq;
    let participants; let lobby; let recordings;
    try {
      [participants, lobby, recordings] = await Promise.all([
        this.api.participants(room.name), this.api.lobby(room.name),
        this.api.recordings(room.name).catch(() => [])]);
    } catch (err) {
      if (err.error !== 'wrong-node' || seq !== this.seq) throw err;
      this.showElsewhere(err.nodeAddress);
      return;
    }
    if (seq !== this.seq || !this.visible) return;
    this.showElsewhere(null);
    this.participants = participants;
    this.lobby = lobby;
    this.recordings = recordings;
    const pinned = this.pinned[room.name];
    if (pinned && !participants.some((p) => p.id === pinned)) delete this.pinned[room.name];
    this.renderToolbar(room);
    this.render(room);
  }

  /**
   * A cluster: the meeting runs on another node, which alone can moderate and record it (the
   * API answers 421 wrong-node here): say so and link to that node's console.
   * @param {string|null} address the room's node (null: the meeting is here, hide the note)
   */
  showElsewhere(address) {
    const note = $('live-elsewhere');
    $('live-here').hidden = address !== null;
    note.hidden = address === null;
    if (address === null) return;
    let url = null;
    try {
      const u = new URL('/console', address);
      if (u.protocol === 'http:' || u.protocol === 'https:') url = u.href;
    } catch (_) { /* no usable address: the note says so without a link */ }
    note.replaceChildren(t('meetsElsewhere'), ' ',
      url ? h('a', { href: url, target: '_blank', rel: 'noopener' }, url) : '');
  }

  renderToolbar(room) {
    const lock = $('lock-btn');
    lock.replaceChildren(iconEl(room.locked ? 'unlock' : 'lock', 16),
      ` ${t(room.locked ? 'unlockRoom' : 'lockRoom')}`);
    lock.dataset.locked = String(room.locked);
    const recording = this.isRecording();
    const rec = $('record-btn');
    rec.replaceChildren(h('span', { class: recording ? 'rec-dot on' : 'rec-dot' }),
      ` ${t(recording ? 'stopRecording' : 'startRecording')}`);
    rec.dataset.recording = String(recording);
    $('live-count').textContent = t('inRoom', { n: this.participants.length });
    if (!$('end-slot').firstChild || $('end-slot').dataset.room !== room.name
        || $('end-slot').dataset.lang !== t('endMeeting')) {
      $('end-slot').dataset.room = room.name;
      $('end-slot').dataset.lang = t('endMeeting');
      $('end-slot').replaceChildren(confirmButton(t('endMeeting'),
        () => this.act(() => this.api.end(room.name)),
        { question: 'endConfirm', dataset: { action: 'end' } }));
    }
  }

  /** Run an action, show its error, refresh at once. */
  async act(fn) {
    try {
      await fn();
    } catch (err) {
      toast(err.message, true);
    }
    await this.refresh().catch(() => {});
  }

  render(room) {
    const pinned = this.pinned[room.name] || null;
    const state = (muted, kind) => h('span', { class: muted ? 'state off' : 'state on' },
      iconEl(muted ? `${kind}Off` : kind, 16), ` ${t(muted ? 'off' : 'on')}`);
    const button = (key, action, fn, cls = '') => h('button', {
      type: 'button', class: `small ${cls}`, dataset: { action }, onclick: () => this.act(fn),
    }, t(key));
    const rows = this.participants.map((p) => [
      h('span', {}, pinned === p.id ? iconEl('pin', 16) : '', p.name),
      roleText(p.role),
      state(p.audio_muted, 'mic'),
      state(p.video_muted, 'cam'),
      h('span', { class: 'actions' },
        button('muteAudio', 'mute-audio', () => this.api.mute(room.name, p.id, 'audio')),
        button('muteVideo', 'mute-video', () => this.api.mute(room.name, p.id, 'video')),
        pinned === p.id
          ? button('unpin', 'unpin', () => this.pin(room.name, null))
          : button('pin', 'pin', () => this.pin(room.name, p.id)),
        button('remove', 'remove', () => this.api.remove(room.name, p.id), 'danger')),
    ]);
    $('participants').replaceChildren(table(
      ['name', 'role', 'micState', 'camState', ''], rows, 'noParticipants',
      (i) => ({ dataset: { participantId: this.participants[i].id,
        name: this.participants[i].name, audioMuted: String(this.participants[i].audio_muted),
        videoMuted: String(this.participants[i].video_muted) } })));
    for (const btn of $('participants').querySelectorAll('[data-action="mute-audio"]')) {
      btn.disabled = btn.closest('tr').dataset.audioMuted === 'true';
    }
    for (const btn of $('participants').querySelectorAll('[data-action="mute-video"]')) {
      btn.disabled = btn.closest('tr').dataset.videoMuted === 'true';
    }
    $('lobby-list').replaceChildren(table(
      ['name', 'role', ''],
      this.lobby.map((w) => [w.name, roleText(w.role), h('span', { class: 'actions' },
        button('admit', 'admit', () => this.api.admit(room.name, w.id), 'primary'),
        button('deny', 'deny', () => this.api.deny(room.name, w.id), 'danger'))]),
      'lobbyEmpty', (i) => ({ dataset: { participantId: this.lobby[i].id } })));
    this.renderRecordings();
  }

  async pin(roomName, pid) {
    await this.api.pin(roomName, pid);
    if (pid) this.pinned[roomName] = pid;
    else delete this.pinned[roomName];
  }

  isRecording() {
    return this.recordings.some((r) => r.state === 'recording');
  }

  async toggleRecording() {
    const room = this.currentRoom();
    if (!room) return;
    const recording = this.isRecording();
    await this.act(() => (recording ? this.api.stopRecording(room.name)
      : this.api.startRecording(room.name)));
  }

  renderRecordings() {
    const rows = this.recordings.map((r) => [
      fmtTime(r.started_at),
      r.ended_at ? `${Math.round(r.ended_at - r.started_at)} s` : '—',
      t(`recState.${r.state}`),
      r.participants.join(', '),
      h('span', {}, r.files.map((f) => h('button', {
        type: 'button', class: 'small',
        onclick: () => this.act(() => this.api.download(f.url, `${r.id}-${f.path.split('/').pop()}`)),
      }, `${f.participant} (${t(`kind.${f.kind}`)})`))),
    ]);
    $('recordings-list').replaceChildren(table(
      ['recStarted', 'recDuration', 'recStateTitle', 'participantsTitle', 'recFiles'], rows,
      'recordingsEmpty', (i) => ({ dataset: { recordingId: this.recordings[i].id } })));
  }

  async toggleLock() {
    const room = this.currentRoom();
    if (!room) return;
    await this.act(async () => this.roomChanged(await this.api.lock(room.name, !room.locked)));
  }
}
