// Small DOM helpers shared by every screen: element construction, icons,
// notices (toasts) and screen switching. No inline styles or markup strings
// are used, so everything works under the server's strict CSP.

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined>;

/** Creates an element; attribute values of `false`/`null`/`undefined` are skipped. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'class') el.className = String(value);
    else if (key === 'text') el.textContent = String(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Icon outlines on a 24×24 grid, drawn with `currentColor` strokes. */
const ICONS = {
  mic: ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  micOff: [
    'M9 9v3a3 3 0 0 0 5.1 2.1',
    'M15 10V6a3 3 0 0 0-5.7-1.3',
    'M5 11a7 7 0 0 0 11.4 5.4',
    'M19 11a7 7 0 0 1-.6 2.8',
    'M12 18v3',
    'M3 3l18 18',
  ],
  camera: ['M3 7h12a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1z', 'M16 11l6-4v10l-6-4'],
  cameraOff: [
    'M10 7h5a1 1 0 0 1 1 1v5',
    'M16 11l6-4v10l-4-2.7',
    'M15.5 17H3a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1h2',
    'M3 3l18 18',
  ],
  leave: ['M10 17l-5-5 5-5', 'M5 12h11', 'M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4'],
  people: [
    'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z',
    'M2 21v-1a6 6 0 0 1 6-6h2a6 6 0 0 1 6 6v1',
    'M16 3.2a4 4 0 0 1 0 7.6',
    'M22 21v-1a6 6 0 0 0-4-5.6',
  ],
  link: [
    'M10 13a5 5 0 0 0 7.1 0l3-3a5 5 0 0 0-7.1-7.1l-1.5 1.5',
    'M14 11a5 5 0 0 0-7.1 0l-3 3a5 5 0 0 0 7.1 7.1l1.5-1.5',
  ],
  speaker: ['M4 9h4l5-4v14l-5-4H4z', 'M16.5 8.5a5 5 0 0 1 0 7', 'M19 6a8.5 8.5 0 0 1 0 12'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  screen: ['M3 4h18a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1z', 'M8 21h8', 'M12 17v4'],
  screenOff: ['M3 4h18a1 1 0 0 1 1 1v11a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1z', 'M8 21h8', 'M12 17v4', 'M3 3l18 18'],
  hand: [
    'M8 13V5.5a1.5 1.5 0 0 1 3 0V11',
    'M11 10.5V4a1.5 1.5 0 0 1 3 0v6.5',
    'M14 10.5V5.5a1.5 1.5 0 0 1 3 0V14',
    'M8 13l-1.6-1.8a1.6 1.6 0 0 0-2.4 2.1L7.5 18a6 6 0 0 0 4.7 3H13a4 4 0 0 0 4-4v-3',
  ],
} as const;

export type IconName = keyof typeof ICONS;

export function icon(name: IconName, extraClass = ''): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon ${extraClass}`.trim());
  for (const d of ICONS[name]) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.appendChild(path);
  }
  return svg;
}

/** Replaces the content of the main region with a new screen. */
export function showScreen(screen: HTMLElement, focusTarget?: HTMLElement | null): void {
  const main = document.getElementById('main');
  if (!main) throw new Error('missing #main');
  main.replaceChildren(screen);
  const target = focusTarget ?? screen.querySelector<HTMLElement>('h1');
  if (target) {
    if (!target.hasAttribute('tabindex') && !isFocusable(target)) target.tabIndex = -1;
    target.focus({ preventScroll: true });
  }
}

function isFocusable(el: HTMLElement): boolean {
  return el instanceof HTMLInputElement || el instanceof HTMLButtonElement || el instanceof HTMLSelectElement;
}

export type NoticeKind = 'info' | 'success' | 'warning' | 'error';

const NOTICE_LIFETIME_MS = 8000;
const MAX_NOTICES = 5;

/** Shows a short message in the notice area (announced by screen readers). */
export function notify(message: string, kind: NoticeKind = 'info'): void {
  const area = document.getElementById('notices');
  if (!area) return;
  const item = h('div', { class: `notice notice-${kind}`, 'data-testid': 'notice' }, h('span', { text: message }));
  const dismiss = h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss notice' }, icon('close'));
  dismiss.addEventListener('click', () => item.remove());
  item.appendChild(dismiss);
  area.appendChild(item);
  while (area.children.length > MAX_NOTICES) area.firstElementChild?.remove();
  window.setTimeout(() => item.remove(), kind === 'error' ? NOTICE_LIFETIME_MS * 2 : NOTICE_LIFETIME_MS);
}

export function clearNotices(): void {
  document.getElementById('notices')?.replaceChildren();
}

/** Two-letter initials used when a participant has no video. */
export function initials(name: string): string {
  // Words that start with a letter or digit: "Eve (guest)" gives "E".
  const words = name.trim().split(/\s+/).filter((w) => /^[\p{L}\p{N}]/u.test(w));
  if (words.length === 0) return '?';
  const first = [...words[0]!][0] ?? '';
  const last = words.length > 1 ? ([...words[words.length - 1]!][0] ?? '') : '';
  return (first + last).toUpperCase();
}

/** A labelled <select> filled with media devices. */
export function deviceSelect(id: string, label: string, testId: string): {
  field: HTMLElement;
  select: HTMLSelectElement;
  fill: (devices: MediaDeviceInfo[], selected?: string) => void;
} {
  const select = h('select', { id, 'data-testid': testId });
  const field = h('div', { class: 'field' }, h('label', { for: id, text: label }), select);
  const fill = (devices: MediaDeviceInfo[], selected?: string) => {
    const options = devices
      .filter((d) => d.deviceId !== '')
      .map((d, i) => h('option', { value: d.deviceId, text: d.label || `${label} ${i + 1}` }));
    if (options.length === 0) {
      select.replaceChildren(h('option', { value: '', text: 'None found' }));
      select.disabled = true;
      return;
    }
    select.replaceChildren(...options);
    select.disabled = false;
    if (selected && devices.some((d) => d.deviceId === selected)) select.value = selected;
  };
  return { field, select, fill };
}
