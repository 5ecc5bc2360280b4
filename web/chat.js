// Room chat (docs/protocol.md `chat`, `chat_deleted`, `joined.meeting.chat`): the list, the
// input, moderators' delete buttons and the unread count. Text is only ever set as text.
import { t } from './i18n.js';

export const MAX_CHAT_CHARS = 2000;

const charCount = (s) => [...s].length;

export class ChatView {
  /**
   * @param {HTMLElement} root the chat tab's element (filled here)
   * @param {object} opts
   * @param {(msg: object) => void} opts.send
   * @param {() => boolean} opts.visible whether the chat is on screen (else lines are unread)
   * @param {(n: number) => void} opts.onUnread the unread count changed
   */
  constructor(root, { send, visible, onUnread }) {
    this.send = send;
    this.visible = visible;
    this.onUnread = onUnread;
    this.canModerate = false;
    this.selfId = null;
    this.unread = 0;
    this.lines = new Map(); // id -> li
    this.list = document.createElement('ol');
    this.list.className = 'chat-list';
    this.list.id = 'chat-list';
    this.list.setAttribute('aria-live', 'polite');
    this.empty = document.createElement('p');
    this.empty.className = 'chat-empty';
    this.form = document.createElement('form');
    this.form.className = 'chat-form';
    this.input = document.createElement('textarea');
    this.input.id = 'chat-input';
    this.input.rows = 2;
    this.input.maxLength = MAX_CHAT_CHARS;
    this.sendBtn = document.createElement('button');
    this.sendBtn.type = 'submit';
    this.sendBtn.id = 'chat-send';
    this.sendBtn.className = 'primary';
    this.hint = document.createElement('p');
    this.hint.className = 'chat-hint';
    this.hint.hidden = true;
    this.form.append(this.input, this.sendBtn);
    root.append(this.list, this.empty, this.hint, this.form);
    this.form.addEventListener('submit', (ev) => { ev.preventDefault(); this.submit(); });
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submit();
      }
    });
    this.render();
  }

  render() {
    this.input.placeholder = t('chatPlaceholder');
    this.sendBtn.textContent = t('chatSend');
    this.empty.textContent = t('chatEmpty');
    this.empty.hidden = this.lines.size > 0;
    for (const btn of this.list.querySelectorAll('.chat-del')) {
      btn.textContent = t('chatDelete');
      btn.title = t('chatDeleteTitle');
    }
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (charCount(text) > MAX_CHAT_CHARS) {
      this.hint.textContent = t('chatTooLong', { n: MAX_CHAT_CHARS });
      this.hint.hidden = false;
      return;
    }
    this.hint.hidden = true;
    this.send({ type: 'chat', text });
    this.input.value = '';
  }

  reset({ selfId = null, canModerate = false, lines = [] } = {}) {
    this.selfId = selfId;
    this.canModerate = canModerate;
    this.lines.clear();
    this.list.replaceChildren();
    for (const line of lines) this.add(line, { history: true });
    this.setUnread(0);
    this.render();
  }

  add(line, { history = false } = {}) {
    if (!line || typeof line.id !== 'number' || this.lines.has(line.id)) return;
    const li = document.createElement('li');
    li.className = 'chat-line';
    li.dataset.id = String(line.id);
    if (line.from && line.from === this.selfId) li.classList.add('mine');
    const head = document.createElement('div');
    head.className = 'chat-head';
    const name = document.createElement('strong');
    name.textContent = String(line.name || '?');
    const time = document.createElement('time');
    const at = new Date((line.at || 0) * 1000);
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    head.append(name, time);
    if (this.canModerate) {
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'chat-del link-btn';
      del.addEventListener('click', () => this.send({ type: 'chat_delete', id: line.id }));
      head.append(del);
    }
    const text = document.createElement('p');
    text.className = 'chat-text';
    text.textContent = String(line.text || '');
    li.append(head, text);
    this.list.append(li);
    this.lines.set(line.id, li);
    this.list.scrollTop = this.list.scrollHeight;
    if (!history && !this.visible() && line.from !== this.selfId) this.setUnread(this.unread + 1);
    this.render();
  }

  remove(id) {
    const li = this.lines.get(id);
    if (li) li.remove();
    this.lines.delete(id);
    this.render();
  }

  setUnread(n) {
    this.unread = n;
    this.onUnread(n);
  }

  /** The chat came on screen: everything is read. */
  seen() {
    this.setUnread(0);
    this.list.scrollTop = this.list.scrollHeight;
  }
}
