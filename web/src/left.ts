// Screen shown after the meeting: why it ended, and a way back in.

import { h, showScreen } from './ui';

export interface LeftOptions {
  room: string;
  detail?: string;
  onRejoin: () => Promise<void>;
  onHome: () => void;
}

export function showLeft(options: LeftOptions): void {
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const rejoin = h('button', { type: 'button', class: 'button button-primary', 'data-testid': 'rejoin-button' }, 'Rejoin');
  const home = h('button', { type: 'button', class: 'button button-secondary', 'data-testid': 'home-button' }, 'Return to start');

  rejoin.addEventListener('click', () => {
    rejoin.disabled = true;
    error.hidden = true;
    options.onRejoin().catch((err: unknown) => {
      error.textContent = err instanceof Error ? err.message : String(err);
      error.hidden = false;
      rejoin.disabled = false;
    });
  });
  home.addEventListener('click', () => options.onHome());

  const title = h('h1', { id: 'left-title', text: 'You left the meeting' });
  const screen = h(
    'section',
    { class: 'screen screen-left', 'aria-labelledby': 'left-title', 'data-testid': 'left-screen' },
    h(
      'div',
      { class: 'card' },
      title,
      options.detail ? h('p', { class: 'lead', 'data-testid': 'left-reason', text: options.detail }) : null,
      h('p', { class: 'muted' }, 'Room ', h('strong', { text: options.room })),
      error,
      h('div', { class: 'actions' }, home, rejoin),
    ),
  );
  showScreen(screen, title);
}
