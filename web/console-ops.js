// The operator's daily report and audit trail in the console (issue 13). Self-contained: it adds
// its own two nav buttons (for operators only) and one panel, so console.js stays as it is.
// Data: GET /api/reports/daily (json|md|html), GET /api/audit, GET /api/audit/verify.
import { addStrings, applyTranslations, t } from './i18n.js';
import { Api } from './console-api.js';
import { $, fmtTime, h, table, toast } from './console-views.js';

addStrings({
  vi: {
    reports: 'Báo cáo', auditTrail: 'Nhật ký an ninh', dailyReport: 'Báo cáo ngày',
    showReport: 'Xem', printReport: 'Tải bản in (HTML)', downloadMd: 'Tải Markdown', downloadJson: 'Tải JSON',
    auditVerify: 'Kiểm tra chuỗi', auditIntact: 'Chuỗi nhật ký nguyên vẹn: {n} dòng.',
    auditBroken: 'Chuỗi nhật ký bị sửa hoặc xoá:', auditFilter: 'Lọc', noAudit: 'Chưa có mục nào.',
    when: 'Thời gian', actor: 'Ai', action: 'Việc', target: 'Đối tượng', address: 'Từ địa chỉ',
    outcome: 'Kết quả', room: 'Phòng', since: 'Từ ngày', date: 'Ngày',
  },
  en: {
    reports: 'Reports', auditTrail: 'Audit trail', dailyReport: 'Daily report',
    showReport: 'Show', printReport: 'Download printable HTML', downloadMd: 'Download Markdown',
    downloadJson: 'Download JSON', auditVerify: 'Verify chain',
    auditIntact: 'Audit chain intact: {n} rows.', auditBroken: 'Audit chain edited or cut:',
    auditFilter: 'Filter', noAudit: 'No entries yet.', when: 'When', actor: 'Who',
    action: 'What', target: 'Target', address: 'From', outcome: 'Outcome', room: 'Room',
    since: 'Since', date: 'Date',
  },
});

const PANELS = ['room-panel', 'pick-room', 'endpoints-panel'];
let panel = null;

function today() {
  const local = new Date(Date.now() + 7 * 3600 * 1000);  // the report's default zone, UTC+7
  return local.toISOString().slice(0, 10);
}

