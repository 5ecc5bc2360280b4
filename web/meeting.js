// The meeting extras of the call screen (issue 12): a side panel with chat, the participant
// list and the meeting's documents; raise hand; the active speaker highlighted and a speaker
// layout that follows them; connection-quality reports. app.js creates one MeetingExtras and
// calls attach/joined/detach per call; everything else happens here.
import './meeting-i18n.js';
import { onLangChange, t } from './i18n.js';
import { ChatView } from './chat.js';
import { ICONS, PeopleView, measureQuality } from './people.js';
import { DocumentsView } from './docs.js';

const QUALITY_EVERY_MS = 4000; // the server allows 3 reports in 6 s
const PEOPLE_REFRESH_MS = 2000; // our own mute state has no event here
const TABS = ['chat', 'people', 'docs'];
const NOTICE_MS = 8000;
// The speaker layout moves to a new speaker once they have been the loudest this long: a cough
// or a short "yes" does not swap the big tile back and forth.
const SPEAKER_HOLD_MS = 1500;

function button(id, iconName) {
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.id = id;
  btn.className = 'ctrl extra';
  btn.innerHTML = `${ICONS[iconName]}<span class="lbl"></span>`;
  return btn;
}

export class MeetingExtras {
  /**
   * @param {object} opts
   * @param {HTMLElement} opts.grid
   * @param {HTMLElement} opts.controls
   * @param {object} opts.participants app's id -> {id, name, muted}
   * @param {() => RTCPeerConnection|null} opts.subscriberPc
   * @param {() => void} opts.onLayout tile sizes changed (the `tiles` report)
   * @param {(text: string) => void} opts.notice a short notice for the user
   */
  constructor({ grid, controls, participants, subscriberPc, onLayout, notice }) {
    this.grid = grid;
    this.participants = participants;
    this.subscriberPc = subscriberPc;
    this.onLayout = onLayout;
    // A notice of ours goes away by itself after a while (unless another replaced it).
    this.notice = (text) => {
      notice(text);
      if (!text) return;
      setTimeout(() => {
        const shown = document.getElementById('notice-text');
        if (shown && shown.textContent === text) notice('');
      }, NOTICE_MS);
    };
    this.signaling = null;
    this.selfId = null;
    this.selfName = '';
    this.canModerate = false;
    this.hands = new Map(); // participant id -> true, in the order raised
    this.quality = new Map(); // participant id -> last report
    this.loudest = null; // the loudest participant now (the ring, the list's tag)
    this.speaker = null; // whom the speaker layout features: the loudest, held SPEAKER_HOLD_MS
    this.talking = new Set(); // the last `speakers` (loudest first)
    this.holdTimer = null;
    this.layout = 'grid';
    this.noticeFor = null; // whose raised hand the notice shows
    this.tab = null; // the open tab, or null (panel closed)
    this.timers = [];
    this.qualityPrev = {};
    this._build(controls);
    onLangChange(() => this.render());
    this.render();
  }

