// The account pages under /account: sign-in with the second step,
// registration, e-mail confirmation, invitations, the account overview
// (second factors, sessions, password, deletion) and administration.

import { h, notify } from '../ui';
import { AccountError, forgetSession, get, me, post, setReturnPath, takeReturnPath, type Me, type ServerConfig, type SessionInfo } from './api';
import { showAdmin } from './admin';
import { button, card, field, form, link, show, when } from './forms';
import * as webauthn from './webauthn';

let config: ServerConfig | null = null;

async function serverConfig(): Promise<ServerConfig> {
  config ??= await get<ServerConfig>('/config');
  return config;
}

/** Goes to another account page without reloading. */
export function navigate(path: string): void {
  if (window.location.pathname + window.location.hash !== path) window.history.pushState(null, '', path);
  void route();
}

/** Values after `#` (never sent to the server): `#token=...`, `#error=...`. */
function hashParam(name: string): string | null {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  return params.get(name);
}

function takeHash(name: string): string | null {
  const v = hashParam(name);
  if (v !== null) window.history.replaceState(null, '', window.location.pathname);
  return v;
}

async function route(): Promise<void> {
  const path = window.location.pathname.replace(/\/+$/, '') || '/account';
  try {
    switch (path) {
      case '/account/register':
        return await showRegister();
      case '/account/confirm':
        return await showConfirm();
      case '/account/invite':
        return showInvite();
      case '/account/forgot':
        return showForgot();
      case '/account/reset':
        return showReset();
      case '/account/sign-in':
        return await showSignIn();
      case '/account/admin':
        return await withSession((s) => showAdmin(s));
      default:
        return await withSession((s) => showOverview(s));
    }
  } catch (err) {
    show(card('Something went wrong', err instanceof Error ? err.message : 'Please try again.', false, link('Back to your account', '/account')));
  }
}

/** Runs `page` for a fully signed-in session, or the step that is due. */
async function withSession(page: (s: Me) => void | Promise<void>): Promise<void> {
  const s = await me();
  if (!s) return showSignIn();
  if (s.level === 'second_factor') return showSecondFactor(s);
  if (s.level === 'must_enrol') return showEnrol(s, true);
  // Signed in on the way to a meeting: back to its invitation page.
  const back = takeReturnPath();
  if (back) {
    window.location.assign(back);
    return;
  }
  return page(s);
}

// ---------- sign-in ----------

async function showSignIn(): Promise<void> {
  const cfg = await serverConfig();
  const existing = await me();
  if (existing) return withSession((s) => showOverview(s));
  const next = new URLSearchParams(window.location.search).get('next');
  if (next) setReturnPath(next);
  const oidcError = takeHash('error');
  const email = field('E-mail address', { type: 'email', autocomplete: 'username', required: true, maxlength: 254, 'data-testid': 'signin-email' });
  const password = field('Password', { type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'signin-password' });
  const f = form('signin', 'Sign in', [email.wrap, password.wrap], async () => {
    await post('/sign-in', { email: email.input.value, password: password.input.value });
    password.input.value = '';
    await withSession((s) => showOverview(s));
  });
  if (oidcError) f.error(oidcError);
  const providers = cfg.oidc.map((p) =>
    h('a', { class: 'button button-secondary', href: `/api/account/oidc/${encodeURIComponent(p.id)}/start`, 'data-testid': `oidc-${p.id}` }, `Sign in with ${p.name}`),
  );
  const screen = card(
    'Sign in',
    'Sign in to your Conclave account.',
    false,
    f.form,
    providers.length ? h('div', { class: 'actions', 'data-testid': 'oidc-providers' }, ...providers) : null,
    h('p', {}, link('Forgot your password?', '/account/forgot', 'forgot-link')),
    cfg.self_registration ? h('p', {}, 'No account yet? ', link('Register', '/account/register', 'register-link')) : null,
  );
  show(screen, email.input);
}

