// The meeting's documents (`documents`): the files the host attached to the room, each a
// download link carrying the key the server gave this participant.
import { t } from './i18n.js';
import { ICONS } from './people.js';

function size(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

export class DocumentsView {
  constructor(root, { send }) {
    this.send = send;
    this.list = document.createElement('ul');
    this.list.className = 'doc-list';
    this.list.id = 'doc-list';
    this.empty = document.createElement('p');
    this.empty.className = 'doc-empty';
    this.empty.hidden = true;
    root.append(this.list, this.empty);
    this.last = null;
  }

  reset() {
    this.last = null;
    this.list.replaceChildren();
    this.empty.hidden = true;
  }

  show(message) {
    this.last = message;
    const docs = Array.isArray(message.documents) ? message.documents : [];
    const items = docs.map((d) => {
      const li = document.createElement('li');
      li.className = 'doc';
      const kind = document.createElement('span');
      kind.className = `doc-kind doc-${d.kind === 'docx' ? 'docx' : 'pdf'}`;
      kind.textContent = d.kind === 'docx' ? 'DOCX' : 'PDF';
      const name = document.createElement('span');
      name.className = 'doc-name';
      name.textContent = String(d.name);
      const meta = document.createElement('span');
      meta.className = 'doc-size';
      meta.textContent = size(Number(d.bytes) || 0);
      const link = document.createElement('a');
      link.className = 'doc-download small-btn';
      // Only our own server's paths: the URL comes from the server, the key is appended.
      const url = new URL(String(d.url), location.origin);
      if (url.origin === location.origin) {
        url.searchParams.set('key', String(message.key || ''));
        link.href = url.pathname + url.search;
      }
      link.setAttribute('download', String(d.name));
      link.innerHTML = ICONS.download;
      const label = document.createElement('span');
      label.className = 'dl-label';
      link.append(label);
      li.append(kind, name, meta, link);
      return li;
    });
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
    this.render();
  }

  render() {
    this.empty.textContent = t('documentsEmpty');
    for (const el of this.list.querySelectorAll('.dl-label')) el.textContent = t('download');
  }
}
