// Entry point: join form, tiles grid, controls. Signaling in signaling.js, WebRTC in session.js.
import { Signaling } from './signaling.js';
import { Session, getLocalMedia } from './session.js';
import { LANGUAGES, applyTranslations, lang, onLangChange, setLang, t } from './i18n.js';
import {
  createTile, playVideo, renderTileName, setTileState, syncStream, watchGrid,
} from './tiles.js';

const $ = (id) => document.getElementById(id);

// Test and debugging hook. `state`: 'idle' (form shown) | 'joining' | 'joined' | 'left' | 'error'.
let session = null; // the Session of the current (or last) call
const diemcau = {
  state: 'idle',
  selfId: null,
  room: null,
  name: null,
  participants: {}, // id -> {id, name, muted: {audio, video}, stream}
  pcs: {
    get publisher() { return session ? session.publisher : null; },
    get subscriber() { return session ? session.subscriber : null; },
  },
};
window.diemcau = diemcau;

let call = null; // {signaling, session, stream, selfTile, entries, leaving}
const tiles = new Map(); // participant id -> tile
const watchedTracks = new WeakSet();
let soundBlocked = false;

const charCount = (s) => [...s].length;
const validField = (s) => typeof s === 'string' && charCount(s) >= 1 && charCount(s) <= 64;

function setState(state) {
  diemcau.state = state;
  document.body.dataset.state = state;
}

function showView(which) {
  for (const v of ['join', 'call', 'left']) $(`${v}-view`).hidden = v !== which;
}

function showError(code, message) {
  $('banner-text').textContent = `${t('error')} [${code}]: ${message}`;
  $('banner').hidden = false;
}

function showNotice(text) {
  $('notice-text').textContent = text;
  $('notice').hidden = !text;
}

// ---- tiles ----

function onSoundBlocked() {
  soundBlocked = true;
  $('sound-notice').hidden = false;
}

function enableSound() {
  if (!soundBlocked) return;
  soundBlocked = false;
  for (const tile of tiles.values()) {
    tile.video.muted = false;
    playVideo(tile.video, onSoundBlocked);
  }
  $('sound-notice').hidden = true;
}

function updateParticipantTile(p) {
  const tile = tiles.get(p.id);
  if (!tile) return;
  const live = p.stream.getVideoTracks().some((tr) => tr.readyState === 'live' && !tr.muted);
  setTileState(tile, { micMuted: !!p.muted.audio, showVideo: live && !p.muted.video });
}

function updateSelfTile() {
  if (!call) return;
  const audio = call.stream && call.stream.getAudioTracks()[0];
  const video = call.stream && call.stream.getVideoTracks()[0];
  setTileState(call.selfTile, {
    micMuted: !audio || !audio.enabled,
    showVideo: !!video && video.enabled,
  });
}

function updateCount() {
  $('count-label').textContent = t('participants', { n: Object.keys(diemcau.participants).length + 1 });
}

function addParticipant(info) {
  if (!info || !info.id || info.id === diemcau.selfId) return;
  let p = diemcau.participants[info.id];
  const name = typeof info.name === 'string' && info.name ? info.name : info.id;
  if (!p) {
    p = { id: info.id, name, muted: { audio: false, video: false }, stream: new MediaStream() };
    diemcau.participants[p.id] = p;
    const tile = createTile({ id: p.id, name });
    tiles.set(p.id, tile);
    $('grid').append(tile.el);
  } else {
    p.name = name;
    tiles.get(p.id).name = name;
    renderTileName(tiles.get(p.id));
  }
  if (info.muted) p.muted = { audio: !!info.muted.audio, video: !!info.muted.video };
  applyTracks();
  updateCount();
}

function removeParticipant(id) {
  const tile = tiles.get(id);
  if (tile) {
    tile.video.srcObject = null;
    tile.el.remove();
    tiles.delete(id);
  }
  delete diemcau.participants[id];
  updateCount();
}

function clearParticipants() {
  for (const id of [...tiles.keys()]) removeParticipant(id);
  $('grid').replaceChildren();
}

