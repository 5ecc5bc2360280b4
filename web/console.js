// The operator console (served at /console): log in, then rooms (with live participant counts),
// a room's tabs (live meeting, settings, invitations, members, weekly schedule) and endpoint
// devices. REST calls in console-api.js; tabs in console-room.js and console-live.js.
import './console-i18n.js';
import { LANGUAGES, applyTranslations, lang, onLangChange, setLang, t } from './i18n.js';
import { Api } from './console-api.js';
import { $, h, onSubmit, toast } from './console-views.js';
import { RoomTabs } from './console-room.js';
import { iconEl } from './icons.js';
import { LivePanel } from './console-live.js';
import { SupportPanel } from './console-support.js';

const POLL_MS = 2000;

const state = {
  me: null, // the logged-in account
  orgs: [],
  rooms: [], // RoomOut
  counts: {}, // room name -> participants now
  nodes: {}, // room name -> the cluster node it meets on (operators, with --redis)
  alone: false, // the server said it is no cluster (GET /api/cluster 404)
  selected: null, // room name
  creating: false,
  tab: 'live',
  page: 'rooms', // 'rooms' | 'endpoints' | 'support'
};
const api = new Api();
const support = new SupportPanel(api, () => state.me);
const SUPPORT_ROLES = ['support', 'operator'];
const supportOnly = () => state.me && state.me.role === 'support';
const live = new LivePanel(api, () => currentRoom(), (room) => replaceRoom(room));
const tabs = new RoomTabs(api, state, {
  created: (room) => { replaceRoom(room); selectRoom(room.name, 'invitations'); },
  updated: (room) => replaceRoom(room),
  deleted: (name) => {
    state.rooms = state.rooms.filter((r) => r.name !== name);
    selectRoom(null);
  },
});
window.diemcauConsole = { state, api }; // for tests and debugging

let pollTimer = null;

function currentRoom() {
  return state.rooms.find((r) => r.name === state.selected) || null;
}

function replaceRoom(room) {
  const i = state.rooms.findIndex((r) => r.name === room.name);
  if (i >= 0) state.rooms[i] = room;
  else state.rooms.push(room);
  state.rooms.sort((a, b) => a.name.localeCompare(b.name));
  renderRoomList();
  if (state.selected === room.name) renderRoomHeader();
}

// ---- login ----

function showLogin(message = '') {
  stopPolling();
  state.me = null;
  $('login-view').hidden = false;
  $('app-view').hidden = true;
  for (const id of ['mainnav', 'who', 'logout-btn']) $(id).hidden = true;
  const err = $('login-form').querySelector('.form-error');
  err.textContent = message;
  err.hidden = !message;
  $('login-form').elements.username.focus();
}

async function enter(me) {
  state.me = me;
  state.orgs = await api.organisations().catch(() => []);
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  for (const id of ['mainnav', 'who', 'logout-btn']) $(id).hidden = false;
  $('who').textContent = `${me.display_name || me.username} (${me.role})`;
  $('nav-support').hidden = !SUPPORT_ROLES.includes(me.role);
  // Support staff look at live rooms; the rooms and endpoints pages are for hosts and operators.
  $('nav-rooms').hidden = $('nav-endpoints').hidden = $('rooms-side').hidden = supportOnly();
  if (supportOnly()) state.page = 'support';
  else {
    tabs.fillOrgs();
    await refreshRooms();
  }
  showPage(state.page);
  startPolling();
}

// ---- rooms list ----

async function refreshRooms() {
  const rooms = await api.rooms();
  state.rooms = rooms.sort((a, b) => a.name.localeCompare(b.name));
  // A cluster (operators): every node's rooms and seats from /api/cluster, since a room meeting
  // on another node has nobody here; alone (404) or for hosts, each room's participants here.
  let cluster = null;
  if (state.me.role === 'operator' && !state.alone) {
    cluster = await api.cluster().catch((err) => {
      if (err.status === 404) state.alone = true; // no --redis: never ask again
      return null;
    });
  }
  const placed = new Map(((cluster && cluster.rooms) || []).map((r) => [r.name, r]));
  state.nodes = Object.fromEntries([...placed].map(([name, r]) => [name, r.node]));
  const counts = await Promise.all(rooms.map((r) => (cluster
    ? Promise.resolve(placed.has(r.name) ? placed.get(r.name).participants : 0)
    : api.participants(r.name).then((ps) => ps.length, () => null))));
  state.counts = Object.fromEntries(rooms.map((r, i) => [r.name, counts[i]]));
  renderRoomList();
  if (state.selected && !currentRoom() && !state.creating) selectRoom(null);
}

