// The meeting-room kiosk (/kiosk): a district room's computer on a dedicated line. It signs in
// once with its endpoint id and secret (kept in this browser's localStorage; the secret may come
// in the URL fragment, which never reaches the server's logs), asks the server for its schedule
// (POST /api/kiosk/schedule), joins the meeting by itself at the start time, full screen with
// large tiles and no controls, rejoins by itself after a drop (web/reconnect.js, then the next
// schedule poll), leaves when the meeting ends, and always asks for the top layer unless its
// line says otherwise (`?quality=medium|low`). In a cluster whose node that served the page
// died, it rejoins through another node like any page, and moves there when it next polls.
import { addStrings, applyTranslations, t } from './i18n.js';

addStrings({
  vi: {
    kioskTitle: 'Điểm cầu phòng họp',
    kioskEndpointId: 'Mã thiết bị',
    kioskSecret: 'Khóa bí mật của thiết bị',
    kioskSignIn: 'Đăng nhập thiết bị',
    kioskBadSecret: 'Sai mã thiết bị hoặc khóa bí mật.',
    kioskNext: 'Cuộc họp tiếp theo: {title}, phòng {room}, lúc {time}',
    kioskNone: 'Chưa có cuộc họp nào được lên lịch cho điểm cầu này.',
    kioskStartsIn: 'Tự động vào họp sau {minutes} phút.',
    kioskJoiningNow: 'Đang vào cuộc họp “{title}”…',
    kioskOffline: 'Không liên lạc được máy chủ; đang thử lại…',
  },
  en: {
    kioskTitle: 'Meeting-room endpoint',
    kioskEndpointId: 'Endpoint id',
    kioskSecret: 'Endpoint secret',
    kioskSignIn: 'Sign in this device',
    kioskBadSecret: 'Wrong endpoint id or secret.',
    kioskNext: 'Next meeting: {title}, room {room}, at {time}',
    kioskNone: 'No meeting is scheduled for this endpoint.',
    kioskStartsIn: 'Joining by itself in {minutes} min.',
    kioskJoiningNow: 'Joining “{title}”…',
    kioskOffline: 'Cannot reach the server; retrying…',
  },
});

const KEY = 'diemcau.kiosk';
const POLL_MS = 30_000;
const TOP = { top: 1920, medium: 960, low: 320 }; // tile width reported: the layer asked for

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (saved && Number.isInteger(saved.endpoint_id) && typeof saved.endpoint_secret === 'string') return saved;
  } catch (_) { /* nothing saved */ }
  return null;
}

function save(creds) {
  try { localStorage.setItem(KEY, JSON.stringify(creds)); } catch (_) { /* memory only */ }
}

/** Credentials from the URL (`?endpoint=ID#secret=...`), else from storage. */
function fromUrl() {
  const id = Number(new URLSearchParams(location.search).get('endpoint'));
  const secret = new URLSearchParams(location.hash.slice(1)).get('secret');
  if (Number.isInteger(id) && id > 0 && secret) {
    history.replaceState(null, '', location.pathname + location.search); // the secret leaves the URL
    return { endpoint_id: id, endpoint_secret: secret };
  }
  return null;
}

