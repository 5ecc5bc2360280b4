// The page's views and notices (DOM only): which view shows, the error banner, notices, what a
// host did to us (`muted_by_host`, `room_locked`) and the screen after the meeting (`left`).
import { t } from './i18n.js';
import { showCredentialFields } from './joinflow.js';
import { icon } from './icons.js';

const $ = (id) => document.getElementById(id);

const VIEWS = ['join', 'call', 'lobby', 'left'];
const LEFT_ICONS = {
  requested: 'exit', removed: 'block', ended: 'stop', 'taken-over': 'swap', denied: 'block',
  'server-shutdown': 'warn', error: 'warn',
};
/** No "rejoin" button after these: the host decided. */
export const FINAL_REASONS = ['removed', 'denied', 'ended'];

export function showView(which) {
  for (const v of VIEWS) $(`${v}-view`).hidden = v !== which;
}

export function showError(code, message) {
  $('banner-text').textContent = `${t('error')} [${code}]: ${message}`;
  $('banner').hidden = false;
}

export function showNotice(text) {
  $('notice-text').textContent = text;
  $('notice').hidden = !text;
}

let hostKind = null; // 'audio' | 'video' | null: the notice shown

/** "The host muted your microphone" (or camera); null hides it. */
export function showHostNotice(kind) {
  hostKind = kind || null;
  $('host-notice-text').textContent = hostKind
    ? t(hostKind === 'audio' ? 'hostMutedAudio' : 'hostMutedVideo') : '';
  $('host-notice').hidden = !hostKind;
  if (hostKind) $('host-notice').dataset.kind = hostKind;
  else delete $('host-notice').dataset.kind;
  $('host-icon').innerHTML = icon(hostKind === 'video' ? 'camOff' : 'micOff');
}

export function hostNoticeKind() {
  return hostKind;
}

/** The "recording" badge in the top bar (every participant sees it while the room records). */
export function showRecording(active) {
  $('rec-indicator').hidden = !active;
}

export function showLock(locked) {
  $('lock-indicator').hidden = !locked;
  $('lock-icon').innerHTML = icon('lock', 14);
}

let left = null; // [state, reason]

/** The screen after a meeting: why it ended (`reason` of `left`), with "rejoin" unless final. */
export function showLeft(state, reason) {
  left = [state, reason];
  const key = reason ? `left.${reason}` : '';
  const known = !!reason && t(key) !== key;
  let text = known ? t(key) : t(state === 'error' ? 'connectionLost' : 'leftRoom');
  if (reason && !known && reason !== 'requested') text += ` (${reason})`;
  $('left-text').textContent = text;
  $('left-view').dataset.reason = reason || state;
  $('left-icon').innerHTML = icon(LEFT_ICONS[reason || state] || 'exit', 48);
  $('rejoin-btn').hidden = FINAL_REASONS.includes(reason);
  showView('left');
}

/** Re-render the texts above after a language change. */
export function rerenderScreens() {
  if (hostKind) showHostNotice(hostKind);
  if (left && !$('left-view').hidden) showLeft(...left);
}

/** The microphone, camera and audio-only buttons, from our `stream`'s tracks. */
export function renderControlButtons(stream, { audioOnly, joined }) {
  const render = (btn, track, what) => {
    const on = !!track && track.enabled;
    btn.textContent = `${on ? t('turnOff') : t('turnOn')} ${t(what).toLowerCase()}`;
    btn.setAttribute('aria-pressed', String(!on));
    btn.classList.toggle('off', !on);
    btn.disabled = !track;
  };
  render($('mic-btn'), stream && stream.getAudioTracks()[0], 'mic');
  render($('cam-btn'), stream && stream.getVideoTracks()[0], 'camera');
  const btn = $('audio-only-btn');
  btn.textContent = t('audioOnly');
  btn.setAttribute('aria-pressed', String(audioOnly));
  btn.classList.toggle('on', audioOnly);
  btn.disabled = !joined;
}

/** The link to share: the room (and invitation), never a personal token or our name. */
function shareLink() {
  const url = new URL(location.href);
  for (const key of ['token', 'name']) url.searchParams.delete(key);
  return url.href;
}

/** Buttons that only change what is shown. */
export function wireScreens() {
  $('banner-close').addEventListener('click', () => { $('banner').hidden = true; });
  $('host-notice-close').addEventListener('click', () => { $('host-notice').hidden = true; });
  $('use-account').addEventListener('click', () => {
    showCredentialFields(true);
    $('user-input').focus();
  });
  $('copy-link').addEventListener('click', () => {
    if (!navigator.clipboard) return;
    navigator.clipboard.writeText(shareLink()).then(() => {
      $('copy-link').textContent = t('linkCopied');
      setTimeout(() => { $('copy-link').textContent = t('copyLink'); }, 2000);
    }, () => {});
  });
}
