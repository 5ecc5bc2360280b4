// The participant list: who is here, microphone and camera state, raised hands (moderators
// lower them), who is speaking, and each one's connection quality (loss, round trip and the
// video layer received, as each client measures and reports it: `quality`).
import { t } from './i18n.js';

const svg = (body) => '<svg viewBox="0 0 24 24" width="16" height="16" fill="none" '
  + 'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" '
  + `aria-hidden="true">${body}</svg>`;
export const ICONS = {
  hand: svg('<path d="M7 11V6a1.5 1.5 0 0 1 3 0v4M10 10V4.5a1.5 1.5 0 0 1 3 0V10M13 10V5.5a1.5 '
    + '1.5 0 0 1 3 0V12M16 11a1.5 1.5 0 0 1 3 0v3a7 7 0 0 1-7 7h-1a6 6 0 0 1-5-2.7L3.5 15a1.5 '
    + '1.5 0 0 1 2.5-1.7L7 15"/>'),
  chat: svg('<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.4A8 8 0 1 1 21 12z"/>'),
  people: svg('<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20a6.5 6.5 0 0 1 13 0M16 4.5a3.5 '
    + '3.5 0 0 1 0 7M18 14a6.5 6.5 0 0 1 3.5 6"/>'),
  doc: svg('<path d="M14 3H6a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V9z"/>'
    + '<path d="M14 3v6h6M8 13h8M8 17h5"/>'),
  speaker: svg('<rect x="3" y="4" width="18" height="11" rx="2"/><rect x="3" y="17" width="5" '
    + 'height="3" rx="1"/><rect x="9.5" y="17" width="5" height="3" rx="1"/><rect x="16" '
    + 'y="17" width="5" height="3" rx="1"/>'),
  grid: svg('<rect x="3" y="3" width="8" height="8" rx="1.5"/><rect x="13" y="3" width="8" '
    + 'height="8" rx="1.5"/><rect x="3" y="13" width="8" height="8" rx="1.5"/><rect x="13" '
    + 'y="13" width="8" height="8" rx="1.5"/>'),
  micOff: svg('<path d="M9 9v2a3 3 0 0 0 5.1 2.1M15 10V5a3 3 0 0 0-5.9-.8"/>'
    + '<path d="M19 11a7 7 0 0 1-1.2 3.9M5 11a7 7 0 0 0 11.2 5.6M12 18v3M3 3l18 18"/>'),
  camOff: svg('<path d="M16 16v1a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h2m4 0h4a2 2 0 0 1 '
    + '2 2v3l5-3v10"/><path d="M2 2l20 20"/>'),
  download: svg('<path d="M12 3v12M7 10l5 5 5-5M4 21h16"/>'),
};

/** One icon element with a tooltip (and an accessible name). */
function icon(name, title, cls) {
  const el = document.createElement('span');
  el.className = `pi ${cls || name}`;
  el.innerHTML = ICONS[name];
  el.title = title;
  el.setAttribute('role', 'img');
  el.setAttribute('aria-label', title);
  return el;
}

/** A quality report in words: the level and the figures behind it. */
export function qualityText(q) {
  if (!q || !q.level) return t('quality.unknown');
  const detail = t('qualityDetail', {
    loss: (Math.round((q.loss || 0) * 1000) / 10).toString(),
    rtt: q.rtt_ms == null ? '?' : q.rtt_ms,
    layer: t(`layer.${q.layer ?? -1}`),
  });
  let text = `${t(`quality.${q.level}`)}: ${detail}`;
  const s = q.server;
  if (s && typeof s === 'object') {
    text += ` · ${t('qualityServer', {
      loss: s.loss == null ? '?' : (Math.round(s.loss * 1000) / 10).toString(),
      layer: t(`layer.${s.layer ?? -1}`),
      mbps: s.estimate_bps ? (s.estimate_bps / 1e6).toFixed(1) : '?',
    })}`;
  }
  return text;
}

export class PeopleView {
  /**
   * @param {HTMLElement} root
   * @param {object} opts
   * @param {(msg: object) => void} opts.send
   */
  constructor(root, { send }) {
    this.send = send;
    this.list = document.createElement('ul');
    this.list.className = 'people-list';
    this.list.id = 'people-list';
    root.append(this.list);
  }

