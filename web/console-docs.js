// A room's documents in the console (issue 12): attach PDF/DOCX files for the meeting,
// list and remove them. The upload is the file itself as the body (POST
// /api/rooms/{name}/documents?filename=...); the server checks the type on the bytes.
import { t } from './i18n.js';
import { ApiError } from './console-api.js';
import { $, confirmButton, fmtTime, h, onSubmit, table, toast } from './console-views.js';

const enc = encodeURIComponent;

function size(bytes) {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

export class RoomDocuments {
  /** @param {import('./console-api.js').Api} api */
  constructor(api) {
    this.api = api;
    this.room = null;
    onSubmit($('document-form'), () => this.upload());
  }

  async show(room) {
    this.room = room;
    const docs = await this.api.call('GET', `/api/rooms/${enc(room.name)}/documents`);
    $('documents').replaceChildren(table(
      ['documentName', 'documentSize', 'documentAdded', ''],
      docs.map((d) => [
        d.name, size(d.bytes), fmtTime(d.uploaded_at),
        h('span', { class: 'actions' }, confirmButton(t('documentDelete'), async () => {
          try {
            await this.api.call('DELETE', `/api/rooms/${enc(room.name)}/documents/${d.id}`);
            await this.show(room);
          } catch (err) { toast(err.message, true); }
        }, { dataset: { action: 'delete-document' } })),
      ]),
      'documentsNone', (i) => ({ dataset: { documentId: String(docs[i].id) } })));
  }

  async upload() {
    const form = $('document-form');
    const file = form.elements.file.files[0];
    if (!file) throw new ApiError(400, 'bad-request', t('documentChoose'), 'file');
    const headers = { 'Content-Type': file.type || 'application/octet-stream' };
    if (this.api.token) headers.Authorization = `Bearer ${this.api.token}`;
    const url = `/api/rooms/${enc(this.room.name)}/documents?filename=${enc(file.name)}`;
    const response = await fetch(url, { method: 'POST', headers, body: file });
    if (!response.ok) {
      let e = {};
      try { e = await response.json(); } catch (_) { /* not JSON */ }
      const field = e.field === 'body' || e.field === 'filename' ? 'file' : e.field;
      throw new ApiError(response.status, e.error || `http-${response.status}`,
        e.message || response.statusText, field || 'file');
    }
    form.reset();
    toast(t('documentAttached'));
    await this.show(this.room);
  }
}