async function fetchSchedule(creds) {
  const response = await fetch('/api/kiosk/schedule', {
    method: 'POST', cache: 'no-store', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(creds),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const err = new Error(body.message || response.status);
    err.status = response.status;
    throw err;
  }
  return body;
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  Object.assign(node.dataset, dataset || {});
  node.append(...children);
  return node;
}

export function startKiosk({ join, leave, hook, setState, nodes = null }) {
  document.body.classList.add('kiosk');
  const quality = new URLSearchParams(location.search).get('quality') || 'top';
  const width = TOP[quality] || TOP.top;
  // Every remote tile reported as `width` wide (and visible): the server grants that layer.
  hook.tilesFilter = (msg) => ({
    ...msg,
    tiles: msg.tiles.map((tile) => ({ ...tile, width, height: Math.round((width * 9) / 16) })),
  });
  const state = hook.kiosk = { state: 'signin', quality, meeting: null, joins: 0 };
  const clock = el('div', { className: 'kiosk-clock', id: 'kiosk-clock' });
  const status = el('p', { className: 'kiosk-status', id: 'kiosk-status', role: 'status' });
  const idInput = el('input', { id: 'kiosk-id', inputMode: 'numeric', required: true });
  const secretInput = el('input', { id: 'kiosk-secret', type: 'password', required: true });
  const error = el('p', { className: 'join-error', id: 'kiosk-error', hidden: true });
  const form = el('form', { id: 'kiosk-form' }, [
    el('label', {}, [el('span', { dataset: { i18n: 'kioskEndpointId' } }), idInput]),
    el('label', {}, [el('span', { dataset: { i18n: 'kioskSecret' } }), secretInput]),
    error,
    el('button', { type: 'submit', className: 'primary', dataset: { i18n: 'kioskSignIn' } }),
  ]);
  const section = el('section', { id: 'kiosk-view', className: 'card kiosk-card' }, [
    el('h1', { dataset: { i18n: 'kioskTitle' } }), clock, status, form,
  ]);
  document.querySelector('main').append(section);
  applyTranslations(section);

  let creds = fromUrl() || load();
  let skew = 0; // server time - our time (s): the start time is the server's
  let pollTimer = null;
  let startTimer = null;
  let endTimer = null;
  let inMeeting = null; // the room we are in (or joining)

  const serverNow = () => Date.now() / 1000 + skew;

  function showWaiting(text) {
    for (const view of document.querySelectorAll('main > section')) view.hidden = view !== section;
    form.hidden = true;
    status.textContent = text;
    setState('idle');
    document.body.dataset.state = 'kiosk-waiting';
  }

  function tick() {
    clock.textContent = new Date(serverNow() * 1000).toLocaleTimeString('vi-VN', { hour: '2-digit', minute: '2-digit' });
  }
  setInterval(tick, 1000);
  tick();

  function enterFullscreen() {
    const root = document.documentElement;
    if (!document.fullscreenElement && root.requestFullscreen) root.requestFullscreen().catch(() => {});
  }
  document.addEventListener('click', enterFullscreen);

  async function enter(meeting, name) {
    if (inMeeting === meeting.room) return;
    inMeeting = meeting.room;
    state.state = 'joining';
    state.meeting = meeting;
    state.joins += 1;
    status.textContent = t('kioskJoiningNow', { title: meeting.title });
    enterFullscreen();
    section.hidden = true;
    const outcome = await join(meeting.room, name, { fields: { ...creds } });
    state.state = outcome === 'joined' ? 'in-meeting' : `join-${outcome}`;
    if (outcome !== 'joined') inMeeting = null; // the next poll tries again
    clearTimeout(endTimer);
    if (meeting.ends_at) {
      endTimer = setTimeout(() => { leaveMeeting(); }, Math.max(0, (meeting.ends_at - serverNow()) * 1000));
    }
  }

  async function leaveMeeting() {
    if (!inMeeting) return;
    inMeeting = null;
    await leave();
    state.state = 'waiting';
    poll();
  }

  async function poll() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, POLL_MS);
    let schedule;
    try {
      schedule = await fetchSchedule(creds);
    } catch (err) {
      if (err.status === 401) {
        creds = null;
        try { localStorage.removeItem(KEY); } catch (_) { /* ignore */ }
        showSignIn(t('kioskBadSecret'));
        return;
      }
      if (!inMeeting && moveToLiveNode()) return;
      if (!inMeeting) showWaiting(t('kioskOffline'));
      return;
    }
    skew = schedule.server_time - Date.now() / 1000;
    state.schedule = schedule;
    const name = schedule.endpoint.name;
    const [next] = schedule.meetings;
    // A meeting on now: join (again, after a drop that reconnection could not mend).
    const live = schedule.meetings.find((m) => m.in_progress);
    const dropped = inMeeting && !['joined', 'joining', 'lobby', 'reconnecting'].includes(hook.state);
    if (dropped) inMeeting = null;
    if (live) {
      if (!inMeeting) enter(live, name);
      return;
    }
    if (inMeeting) return;
    state.state = 'waiting';
    if (!next || !next.starts_at) {
      showWaiting(t('kioskNone'));
      return;
    }
    const at = new Date(next.starts_at * 1000).toLocaleTimeString('vi-VN', { hour: '2-digit', minute: '2-digit' });
    const minutes = Math.max(0, Math.ceil((next.starts_at - serverNow()) / 60));
    showWaiting(`${t('kioskNext', { title: next.title, room: next.room, time: at })}. ${t('kioskStartsIn', { minutes })}`);
    state.next = next;
    clearTimeout(startTimer);
    const wait = (next.starts_at - serverNow()) * 1000;
    if (wait < POLL_MS) startTimer = setTimeout(poll, Math.max(0, wait) + 200); // at the start
  }

  // The node that served this page is unreachable, but our last call moved to another node of
  // the cluster (web/failover.js), which took our credentials: carry on from there, with the
  // secret in the fragment as on first sign-in (it never reaches a server's logs).
  // Also to a node outside this page's CSP (added to the cluster after the page loaded).
  function moveToLiveNode(target = nodes && nodes.current) {
    if (!nodes || !creds || !target || target === nodes.page) return false;
    const query = new URLSearchParams({ endpoint: String(creds.endpoint_id) });
    if (quality !== 'top') query.set('quality', quality);
    state.state = 'moving';
    location.assign(`${target}/kiosk?${query}#secret=${encodeURIComponent(creds.endpoint_secret)}`);
    return true;
  }
  state.moveTo = (origin) => moveToLiveNode(origin); // web/failover.js: a node outside the CSP
  state.endMeeting = () => leaveMeeting(); // as at the meeting's end (tests)
  state.poll = () => poll(); // the schedule asked now, not at the next poll (tests)

  function showSignIn(message = '') {
    state.state = 'signin';
    for (const view of document.querySelectorAll('main > section')) view.hidden = view !== section;
    form.hidden = false;
    error.hidden = !message;
    error.textContent = message;
    document.body.dataset.state = 'kiosk-signin';
    idInput.focus();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const candidate = { endpoint_id: Number(idInput.value.trim()), endpoint_secret: secretInput.value.trim() };
    try {
      await fetchSchedule(candidate);
    } catch (err) {
      showSignIn(err.status === 401 ? t('kioskBadSecret') : String(err.message || err));
      return;
    }
    creds = candidate;
    save(creds);
    secretInput.value = '';
    poll();
  });

  if (creds) {
    save(creds);
    showWaiting('');
    poll();
  } else showSignIn();
}