  /**
   * @param {Array<{id, name, self, muted: {audio, video}}>} people
   * @param {object} state {hands: Map id->true, quality: Map id->report, speaker, canModerate}
   */
  render(people, { hands, quality, speaker, canModerate }) {
    const items = [];
    // Raised hands first (in the order raised), then the rest in the order of the list.
    const order = [...hands.keys()];
    const sorted = [...people].sort((a, b) => {
      const ia = order.indexOf(a.id);
      const ib = order.indexOf(b.id);
      return (ia < 0 ? 1e9 : ia) - (ib < 0 ? 1e9 : ib);
    });
    for (const p of sorted) {
      const li = document.createElement('li');
      li.className = 'person';
      li.dataset.participantId = p.id;
      const q = quality.get(p.id);
      const dot = document.createElement('span');
      dot.className = `q-dot q-${q && q.level ? q.level : 'unknown'}`;
      dot.title = qualityText(q);
      dot.setAttribute('role', 'img');
      dot.setAttribute('aria-label', dot.title);
      const name = document.createElement('span');
      name.className = 'person-name';
      name.textContent = p.self ? `${p.name} ${t('you')}` : p.name;
      li.append(dot, name);
      if (p.id === speaker) {
        li.classList.add('speaking');
        const s = document.createElement('span');
        s.className = 'speaking-tag';
        s.textContent = t('speaking');
        li.append(s);
      }
      const icons = document.createElement('span');
      icons.className = 'person-icons';
      if (hands.has(p.id)) {
        li.classList.add('hand-up');
        icons.append(icon('hand', t('handRaisedBy', { name: p.name }), 'hand'));
      }
      if (p.muted && p.muted.audio) icons.append(icon('micOff', t('micMuted'), 'mic-muted'));
      if (p.muted && p.muted.video) icons.append(icon('camOff', t('cameraOff'), 'cam-off'));
      li.append(icons);
      if (canModerate && hands.has(p.id) && !p.self) {
        const lower = document.createElement('button');
        lower.type = 'button';
        lower.className = 'small-btn lower-hand';
        lower.textContent = t('lowerHand');
        lower.title = t('lowerHandOf', { name: p.name });
        lower.addEventListener('click', () => this.send({ type: 'hand', raised: false, participant_id: p.id }));
        li.append(lower);
      }
      const detail = document.createElement('div');
      detail.className = 'person-quality';
      detail.textContent = qualityText(q);
      li.append(detail);
      items.push(li);
    }
    this.list.replaceChildren(...items);
  }
}

/**
 * What this client receives, from the subscriber connection's stats: loss since the last call
 * (0..1), the selected candidate pair's round trip (ms) and the best video layer arriving
 * (by frame height: 0 low, 1 medium, 2 high; -1 no video). `prev` carries counters between calls.
 */
export async function measureQuality(pc, prev) {
  const stats = await pc.getStats();
  let lost = 0;
  let received = 0;
  let rtt = null;
  let height = 0;
  let anyVideo = false;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      lost += Math.max(0, s.packetsLost || 0);
      received += s.packetsReceived || 0;
      if (s.kind === 'video') {
        anyVideo = true;
        height = Math.max(height, s.frameHeight || 0);
      }
    } else if (s.type === 'candidate-pair' && (s.nominated || s.selected) && s.state === 'succeeded'
      && typeof s.currentRoundTripTime === 'number') {
      rtt = Math.round(s.currentRoundTripTime * 1000);
    }
  });
  const dLost = Math.max(0, lost - (prev.lost || 0));
  const dReceived = Math.max(0, received - (prev.received || 0));
  prev.lost = lost;
  prev.received = received;
  const loss = dLost + dReceived > 0 ? dLost / (dLost + dReceived) : 0;
  let layer = -1;
  if (anyVideo && height > 0) layer = height <= 240 ? 0 : height <= 400 ? 1 : 2;
  const out = { type: 'quality', loss: Math.min(1, Math.round(loss * 10000) / 10000), layer };
  if (rtt !== null) out.rtt_ms = Math.min(60000, rtt);
  return out;
}
