// Rejoining through another node of a cluster when ours dies (issue 14; the server side is
// signaling/cluster/directory.py). A page stays on the node that served it, but its WebSocket
// may live elsewhere (a `wrong-node` redirect). The server lists the cluster's other live nodes
// in `joined.nodes` and again in a `cluster` message when that list changes; web/reconnect.js
// then tries, in each round: the node the call was on, the other nodes in the server's order,
// and the page's own node last (following `wrong-node` redirects as on any join).
//
// The page's CSP (connect-src) lists the nodes registered when the page loaded, and cannot grow
// after: the server names them in `<meta name="diemcau-nodes">` (signaling/cluster/pages.py),
// sockets go only there, and a node outside them (added later) is reached by loading the page
// from it (`movePage`: the room, name and URL credentials, the guest's rejoin token in the
// fragment); the moved page rejoins at once (`takeMove`).
//
// Hostile input: only the lists that came over this call's signaling are accepted (never
// anything from the URL, storage or another page), and each address must be a plain http(s)
// base URL: a host, no credentials, no path, query or fragment; at most MAX_NODES of them.
import { addStrings, t } from './i18n.js';

addStrings({
  vi: { reconnectingOther: 'Mất kết nối, đang kết nối lại qua máy chủ khác ({host})…' },
  en: { reconnectingOther: 'Connection lost, reconnecting through another server ({host})…' },
});
addStrings({
  vi: {
    lobbyLost: 'Mất kết nối với máy chủ của phòng chờ. Đang vào lại phòng chờ qua máy chủ khác ({host}); chủ trì sẽ cần cho bạn vào lại…',
    movingNode: 'Đang chuyển sang máy chủ khác ({host})…',
  },
  en: {
    lobbyLost: 'Lost the lobby\'s server. Waiting again through another server ({host}); the host will need to let you in again…',
    movingNode: 'Moving to another server ({host})…',
  },
});

export const MAX_NODES = 32;
const MAX_ADDRESS_CHARS = 256;
/** Waits between reconnection rounds in a cluster: a dead node's rooms move once
 * it has missed 3 s of heartbeats, so the first rounds come every second, then back off. */
export const CLUSTER_BACKOFF_MS = [500, 1000, 1000, 1000, 2000, 4000, 8000];
/** Failed rounds after which a page moves to a live node outside its CSP even though the
 * server's list still names reachable ones (they may have died since): moving reloads the page
 * (and a new origin may ask for the camera again), so reachable nodes get their chance first. */
export const MOVE_AFTER_ROUNDS = 4;