  _build(controls) {
    // The grid and the side panel share a row ("stage"); on a phone the panel covers it.
    const stage = document.createElement('div');
    stage.className = 'stage';
    stage.id = 'stage';
    this.grid.replaceWith(stage);
    stage.append(this.grid);
    const panel = document.createElement('aside');
    panel.className = 'side-panel';
    panel.id = 'side-panel';
    panel.hidden = true;
    const tabs = document.createElement('div');
    tabs.className = 'panel-tabs';
    tabs.setAttribute('role', 'tablist');
    this.tabButtons = {};
    this.tabBodies = {};
    for (const name of TABS) {
      const tb = document.createElement('button');
      tb.type = 'button';
      tb.className = 'panel-tab';
      tb.id = `tab-${name}`;
      tb.setAttribute('role', 'tab');
      tb.addEventListener('click', () => this.open(name));
      tabs.append(tb);
      this.tabButtons[name] = tb;
      const body = document.createElement('div');
      body.className = `panel-body panel-${name}`;
      body.id = `panel-${name}`;
      body.setAttribute('role', 'tabpanel');
      body.hidden = true;
      this.tabBodies[name] = body;
    }
    this.closeBtn = document.createElement('button');
    this.closeBtn.type = 'button';
    this.closeBtn.className = 'icon-btn panel-close';
    this.closeBtn.textContent = '×';
    this.closeBtn.addEventListener('click', () => this.open(null));
    tabs.append(this.closeBtn);
    panel.append(tabs, ...Object.values(this.tabBodies));
    stage.append(panel);
    this.panel = panel;

    const send = (msg) => this.signaling && this.signaling.send(msg);
    this.chat = new ChatView(this.tabBodies.chat, {
      send,
      visible: () => this.tab === 'chat' && !document.hidden,
      onUnread: (n) => this._badge(n),
    });
    this.people = new PeopleView(this.tabBodies.people, { send });
    this.docs = new DocumentsView(this.tabBodies.docs, { send });

    this.handBtn = button('hand-btn', 'hand');
    this.handBtn.setAttribute('aria-pressed', 'false');
    this.handBtn.addEventListener('click', () => {
      send({ type: 'hand', raised: !this.hands.has(this.selfId) });
    });
    this.chatBtn = button('chat-btn', 'chat');
    this.badge = document.createElement('span');
    this.badge.className = 'badge';
    this.badge.id = 'chat-badge';
    this.badge.hidden = true;
    this.chatBtn.append(this.badge);
    this.chatBtn.addEventListener('click', () => this.open(this.tab === 'chat' ? null : 'chat'));
    this.peopleBtn = button('people-btn', 'people');
    this.peopleBtn.addEventListener('click', () => this.open(this.tab === 'people' ? null : 'people'));
    this.docsBtn = button('docs-btn', 'doc');
    this.docsBtn.addEventListener('click', () => this.open(this.tab === 'docs' ? null : 'docs'));
    this.layoutBtn = button('layout-btn', 'speaker');
    this.layoutBtn.addEventListener('click', () => this.setLayout(this.layout === 'grid' ? 'speaker' : 'grid'));
    this.extraButtons = [this.handBtn, this.chatBtn, this.peopleBtn, this.docsBtn, this.layoutBtn];
    const leave = controls.querySelector('#leave-btn');
    for (const b of this.extraButtons) {
      b.disabled = true;
      controls.insertBefore(b, leave);
    }
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.tab === 'chat') this.chat.seen();
    });
  }

  // -- per call --------------------------------------------------------------------------------

  attach(signaling) {
    this.detach();
    this.signaling = signaling;
    const mine = (fn) => (m) => { if (this.signaling === signaling) fn(m); };
    signaling
      .on('chat', mine((m) => this.chat.add(m.message)))
      .on('chat_deleted', mine((m) => this.chat.remove(m.id)))
      .on('hand', mine((m) => this._hand(m)))
      .on('quality', mine((m) => { this.quality.set(m.participant_id, m); this.renderPeople(); }))
      .on('speakers', mine((m) => this._speakers(m.participant_ids || [])))
      .on('documents', mine((m) => this.docs.show(m)))
      .on('participant_joined', mine(() => queueMicrotask(() => this.renderPeople())))
      .on('track_muted', mine(() => queueMicrotask(() => this.renderPeople())))
      .on('participant_left', mine((m) => {
        this.hands.delete(m.participant_id);
        this.quality.delete(m.participant_id);
        this.talking.delete(m.participant_id);
        queueMicrotask(() => { this._applySpeaker(); this.renderPeople(); });
      }));
  }

  /** Seated: `joined` came (our id, role and name, and `meeting`: chat, hands, quality). */
  joined({ selfId, role, name, meeting }) {
    this.selfId = selfId;
    this.selfName = name;
    this.canModerate = role === 'host';
    if (meeting && typeof meeting === 'object') this._state(meeting);
    for (const b of this.extraButtons) b.disabled = false;
    this.timers.push(setInterval(() => this._reportQuality(), QUALITY_EVERY_MS));
    this.timers.push(setInterval(() => { if (this.tab === 'people') this.renderPeople(); }, PEOPLE_REFRESH_MS));
    this.render();
  }

  detach() {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.signaling = null;
    this.selfId = null;
    this.hands.clear();
    this.quality.clear();
    this.qualityPrev = {};
    this.speaker = null;
    this.loudest = null;
    clearTimeout(this.holdTimer);
    this.talking = new Set();
    this.chat.reset();
    this.docs.reset();
    for (const b of this.extraButtons) b.disabled = true;
    this.open(null);
    this.setLayout('grid');
    this._applySpeaker();
  }

  // -- messages --------------------------------------------------------------------------------

  _state(m) {
    this.canModerate = !!m.can_moderate;
    this.chat.reset({ selfId: this.selfId, canModerate: this.canModerate, lines: m.chat || [] });
    this.hands = new Map((m.hands || []).map((id) => [id, true]));
    this.quality = new Map((m.quality || []).map((q) => [q.participant_id, q]));
    this._markHands();
    this.render();
  }

  _hand(m) {
    const id = m.participant_id;
    if (m.raised) {
      this.hands.set(id, true);
      const p = this.participants[id];
      if (this.canModerate && p) {
        this.notice(t('handRaisedBy', { name: p.name }));
        this.noticeFor = id;
      }
    } else {
      this.hands.delete(id);
      if (this.noticeFor === id) {
        this.notice('');
        this.noticeFor = null;
      }
      if (id === this.selfId && m.by) this.notice(t('handLoweredByHost'));
    }
    this._markHands();
    this.render();
  }

  _speakers(ids) {
    this.talking = new Set(ids);
    this.loudest = ids[0] || null;
    const next = this.loudest;
    if (next && next !== this.speaker) {
      clearTimeout(this.holdTimer);
      const take = () => {
        if (this.loudest !== next) return;
        this.speaker = next;
        this._applySpeaker();
      };
      if (this.speaker === null) take();
      else this.holdTimer = setTimeout(take, SPEAKER_HOLD_MS);
    }
    this._applySpeaker();
    if (this.tab === 'people') this.renderPeople();
  }

  // -- tiles: speaking, featured, hands ------------------------------------------------------

  _tiles() {
    return [...this.grid.querySelectorAll('.tile')];
  }

  _applySpeaker() {
    const talking = this.talking;
    // Featured in the speaker layout: the loudest other participant (we see ourselves anyway).
    let featured = null;
    if (this.layout === 'speaker') {
      const tiles = this._tiles();
      const others = tiles.filter((el) => !el.classList.contains('self'));
      featured = others.find((el) => el.dataset.participantId === this.speaker)
        || others.find((el) => el.classList.contains('featured')) || others[0] || tiles[0] || null;
    }
    for (const el of this._tiles()) {
      const id = el.dataset.participantId;
      el.classList.toggle('speaking', !!id && talking.has(id) && id === this.loudest);
      el.classList.toggle('featured', el === featured);
    }
    this.grid.classList.toggle('speaker-layout', this.layout === 'speaker');
    this.onLayout();
  }

  setLayout(layout) {
    this.layout = layout;
    this._applySpeaker();
    this.render();
  }

  _markHands() {
    for (const el of this._tiles()) {
      const up = this.hands.has(el.dataset.participantId);
      el.classList.toggle('hand-up', up);
      let mark = el.querySelector('.hand-mark');
      if (up && !mark) {
        mark = document.createElement('span');
        mark.className = 'hand-mark';
        mark.innerHTML = ICONS.hand;
        el.append(mark);
      } else if (!up && mark) mark.remove();
    }
  }

  // -- the panel -------------------------------------------------------------------------------

  open(tab) {
    this.tab = tab;
    this.panel.hidden = !tab;
    document.body.classList.toggle('panel-open', !!tab);
    for (const name of TABS) {
      this.tabBodies[name].hidden = name !== tab;
      this.tabButtons[name].setAttribute('aria-selected', String(name === tab));
    }
    if (tab === 'chat') this.chat.seen();
    if (tab === 'docs' && this.signaling) this.signaling.send({ type: 'documents' });
    if (tab === 'people') this.renderPeople();
    this.render();
    this.onLayout();
  }

  _badge(n) {
    this.badge.hidden = n === 0;
    this.badge.textContent = n > 99 ? '99+' : String(n);
    this.chatBtn.title = n ? t('chatUnread', { n }) : t('chat');
  }

  renderPeople() {
    this._markHands();
    if (this.tab !== 'people') return;
    const self = this._tiles().find((el) => el.classList.contains('self'));
    const selfMic = self && self.querySelector('.mic-off');
    const people = [];
    if (this.selfId) {
      people.push({
        id: this.selfId, name: this.selfName, self: true,
        muted: { audio: !!selfMic && !selfMic.hidden, video: !!self && self.classList.contains('no-video') },
      });
    }
    for (const p of Object.values(this.participants)) people.push({ id: p.id, name: p.name, muted: p.muted });
    this.people.render(people, {
      hands: this.hands, quality: this.quality, speaker: this.loudest, canModerate: this.canModerate,
    });
  }

  render() {
    const label = (btn, text, title = text) => {
      btn.querySelector('.lbl').textContent = text;
      btn.setAttribute('aria-label', title);
      if (btn !== this.chatBtn || this.badge.hidden) btn.title = title;
    };
    const up = this.selfId && this.hands.has(this.selfId);
    label(this.handBtn, up ? t('lowerHand') : t('raiseHand'));
    this.handBtn.setAttribute('aria-pressed', String(!!up));
    this.handBtn.classList.toggle('on', !!up);
    label(this.chatBtn, t('chat'));
    label(this.peopleBtn, t('people'));
    label(this.docsBtn, t('documents'));
    const speaker = this.layout === 'speaker';
    this.layoutBtn.innerHTML = `${ICONS[speaker ? 'grid' : 'speaker']}<span class="lbl"></span>`;
    label(this.layoutBtn, speaker ? t('gridLayout') : t('speakerLayout'),
      speaker ? t('gridLayoutTitle') : t('speakerLayoutTitle'));
    for (const [btn, tab] of [[this.chatBtn, 'chat'], [this.peopleBtn, 'people'], [this.docsBtn, 'docs']]) {
      btn.classList.toggle('on', this.tab === tab);
      btn.setAttribute('aria-pressed', String(this.tab === tab));
    }
    this.tabButtons.chat.textContent = t('chat');
    this.tabButtons.people.textContent = t('people');
    this.tabButtons.docs.textContent = t('documents');
    this.tabButtons.docs.title = t('documentsTitle');
    this.closeBtn.setAttribute('aria-label', t('closePanel'));
    this.closeBtn.title = t('closePanel');
    this.chat.render();
    this.docs.render();
    this.renderPeople();
  }

  async _reportQuality() {
    const pc = this.subscriberPc();
    if (!pc || !this.signaling || pc.connectionState !== 'connected') return;
    try {
      this.signaling.send(await measureQuality(pc, this.qualityPrev));
    } catch (_) { /* stats unavailable for a moment: next time */ }
  }
}

/**
 * The join form before anything else runs: the guest password field only when the link
 * brought no invitation or token, and a plain request for the name when the link has a room
 * but no name (the first-start demo link) instead of joining as anybody.
 */
function prepareJoinForm() {
  const params = new URLSearchParams(location.search);
  const row = document.getElementById('guest-password-row');
  if (row && (params.get('invite') || params.get('token'))) row.hidden = true;
  const nameInput = document.getElementById('name-input');
  if (!nameInput || !(params.get('room') || '').trim() || (params.get('name') || '').trim()) return;
  const hint = document.createElement('p');
  hint.className = 'hint name-needed';
  hint.id = 'name-needed';
  const render = () => { hint.textContent = t('nameNeeded'); nameInput.placeholder = t('displayName'); };
  render();
  onLangChange(render);
  nameInput.closest('label').after(hint);
}

prepareJoinForm();
