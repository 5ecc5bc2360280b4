// Entry point: join form, tiles grid, controls. Signaling in signaling.js, WebRTC in session.js,
// remote participants in participants.js, audio-only and simulcast layers in bandwidth.js, join
// credentials and refusals in joinflow.js, views and notices in screens.js.
import { Signaling, sendLog } from './signaling.js';
import { Session, getLocalMedia } from './session.js';
import { LANGUAGES, applyTranslations, lang, onLangChange, setLang, t } from './i18n.js';
import { createTile, markPinned, playVideo, renderTileName, setTileState, watchGrid } from './tiles.js';
import { Roster } from './participants.js';
import { TileReporter } from './tilereport.js';
import { MeetingExtras } from './meeting.js';
import { Gallery } from './gallery.js';
import { VideoLayers, bandwidthNotice, initialBandwidth, parseBandwidth } from './bandwidth.js';
import {
  credentials, dropRejoin, loadRejoin, offerFor, rerenderJoinError, saveRejoin, showJoinError,
  staleRejoin, urlParams, validField,
} from './joinflow.js';
import {
  FINAL_REASONS, hostNoticeKind, renderControlButtons, rerenderScreens, showError, showHostNotice,
  showLeft, showLock, showNotice, showRecording, showView, wireScreens,
} from './screens.js';
import { Reconnector, showPeerState } from './reconnect.js';
import { ScreenShare } from './screenshare.js';
import { applySpeaker, openPrejoin } from './prejoin.js';
import {
  CLUSTER_BACKOFF_MS, NodeList, Rejoiner, movePage, redirectOutside, takeMove, wsUrl,
} from './failover.js';

const $ = (id) => document.getElementById(id);

// Test and debugging hook. `state`: 'idle' (form shown) | 'joining' | 'lobby' | 'joined' | 'left'
// | 'error'.
let session = null; // the Session of the current (or last) call
const diemcau = {
  state: 'idle',
  selfId: null,
  room: null,
  name: null,
  participants: {}, // id -> {id, name, muted: {audio, video}, stream}
  role: null,
  pinned: null, // the pinned participant's id
  locked: false, // the host locked the room (known from `room_locked`)
  recording: false, // the room is being recorded (`joined.recording`, then `recording`)
  leftReason: null,
  bandwidth: initialBandwidth(), // {down, up}: {audio_only, reason, estimate_bps, threshold_bps}
  audioOnly: false, // the user's "audio only" toggle
  sendLog, // types of the messages sent, the last 200
  get signaling() { return call ? call.signaling : null; }, // tests: cut the socket
  pcs: {
    get publisher() { return session ? session.publisher : null; },
    get subscriber() { return session ? session.subscriber : null; },
  },
};
window.diemcau = diemcau;