function showSecondFactor(s: Me): void {
  const a = s.account;
  const code = field('Code from your authenticator app', { type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 7, 'data-testid': 'totp-code' });
  const totpForm = form('totp', 'Continue', [code.wrap], async () => {
    await post('/sign-in/totp', { code: code.input.value });
    navigate('/account');
  });
  const recovery = field('Recovery code', { type: 'text', autocomplete: 'off', maxlength: 20, 'data-testid': 'recovery-code' });
  const recoveryForm = form('recovery', 'Use recovery code', [recovery.wrap], async () => {
    await post('/sign-in/recovery', { code: recovery.input.value });
    navigate('/account');
  });
  const passkeyError = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'passkey-signin-error' });
  const passkey =
    a.passkeys.length > 0
      ? button('Use a passkey', 'passkey-signin', () => {
          passkeyError.hidden = true;
          void (async () => {
            try {
              const options = await post<Record<string, unknown>>('/sign-in/passkey/start');
              const credential = await webauthn.get(options);
              await post('/sign-in/passkey/finish', { credential });
              navigate('/account');
            } catch (err) {
              passkeyError.textContent = err instanceof Error ? err.message : 'The passkey did not work.';
              passkeyError.hidden = false;
            }
          })();
        }, true)
      : null;
  const cancel = button('Cancel', 'signin-cancel', () => void signOut());
  show(
    card(
      'Second step',
      'Confirm that it is you with your second factor.',
      false,
      passkey ? h('div', { class: 'actions' }, passkey) : null,
      passkeyError,
      a.totp ? totpForm.form : null,
      h('details', {}, h('summary', { text: 'Lost your device? Use a recovery code' }), recoveryForm.form),
      h('div', { class: 'actions' }, cancel),
    ),
    a.totp ? code.input : null,
  );
}

async function signOut(): Promise<void> {
  try {
    await post('/sign-out');
  } catch {
    // Signed out already.
  }
  forgetSession();
  navigate('/account/sign-in');
}

// ---------- registration, confirmation, invitation ----------

async function showRegister(): Promise<void> {
  const cfg = await serverConfig();
  if (!cfg.self_registration) {
    show(card('Registration', 'Registration is by invitation only on this server. Ask an administrator for an invitation.', false, link('Sign in', '/account/sign-in')));
    return;
  }
  const name = field('Your name', { type: 'text', autocomplete: 'name', required: true, maxlength: 64, 'data-testid': 'register-name' });
  const email = field('E-mail address', { type: 'email', autocomplete: 'email', required: true, maxlength: 254, 'data-testid': 'register-email' });
  const password = field(
    'Password',
    { type: 'password', autocomplete: 'new-password', required: true, minlength: cfg.min_password_length, 'data-testid': 'register-password' },
    `At least ${cfg.min_password_length} characters. Several unrelated words make a good password.`,
  );
  const f = form('register', 'Register', [name.wrap, email.wrap, password.wrap], async () => {
    await post('/register', { email: email.input.value, name: name.input.value, password: password.input.value });
    const addr = email.input.value.trim();
    show(
      h(
        'div',
        { 'data-testid': 'register-done' },
        card('Check your mail', `We sent a link to ${addr}. Follow it to confirm your address, then sign in.`, false, link('Sign in', '/account/sign-in')),
      ),
    );
  });
  show(card('Register', 'Create an account. We will send you a link to confirm your e-mail address.', false, f.form, h('p', {}, 'Have an account? ', link('Sign in', '/account/sign-in'))), name.input);
}

async function showConfirm(): Promise<void> {
  const token = takeHash('token');
  if (!token) {
    show(card('Confirm your address', 'This link is not complete. Open the link from the mail again.', false));
    return;
  }
  try {
    await post('/confirm', { token });
    show(h('div', { 'data-testid': 'confirm-done' }, card('Address confirmed', 'Thank you. You can sign in now.', false, link('Sign in', '/account/sign-in', 'confirm-signin'))));
  } catch (err) {
    show(h('div', { 'data-testid': 'confirm-failed' }, card('Confirmation failed', err instanceof Error ? err.message : 'Please try again.', false, link('Sign in', '/account/sign-in'))));
  }
}