function renderRoomList() {
  const list = $('room-list');
  if (!state.rooms.length) {
    list.replaceChildren(h('li', { class: 'empty' }, t('noRooms')));
    return;
  }
  list.replaceChildren(...state.rooms.map((r) => {
    const n = state.counts[r.name];
    const node = (state.nodes || {})[r.name];
    return h('li', {},
      h('button', {
        type: 'button', class: `room-item${r.name === state.selected ? ' active' : ''}`,
        dataset: { room: r.name }, onclick: () => selectRoom(r.name),
      },
      h('span', { class: 'room-item-name' }, r.name),
      r.locked ? h('span', { class: 'lock', title: t('locked') }, iconEl('lock', 14)) : null,
      h('span', { class: `badge${n ? ' live' : ''}`, dataset: { count: n ?? '', node: node || '' },
        title: t('inRoom', { n: n ?? 0 }) + (node ? ` (${t('onNode', { node })})` : '') },
      `${n ?? '–'}/${r.capacity}`)));
  }));
}

function renderRoomHeader() {
  const room = currentRoom();
  $('room-title').textContent = state.creating ? t('createRoom') : room ? room.name : '';
}

function selectRoom(name, tab = null) {
  state.creating = false;
  state.selected = name;
  if (tab) state.tab = tab;
  showPage('rooms');
}

function showTab(tab) {
  state.tab = tab;
  for (const b of $('tabs').querySelectorAll('[data-tab]')) {
    b.classList.toggle('active', b.dataset.tab === tab);
    b.setAttribute('aria-selected', String(b.dataset.tab === tab));
  }
  for (const name of ['live', 'settings', 'invitations', 'members', 'schedule', 'documents']) {
    $(`tab-${name}`).hidden = name !== tab;
  }
  const room = currentRoom();
  if (tab === 'live') live.show(room);
  else live.hide();
  if (room && tab !== 'live') tabs.show(tab, room).catch((err) => toast(err.message, true));
}

function showPage(page) {
  state.page = page;
  $('nav-rooms').classList.toggle('active', page === 'rooms');
  $('nav-endpoints').classList.toggle('active', page === 'endpoints');
  $('nav-support').classList.toggle('active', page === 'support');
  $('endpoints-panel').hidden = page !== 'endpoints';
  if (page === 'support') {
    live.hide();
    $('room-panel').hidden = $('pick-room').hidden = true;
    support.show().catch((err) => toast(err.message, true));
    return;
  }
  support.hide();
  const roomsPage = page === 'rooms';
  const room = currentRoom();
  $('room-panel').hidden = !roomsPage || (!room && !state.creating);
  $('pick-room').hidden = !roomsPage || !!room || state.creating;
  renderRoomList();
  if (page === 'endpoints') {
    live.hide();
    tabs.showEndpoints().catch((err) => toast(err.message, true));
    return;
  }
  renderRoomHeader();
  $('tabs').hidden = state.creating;
  if (state.creating) {
    live.hide();
    for (const name of ['live', 'invitations', 'members', 'schedule', 'documents']) $(`tab-${name}`).hidden = true;
    $('tab-settings').hidden = false;
    tabs.editRoom(null);
  } else if (room) {
    showTab(state.tab);
  } else live.hide();
}

// ---- polling ----

function startPolling() {
  stopPolling();
  const tick = async () => {
    try {
      if (SUPPORT_ROLES.includes(state.me.role)) await support.refresh(); // notices as toasts
      if (!supportOnly()) {
        await refreshRooms();
        await live.refresh();
      }
    } catch (err) {
      if (err.status !== 401) toast(err.message, true);
    }
    if (state.me) pollTimer = setTimeout(tick, POLL_MS);
  };
  pollTimer = setTimeout(tick, POLL_MS);
}

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = null;
  live.hide();
}

// ---- boot ----

function boot() {
  const select = $('lang-select');
  for (const [code, label] of Object.entries(LANGUAGES)) select.append(new Option(label, code));
  select.value = lang();
  select.addEventListener('change', () => setLang(select.value));
  applyTranslations();
  onLangChange(() => {
    document.title = `${t('consoleTitle')} · ${t('appName')}`;
    if (state.me) showPage(state.page);
  });
  document.title = `${t('consoleTitle')} · ${t('appName')}`;

  api.onUnauthorized = () => {
    api.setToken(null);
    if (state.me) showLogin(t('sessionExpired'));
  };
  onSubmit($('login-form'), async ({ username, password }) => {
    const out = await api.login(username, password);
    $('login-form').reset();
    await enter(out.account);
  });
  $('logout-btn').addEventListener('click', async () => {
    await api.logout();
    showLogin();
  });
  $('nav-rooms').addEventListener('click', () => showPage('rooms'));
  $('nav-endpoints').addEventListener('click', () => showPage('endpoints'));
  $('nav-support').addEventListener('click', () => showPage('support'));
  $('new-room-btn').addEventListener('click', () => {
    state.creating = true;
    state.selected = null;
    showPage('rooms');
  });
  for (const b of $('tabs').querySelectorAll('[data-tab]')) {
    b.addEventListener('click', () => showTab(b.dataset.tab));
  }

  if (!api.token) {
    showLogin();
    return;
  }
  api.me().then(enter, () => {
    api.setToken(null);
    showLogin();
  });
}

boot();