/** `value` as `http(s)://host[:port]`, or null when it is anything else. */
export function nodeOrigin(value) {
  if (typeof value !== 'string' || !value || value.length > MAX_ADDRESS_CHARS) return null;
  if (/[\s\\<>"'`]/.test(value)) return null;
  let url;
  try {
    url = new URL(value);
  } catch (_) {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!url.hostname || url.username || url.password || value.includes('@')) return null;
  if (url.pathname !== '/' || url.search || url.hash || value.includes('?') || value.includes('#')) return null;
  return url.origin;
}

/** The WebSocket URL of a node's origin. */
export function wsUrl(origin) {
  const url = new URL(origin);
  return (url.protocol === 'https:' ? 'wss' : 'ws') + '://' + url.host + '/ws';
}

/** The http(s) origin of a WebSocket URL (the node a call's socket is on). */
export function originOfWs(ws) {
  try {
    const url = new URL(ws);
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') return null;
    return nodeOrigin((url.protocol === 'wss:' ? 'https://' : 'http://') + url.host);
  } catch (_) {
    return null;
  }
}

/** The nodes a call may rejoin through. */
export class NodeList {
  constructor(page = location.origin) {
    this.page = nodeOrigin(page); // the node that served this page
    this.current = this.page; // the node the call is (or was last) joined at
    this.others = []; // the server's list: the cluster's other live nodes
    this.clustered = false; // a server sent a list (even empty): we are in a cluster
    this.allowed = pageNodes(); // the origins this page's CSP lets sockets reach; null: any
    this.lobby = false; // the call waits in a lobby (it lived on its node: waits again)
  }

  /** Whether this page may open a WebSocket at `origin` (its CSP allows it). */
  allows(origin) {
    return origin === this.page || !this.allowed || this.allowed.includes(origin);
  }

  /** Live nodes this page cannot reach by socket: it moves to one of them when it must. */
  outside() {
    return this.others.filter((node) => !this.allows(node));
  }

  /** The call joined (or, `lobby`, waits in the lobby) through the WebSocket at `ws` (after
   * any redirect). */
  joinedAt(ws, lobby = false) {
    this.current = originOfWs(ws) || this.page;
    this.lobby = lobby; // until seated: a rejoin waits in the lobby again
  }

  /** A list from the server (`joined.nodes`, `cluster.nodes`): keep its valid addresses. */
  accept(list) {
    if (!Array.isArray(list)) return false;
    this.clustered = true;
    const seen = new Set();
    for (const value of list.slice(0, MAX_NODES)) {
      const origin = nodeOrigin(value);
      if (origin && origin !== this.current) seen.add(origin);
    }
    this.others = [...seen];
    return true;
  }

  /** Where to try, in order: this call's node, the others, the page's node (only the nodes
   * this page's CSP allows). */
  order() {
    const out = [];
    for (const node of [this.current, ...this.others, this.page]) {
      if (node && !out.includes(node) && this.allows(node)) out.push(node);
    }
    return out.slice(0, MAX_NODES + 2);
  }
}

/**
 * One reconnection round: `attempt(node)` for each node in `order` until one gives an outcome
 * other than 'error' (could not reach it, or it could not place the room yet): 'joined', or a
 * decision of the service ('refused', 'left') that another node would repeat.
 */
export async function rejoinAcross(order, attempt) {
  let outcome = 'error';
  for (const node of order) {
    outcome = await attempt(node);
    if (outcome !== 'error') return outcome;
  }
  return outcome;
}

/** The node origins this page's CSP allows (the server's `<meta name="diemcau-nodes">`), or
 * null where there is none (no cluster: only this page's node, which is always allowed). */
export function pageNodes(doc = document) {
  const meta = doc.querySelector('meta[name="diemcau-nodes"]');
  if (!meta) return null;
  const out = [];
  for (const value of (meta.getAttribute('content') || '').split(' ').slice(0, 4 * MAX_NODES)) {
    const origin = nodeOrigin(value);
    if (origin && !out.includes(origin)) out.push(origin);
  }
  return out;
}

/**
 * The rejoin of a call through the cluster's nodes, shared by the automatic reconnection and
 * the "rejoin" button. `join(node, {resume, takeOver, reconnect})` joins at `node` and resolves
 * with its state; `hasLeft()`: the user left meanwhile; `notify(text)`: the status line.
 * When no node this page may reach takes the call, the page moves to a live node outside its
 * CSP (`move(node)`), if there is one.
 */
export class Rejoiner {
  constructor(nodes, { join, hasLeft, notify, move }) {
    Object.assign(this, { nodes, join, hasLeft, notify, move });
    this.failedRounds = 0;
  }

  /** One automatic round (web/reconnect.js): the seat's resume token where it was issued;
   * `attempt` 0 starts a new reconnection (the failed rounds count from there). */
  auto(resume, attempt = 0) {
    if (attempt === 0) this.failedRounds = 0;
    return this._round(resume, false);
  }

  /** The "rejoin" button (the call ended, or the automatic reconnection gave up): the same
   * order. If no node takes the call, `fallback(node)` joins as usual at the last node tried,
   * which says why (the join form, as the button did before). */
  async manual(fallback) {
    let last = this.nodes.current;
    this.failedRounds = 0;
    const outcome = await this._round(null, true, (node) => { last = node; });
    if (!['joined', 'moving', 'left'].includes(outcome)) fallback(last);
    return outcome;
  }

  async _round(resume, manual, tried = () => {}) {
    const nodes = this.nodes;
    let first = true;
    const outcome = await rejoinAcross(nodes.order(), async (node) => {
      // the user left meanwhile: no further node (the button starts from the left screen)
      if (this.hasLeft() && !(manual && first)) return 'left';
      first = false;
      tried(node);
      const here = node === nodes.current;
      // a lobby guest: the lobby was that node's (it died with it); wait again elsewhere
      const key = nodes.lobby ? 'lobbyLost' : 'reconnectingOther';
      if (!here) this.notify(t(key, { host: new URL(node).host }));
      // Without a resume token for this node the seat we rejoin is still our own (a dead
      // node's, until a live one sweeps it; a moved page has none): take it over.
      const resumeHere = here ? resume : null;
      return this.join(node, { resume: resumeHere, takeOver: !resumeHere, reconnect: true });
    });
    this.failedRounds = outcome === 'error' ? this.failedRounds + 1 : 0;
    const outside = nodes.outside();
    const reachable = nodes.others.some((node) => nodes.allows(node));
    const move = outside.length && (!reachable || this.failedRounds >= MOVE_AFTER_ROUNDS);
    if (outcome === 'error' && move && !this.hasLeft() && this.move(outside[0])) {
      this.notify(t('movingNode', { host: new URL(outside[0]).host }));
      return 'moving';
    }
    return outcome;
  }
}

/** Load this meeting page from `target` (a node outside this page's CSP): the page's query
 * (room, name, its credentials) and, in the fragment (never sent to a server), the guest's
 * rejoin token and that it moved. */
export function movePage(target, { room, name, rejoin }) {
  const origin = nodeOrigin(target);
  if (!origin) return false;
  const url = new URL('/', origin);
  url.search = location.search;
  url.searchParams.set('room', room);
  url.searchParams.set('name', name);
  const fragment = new URLSearchParams({ moved: '1' });
  if (rejoin) fragment.set('rejoin', rejoin);
  url.hash = fragment.toString();
  location.assign(url.href);
  return true;
}

/** A page loaded by `movePage`: {rejoin} (the fragment leaves the address bar), or null. */
export function takeMove() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('moved') !== '1') return null;
  history.replaceState(null, '', location.pathname + location.search);
  const rejoin = fragment.get('rejoin');
  return { rejoin: rejoin && rejoin.length <= 4096 ? rejoin : null };
}

/** A `wrong-node` refusal pointing at a live node this page's CSP does not allow (the socket
 * was not moved there: web/signaling.js `canReach`): that node's origin, else null. */
export function redirectOutside(err, nodes) {
  if (!err || err.code !== 'wrong-node' || !err.details) return null;
  const target = nodeOrigin(err.details.address);
  return target && !nodes.allows(target) ? target : null;
}