function showInvite(): void {
  const token = takeHash('token');
  if (!token) {
    show(card('Invitation', 'This link is not complete. Open the link from the mail again.', false));
    return;
  }
  const name = field('Your name', { type: 'text', autocomplete: 'name', required: true, maxlength: 64, 'data-testid': 'invite-name' });
  const password = field('Choose a password', { type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'invite-password' }, 'At least 12 characters. Several unrelated words make a good password.');
  const f = form('invite', 'Create account', [name.wrap, password.wrap], async () => {
    await post('/invite/accept', { token, name: name.input.value, password: password.input.value });
    show(card('Welcome', 'Your account is ready. You can sign in now.', false, link('Sign in', '/account/sign-in')));
  });
  show(card('You are invited', 'Choose your name and a password for your account.', false, f.form), name.input);
}

function showForgot(): void {
  const email = field('E-mail address', { type: 'email', autocomplete: 'email', required: true, maxlength: 254, 'data-testid': 'forgot-email' });
  const f = form('forgot', 'Send link', [email.wrap], async () => {
    await post('/password-reset/request', { email: email.input.value });
    show(
      h(
        'div',
        { 'data-testid': 'forgot-done' },
        card('Check your mail', 'If an account has this address, we sent it a link to choose a new password. The link works for one hour.', false, link('Sign in', '/account/sign-in')),
      ),
    );
  });
  show(card('Forgot your password?', 'We will mail you a link to choose a new one.', false, f.form, h('p', {}, link('Back to sign-in', '/account/sign-in'))), email.input);
}

function showReset(): void {
  const token = takeHash('token');
  if (!token) {
    show(card('New password', 'This link is not complete. Open the link from the mail again.', false));
    return;
  }
  const password = field('New password', { type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'reset-password' }, 'At least 12 characters. Several unrelated words make a good password.');
  const f = form('reset', 'Set password', [password.wrap], async () => {
    await post('/password-reset', { token, password: password.input.value });
    show(h('div', { 'data-testid': 'reset-done' }, card('Password changed', 'Your password is changed and every session was signed out. You can sign in now.', false, link('Sign in', '/account/sign-in'))));
  });
  show(card('Choose a new password', null, false, f.form), password.input);
}

// ---------- enrolment of second factors ----------

function recoveryCodesBox(codes: string[]): HTMLElement {
  return h(
    'div',
    { class: 'banner recovery-codes', 'data-testid': 'recovery-codes' },
    h('p', { text: 'Your recovery codes. Each works once if you lose your second factor. Keep them somewhere safe: they are shown only now.' }),
    h('ul', {}, ...codes.map((c) => h('li', {}, h('code', { text: c })))),
  );
}

function totpSection(s: Me, after: (codes: string[] | null) => void): HTMLElement {
  const box = h('div', { 'data-testid': 'totp-section' });
  const start = button('Set up an authenticator app', 'totp-setup', () => {
    void (async () => {
      try {
        const setup = await post<{ secret: string; uri: string }>('/totp/start');
        const code = field('Code shown by the app', { type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 7, 'data-testid': 'totp-confirm-code' });
        const f = form('totp-confirm', 'Confirm', [code.wrap], async () => {
          const r = await post<{ recovery_codes: string[] | null }>('/totp/confirm', { code: code.input.value });
          notify('The authenticator app is set up.', 'success');
          after(r.recovery_codes);
        });
        box.replaceChildren(
          h('p', { text: 'Add this key to your authenticator app (or open the link on the device that has the app), then enter the code it shows.' }),
          h('p', {}, h('code', { 'data-testid': 'totp-secret', text: setup.secret })),
          h('p', {}, h('a', { href: setup.uri, 'data-testid': 'totp-uri', text: 'Open in authenticator app' })),
          f.form,
        );
        code.input.focus();
      } catch (err) {
        notify(err instanceof Error ? err.message : 'Could not start.', 'error');
      }
    })();
  });
  box.append(start);
  void s;
  return box;
}