let call = null; // {signaling, session, stream, selfTile, layers, reporter, published, leaving}
// Pages of 3x3 remote tiles; last-N: placeholders for the videos the server does not forward.
const gallery = new Gallery(document.getElementById('grid'), (msg) => !!call && call.signaling.send(msg), {
  onForwarded: () => {
    roster.refreshAll();
    if (call && call.reporter) call.reporter.schedule(); // a forwarded tile counts as visible
  },
});
diemcau.gallery = gallery;
const roster = new Roster(document.getElementById('grid'), diemcau.participants, {
  videoBlocked: (id) => diemcau.bandwidth.down.audio_only || !gallery.forwards(id),
  videoComing: (id) => gallery.forwarded !== null && gallery.forwarded.has(id),
  onChange: () => {
    updateCount();
    gallery.layout();
    markPinned($('grid'), diemcau.pinned);
    if (call && call.reporter) call.reporter.schedule();
  },
  onSoundBlocked: (blocked) => { $('sound-notice').hidden = !blocked; },
});
let lastThreshold = null; // the last threshold_bps the server gave
// Chat, hands, participant list, documents, speaker layout (web/meeting.js).
const extras = new MeetingExtras({
  grid: $('grid'),
  controls: $('controls'),
  participants: diemcau.participants,
  subscriberPc: () => (call && call.session ? call.session.subscriber : null),
  onLayout: () => { if (call && call.reporter) call.reporter.schedule(); },
  notice: (text) => showNotice(text),
});
diemcau.extras = extras;
// Issue 12: screen sharing (web/screenshare.js), automatic reconnection (web/reconnect.js).
const screen = new ScreenShare({
  session: () => (call ? call.session : null),
  nameOf: (id) => (diemcau.participants[id] ? diemcau.participants[id].name : id),
  notify: (text) => showNotice(text),
});
diemcau.screen = screen;
let joinOptions = {}; // the last join's options (pre-join choices, kiosk credentials)
const PING_TIMEOUT_MS = 2500; // media stopped and no pong this long: the network is gone
// A cluster's other nodes (web/failover.js): a rejoin tries this call's node, then them. The
// resume token is only known to the node that issued it; elsewhere the seat is taken over.
const nodes = new NodeList();
diemcau.nodes = nodes;
// A node outside this page's CSP is reached by loading the page from it (the kiosk's own way
// for the kiosk: web/kiosk.js).
const movePageTo = (node) => (location.pathname === '/kiosk'
  ? !!diemcau.kiosk && !!diemcau.kiosk.moveTo && diemcau.kiosk.moveTo(node)
  : movePage(node, { room: diemcau.room, name: diemcau.name, rejoin: loadRejoin(diemcau.room) }));
const rejoiner = new Rejoiner(nodes, {
  join: (node, o) => join(diemcau.room, diemcau.name,
    { ...joinOptions, ...o, node, takeOver: o.takeOver || joinOptions.takeOver }),
  hasLeft: () => diemcau.state === 'left',
  notify: (text) => showNotice(text),
  move: movePageTo,
});
const reconnector = new Reconnector({
  rejoin: (resume, attempt) => rejoiner.auto(resume, attempt),
  backoff: () => (nodes.clustered ? CLUSTER_BACKOFF_MS : null),
  notify: (text) => showNotice(text),
  hook: diemcau,
  isLive: () => !!call && !call.leaving && ['joined', 'joining'].includes(diemcau.state),
  ping: () => (call ? call.signaling.ping(PING_TIMEOUT_MS) : Promise.reject(new Error('no call'))),
  giveUp: () => {
    if (!['reconnecting', 'joining', 'joined'].includes(diemcau.state)) return;
    showError('socket', t('connectionLost'));
    endCall(call, 'error');
  },
});

function setState(state) {
  diemcau.state = state;
  document.body.dataset.state = state;
}

/** `muted_by_host`: our device goes off, and stays off until we turn it on again. */
function onMutedByHost(c, kind) {
  if (kind !== 'audio' && kind !== 'video') return;
  c.hostMuted[kind] = true;
  const track = c.stream && c.stream.getTracks().find((tr) => tr.kind === kind);
  if (track && track.enabled) {
    track.enabled = false;
    c.signaling.send({ type: 'mute', kind, muted: true });
  }
  showHostNotice(kind);
  renderControls();
  updateSelfTile();
}

function setPinned(id) {
  diemcau.pinned = id || null;
  markPinned($('grid'), diemcau.pinned);
  gallery.setPinned(diemcau.pinned);
  if (call && call.reporter) call.reporter.schedule();
}

const setLocked = (locked) => showLock((diemcau.locked = !!locked));

/** `recording` messages: the badge, and a notice when it starts, stops or fails. */
function setRecording(active, { announce = true, error = null } = {}) {
  const was = diemcau.recording;
  diemcau.recording = !!active;
  showRecording(diemcau.recording);
  if (!announce || was === diemcau.recording) return;
  if (error) showNotice(t('recordingFailed'));
  else showNotice(t(diemcau.recording ? 'recordingStarted' : 'recordingStopped'));
}

// ---- tiles and audio-only ----

function updateSelfTile() {
  if (!call) return;
  const audio = call.stream && call.stream.getAudioTracks()[0];
  const video = call.stream && call.stream.getVideoTracks()[0];
  const sending = !diemcau.audioOnly && !(call.layers && call.layers.videoOff);
  setTileState(call.selfTile, {
    micMuted: !audio || !audio.enabled,
    showVideo: !!video && video.enabled && sending,
  });
}

