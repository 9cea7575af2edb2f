// /meetings: the signed-in user's meetings (owned and invited), and the
// form that creates or edits one.

import { me, setReturnPath } from '../account/api';
import { button, card, show } from '../account/forms';
import { h, notify } from '../ui';
import {
  createMeeting,
  DEFAULT_RIGHTS,
  deleteMeeting,
  listMeetings,
  loadMeeting,
  meetingLink,
  RIGHT_LABELS,
  RIGHT_NAMES,
  ROLE_LABELS,
  updateMeeting,
  type Invitee,
  type Meeting,
  type MeetingSpec,
  type Right,
  type Role,
} from './api';

export async function startMeetings(): Promise<void> {
  try {
    const session = await me();
    if (!session || session.level !== 'full') {
      const signIn = h('a', { class: 'button button-primary', href: '/account/sign-in?next=%2Fmeetings', 'data-testid': 'meetings-signin' }, 'Sign in');
      signIn.addEventListener('click', () => setReturnPath('/meetings'));
      show(card('Your meetings', 'Sign in to see and plan your meetings.', false, h('div', { class: 'actions' }, signIn)));
      return;
    }
    await showList();
  } catch (err) {
    show(card('Your meetings', err instanceof Error ? err.message : 'Something went wrong.', false, h('p', {}, h('a', { href: '/meetings', text: 'Try again' }))));
  }
}

function when(seconds: number | null): string {
  return seconds === null ? '' : new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

async function copy(text: string, what: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    notify(`${what} copied`, 'success');
  } catch {
    notify(`${what}: ${text}`);
  }
}

async function showList(): Promise<void> {
  const meetings = await listMeetings();
  const items = meetings.map((m) => meetingItem(m));
  const list = items.length
    ? h('ul', { class: 'account-list meeting-list', 'data-testid': 'meeting-list' }, ...items)
    : h('p', { class: 'muted', 'data-testid': 'meeting-list-empty', text: 'No meetings yet. Plan one below, or ask to be invited.' });
  const create = button('Plan a meeting', 'meeting-new', () => showForm(null), true);
  const screen = card(
    'Your meetings',
    'Meetings you planned or were invited to.',
    true,
    h('div', { class: 'actions' }, create),
    h('section', { class: 'account-section', 'aria-labelledby': 'meetings-h' }, h('h2', { id: 'meetings-h', text: 'Meetings' }), list),
    h('p', { class: 'account-section' }, h('a', { href: '/account', text: 'Your account' }), ' · ', h('a', { href: '/', text: 'Join a room by name' })),
  );
  screen.querySelector('h1')?.setAttribute('data-testid', 'meetings-title');
  show(screen);
}

function meetingItem(m: Meeting): HTMLElement {
  const role = m.owner ? 'owner' : m.role;
  const canEdit = role === undefined || role === 'owner' || role === 'host';
  const canDelete = role === undefined || role === 'owner';
  const link = m.link ?? meetingLink(m.id);
  const actions = h('span', { class: 'meeting-actions' });
  const open = h('a', { class: 'button button-primary button-small', href: `/m/${encodeURIComponent(m.id)}`, 'data-testid': 'meeting-open' }, 'Open');
  const copyLink = button('Copy link', 'meeting-copy', () => void copy(link, 'Meeting link'));
  copyLink.classList.add('button-small');
  copyLink.setAttribute('aria-label', `Copy the link of ${m.title}`);
  actions.append(open, copyLink);
  if (canEdit) {
    const edit = button('Edit', 'meeting-edit', () => {
      loadMeeting(m.id)
        .then((full) => showForm(full))
        .catch((err: unknown) => notify(err instanceof Error ? err.message : 'Could not load the meeting.', 'error'));
    });
    edit.classList.add('button-small');
    edit.setAttribute('aria-label', `Edit ${m.title}`);
    actions.append(edit);
  }
  if (canDelete) {
    const del = button('Delete', 'meeting-delete', () => {
      const sure = button('Delete for good', 'meeting-delete-confirm', () => {
        deleteMeeting(m.id)
          .then(() => {
            notify('The meeting was deleted.', 'success');
            return showList();
          })
          .catch((err: unknown) => notify(err instanceof Error ? err.message : 'Could not delete.', 'error'));
      });
      sure.classList.add('button-small', 'button-danger');
      const cancel = button('Keep it', 'meeting-delete-cancel', () => confirmBox.replaceWith(del));
      cancel.classList.add('button-small');
      const confirmBox = h('span', { class: 'meeting-confirm', role: 'group', 'aria-label': `Delete ${m.title}?` }, `Delete “${m.title}” with its invitees and files?`, sure, cancel);
      del.replaceWith(confirmBox);
      cancel.focus();
    });
    del.classList.add('button-small');
    del.setAttribute('aria-label', `Delete ${m.title}`);
    actions.append(del);
  }
  const timeText = m.starts_at ? `${when(m.starts_at)}${m.ends_at ? ` – ${when(m.ends_at)}` : ''}` : 'No time set';
  return h(
    'li',
    { 'data-testid': 'meeting-item', 'data-meeting': m.id },
    h(
      'span',
      { class: 'meeting-summary' },
      h('strong', { class: 'meeting-title', text: m.title || m.id }),
      h('span', { class: 'field-hint', text: `${timeText}${role ? ` · you: ${role === 'invited' ? 'invited' : ROLE_LABELS[role as Role] ?? role}` : ''}` }),
    ),
    actions,
  );
}

