// A room's tabs in the console: settings (create / edit), invitations, members, weekly schedule;
// and the endpoint devices page. Each form shows the API's errors next to the field named.
import { t } from './i18n.js';
import { $, confirmButton, copyText, fmtTime, h, onSubmit, table, toast } from './console-views.js';
import { RoomDocuments } from './console-docs.js';

const DAY = 86400;

export class RoomTabs {
  /**
   * @param {import('./console-api.js').Api} api
   * @param {object} state the console's state (me, orgs, ...)
   * @param {{created, updated, deleted}} on callbacks with the room (or its name)
   */
  constructor(api, state, on) {
    this.api = api;
    this.state = state;
    this.on = on;
    this.room = null; // the room the tabs show
    this.editing = null; // the room in the settings form; null: a new one
    this.endpoints = [];
    this.docs = new RoomDocuments(api);
    this.wire();
  }

  fillOrgs() {
    const operator = this.state.me && this.state.me.role === 'operator';
    for (const form of [$('room-form'), $('endpoint-form')]) {
      const select = form.elements.org_id;
      select.replaceChildren(...this.state.orgs.map((o) => new Option(o.name, String(o.id))));
      select.closest('label').hidden = !operator;
      select.disabled = !operator;
    }
  }

  wire() {
    onSubmit($('room-form'), (v) => this.saveRoom(v), { conflict: 'name' });
    onSubmit($('invite-form'), async (v) => {
      const out = await this.api.createInvitation(this.room.name, {
        max_uses: v.max_uses, ttl_s: Number(v.ttl_s), label: v.label,
      });
      $('invite-link').value = new URL(out.link, location.origin).href;
      $('invite-result').hidden = false;
      await this.showInvitations();
    });
    $('copy-invite').addEventListener('click', async () => {
      if (await copyText($('invite-link').value, $('invite-link'))) toast(t('copied'));
    });
    onSubmit($('add-member-form'), async (v) => {
      await this.api.addMember(this.room.name, Number(v.account_id));
      await this.showMembers();
    });
    onSubmit($('member-form'), async (v) => {
      const account = await this.api.createAccount({
        username: v.username, password: v.password, display_name: v.display_name,
        role: 'member', org_id: this.room.org_id,
      });
      await this.api.addMember(this.room.name, account.id);
      $('member-form').reset();
      await this.showMembers();
    }, { conflict: 'username' });
    onSubmit($('meeting-form'), async (v) => {
      const endpointIds = [...$('meeting-endpoints').querySelectorAll('input:checked')]
        .map((el) => Number(el.value));
      await this.api.createMeeting(this.room.name, {
        title: v.title, first_date: v.first_date, start: v.start, end: v.end, weekly: v.weekly,
        until: v.until || null, utc_offset_min: -new Date().getTimezoneOffset(),
        endpoint_ids: endpointIds,
      });
      $('meeting-form').reset();
      await this.showSchedule();
    });
    onSubmit($('endpoint-form'), async (v) => {
      const body = { name: v.name };
      if (this.state.me.role === 'operator') body.org_id = Number(v.org_id);
      const out = await this.api.createEndpoint(body);
      $('endpoint-new-id').textContent = String(out.id);
      $('endpoint-new-secret').textContent = out.secret || '';
      $('endpoint-secret').hidden = false;
      $('endpoint-form').reset();
      await this.showEndpoints(false);
    }, { conflict: 'name' });
  }

  async show(tab, room) {
    this.room = room;
    if (tab === 'settings') this.editRoom(room);
    else if (tab === 'invitations') await this.showInvitations();
    else if (tab === 'members') await this.showMembers();
    else if (tab === 'schedule') await this.showSchedule();
    else if (tab === 'documents') await this.docs.show(room);
  }

  // ---- settings ----

  editRoom(room) {
    this.editing = room;
    const f = $('room-form');
    f.reset();
    f.querySelectorAll('.field-error, .form-error').forEach((el) => { el.hidden = true; });
    f.elements.name.value = room ? room.name : '';
    f.elements.name.readOnly = !!room;
    f.elements.org_id.closest('label').hidden = !!room || this.state.me.role !== 'operator';
    if (room) {
      f.elements.capacity.value = room.capacity;
      f.elements.kind.value = room.kind;
      for (const k of ['locked', 'lobby', 'auto_record', 'guest_password_join']) f.elements[k].checked = !!room[k];
    }
    $('keep-password').hidden = !(room && room.has_password);
    $('remove-password-row').hidden = !(room && room.has_password);
    $('room-submit').textContent = room ? t('save') : t('createRoom');
    const slot = $('delete-room-slot');
    slot.replaceChildren();
    if (room) {
      slot.append(confirmButton(t('deleteRoom'), async () => {
        try {
          await this.api.deleteRoom(room.name);
          this.on.deleted(room.name);
        } catch (err) { toast(err.message, true); }
      }, { dataset: { action: 'delete-room' } }));
    }
    if (!room) f.elements.name.focus();
  }