function updateCount() {
  $('count-label').textContent = t('participants', { n: Object.keys(diemcau.participants).length + 1 });
}

function renderBandwidth() {
  const text = call ? bandwidthNotice(diemcau.bandwidth, {
    userAudioOnly: diemcau.audioOnly,
    videoOff: !!call.layers && call.layers.videoOff,
    lastThreshold,
  }) : '';
  $('bw-notice-text').textContent = text;
  $('bw-notice').hidden = !text;
  roster.refreshAll();
  updateSelfTile();
}

function onBandwidth(msg) {
  const parsed = parseBandwidth(msg);
  if (!parsed) return;
  diemcau.bandwidth[parsed[0]] = parsed[1];
  if (parsed[1].threshold_bps) lastThreshold = parsed[1].threshold_bps;
  renderBandwidth();
  if (call && call.reporter) call.reporter.schedule();
}

/** The "audio only" toggle: no video received (server side) and none sent (here). */
function setAudioOnly(enabled) {
  if (!call || diemcau.state !== 'joined' || diemcau.audioOnly === enabled) return;
  diemcau.audioOnly = enabled;
  call.signaling.send({ type: 'audio_only', enabled });
  call.layers.setUserOff(enabled);
  const video = call.stream && call.stream.getVideoTracks()[0];
  // With the camera off, video is muted either way.
  if (video && video.enabled) call.signaling.send({ type: 'mute', kind: 'video', muted: enabled });
  renderBandwidth();
  renderControls();
}

// ---- local media and controls ----

function renderControls() {
  renderControlButtons(call && call.stream, {
    audioOnly: diemcau.audioOnly, joined: !!call && diemcau.state === 'joined',
  });
}

function toggle(kind) {
  const track = call && call.stream && call.stream.getTracks().find((tr) => tr.kind === kind);
  if (!track) return;
  track.enabled = !track.enabled;
  if (track.enabled && hostNoticeKind() === kind) showHostNotice(null);
  // While audio only, video stays muted; the camera state applies when it ends.
  if (diemcau.state === 'joined' && (kind === 'audio' || !diemcau.audioOnly)) {
    call.signaling.send({ type: 'mute', kind, muted: !track.enabled });
  }
  renderControls();
  updateSelfTile();
}

// ---- call lifecycle ----

function teardown(c) {
  if (!c) return;
  screen.reset();
  if (c.speaker) c.speaker.disconnect(); // the pre-join speaker choice's observer
  c.reporter.stop();
  c.layers.close();
  c.session.close();
  c.signaling.close();
  if (c.stream) c.stream.getTracks().forEach((tr) => tr.stop());
  if (call === c) call = null;
  extras.detach();
  roster.clear();
  $('room-info').hidden = true;
  showNotice('');
  $('sound-notice').hidden = true;
  showHostNotice(null);
  setLocked(false);
  setRecording(false, { announce: false });
  diemcau.pinned = null;
  gallery.reset();
  roster.soundBlocked = false;
  diemcau.bandwidth = initialBandwidth();
  diemcau.audioOnly = false;
  renderBandwidth();
  renderControls();
}

/** The call is over: `state` 'left' (with the `left` message's reason) or 'error'. */
function endCall(c, state, reason = null) {
  reconnector.stop();
  teardown(c);
  setState(state);
  diemcau.leftReason = reason;
  if (FINAL_REASONS.includes(reason)) dropRejoin(diemcau.room);
  showLeft(state, reason);
}

/**
 * Join `room` as `name`. `opts`: media (a getLocalMedia()-like promise from the pre-join
 * screen), audioOnly, speakerId, fields (credentials, e.g. a kiosk's endpoint id and secret),
 * resume (a seat's resume token), takeOver, reconnect (an automatic attempt: no join form on
 * failure). Resolves with the resulting state: 'joined', 'lobby', 'error', 'refused', 'left'.
 */