/** The API's text answer (Markdown, HTML) with the console's bearer token. */
async function fetchText(path) {
  const api = new Api();
  const response = await fetch(path, { headers: { Authorization: `Bearer ${api.token}` } });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.text();
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function show(view) {
  for (const id of PANELS) { const el = $(id); if (el) el.hidden = true; }
  for (const b of document.querySelectorAll('.nav-btn')) {
    b.classList.toggle('active', b.id === `nav-${view}`);
  }
  panel.hidden = false;
  panel.replaceChildren();
  (view === 'reports' ? showReports : showAudit)().catch((err) => toast(err.message, true));
}

async function showReports() {
  const date = h('input', { type: 'date', value: today() });
  const view = h('div', { class: 'report-view' });
  const path = (fmt) => `/api/reports/daily?date=${encodeURIComponent(date.value)}&format=${fmt}`;
  // The printable HTML is parsed inert and its body shown here (the console's CSP keeps its
  // inline style out; tables and the plots, data: images, come through). Print the
  // downloaded file: it is self-contained.
  const load = async () => {
    const doc = new DOMParser().parseFromString(await fetchText(path('html')), 'text/html');
    for (const el of doc.querySelectorAll('style, script')) el.remove();
    // A copy first: adopting a node takes it out of the live list being read.
    view.replaceChildren(...[...doc.body.childNodes].map((n) => document.adoptNode(n)));
  };
  const save = (fmt, type) => async () => {
    try {
      download(`report-${date.value}.${fmt}`, await fetchText(path(fmt)), type);
    } catch (err) { toast(err.message, true); }
  };
  panel.append(
    h('h2', {}, t('dailyReport')),
    h('div', { class: 'actions' },
      h('label', { class: 'field' }, h('span', {}, t('date')), date),
      h('button', { type: 'button', class: 'primary', onclick: () => load().catch(
        (err) => toast(err.message, true)) }, t('showReport')),
      h('button', { type: 'button', onclick: save('html', 'text/html') }, t('printReport')),
      h('button', { type: 'button', onclick: save('md', 'text/markdown') }, t('downloadMd')),
      h('button', { type: 'button', onclick: save('json', 'application/json') },
        t('downloadJson'))),
    view);
  await load();
}

async function showAudit() {
  const room = h('input', { name: 'room', maxlength: '64' });
  const since = h('input', { type: 'date' });
  const list = h('div', { id: 'audit-list' });
  const verdict = h('p', { id: 'audit-verdict' });
  const load = async () => {
    const query = new URLSearchParams({ limit: '500' });
    if (room.value) query.set('room', room.value);
    if (since.value) query.set('since', String(Date.parse(since.value) / 1000));
    const rows = await new Api().call('GET', `/api/audit?${query}`);
    list.replaceChildren(table(['when', 'actor', 'action', 'room', 'target', 'address',
      'outcome'], rows.map((r) => [fmtTime(r.at), r.actor, r.action, r.room, r.target,
      r.address, r.outcome]), 'noAudit'));
  };
  const verify = async () => {
    const out = await new Api().call('GET', '/api/audit/verify');
    verdict.className = out.ok ? 'result' : 'result warn';
    verdict.replaceChildren(out.ok ? t('auditIntact', { n: out.rows })
      : h('span', {}, t('auditBroken'), h('ul', {}, out.problems.map((p) => h('li', {}, p)))));
  };
  panel.append(
    h('h2', {}, t('auditTrail')),
    h('div', { class: 'actions' },
      h('label', { class: 'field' }, h('span', {}, t('room')), room),
      h('label', { class: 'field' }, h('span', {}, t('since')), since),
      h('button', { type: 'button', onclick: () => load().catch((e) => toast(e.message, true)) },
        t('auditFilter')),
      h('button', { type: 'button', onclick: () => verify().catch((e) => toast(e.message, true)) },
        t('auditVerify'))),
    verdict, list);
  await load();
}

async function onLoggedIn() {
  const me = await new Api().call('GET', '/api/me');
  const operator = me.role === 'operator';
  for (const id of ['nav-reports', 'nav-audit']) $(id).hidden = !operator;
}

function setup() {
  const nav = $('mainnav');
  const content = document.querySelector('#app-view .content');
  if (!nav || !content) return;
  nav.append(
    h('button', { type: 'button', class: 'nav-btn', id: 'nav-reports', hidden: true,
      dataset: { i18n: 'reports' }, onclick: () => show('reports') }, t('reports')),
    h('button', { type: 'button', class: 'nav-btn', id: 'nav-audit', hidden: true,
      dataset: { i18n: 'auditTrail' }, onclick: () => show('audit') }, t('auditTrail')));
  panel = h('div', { id: 'ops-panel', hidden: true });
  content.append(panel);
  // The console's own pages hide this one (console.js shows theirs on their buttons).
  for (const id of ['nav-rooms', 'nav-endpoints', 'new-room-btn']) {
    $(id)?.addEventListener('click', () => { panel.hidden = true; });
  }
  document.getElementById('room-list')?.addEventListener('click', () => { panel.hidden = true; });
  // Logged in: console.js unhides the nav; then the buttons appear for operators.
  new MutationObserver(() => {
    if (!nav.hidden) onLoggedIn().catch(() => {});
    else panel.hidden = true;
  }).observe(nav, { attributes: true, attributeFilter: ['hidden'] });
  if (!nav.hidden) onLoggedIn().catch(() => {});
  applyTranslations(nav);
}

setup();