  async saveRoom(v) {
    const body = { capacity: v.capacity, kind: v.kind, locked: v.locked, lobby: v.lobby,
      auto_record: v.auto_record, guest_password_join: v.guest_password_join };
    if (v.password) body.password = v.password;
    if (!this.editing) {
      body.name = v.name;
      if (this.state.me.role === 'operator') body.org_id = Number(v.org_id);
      this.on.created(await this.api.createRoom(body));
      return;
    }
    if (!v.password && v.remove_password) body.password = null;
    const room = await this.api.updateRoom(this.editing.name, body);
    this.editRoom(room);
    this.on.updated(room);
    toast(t('saved'));
  }

  // ---- invitations ----

  async showInvitations() {
    const room = this.room;
    const list = await this.api.invitations(room.name);
    $('invitations').replaceChildren(table(
      ['label', 'usesLeft', 'expires', ''],
      list.map((i) => [
        i.label || '—',
        `${i.uses_left}/${i.max_uses}`,
        i.revoked ? t('revoked') : fmtTime(i.expires_at),
        i.revoked ? '' : confirmButton(t('revoke'), async () => {
          await this.api.revokeInvitation(room.name, i.id).catch((e) => toast(e.message, true));
          await this.showInvitations();
        }),
      ]),
      'noInvitations', (k) => ({ dataset: { invitationId: list[k].id } })));
  }

  // ---- members ----

  async showMembers() {
    const room = this.room;
    const [members, accounts] = await Promise.all([
      this.api.members(room.name), this.api.accounts().catch(() => [])]);
    $('members').replaceChildren(table(
      ['usernameField', 'displayName', 'role', ''],
      members.map((a) => [a.username, a.display_name, a.role,
        confirmButton(t('remove'), async () => {
          await this.api.removeMember(room.name, a.id).catch((e) => toast(e.message, true));
          await this.showMembers();
        })]),
      'noMembers'));
    const ids = new Set(members.map((a) => a.id));
    const candidates = accounts.filter((a) => !ids.has(a.id) && a.role !== 'operator'
      && a.org_id === room.org_id);
    $('add-member-form').elements.account_id.replaceChildren(...candidates.map(
      (a) => new Option(`${a.display_name || a.username} (${a.username})`, String(a.id))));
    $('add-member-form').hidden = !candidates.length;
  }

  // ---- weekly schedule ----

  async showSchedule() {
    const room = this.room;
    const [meetings, endpoints] = await Promise.all([
      this.api.meetings(room.name), this.api.endpoints().catch(() => [])]);
    const days = t('weekdays').split(',');
    const names = Object.fromEntries(endpoints.map((e) => [e.id, e.name]));
    $('meetings').replaceChildren(table(
      ['title', 'firstDate', 'start', 'next', 'endpoints', ''],
      meetings.map((m) => {
        const day = days[new Date(`${m.first_date}T00:00:00`).getDay()];
        return [
          m.title,
          `${m.weekly ? `${t('weekly')} (${day})` : m.first_date}${m.until ? ` → ${m.until}` : ''}`,
          `${m.start}–${m.end}`,
          m.on_now ? h('span', { class: 'badge live' }, t('onNow')) : fmtTime(m.next_start),
          m.endpoint_ids.map((id) => names[id] || `#${id}`).join(', ') || '—',
          confirmButton(t('cancelMeeting'), async () => {
            await this.api.cancelMeeting(room.name, m.id).catch((e) => toast(e.message, true));
            await this.showSchedule();
          }),
        ];
      }),
      'noMeetings'));
    const mine = endpoints.filter((e) => e.org_id === room.org_id);
    $('meeting-endpoints').replaceChildren(...(mine.length ? mine.map((e) => h('label',
      { class: 'check' }, h('input', { type: 'checkbox', value: String(e.id) }), ` ${e.name}`))
      : [h('span', { class: 'empty' }, t('noEndpoints'))]));
    const f = $('meeting-form').elements;
    if (!f.first_date.value) f.first_date.value = new Date(Date.now() + DAY * 1000)
      .toISOString().slice(0, 10);
  }

  // ---- endpoint devices ----

  async showEndpoints(hideSecret = true) {
    if (hideSecret) $('endpoint-secret').hidden = true;
    const list = await this.api.endpoints();
    const orgs = Object.fromEntries(this.state.orgs.map((o) => [o.id, o.name]));
    $('endpoint-list').replaceChildren(table(
      ['endpointId', 'name', 'organisation', 'lastSeen', ''],
      list.map((e) => [String(e.id), e.name, orgs[e.org_id] || `#${e.org_id}`,
        e.last_seen_at ? fmtTime(e.last_seen_at) : t('never'),
        confirmButton(t('delete'), async () => {
          await this.api.deleteEndpoint(e.id).catch((err) => toast(err.message, true));
          await this.showEndpoints();
        })]),
      'noEndpoints'));
  }
}