async function join(room, name, opts = {}) {
  if (!opts.reconnect) joinOptions = { ...opts, media: null, resume: null };
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

  showJoinError(null);
  const creds = credentials(room, urlParams());
  const kind = creds.kind;
  let fields = opts.fields ? { ...opts.fields } : creds.fields;
  if (opts.resume) fields = { ...fields, resume: opts.resume };
  if (opts.takeOver) fields.take_over = true;
  const signaling = new Signaling(opts.node ? wsUrl(opts.node) : undefined);
  signaling.canReach = (origin) => nodes.allows(origin); // a redirect outside our CSP: move
  const c = { signaling, session: null, stream: null, published: false, leaving: false, hostMuted: {} };
  c.selfTile = createTile({ name, self: true });
  c.layers = new VideoLayers(() => (c.published ? c.session.videoSender() : null));
  c.reporter = new TileReporter(() => roster.list(),
    (msg) => signaling.send(diemcau.tilesFilter ? diemcau.tilesFilter(msg) : msg), $('grid'));
  c.session = new Session(signaling, {
    onTracks: (entries) => { if (call === c) roster.applyTracks(screen.take(entries)); },
    onConnectionState: (which, st) => {
      if (call !== c) return;
      if (reconnector.onPcState(which, st, diemcau.state === 'joined')) return;
      if (st === 'failed') showError('ice', t('mediaFailed', { which }));
    },
    onError: (err, context) => showError(err.code || context, err.message || String(err)),
  });
  session = c.session;
  call = c;
  roster.clear();
  $('grid').append(c.selfTile.el);
  updateSelfTile();
  renderControls();
  const media = opts.media || getLocalMedia();

  signaling
    .on('participant_joined', (m) => { if (call === c) roster.add(m.participant, diemcau.selfId); })
    .on('participant_left', (m) => { if (call === c) roster.remove(m.participant_id); })
    .on('subscribe_offer', (m) => { if (call === c) c.session.handleSubscribeOffer(m); })
    .on('slot', (m) => { if (call === c) c.session.handleSlot(m); })
    .on('track_muted', (m) => { if (call === c) roster.setMuted(m.participant_id, m.kind, m.muted); })
    .on('bandwidth', (m) => { if (call === c) onBandwidth(m); })
    .on('muted_by_host', (m) => { if (call === c) onMutedByHost(c, m.kind); })
    .on('pinned', (m) => { if (call === c) setPinned(m.participant_id); })
    .on('speakers', (m) => { if (call === c) gallery.setSpeakers(m.participant_ids); })
    .on('forwarded', (m) => { if (call === c) gallery.setForwarded(m.participant_ids, m.last_n); })
    .on('room_locked', (m) => { if (call === c) setLocked(m.locked); })
    .on('recording', (m) => { if (call === c) setRecording(m.active, { error: m.error || null }); })
    .on('joined', (m) => { if (call === c && c.admit) c.admit(m); })
    .on('participant_state', (m) => { if (call === c) showPeerState(diemcau, m); })
    .on('cluster', (m) => { if (call === c) nodes.accept(m.nodes); })
    .on('publish_layers', (m) => {
      if (call !== c) return;
      c.layers.setLayers(m);
      renderBandwidth();
    })
    .on('error', (m) => {
      if (call !== c) return;
      // Not shown: a refused trickled candidate (ICE still finds a path, or says 'failed'),
      // a refused `tiles` hint, a refused `join` (the join form shows it), or a message type
      // this server does not know (an older server).
      if (['ice', 'tiles', 'join', 'quality', 'shown'].includes(m.ref) || m.code === 'unknown-type') {
        console.warn(`server refused a message: [${m.code}] ${m.message}`);
      } else showError(m.code, m.message);
    })
    .on('left', (m) => {
      if (call !== c || c.leaving) return;
      endCall(c, 'left', m.reason || 'requested');
    })
    .on('close', () => {
      if (call !== c || c.leaving) return;
      if (diemcau.state === 'joined' && reconnector.lost('socket')) return;
      if (diemcau.state === 'lobby' && nodes.clustered && reconnector.lost('lobby')) {
        c.lobbyGone = true; // the wait below ends; the reconnection waits again elsewhere
        c.lobbyLost(Object.assign(new Error('the lobby\'s server is gone'), { code: 'socket' }));
        return;
      }
      showError('socket', t('connectionLost'));
      endCall(c, 'error');
    });
  extras.attach(signaling);

  let joined;
  try {
    await signaling.connect(opts.reconnect ? 5000 : 10000);
    joined = await signaling.requestJoin({ type: 'join', room, name, ...fields }, ['joined', 'lobby'],
      { timeoutMs: 15000 });
    if (joined.type === 'lobby' && call === c) {
      // a cluster's lobby guest waits again through another node if ours dies
      if (joined.rejoin_token) saveRejoin(room, joined.rejoin_token);
      reconnector.joined(joined);
      nodes.joinedAt(signaling.url, true);
      nodes.accept(joined.nodes);
      setState('lobby');
      showView('lobby');
      joined = await new Promise((resolve, reject) => { c.admit = resolve; c.lobbyLost = reject; });
      showView('call');
    }
  } catch (err) {
    media.then((m) => m.stream && m.stream.getTracks().forEach((tr) => tr.stop()));
    if (call !== c) return 'error';
    c.leaving = true;
    teardown(c);
    if (c.lobbyGone && !opts.reconnect) return 'error'; // the reconnection took over
    if (opts.resume && err.code === 'resume-expired') { // the seat is gone: join as usual
      return join(room, name, { ...opts, media: null, resume: null, takeOver: true });
    }
    const outside = redirectOutside(err, nodes);
    if (outside && movePageTo(outside)) {
      setState('moving');
      return 'moving';
    }
    if (staleRejoin(kind, err)) {
      dropRejoin(room);
      return join(room, name, { ...opts, media: null });
    }
    if (opts.reconnect) {
      setState('reconnecting');
      // A cluster moving the room off a dead node: another try (or node) may work. Its seats
      // may still count for a moment after the room moved (until a live node sweeps them).
      const retry = ['socket', 'timeout', 'internal', 'wrong-node', 'cluster-unavailable'];
      if (nodes.clustered) retry.push('room-full');
      return retry.includes(err.code) ? 'error' : 'refused';
    }
    setState('error');
    showJoinError(err, room);
    offerFor(err, kind);
    showView('join');
    return 'error';
  }
  if (call !== c) return diemcau.state;
  if (joined.rejoin_token) saveRejoin(room, joined.rejoin_token);
  reconnector.joined(joined);
  nodes.joinedAt(signaling.url);
  nodes.accept(joined.nodes);
  diemcau.role = joined.role || null;
  diemcau.selfId = joined.participant_id;
  c.selfTile.el.dataset.participantId = joined.participant_id;
  setPinned(joined.pinned);
  setRecording(joined.recording, { announce: !!joined.recording });
  c.session.start(joined.ice_servers || []);
  for (const p of joined.participants || []) roster.add(p, diemcau.selfId);
  extras.joined({ selfId: joined.participant_id, role: joined.role, name, meeting: joined.meeting });
  setState('joined');
  if (opts.audioOnly) setAudioOnly(true); // the pre-join check measured under the threshold
  if (opts.speakerId) c.speaker = applySpeaker($('grid'), opts.speakerId);
  c.reporter.start();
  gallery.start();
  renderControls();
  $('joining-label').hidden = true;
  $('room-label').textContent = joined.room || room;
  $('room-info').hidden = false;
  updateCount();
  signaling.startKeepalive();

  const { stream, missing, reason } = await media;
  if (call !== c) {
    if (stream) stream.getTracks().forEach((tr) => tr.stop());
    return diemcau.state;
  }
  if (missing) {
    c.notice = missing === 'all' ? ['noMedia', { reason }] : [missing === 'video' ? 'noCamera' : 'noMic'];
    showNotice(t(...c.notice));
  }
  c.stream = stream;
  for (const tr of stream ? stream.getTracks() : []) if (c.hostMuted[tr.kind]) tr.enabled = false;
  if (stream) {
    c.selfTile.video.srcObject = stream;
    playVideo(c.selfTile.video); // muted: autoplay is allowed
  }
  updateSelfTile();
  renderControls();
  if (!stream) return 'joined';
  try {
    await c.session.publish(stream);
  } catch (err) {
    if (call === c) showError(err.code || 'publish', err.message || String(err));
    return 'joined';
  }
  if (call !== c) return diemcau.state;
  c.published = true;
  c.layers.apply(); // a `publish_layers` or the audio-only toggle may have come first
  for (const tr of stream.getTracks()) {
    const off = !tr.enabled || (tr.kind === 'video' && diemcau.audioOnly);
    if (off) signaling.send({ type: 'mute', kind: tr.kind, muted: true });
  }
  return 'joined';
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
  endCall(c, 'left', 'requested');
}

