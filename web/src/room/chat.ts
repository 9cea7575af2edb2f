// The meeting's chat: LiveKit data packets with topic `conclave.chat` and
// JSON `{"text"}`. The sender shown is the participant the server names
// for the packet, never anything in the JSON. Nothing is stored.

import type { Participant, Room } from 'livekit-client';
import { h } from '../ui';

export const CHAT_TOPIC = 'conclave.chat';
export const MAX_CHAT_CHARS = 4000;

export class Chat {
  readonly section: HTMLElement;
  private readonly log = h('ol', { class: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Chat messages', 'data-testid': 'chat-log' });
  private readonly input = h('textarea', { id: 'chat-input', class: 'chat-input', rows: 2, maxlength: MAX_CHAT_CHARS, 'data-testid': 'chat-input' });
  private readonly send = h('button', { type: 'submit', class: 'button button-primary button-small', 'data-testid': 'chat-send' }, 'Send');
  private readonly hint = h('p', { id: 'chat-hint', class: 'field-hint', 'data-testid': 'chat-hint', hidden: true });
  private allowed = true;

  constructor(
    private readonly room: Room,
    private readonly displayName: (p: Participant) => string,
    private readonly onMessage: (from: string, text: string) => void,
  ) {
    const form = h(
      'form',
      { class: 'chat-form', novalidate: true },
      h('label', { for: 'chat-input', class: 'visually-hidden', text: 'Message' }),
      this.input,
      this.hint,
      h('div', { class: 'actions' }, this.send),
    );
    this.input.setAttribute('aria-describedby', 'chat-hint');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.submit();
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        void this.submit();
      }
    });
    this.section = h('section', { class: 'panel-section', 'aria-labelledby': 'chat-title', 'data-testid': 'chat-panel' }, h('h2', { id: 'chat-title', text: 'Chat' }), this.log, form);
  }

  setAllowed(allowed: boolean): void {
    this.allowed = allowed;
    this.input.disabled = !allowed;
    this.send.disabled = !allowed;
    this.hint.hidden = allowed;
    this.hint.textContent = allowed ? '' : 'The hosts have not allowed you to chat.';
  }

  /** A packet of the chat topic; `from` is the sender the server named. */
  receive(payload: Uint8Array, from: Participant | undefined): void {
    if (!from) return;
    let text: unknown;
    try {
      const data: unknown = JSON.parse(new TextDecoder().decode(payload));
      text = typeof data === 'object' && data !== null ? (data as { text?: unknown }).text : undefined;
    } catch {
      return;
    }
    if (typeof text !== 'string' || text.trim() === '') return;
    const clipped = [...text].slice(0, MAX_CHAT_CHARS).join('');
    const name = this.displayName(from);
    this.add(name, from.identity, clipped, false);
    this.onMessage(name, clipped);
  }

  private async submit(): Promise<void> {
    const text = this.input.value.trim();
    if (!this.allowed || text === '') return;
    if ([...text].length > MAX_CHAT_CHARS) {
      this.hint.hidden = false;
      this.hint.textContent = `A message can have at most ${MAX_CHAT_CHARS} characters.`;
      return;
    }
    this.send.disabled = true;
    try {
      await this.room.localParticipant.publishData(new TextEncoder().encode(JSON.stringify({ text })), { reliable: true, topic: CHAT_TOPIC });
      const lp = this.room.localParticipant;
      this.add('You', lp.identity, text, true);
      this.input.value = '';
      this.hint.hidden = true;
    } catch {
      this.hint.hidden = false;
      this.hint.textContent = 'The message could not be sent.';
    } finally {
      this.send.disabled = !this.allowed;
      this.input.focus();
    }
  }

  private add(name: string, identity: string, text: string, own: boolean): void {
    const time = new Date().toLocaleTimeString(undefined, { timeStyle: 'short' });
    const item = h(
      'li',
      { class: own ? 'chat-message chat-own' : 'chat-message', 'data-testid': 'chat-message', 'data-identity': identity },
      h('span', { class: 'chat-meta' }, h('strong', { class: 'chat-from', text: name }), ' ', h('span', { class: 'muted', text: time })),
      h('span', { class: 'chat-text', text }),
    );
    this.log.append(item);
    item.scrollIntoView({ block: 'nearest' });
  }
}
