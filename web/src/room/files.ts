// Files shared in the meeting: uploaded through the meetings API by those
// with the files right, announced to everyone by the server as
// `conclave.file` packets, downloaded with the participant's token.

import { downloadFile, fileInfo, inMeeting, type SharedFileInfo } from '../meetings/api';
import { h, notify } from '../ui';

export const FILE_TOPIC = 'conclave.file';

type SharedFile = SharedFileInfo;

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export class Files {
  readonly section: HTMLElement;
  private readonly list = h('ul', { class: 'file-list', 'data-testid': 'file-list', 'aria-label': 'Shared files' });
  private readonly empty = h('p', { class: 'field-hint', text: 'No files shared yet.' });
  private readonly picker = h('input', { id: 'file-picker', type: 'file', 'data-testid': 'file-input', class: 'file-input' });
  private readonly upload = h('button', { type: 'submit', class: 'button button-secondary button-small', 'data-testid': 'file-upload' }, 'Share');
  private readonly hint = h('p', { id: 'file-hint', class: 'field-hint', 'data-testid': 'file-hint' });
  private readonly seen = new Set<string>();
  private allowed = false;

  constructor(
    private readonly meetingId: string,
    private readonly token: () => string,
  ) {
    const form = h(
      'form',
      { class: 'file-form', novalidate: true },
      h('label', { for: 'file-picker', text: 'Share a file' }),
      this.picker,
      this.hint,
      h('div', { class: 'actions' }, this.upload),
    );
    this.picker.setAttribute('aria-describedby', 'file-hint');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.send();
    });
    this.section = h('section', { class: 'panel-section', 'aria-labelledby': 'files-title', 'data-testid': 'files-panel' }, h('h2', { id: 'files-title', text: 'Files' }), this.empty, this.list, form);
    this.setAllowed(false);
  }

  setAllowed(allowed: boolean): void {
    this.allowed = allowed;
    this.picker.disabled = !allowed;
    this.upload.disabled = !allowed;
    this.hint.textContent = allowed
      ? 'PDF, images, text and office documents. Everyone in the meeting can download it until the meeting ends.'
      : 'The hosts have not allowed you to share files.';
  }

  /** A `conclave.file` packet from the server. */
  receive(payload: Uint8Array): void {
    let data: unknown;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    const file = fileInfo(data);
    if (!file) return;
    if (this.add(file)) notify(`${file.from || 'Someone'} shared ${file.name}`);
  }

  /** Files shared before this participant came in (from the meeting state). */
  seed(files: SharedFile[]): void {
    for (const f of files) this.add(f);
  }

  private add(file: SharedFile): boolean {
    if (this.seen.has(file.id)) return false;
    this.seen.add(file.id);
    const get = h('button', { type: 'button', class: 'button button-secondary button-small', 'data-testid': 'file-download', 'aria-label': `Download ${file.name}` }, 'Download');
    get.addEventListener('click', () => {
      get.disabled = true;
      downloadFile(this.meetingId, this.token(), file)
        .catch((err: unknown) => notify(err instanceof Error ? err.message : 'The file could not be downloaded.', 'error'))
        .finally(() => (get.disabled = false));
    });
    this.list.append(
      h(
        'li',
        { class: 'file-item', 'data-testid': 'file-item', 'data-file': file.id },
        h('span', { class: 'file-name' }, h('strong', { text: file.name }), h('span', { class: 'field-hint', text: ` ${formatSize(file.size)}${file.from ? ` · ${file.from}` : ''}` })),
        get,
      ),
    );
    this.empty.hidden = true;
    return true;
  }

  private async send(): Promise<void> {
    const file = this.picker.files?.[0];
    if (!this.allowed || !file) return;
    this.upload.disabled = true;
    try {
      const { data } = await inMeeting.upload(this.meetingId, this.token(), file);
      this.picker.value = '';
      const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
      if (typeof d.id === 'string') this.add({ id: d.id, name: typeof d.name === 'string' ? d.name : file.name, size: file.size, type: file.type, from: 'You' });
      notify(`${file.name} is shared.`, 'success');
    } catch (err) {
      notify(err instanceof Error ? err.message : 'The file could not be shared.', 'error');
    } finally {
      this.upload.disabled = !this.allowed;
    }
  }
}