function passkeySection(after: (codes: string[] | null) => void): HTMLElement {
  const name = field('Name of the passkey', { type: 'text', maxlength: 64, value: 'Passkey', 'data-testid': 'passkey-name' });
  const f = form('passkey-add', 'Add a passkey', [name.wrap], async () => {
    if (!webauthn.available()) throw new Error('This browser does not support passkeys.');
    const options = await post<Record<string, unknown>>('/passkeys/start');
    const credential = await webauthn.create(options);
    const r = await post<{ recovery_codes: string[] | null }>('/passkeys/finish', { name: name.input.value, credential });
    notify('The passkey is added.', 'success');
    after(r.recovery_codes);
  });
  return f.form;
}

async function showEnrol(s: Me, required: boolean): Promise<void> {
  const cfg = await serverConfig();
  const after = (codes: string[] | null) => {
    const next = button('Continue', 'enrol-continue', () => navigate('/account'), true);
    show(card('Second factor added', null, false, codes ? recoveryCodesBox(codes) : null, h('div', { class: 'actions' }, next)), next);
  };
  show(
    card(
      'Set up a second factor',
      required ? 'Your account needs a second factor before you can go on.' : 'Add a second factor to your account.',
      false,
      totpSection(s, after),
      cfg.passkeys ? passkeySection(after) : null,
      h('div', { class: 'actions' }, button('Sign out', 'sign-out', () => void signOut())),
    ),
  );
}

// ---------- the account overview ----------

/**
 * A button that, for accounts with a password, first asks for it in a
 * small form in place (a password never goes through a browser dialog).
 */
function withPassword(hasPassword: boolean, text: string, testId: string, action: (password: string) => Promise<void>): HTMLElement {
  const box = h('span', { class: 'with-password' });
  const run = (password: string) => action(password);
  const start = button(text, testId, () => {
    if (!hasPassword) {
      run('').catch((err: unknown) => notify(err instanceof Error ? err.message : 'That did not work.', 'error'));
      return;
    }
    const pw = field('Your password', { type: 'password', autocomplete: 'current-password', 'data-testid': `${testId}-password` });
    const f = form(`${testId}-confirm`, text, [pw.wrap], () => run(pw.input.value), [button('Cancel', `${testId}-cancel`, () => box.replaceChildren(start))]);
    box.replaceChildren(f.form);
    pw.input.focus();
  });
  box.append(start);
  return box;
}