// ---- boot ----

function onLanguage() {
  if (call) {
    renderTileName(call.selfTile);
    document.title = `${diemcau.room} · ${t('appName')}`;
    if (call.notice) showNotice(t(...call.notice));
  }
  renderBandwidth();
  rerenderScreens();
  screen.render();
  rerenderJoinError();
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

  wireScreens();
  screen.mount($('controls'), $('grid'));
  // Closing or reloading the page ends the call at once (a dropped socket would hold the seat).
  window.addEventListener('pagehide', () => { if (call && !call.leaving) call.signaling.send({ type: 'leave' }); });
  const check = document.createElement('button');
  check.type = 'button';
  check.id = 'prejoin-open';
  check.className = 'link-btn';
  check.dataset.i18n = 'prejoinOpen';
  check.textContent = t('prejoinOpen');
  $('join-btn').before(check);
  check.addEventListener('click', () => {
    const [r, n] = ['room-input', 'name-input'].map((id) => $(id).value.trim());
    if (validField(r) && validField(n)) openPrejoin({ room: r, name: n, onJoin: (o) => join(r, n, o) });
    else showError('bad-message', t('fieldRequired'));
  });
  $('lobby-leave').addEventListener('click', leave);
  $('sound-btn').addEventListener('click', () => roster.enableSound());
  document.addEventListener('click', () => roster.enableSound());
  $('mic-btn').addEventListener('click', () => toggle('audio'));
  $('cam-btn').addEventListener('click', () => toggle('video'));
  $('audio-only-btn').addEventListener('click', () => setAudioOnly(!diemcau.audioOnly));
  $('leave-btn').addEventListener('click', leave);
  $('rejoin-btn').addEventListener('click', () => (nodes.clustered
    ? rejoiner.manual((node) => join(diemcau.room, diemcau.name, { ...joinOptions, node }))
    : join(diemcau.room, diemcau.name)));
  $('join-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const [room, name] = ['room-input', 'name-input'].map((id) => $(id).value.trim());
    if (validField(room) && validField(name)) join(room, name);
    else showError('bad-message', t('fieldRequired'));
  });

  if (!window.RTCPeerConnection) showError('unsupported', t('unsupported'));
  const { room, name } = urlParams();
  const moved = takeMove(); // this page was loaded from here by another node's page
  if (moved && moved.rejoin && validField(room)) saveRejoin(room, moved.rejoin);
  $('room-input').value = room;
  $('name-input').value = name;
  if (location.pathname === '/kiosk') { // a meeting-room computer (web/kiosk.js)
    import('./kiosk.js').then((m) => m.startKiosk({ join, leave, hook: diemcau, setState, nodes }));
  } else if (moved && validField(room) && validField(name)) { // rejoin here, with retries
    Object.assign(diemcau, { room, name });
    setState('reconnecting');
    reconnector.lost('moved');
  } else if (validField(room) && validField(name) && new URLSearchParams(location.search).get('prejoin') === '1') {
    openPrejoin({ room, name, onJoin: (o) => join(room, name, o) });
  } else if (validField(room) && validField(name)) {
    join(room, name);
  } else {
    setState('idle');
    showView('join');
    (room ? $('name-input') : $('room-input')).focus();
  }
}

boot();