// ---------- the form ----------

let uid = 0;
const nextId = (prefix: string) => `${prefix}-${++uid}`;

function labelled(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || nextId('mf');
  control.id = id;
  const hintEl = hint ? h('p', { class: 'field-hint', id: `${id}-hint`, text: hint }) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), hintEl, control);
}

function radios<T extends string>(legend: string, name: string, options: Array<[T, string]>, value: T, testId: string): { el: HTMLElement; value: () => T } {
  const inputs = options.map(([v, text]) => {
    const input = h('input', { type: 'radio', name, value: v, id: nextId(name), 'data-testid': `${testId}-${v}` });
    input.checked = v === value;
    return { v, input, row: h('div', { class: 'check' }, input, h('label', { for: input.id, text })) };
  });
  const el = h('fieldset', { class: 'fieldset' }, h('legend', { text: legend }), ...inputs.map((i) => i.row));
  return { el, value: () => inputs.find((i) => i.input.checked)?.v ?? value };
}

function toLocalInput(seconds: number | null): string {
  if (seconds === null) return '';
  const d = new Date(seconds * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value: string): number | null {
  if (value === '') return null;
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? Math.floor(t / 1000) : null;
}

function inviteeRow(list: HTMLElement, invitee: Invitee): HTMLElement {
  const kind = h('select', { 'data-testid': 'invitee-kind', 'aria-label': 'Invite by' }, h('option', { value: 'email', text: 'E-mail address' }), h('option', { value: 'domain', text: 'Everyone at a domain' }), h('option', { value: 'group', text: 'Group' }));
  kind.value = invitee.kind;
  const value = h('input', { type: 'text', 'data-testid': 'invitee-value', 'aria-label': 'Address, domain or group', maxlength: 254, autocomplete: 'off', spellcheck: 'false' });
  value.value = invitee.value;
  const placeholder = () => {
    value.placeholder = kind.value === 'email' ? 'ada@example.org' : kind.value === 'domain' ? 'example.org' : 'group name';
  };
  placeholder();
  kind.addEventListener('change', placeholder);
  const role = h('select', { 'data-testid': 'invitee-role', 'aria-label': 'Role' }, h('option', { value: 'participant', text: 'Participant' }), h('option', { value: 'cohost', text: 'Co-host' }), h('option', { value: 'host', text: 'Host' }));
  role.value = invitee.role;
  const row = h('li', { class: 'invitee-row', 'data-testid': 'invitee-row' }, kind, value, role);
  const remove = button('Remove', 'invitee-remove', () => {
    row.remove();
    (list.querySelector<HTMLElement>('[data-testid="invitee-value"]') ?? list).focus();
  });
  remove.classList.add('button-small');
  remove.setAttribute('aria-label', 'Remove this invitee');
  row.append(remove);
  return row;
}

function readInvitees(list: HTMLElement): Invitee[] {
  return [...list.querySelectorAll<HTMLElement>('[data-testid="invitee-row"]')]
    .map((row) => ({
      kind: row.querySelector<HTMLSelectElement>('[data-testid="invitee-kind"]')!.value as Invitee['kind'],
      value: row.querySelector<HTMLInputElement>('[data-testid="invitee-value"]')!.value.trim(),
      role: row.querySelector<HTMLSelectElement>('[data-testid="invitee-role"]')!.value as Invitee['role'],
    }))
    .filter((i) => i.value !== '');
}

function showForm(existing: Meeting | null): void {
  const m: MeetingSpec & { has_passcode?: boolean } = existing ?? {
    title: '',
    starts_at: null,
    ends_at: null,
    access: 'invited',
    lobby: 'everyone',
    guests: false,
    invitees: [],
    rights: { ...DEFAULT_RIGHTS },
  };

  const title = h('input', { type: 'text', required: true, maxlength: 200, 'data-testid': 'meeting-title-input', autocomplete: 'off' });
  title.value = m.title;
  const starts = h('input', { type: 'datetime-local', 'data-testid': 'meeting-starts' });
  starts.value = toLocalInput(m.starts_at);
  const ends = h('input', { type: 'datetime-local', 'data-testid': 'meeting-ends' });
  ends.value = toLocalInput(m.ends_at);

  const access = radios('Who may enter', nextId('access'), [
    ['invited', 'Only the people invited below (private)'],
    ['link', 'Also any signed-in user with the link (they wait in the lobby)'],
  ], m.access, 'meeting-access');
  const lobby = radios('Lobby', nextId('lobby'), [
    ['everyone', 'Everyone but the hosts waits until a host admits them'],
    ['uninvited', 'Invitees enter directly; others wait'],
  ], m.lobby, 'meeting-lobby');

  const guests = h('input', { type: 'checkbox', id: nextId('guests'), 'data-testid': 'meeting-guests' });
  guests.checked = m.guests;
  const guestsRow = h('div', { class: 'check' }, guests, h('label', { for: guests.id, text: 'Guests without an account may ask to enter by name (if this server allows guests)' }));

  const passcode = h('input', { type: 'text', maxlength: 64, autocomplete: 'off', spellcheck: 'false', 'data-testid': 'meeting-passcode' });
  const removePass = h('input', { type: 'checkbox', id: nextId('nopass'), 'data-testid': 'meeting-passcode-remove' });
  const passHint = existing?.has_passcode ? 'A passcode is set. Leave this empty to keep it.' : 'Optional. Everyone but the hosts must give it.';
  const removePassRow = existing?.has_passcode ? h('div', { class: 'check' }, removePass, h('label', { for: removePass.id, text: 'Remove the passcode' })) : null;

  const invitees = h('ul', { class: 'invitee-list', 'data-testid': 'invitee-list', 'aria-label': 'Invitees' });
  for (const i of m.invitees) invitees.append(inviteeRow(invitees, i));
  const addInvitee = button('Add an invitee', 'invitee-add', () => {
    const row = inviteeRow(invitees, { kind: 'email', value: '', role: 'participant' });
    invitees.append(row);
    row.querySelector<HTMLInputElement>('[data-testid="invitee-value"]')?.focus();
  });
  addInvitee.classList.add('button-small');

  const rightSelects = RIGHT_NAMES.map((name) => {
    const select = h('select', { 'data-testid': `right-${name}` }, h('option', { value: 'everyone', text: 'Everyone' }), h('option', { value: 'hosts', text: 'Hosts only' }));
    select.value = m.rights[name];
    return { name, select, field: labelled(RIGHT_LABELS[name], select) };
  });

  const error = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'meeting-form-error' });
  const submit = h('button', { type: 'submit', class: 'button button-primary', 'data-testid': 'meeting-save' }, existing ? 'Save' : 'Create meeting');
  const cancel = button('Cancel', 'meeting-cancel', () => void showList());

  const form = h(
    'form',
    { class: 'card-form meeting-form', novalidate: true, 'data-testid': 'meeting-form' },
    labelled('Title', title),
    h('div', { class: 'field-row' }, labelled('Starts', starts), labelled('Ends', ends)),
    access.el,
    lobby.el,
    guestsRow,
    labelled('Passcode', passcode, passHint),
    removePassRow,
    h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Invitees' }), h('p', { class: 'field-hint', text: 'By e-mail address, everyone with a confirmed address at a domain, or a group from your sign-in provider.' }), invitees, addInvitee),
    h('fieldset', { class: 'fieldset' }, h('legend', { text: 'Who may use' }), h('div', { class: 'rights-grid' }, ...rightSelects.map((r) => r.field))),
    error,
    h('div', { class: 'actions' }, cancel, submit),
  );

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    error.hidden = true;
    if (title.value.trim() === '') {
      error.textContent = 'Give the meeting a title.';
      error.hidden = false;
      title.setAttribute('aria-invalid', 'true');
      title.focus();
      return;
    }
    const startsAt = fromLocalInput(starts.value);
    const endsAt = fromLocalInput(ends.value);
    if (startsAt !== null && endsAt !== null && endsAt < startsAt) {
      error.textContent = 'The meeting must end after it starts.';
      error.hidden = false;
      ends.focus();
      return;
    }
    const rights = { ...DEFAULT_RIGHTS };
    for (const r of rightSelects) rights[r.name] = r.select.value as Right;
    const spec: MeetingSpec = {
      title: title.value.trim(),
      starts_at: startsAt,
      ends_at: endsAt,
      access: access.value(),
      lobby: lobby.value(),
      guests: guests.checked,
      invitees: readInvitees(invitees),
      rights,
    };
    if (removePass.checked) spec.passcode = '';
    else if (passcode.value !== '') spec.passcode = passcode.value;
    else if (!existing) spec.passcode = null;
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    const done = existing ? updateMeeting(existing.id, spec).then(() => existing.id) : createMeeting(spec).then((created) => created.id);
    done
      .then(async (id) => {
        notify(existing ? 'The meeting was saved.' : 'The meeting was created.', 'success');
        await showList();
        document.querySelector<HTMLElement>(`[data-meeting="${CSS.escape(id)}"] [data-testid="meeting-open"]`)?.focus();
      })
      .catch((err: unknown) => {
        error.textContent = err instanceof Error ? err.message : 'Something went wrong. Please try again.';
        error.hidden = false;
      })
      .finally(() => {
        submit.disabled = false;
        form.removeAttribute('aria-busy');
      });
  });

  const screen = card(existing ? 'Edit the meeting' : 'Plan a meeting', existing ? null : 'Only the people you invite can enter, and a host admits each of them from the lobby.', true, form);
  screen.querySelector('h1')?.setAttribute('data-testid', 'meeting-form-title');
  show(screen, title);
}
