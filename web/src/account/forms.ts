// Small building blocks of the account pages: cards, fields, form errors
// and submit buttons, in the look of the rest of the app.

import { h, showScreen } from '../ui';

export function card(title: string, lead: string | null, wide: boolean, ...body: (Node | null)[]): HTMLElement {
  return h(
    'section',
    { class: 'screen screen-landing', 'aria-labelledby': 'account-title' },
    h(
      'div',
      { class: wide ? 'card card-wide' : 'card' },
      h(
        'header',
        { class: 'brand' },
        h('span', { class: 'brand-mark', 'aria-hidden': 'true' }),
        h('a', { class: 'brand-name', href: '/', text: 'Conclave' }),
      ),
      h('h1', { id: 'account-title', text: title }),
      lead ? h('p', { class: 'lead', text: lead }) : null,
      ...body,
    ),
  );
}

export function show(screen: HTMLElement, focus?: HTMLElement | null): void {
  showScreen(screen, focus);
}

let fieldCounter = 0;

export interface Field {
  wrap: HTMLElement;
  input: HTMLInputElement;
}

export function field(
  label: string,
  attrs: Record<string, string | number | boolean>,
  hint?: string,
): Field {
  const id = `f${++fieldCounter}`;
  const input = h('input', { id, name: id, ...attrs });
  const hintEl = hint ? h('p', { id: `${id}-hint`, class: 'field-hint', text: hint }) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  const wrap = h('div', { class: 'field' }, h('label', { for: id, text: label }), hintEl, input);
  return { wrap, input };
}

export interface FormParts {
  form: HTMLFormElement;
  error: (message: string | null) => void;
  busy: (on: boolean) => void;
}

/** A form whose submit runs `action`; errors show above the buttons. */
export function form(
  testId: string,
  submitText: string,
  fields: (Node | null)[],
  action: () => Promise<void>,
  extraActions: Node[] = [],
): FormParts {
  const errorEl = h('p', { class: 'form-error', role: 'alert', 'data-testid': `${testId}-error`, hidden: true });
  const submit = h('button', { type: 'submit', class: 'button button-primary', 'data-testid': `${testId}-submit` }, submitText);
  const f = h('form', { class: 'card-form', novalidate: true, 'data-testid': testId }, ...fields, errorEl, h('div', { class: 'actions' }, ...extraActions, submit));
  const error = (message: string | null) => {
    errorEl.textContent = message ?? '';
    errorEl.hidden = message === null;
  };
  const busy = (on: boolean) => {
    submit.disabled = on;
    if (on) f.setAttribute('aria-busy', 'true');
    else f.removeAttribute('aria-busy');
  };
  f.addEventListener('submit', (event) => {
    event.preventDefault();
    error(null);
    busy(true);
    action()
      .catch((err: unknown) => error(err instanceof Error ? err.message : 'Something went wrong. Please try again.'))
      .finally(() => busy(false));
  });
  return { form: f, error, busy };
}

export function link(text: string, href: string, testId?: string): HTMLAnchorElement {
  return h('a', { href, 'data-route': 'true', ...(testId ? { 'data-testid': testId } : {}), text });
}

export function button(text: string, testId: string, onClick: () => void, primary = false): HTMLButtonElement {
  const b = h('button', { type: 'button', class: `button ${primary ? 'button-primary' : 'button-secondary'}`, 'data-testid': testId }, text);
  b.addEventListener('click', onClick);
  return b;
}

export function when(seconds: number): string {
  return new Date(seconds * 1000).toLocaleString();
}
