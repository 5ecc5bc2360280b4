// The support page of the console (accounts with the role `support`, and operators): every live
// room with per-participant diagnostics, and the scheduled meetings support was told of
// (GET /api/support/rooms, /api/support/notices). A new notice also shows as a toast.
import { addStrings, t } from './i18n.js';
import { $, fmtTime, h, onSubmit, table, toast } from './console-views.js';

addStrings({
  vi: {
    support: 'Hỗ trợ',
    supportLive: 'Các phòng đang họp',
    supportNotices: 'Cuộc họp sắp diễn ra',
    noLiveRooms: 'Không có phòng nào đang họp.',
    noNotices: 'Chưa có thông báo nào.',
    diagName: 'Người tham gia',
    diagConnections: 'Kết nối (gửi / nhận)',
    diagLayers: 'Lớp video nhận',
    diagEstimate: 'Băng thông ước tính',
    diagLoss: 'Mất gói',
    diagRtt: 'Trễ khứ hồi',
    diagAudioOnly: 'Chỉ âm thanh',
    'audioOnly.user': 'tự chọn',
    'audioOnly.bandwidth': 'thiếu băng thông',
    'audioOnly.uplink': 'đường lên nghẽn',
    noticeWhen: 'Bắt đầu',
    noticeRoom: 'Phòng',
    noticeTitle: 'Cuộc họp',
    noticeToast: 'Sắp họp: {title} ({room}) lúc {when}',
    leadTime: 'Báo trước {min} phút',
    supportStaff: 'Nhân viên hỗ trợ',
    noSupportStaff: 'Chưa có nhân viên hỗ trợ.',
    supportCreated: 'Đã tạo tài khoản hỗ trợ {name}.',
  },
  en: {
    support: 'Support',
    supportLive: 'Live rooms',
    supportNotices: 'Upcoming meetings',
    noLiveRooms: 'No room is in a meeting.',
    noNotices: 'No notices yet.',
    diagName: 'Participant',
    diagConnections: 'Connections (send / receive)',
    diagLayers: 'Video layers received',
    diagEstimate: 'Bandwidth estimate',
    diagLoss: 'Loss',
    diagRtt: 'Round trip',
    diagAudioOnly: 'Audio only',
    'audioOnly.user': 'chosen',
    'audioOnly.bandwidth': 'low bandwidth',
    'audioOnly.uplink': 'uplink congested',
    noticeWhen: 'Starts',
    noticeRoom: 'Room',
    noticeTitle: 'Meeting',
    noticeToast: 'Meeting soon: {title} ({room}) at {when}',
    leadTime: 'Told {min} min ahead',
    supportStaff: 'Support staff',
    noSupportStaff: 'No support staff yet.',
    supportCreated: 'Support account {name} created.',
  },
});

const kbps = (bps) => (bps === null || bps === undefined ? '—' : `${Math.round(bps / 1000)} kbit/s`);
const pct = (x) => `${(100 * (x || 0)).toFixed(1)} %`;
const ms = (s) => (s === null || s === undefined ? '—' : `${Math.round(s * 1000)} ms`);

function layers(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return '—';
  return entries.map(([, layer]) => (layer === null ? '–' : String(layer))).join(' ');
}

function participantRow(p) {
  const states = `${p.publish_state} / ${p.subscribe_state}`;
  const bad = (s) => s === 'failed' || s === 'disconnected';
  return [
    h('span', { title: p.id }, p.name),
    h('span', { class: bad(p.publish_state) || bad(p.subscribe_state) ? 'field-error' : '' }, states),
    layers(p.layers_received),
    kbps(p.estimate_bps),
    h('span', { class: p.loss > 0.05 ? 'field-error' : '' }, pct(p.loss)),
    ms(p.rtt_s),
    p.audio_only ? t(`audioOnly.${p.audio_only_reason}`) : '—',
  ];
}

export class SupportPanel {
  constructor(api, me) {
    this.api = api;
    this.me = me; // () => the logged-in account
    this.visible = false;
    this.seen = null; // notice keys already shown (null: the first load toasts nothing)
    onSubmit($('support-form'), async (v) => {
      const body = { username: v.username, password: v.password, role: 'support' };
      if (v.display_name) body.display_name = v.display_name;
      const account = await this.api.createAccount(body);
      $('support-form').reset();
      toast(t('supportCreated', { name: account.username }));
      await this.showStaff();
    });
  }

  show() {
    this.visible = true;
    $('support-panel').hidden = false;
    const operator = this.me() && this.me().role === 'operator';
    $('support-staff').hidden = !operator;
    if (operator) this.showStaff().catch((err) => toast(err.message, true));
    return this.refresh();
  }

  /** Operators: the support accounts, and a form to add one. */
  async showStaff() {
    const staff = (await this.api.accounts()).filter((a) => a.role === 'support');
    $('support-staff-list').replaceChildren(table(['usernameField', 'displayName'],
      staff.map((a) => [a.username, a.display_name]), 'noSupportStaff'));
  }

  hide() {
    this.visible = false;
    $('support-panel').hidden = true;
  }

  async refresh() {
    const [rooms, notices] = await Promise.all([
      this.api.call('GET', '/api/support/rooms'),
      this.api.call('GET', '/api/support/notices'),
    ]);
    this.toastNew(notices.notices);
    if (!this.visible) return;
    $('support-rooms').replaceChildren(...(rooms.length ? rooms.map((room) => h('div', {
      class: 'support-room', dataset: { room: room.room },
    }, h('h4', {}, `${room.room} (${room.participants.length})`),
    table(['diagName', 'diagConnections', 'diagLayers', 'diagEstimate', 'diagLoss', 'diagRtt',
      'diagAudioOnly'], room.participants.map(participantRow), 'noLiveRooms')))
      : [h('p', { class: 'empty' }, t('noLiveRooms'))]));
    $('support-lead').textContent = t('leadTime', { min: Math.round(notices.lead_s / 60) });
    $('support-notices').replaceChildren(table(['noticeWhen', 'noticeRoom', 'noticeTitle'],
      notices.notices.map((n) => [fmtTime(n.starts_at), n.room, n.title]), 'noNotices'));
  }

  toastNew(notices) {
    const keys = notices.map((n) => `${n.meeting_id}@${n.starts_at}`);
    if (this.seen !== null) {
      for (const n of notices) {
        if (!this.seen.has(`${n.meeting_id}@${n.starts_at}`)) {
          toast(t('noticeToast', { title: n.title, room: n.room, when: fmtTime(n.starts_at) }));
        }
      }
    }
    this.seen = new Set(keys);
  }
}
