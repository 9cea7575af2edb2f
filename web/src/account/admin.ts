// Administration: the list of users with invite, disable, enable, role and
// delete, and the audit log (people named only by pseudonym).

import { h, notify } from '../ui';
import { get, post, type AuditEntry, type Me, type UserInfo } from './api';
import { button, card, field, form, link, show, when } from './forms';

export async function showAdmin(s: Me): Promise<void> {
  if (s.account.role !== 'admin') {
    show(card('Administration', 'Only administrators can open this page.', false, link('Back to your account', '/account')));
    return;
  }
  const [{ users }, { entries }] = await Promise.all([
    get<{ users: UserInfo[] }>('/admin/users'),
    get<{ entries: AuditEntry[] }>('/admin/audit'),
  ]);
  const reload = () => void showAdmin(s);
  const act = (id: string, action: string, role = '') => {
    post('/admin/user', { id, action, role })
      .then(reload)
      .catch((err: unknown) => notify(err instanceof Error ? err.message : 'The change failed.', 'error'));
  };

  const email = field('E-mail address', { type: 'email', required: true, maxlength: 254, 'data-testid': 'admin-invite-email' });
  const roleSelect = h(
    'select',
    { id: 'invite-role', 'data-testid': 'admin-invite-role' },
    h('option', { value: 'user', text: 'User' }),
    h('option', { value: 'admin', text: 'Administrator' }),
  );
  const inviteForm = form(
    'admin-invite',
    'Send invitation',
    [email.wrap, h('div', { class: 'field' }, h('label', { for: 'invite-role', text: 'Role' }), roleSelect)],
    async () => {
      await post('/admin/invite', { email: email.input.value, role: roleSelect.value });
      notify(`An invitation was sent to ${email.input.value.trim()}.`, 'success');
      reload();
    },
  );

  const rows = users.map((u) => {
    const self = u.id === s.account.id;
    const actions: Node[] = [];
    if (!self) {
      actions.push(
        u.status === 'disabled'
          ? button('Enable', `enable-${u.id}`, () => act(u.id, 'enable'))
          : button('Disable', `disable-${u.id}`, () => act(u.id, 'disable')),
        u.role === 'admin'
          ? button('Make user', `role-${u.id}`, () => act(u.id, 'role', 'user'))
          : button('Make administrator', `role-${u.id}`, () => act(u.id, 'role', 'admin')),
        button('Delete', `delete-${u.id}`, () => {
          if (window.confirm(`Delete the account of ${u.email ?? u.display_name} and its data?`)) act(u.id, 'delete');
        }),
      );
    }
    return h(
      'tr',
      { 'data-testid': 'admin-user' },
      h('td', { text: u.display_name }),
      h('td', { text: u.email ?? '—' }),
      h('td', { text: u.role === 'admin' ? 'Administrator' : 'User' }),
      h('td', { text: u.status }),
      h('td', { text: u.second_factor ? 'yes' : 'no' }),
      h('td', {}, ...actions),
    );
  });
  const table = h(
    'table',
    { class: 'account-table', 'data-testid': 'admin-users' },
    h('thead', {}, h('tr', {}, ...['Name', 'E-mail', 'Role', 'Status', 'Second factor', ''].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, ...rows),
  );
  const audit = h(
    'ul',
    { class: 'account-list', 'data-testid': 'admin-audit' },
    ...entries.slice(0, 50).map((e) => h('li', { text: `${when(e.at)} ${e.action} by ${e.actor} on ${e.subject}${e.detail ? ` (${e.detail})` : ''}` })),
  );
  show(
    card(
      'Administration',
      null,
      true,
      h('section', { class: 'account-section', 'aria-labelledby': 'users-h' }, h('h2', { id: 'users-h', text: 'Users' }), table),
      h('section', { class: 'account-section', 'aria-labelledby': 'invite-h' }, h('h2', { id: 'invite-h', text: 'Invite someone' }), inviteForm.form),
      h('section', { class: 'account-section', 'aria-labelledby': 'audit-h' }, h('h2', { id: 'audit-h', text: 'Audit log' }), audit),
      h('div', { class: 'actions' }, link('Back to your account', '/account')),
    ),
  );
}