/** Put each mapped receiver track into its participant's MediaStream; drop unmapped ones. */
function applyTracks() {
  const want = new Map();
  for (const e of (call && call.entries) || []) {
    if (!want.has(e.participant_id)) want.set(e.participant_id, []);
    want.get(e.participant_id).push(e.track);
  }
  for (const p of Object.values(diemcau.participants)) {
    const { changed, added } = syncStream(p.stream, want.get(p.id) || []);
    for (const tr of added) {
      if (watchedTracks.has(tr)) continue;
      watchedTracks.add(tr);
      const refresh = () => Object.values(diemcau.participants).forEach(updateParticipantTile);
      for (const ev of ['mute', 'unmute', 'ended']) tr.addEventListener(ev, refresh);
    }
    const tile = tiles.get(p.id);
    if (changed && tile) {
      tile.video.srcObject = p.stream.getTracks().length ? p.stream : null;
      if (tile.video.srcObject) playVideo(tile.video, onSoundBlocked);
    }
    updateParticipantTile(p);
  }
}

// ---- local media and controls ----

function renderControls() {
  const audio = call && call.stream && call.stream.getAudioTracks()[0];
  const video = call && call.stream && call.stream.getVideoTracks()[0];
  const render = (btn, track, what) => {
    const on = !!track && track.enabled;
    btn.textContent = `${on ? t('turnOff') : t('turnOn')} ${t(what).toLowerCase()}`;
    btn.setAttribute('aria-pressed', String(!on));
    btn.classList.toggle('off', !on);
    btn.disabled = !track;
  };
  render($('mic-btn'), audio, 'mic');
  render($('cam-btn'), video, 'camera');
}