async function showOverview(s: Me, newCodes?: string[] | null): Promise<void> {
  const a = s.account;
  const cfg = await serverConfig();
  const { sessions } = await get<{ sessions: SessionInfo[] }>('/sessions');
  const reload = () => void withSession((fresh) => showOverview(fresh));
  const afterEnrol = (codes: string[] | null) => void withSession((fresh) => showOverview(fresh, codes));

  const profile = h(
    'section',
    { 'aria-labelledby': 'profile-h' },
    h('h2', { id: 'profile-h', text: 'Profile' }),
    h('p', { 'data-testid': 'account-name', text: a.display_name }),
    a.email ? h('p', { 'data-testid': 'account-email', text: a.email }) : null,
    a.role === 'admin' ? h('p', {}, link('Administration', '/account/admin', 'admin-link')) : null,
  );

  const passkeyList = h(
    'ul',
    { class: 'account-list', 'data-testid': 'passkey-list' },
    ...a.passkeys.map((p) =>
      h(
        'li',
        {},
        `${p.name} (added ${when(p.created_at)})`,
        ' ',
        withPassword(a.has_password, 'Remove', `passkey-remove-${p.id}`, async (password) => {
          await post('/passkeys/remove', { id: p.id, password });
          reload();
        }),
      ),
    ),
  );
  const factors = h(
    'section',
    { class: 'account-section', 'aria-labelledby': 'factors-h' },
    h('h2', { id: 'factors-h', text: 'Second factors' }),
    h('p', { 'data-testid': 'totp-state', text: a.totp ? 'Authenticator app: set up.' : 'Authenticator app: not set up.' }),
    a.totp
      ? withPassword(a.has_password, 'Remove the authenticator app', 'totp-remove', async (password) => {
          await post('/totp/remove', { password });
          reload();
        })
      : totpSection(s, afterEnrol),
    h('h3', { text: 'Passkeys' }),
    passkeyList,
    cfg.passkeys ? passkeySection(afterEnrol) : h('p', { class: 'field-hint', text: 'Passkeys need the server to be reached by a domain name.' }),
    h('p', { 'data-testid': 'recovery-left', text: `Unused recovery codes: ${a.recovery_codes_left}` }),
  );

  const sessionList = h(
    'ul',
    { class: 'account-list', 'data-testid': 'session-list' },
    ...sessions.map((x) =>
      h(
        'li',
        { 'data-testid': 'session-item' },
        `${x.user_agent}, signed in ${when(x.created_at)}, last active ${when(x.last_seen_at)}`,
        x.current
          ? h('strong', { text: ' (this browser)' })
          : button('Sign out there', 'session-revoke', () => {
              post('/sessions/revoke', { id: x.id })
                .then(reload)
                .catch((err: unknown) => notify(err instanceof Error ? err.message : 'Could not sign out.', 'error'));
            }),
      ),
    ),
  );
  const sessionsSection = h('section', { class: 'account-section', 'aria-labelledby': 'sessions-h' }, h('h2', { id: 'sessions-h', text: 'Where you are signed in' }), sessionList);

  const current = field('Current password', { type: 'password', autocomplete: 'current-password', 'data-testid': 'password-current' });
  const next = field('New password', { type: 'password', autocomplete: 'new-password', 'data-testid': 'password-new' });
  const pwForm = form('password', 'Change password', [a.has_password ? current.wrap : null, next.wrap], async () => {
    await post('/password', { current: current.input.value, new: next.input.value });
    current.input.value = '';
    next.input.value = '';
    notify('Your password is changed. Other sessions were signed out.', 'success');
  });
  const passwordSection = h('section', { class: 'account-section', 'aria-labelledby': 'password-h' }, h('h2', { id: 'password-h', text: 'Password' }), pwForm.form);

  const delPassword = field(a.has_password ? 'Your password' : 'Type DELETE to confirm', { type: a.has_password ? 'password' : 'text', autocomplete: 'current-password', 'data-testid': 'delete-password' });
  const delForm = form('delete', 'Delete my account', [delPassword.wrap], async () => {
    if (!a.has_password && delPassword.input.value !== 'DELETE') throw new Error('Type DELETE to confirm.');
    await post('/delete', { password: a.has_password ? delPassword.input.value : '' });
    forgetSession();
    show(h('div', { 'data-testid': 'deleted' }, card('Account deleted', 'Your account and its data were deleted.', false, link('Back to the start page', '/'))));
  });
  const deleteSection = h(
    'section',
    { class: 'account-section', 'aria-labelledby': 'delete-h' },
    h('h2', { id: 'delete-h', text: 'Delete account' }),
    h('p', { class: 'field-hint', text: 'This deletes your profile, credentials and sessions. It cannot be undone.' }),
    delForm.form,
  );

  const screen = card(
    'Your account',
    null,
    true,
    newCodes ? recoveryCodesBox(newCodes) : null,
    profile,
    factors,
    sessionsSection,
    passwordSection,
    deleteSection,
    h('div', { class: 'actions account-section' }, h('a', { href: '/meetings', 'data-testid': 'meetings-link', text: 'Your meetings' }), h('a', { href: '/', text: 'Join a meeting' }), button('Sign out', 'sign-out', () => void signOut())),
  );
  screen.querySelector('h1')?.setAttribute('data-testid', 'account-title');
  show(screen);
}

/** Entry point of the account pages. */
export function startAccount(): void {
  document.addEventListener('click', (event) => {
    const target = event.target instanceof Element ? event.target.closest('a[data-route]') : null;
    if (!(target instanceof HTMLAnchorElement) || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
    event.preventDefault();
    navigate(target.pathname);
  });
  window.addEventListener('popstate', () => void route());
  void route();
}

export { AccountError, signOut };
