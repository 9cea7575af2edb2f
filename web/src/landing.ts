// Landing screen: display name and room name, then a token from /api/join.

import { ApiError, requestJoinToken, type Session } from './api';
import { h, showScreen } from './ui';
import { validateName, validateRoom } from './validate';

export interface LandingOptions {
  name?: string;
  room?: string;
  /** Message shown above the form, e.g. why an invitation could not be used. */
  message?: string;
  onSession: (session: Session) => void;
}

const NAME_KEY = 'conclave.displayName';

export function showLanding(options: LandingOptions): void {
  const nameInput = h('input', {
    id: 'name',
    name: 'name',
    type: 'text',
    autocomplete: 'name',
    maxlength: 64,
    required: true,
    'aria-describedby': 'name-error',
    'data-testid': 'name-input',
  });
  nameInput.value = options.name ?? rememberedName();
  const nameError = h('p', { id: 'name-error', class: 'field-error', 'data-testid': 'name-error', hidden: true });

  const roomInput = h('input', {
    id: 'room',
    name: 'room',
    type: 'text',
    autocomplete: 'off',
    autocapitalize: 'off',
    spellcheck: 'false',
    maxlength: 64,
    required: true,
    'aria-describedby': 'room-hint room-error',
    'data-testid': 'room-input',
  });
  roomInput.value = options.room ?? '';
  const roomHint = h('p', {
    id: 'room-hint',
    class: 'field-hint',
    text: 'Letters, digits, hyphens and underscores; up to 64 characters.',
  });
  const roomError = h('p', { id: 'room-error', class: 'field-error', 'data-testid': 'room-error', hidden: true });

  const formError = h('p', { class: 'form-error', role: 'alert', 'data-testid': 'form-error', hidden: true });
  const submit = h('button', { type: 'submit', class: 'button button-primary', 'data-testid': 'join-button' }, 'Join');

  const form = h(
    'form',
    { class: 'card-form', novalidate: true, 'aria-labelledby': 'landing-title' },
    h('div', { class: 'field' }, h('label', { for: 'name', text: 'Your name' }), nameInput, nameError),
    h('div', { class: 'field' }, h('label', { for: 'room', text: 'Room name' }), roomHint, roomInput, roomError),
    formError,
    h('div', { class: 'actions' }, submit),
  );

  const showFieldError = (input: HTMLInputElement, out: HTMLElement, message: string | null) => {
    out.textContent = message ?? '';
    out.hidden = message === null;
    input.setAttribute('aria-invalid', message === null ? 'false' : 'true');
  };

  const setFormError = (message: string | null) => {
    formError.textContent = message ?? '';
    formError.hidden = message === null;
  };

  if (options.message) setFormError(options.message);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    setFormError(null);
    const nameProblem = validateName(nameInput.value);
    const roomProblem = validateRoom(roomInput.value);
    showFieldError(nameInput, nameError, nameProblem);
    showFieldError(roomInput, roomError, roomProblem);
    if (nameProblem) {
      nameInput.focus();
      return;
    }
    if (roomProblem) {
      roomInput.focus();
      return;
    }
    const name = nameInput.value.trim();
    const room = roomInput.value.trim();
    rememberName(name);
    submit.disabled = true;
    submit.textContent = 'Joining…';
    form.setAttribute('aria-busy', 'true');
    requestJoinToken(room, name)
      .then((session) => options.onSession(session))
      .catch((err: unknown) => {
        setFormError(err instanceof ApiError ? err.message : 'Something went wrong. Please try again.');
        submit.disabled = false;
        submit.textContent = 'Join';
        form.removeAttribute('aria-busy');
      });
  });

  const screen = h(
    'section',
    { class: 'screen screen-landing', 'aria-labelledby': 'landing-title' },
    h(
      'div',
      { class: 'card' },
      h('header', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), h('span', { class: 'brand-name', text: 'Conclave' })),
      h('h1', { id: 'landing-title', text: 'Join a meeting' }),
      h('p', { class: 'lead', text: 'Enter your name and the name of the room you were given.' }),
      form,
      h(
        'p',
        { class: 'field-hint' },
        h('a', { href: '/meetings', 'data-testid': 'meetings-link', text: 'Your meetings' }),
        ' · ',
        h('a', { href: '/account', 'data-testid': 'account-link', text: 'Your account' }),
      ),
    ),
  );
  showScreen(screen, nameInput.value === '' ? nameInput : roomInput.value === '' ? roomInput : submit);
}

function rememberedName(): string {
  try {
    return window.localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

function rememberName(name: string): void {
  try {
    window.localStorage.setItem(NAME_KEY, name);
  } catch {
    // Storage may be unavailable (private mode); remembering is optional.
  }
}