function toggle(kind) {
  const track = call && call.stream && call.stream.getTracks().find((tr) => tr.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  if (diemcau.state === 'joined') call.signaling.send({ type: 'mute', kind, muted: !track.enabled });
  renderControls();
  updateSelfTile();
}

// ---- call lifecycle ----

function teardown(c) {
  if (!c) return;
  c.session.close();
  c.signaling.close();
  if (c.stream) c.stream.getTracks().forEach((tr) => tr.stop());
  if (call === c) call = null;
  clearParticipants();
  $('room-info').hidden = true;
  showNotice('');
  $('sound-notice').hidden = true;
  soundBlocked = false;
  renderControls();
}

let endText = ['leftRoom', '']; // i18n key of the "left" screen, and a suffix

function endCall(c, { state, key, suffix = '' }) {
  teardown(c);
  setState(state);
  endText = [key, suffix];
  $('left-text').textContent = t(key) + suffix;
  showView('left');
}

async function join(room, name) {
  if (call) teardown(call);
  Object.assign(diemcau, { room, name, selfId: null });
  const url = new URL(location.href);
  url.searchParams.set('room', room);
  url.searchParams.set('name', name);
  history.replaceState(null, '', url);
  document.title = `${room} · ${t('appName')}`;
  setState('joining');
  $('banner').hidden = true;
  $('joining-label').hidden = false;
  showView('call');

  const signaling = new Signaling();
  const c = { signaling, session: null, stream: null, entries: [], leaving: false };
  c.selfTile = createTile({ name, self: true });
  c.session = new Session(signaling, {
    onTracks: (entries) => { if (call === c) { c.entries = entries; applyTracks(); } },
    onConnectionState: (which, st) => { if (st === 'failed') showError('ice', t('mediaFailed', { which })); },
    onError: (err, context) => showError(err.code || context, err.message || String(err)),
  });
  session = c.session;
  call = c;
  clearParticipants();
  $('grid').append(c.selfTile.el);
  updateSelfTile();
  renderControls();
  const media = getLocalMedia();

  signaling
    .on('participant_joined', (m) => { if (call === c) addParticipant(m.participant); })
    .on('participant_left', (m) => { if (call === c) removeParticipant(m.participant_id); })
    .on('subscribe_offer', (m) => { if (call === c) c.session.handleSubscribeOffer(m); })
    .on('track_muted', (m) => {
      const p = diemcau.participants[m.participant_id];
      if (call !== c || !p || (m.kind !== 'audio' && m.kind !== 'video')) return;
      p.muted[m.kind] = !!m.muted;
      updateParticipantTile(p);
    })
    .on('error', (m) => {
      if (call !== c) return;
      // A refused trickled candidate is not actionable (ICE still finds a path, or says 'failed').
      if (m.ref === 'ice') console.warn(`ICE candidate refused: [${m.code}] ${m.message}`);
      else showError(m.code, m.message);
    })
    .on('left', (m) => {
      if (call !== c || c.leaving) return;
      endCall(c, { state: 'left', key: 'leftRoom', suffix: m.reason ? ` (${m.reason})` : '' });
    })
    .on('close', () => {
      if (call !== c || c.leaving) return;
      showError('socket', t('connectionLost'));
      endCall(c, { state: 'error', key: 'connectionLost' });
    });

  let joined;
  try {
    await signaling.connect();
    joined = await signaling.request({ type: 'join', room, name }, 'joined');
  } catch (err) {
    media.then((m) => m.stream && m.stream.getTracks().forEach((tr) => tr.stop()));
    if (call !== c) return;
    c.leaving = true;
    teardown(c);
    setState('error');
    showError(err.code || 'socket', err.message);
    showView('join');
    return;
  }
  if (call !== c) return;
  diemcau.selfId = joined.participant_id;
  c.selfTile.el.dataset.participantId = joined.participant_id;
  c.session.start(joined.ice_servers || []);
  for (const p of joined.participants || []) addParticipant(p);
  setState('joined');
  $('joining-label').hidden = true;
  $('room-label').textContent = joined.room || room;
  $('room-info').hidden = false;
  updateCount();
  signaling.startKeepalive();

  const { stream, missing, reason } = await media;
  if (call !== c) {
    if (stream) stream.getTracks().forEach((tr) => tr.stop());
    return;
  }
  if (missing) {
    c.notice = missing === 'all' ? ['noMedia', { reason }] : [missing === 'video' ? 'noCamera' : 'noMic'];
    showNotice(t(...c.notice));
  }
  c.stream = stream;
  if (stream) {
    c.selfTile.video.srcObject = stream;
    playVideo(c.selfTile.video, onSoundBlocked);
  }
  updateSelfTile();
  renderControls();
  if (!stream) return;
  try {
    await c.session.publish(stream);
  } catch (err) {
    if (call === c) showError(err.code || 'publish', err.message || String(err));
    return;
  }
  for (const tr of stream.getTracks()) {
    if (!tr.enabled && call === c) signaling.send({ type: 'mute', kind: tr.kind, muted: true });
  }
}

async function leave() {
  const c = call;
  if (!c || c.leaving) return;
  c.leaving = true;
  if (c.signaling.isOpen) {
    try {
      await c.signaling.request({ type: 'leave' }, 'left', { timeoutMs: 2000 });
    } catch (_) { /* leaving anyway */ }
  }
  endCall(c, { state: 'left', key: 'leftRoom' });
}

// ---- boot ----

function onLanguage() {
  if (call) {
    renderTileName(call.selfTile);
    document.title = `${diemcau.room} · ${t('appName')}`;
    if (call.notice) showNotice(t(...call.notice));
  }
  for (const p of Object.values(diemcau.participants)) updateParticipantTile(p);
  $('left-text').textContent = t(endText[0]) + endText[1];
  renderControls();
  updateCount();
}

function boot() {
  const select = $('lang-select');
  for (const [code, label] of Object.entries(LANGUAGES)) select.append(new Option(label, code));
  select.value = lang();
  select.addEventListener('change', () => setLang(select.value));
  onLangChange(onLanguage);
  watchGrid($('grid'));
  applyTranslations();
  renderControls();

  $('banner-close').addEventListener('click', () => { $('banner').hidden = true; });
  $('sound-btn').addEventListener('click', enableSound);
  document.addEventListener('click', enableSound);
  $('mic-btn').addEventListener('click', () => toggle('audio'));
  $('cam-btn').addEventListener('click', () => toggle('video'));
  $('leave-btn').addEventListener('click', leave);
  $('rejoin-btn').addEventListener('click', () => join(diemcau.room, diemcau.name));
  $('copy-link').addEventListener('click', () => {
    if (!navigator.clipboard) return;
    navigator.clipboard.writeText(location.href).then(() => {
      $('copy-link').textContent = t('linkCopied');
      setTimeout(() => { $('copy-link').textContent = t('copyLink'); }, 2000);
    }, () => {});
  });
  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const room = $('room-input').value.trim();
    const name = $('name-input').value.trim();
    if (!validField(room) || !validField(name)) {
      showError('bad-message', t('fieldRequired'));
      return;
    }
    join(room, name);
  });

  if (!window.RTCPeerConnection) showError('unsupported', t('unsupported'));
  const params = new URLSearchParams(location.search);
  const room = (params.get('room') || '').trim();
  const name = (params.get('name') || '').trim();
  $('room-input').value = room;
  $('name-input').value = name;
  if (validField(room) && validField(name)) {
    join(room, name);
  } else {
    setState('idle');
    showView('join');
    (room ? $('name-input') : $('room-input')).focus();
  }
}

boot();
