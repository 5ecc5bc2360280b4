// Join credentials (docs/protocol.md `join`): a token or invitation from the URL, the guest's
// rejoin token (sessionStorage), or an account + password (+ room password) typed in the form;
// and the refusals, shown plainly in `#join-error` (data-code = the error code).
import { t } from './i18n.js';

const $ = (id) => document.getElementById(id);
const REJOIN_KEY = 'diemcau.rejoin:';
/** Refusals after which the account fields help (when the URL brought no credentials). */
export const NEEDS_ACCOUNT = ['bad-password', 'not-invited'];
/** Refusals of a stale rejoin token: forget it and use the URL's credentials. */
const STALE_REJOIN = ['token-expired', 'bad-token', 'not-invited'];

const charCount = (s) => [...s].length;
/** A room or display name: 1-64 characters. */
export const validField = (s) => typeof s === 'string' && charCount(s) >= 1 && charCount(s) <= 64;

const param = (params, key) => {
  const v = (params.get(key) || '').trim();
  return v || null;
};

/** The URL's room, name, token and invite. */
export function urlParams(search = location.search) {
  const params = new URLSearchParams(search);
  return {
    room: param(params, 'room') || '',
    name: param(params, 'name') || '',
    token: param(params, 'token'),
    invite: param(params, 'invite'),
  };
}

function storage() {
  try { return window.sessionStorage; } catch (_) { return null; }
}

export function saveRejoin(room, token) {
  const s = storage();
  if (s && room && token) s.setItem(REJOIN_KEY + room, token);
}

export function loadRejoin(room) {
  const s = storage();
  return (s && room && s.getItem(REJOIN_KEY + room)) || null;
}

export function dropRejoin(room) {
  const s = storage();
  if (s && room) s.removeItem(REJOIN_KEY + room);
}

/** The account fields of the join form, if the user filled them in. */
function formAccount() {
  if ($('cred-fields').hidden) return null;
  const username = $('user-input').value.trim();
  if (!username) return null;
  const out = { username, password: $('password-input').value };
  const roomPassword = $('room-password-input').value;
  if (roomPassword) out.room_password = roomPassword;
  return out;
}

/** The room password a guest typed (the join form's guest field), or null. */
function guestPassword() {
  const row = $('guest-password-row');
  const input = $('guest-password-input');
  return row && input && !row.hidden && input.value ? input.value : null;
}

/**
 * What to send with `join` for `room`: {fields, kind}; kind is 'account' | 'token' | 'rejoin' |
 * 'invite' | 'room-password' | null (none: open rooms, or the server says what is missing).
 */
export function credentials(room, url) {
  let fields = {};
  let kind = null;
  const account = formAccount();
  const rejoin = loadRejoin(room);
  if (account) [fields, kind] = [account, 'account'];
  else if (url.token && url.room === room) [fields, kind] = [{ token: url.token }, 'token'];
  // A guest reconnecting: the rejoin token spends no further use of the invitation.
  else if (rejoin) [fields, kind] = [{ token: rejoin, take_over: true }, 'rejoin'];
  else if (url.invite && url.room === room) [fields, kind] = [{ invite: url.invite }, 'invite'];
  // The AIC eMeeting way: room name + the room's password + a display name (where allowed).
  else if (guestPassword()) [fields, kind] = [{ room_password: guestPassword() }, 'room-password'];
  if (kind !== 'rejoin' && !$('takeover-row').hidden && $('takeover-input').checked) {
    fields.take_over = true;
  }
  return { fields, kind };
}

/** Whether a refusal of `kind` credentials should be retried without the rejoin token. */
export function staleRejoin(kind, err) {
  return kind === 'rejoin' && STALE_REJOIN.includes(err.code);
}

/** The refusal in words, in the current language. */
export function refusalText(err, room) {
  const d = err.details || {};
  const code = err.code || 'socket';
  const key = `err.${code}`;
  const params = {
    limit: d.limit ?? '?',
    room: d.room || room || '',
    retry_after: d.retry_after ?? '?',
    code,
  };
  const text = t(key, params);
  return text === key ? t('err.other', params) : text;
}

let lastError = null; // [err, room], re-rendered when the language changes

export function showJoinError(err, room) {
  lastError = err ? [err, room] : null;
  const box = $('join-error');
  if (!err) {
    box.hidden = true;
    box.removeAttribute('data-code');
    return;
  }
  box.dataset.code = err.code || 'socket';
  $('join-error-text').textContent = refusalText(err, room);
  $('join-error-detail').textContent = err.message || '';
  box.hidden = false;
}

export function rerenderJoinError() {
  if (lastError) showJoinError(...lastError);
}

/** Show (or hide) the account fields of the join form. */
export function showCredentialFields(show) {
  $('cred-fields').hidden = !show;
  $('use-account').hidden = show;
}

/** After a refusal: which parts of the form to offer. */
export function offerFor(err, kind) {
  if (err.code === 'already-in-room') $('takeover-row').hidden = false;
  if (NEEDS_ACCOUNT.includes(err.code) && (kind === null || kind === 'account')) {
    showCredentialFields(true);
  }
  if (!$('cred-fields').hidden) $('user-input').focus();
}
