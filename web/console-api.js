// The REST API under /api/ (OpenAPI document: /api/openapi.json), with the bearer token from
// `POST /api/login` kept in sessionStorage. Errors are `ApiError`s carrying the server's
// `{"error", "message", "field"}`.

const TOKEN_KEY = 'diemcau.console.token';

export class ApiError extends Error {
  constructor(status, error, message, field = null, nodeAddress = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.error = error;
    this.field = field;
    this.nodeAddress = nodeAddress; // wrong-node (a cluster): the room's node
  }
}

function storage() {
  try { return window.sessionStorage; } catch (_) { return null; }
}

const enc = encodeURIComponent;

export class Api {
  constructor() {
    const s = storage();
    this.token = (s && s.getItem(TOKEN_KEY)) || null;
    this.onUnauthorized = () => {};
  }

  setToken(token) {
    this.token = token;
    const s = storage();
    if (!s) return;
    if (token) s.setItem(TOKEN_KEY, token);
    else s.removeItem(TOKEN_KEY);
  }

  /** One request; resolves to the decoded JSON (null for 204), rejects with an ApiError. */
  async call(method, path, body = undefined) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, 'network', `the server did not answer (${err.message || err})`);
    }
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) {
      const e = data && typeof data === 'object' ? data : {};
      if (response.status === 401 && path !== '/api/login') this.onUnauthorized();
      throw new ApiError(response.status, e.error || `http-${response.status}`,
        e.message || response.statusText, e.field || null, e.node_address || null);
    }
    return data;
  }

  async login(username, password) {
    const out = await this.call('POST', '/api/login', { username, password });
    this.setToken(out.token);
    return out;
  }

  async logout() {
    try { await this.call('POST', '/api/logout'); } catch (_) { /* gone anyway */ }
    this.setToken(null);
  }

  me() { return this.call('GET', '/api/me'); }
  organisations() { return this.call('GET', '/api/organisations'); }
  accounts() { return this.call('GET', '/api/accounts'); }
  createAccount(body) { return this.call('POST', '/api/accounts', body); }

  rooms() { return this.call('GET', '/api/rooms'); }
  createRoom(body) { return this.call('POST', '/api/rooms', body); }
  updateRoom(name, body) { return this.call('PATCH', `/api/rooms/${enc(name)}`, body); }
  deleteRoom(name) { return this.call('DELETE', `/api/rooms/${enc(name)}`); }

  members(room) { return this.call('GET', `/api/rooms/${enc(room)}/members`); }
  addMember(room, accountId) {
    return this.call('POST', `/api/rooms/${enc(room)}/members`, { account_id: accountId });
  }
  removeMember(room, id) { return this.call('DELETE', `/api/rooms/${enc(room)}/members/${id}`); }

  invitations(room) { return this.call('GET', `/api/rooms/${enc(room)}/invitations`); }
  createInvitation(room, body) {
    return this.call('POST', `/api/rooms/${enc(room)}/invitations`, body);
  }
  revokeInvitation(room, id) {
    return this.call('DELETE', `/api/rooms/${enc(room)}/invitations/${id}`);
  }

  meetings(room) { return this.call('GET', `/api/rooms/${enc(room)}/meetings`); }
  createMeeting(room, body) { return this.call('POST', `/api/rooms/${enc(room)}/meetings`, body); }
  cancelMeeting(room, id) { return this.call('DELETE', `/api/rooms/${enc(room)}/meetings/${id}`); }

  endpoints() { return this.call('GET', '/api/endpoints'); }
  createEndpoint(body) { return this.call('POST', '/api/endpoints', body); }
  deleteEndpoint(id) { return this.call('DELETE', `/api/endpoints/${id}`); }

  /** Nodes and the rooms each runs (operators, with --redis; 404 when the server runs alone). */
  cluster() { return this.call('GET', '/api/cluster'); }
  participants(room) { return this.call('GET', `/api/rooms/${enc(room)}/participants`); }
  mute(room, pid, kind) {
    return this.call('POST', `/api/rooms/${enc(room)}/participants/${enc(pid)}/mute`, { kind });
  }
  remove(room, pid) { return this.call('DELETE', `/api/rooms/${enc(room)}/participants/${enc(pid)}`); }
  pin(room, pid) { return this.call('POST', `/api/rooms/${enc(room)}/pin`, { participant_id: pid }); }
  lock(room, locked) { return this.call('POST', `/api/rooms/${enc(room)}/lock`, { locked }); }
  lobby(room) { return this.call('GET', `/api/rooms/${enc(room)}/lobby`); }
  admit(room, pid) { return this.call('POST', `/api/rooms/${enc(room)}/lobby/${enc(pid)}/admit`); }
  deny(room, pid) { return this.call('DELETE', `/api/rooms/${enc(room)}/lobby/${enc(pid)}`); }
  end(room) { return this.call('POST', `/api/rooms/${enc(room)}/end`); }

  startRecording(room) { return this.call('POST', `/api/rooms/${enc(room)}/recording`); }
  stopRecording(room) { return this.call('DELETE', `/api/rooms/${enc(room)}/recording`); }
  recordings(room) { return this.call('GET', `/api/recordings?room=${enc(room)}`); }

  /** Download a recording's file: fetched with the bearer token, saved from a blob URL. */
  async download(url, filename) {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) throw new ApiError(response.status, `http-${response.status}`, response.statusText);
    const href = URL.createObjectURL(await response.blob());
    const a = Object.assign(document.createElement('a'), { href, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
  }
}
