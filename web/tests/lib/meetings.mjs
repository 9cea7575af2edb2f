// Steps of the meetings browser tests: signing in, planning a meeting
// through /meetings, entering it from its invitation page, and a hook that
// records the chimes the page plays (WebAudio oscillators and the app's
// `conclave:chime` events).

export const PASSWORD = 'violet kestrel orbits the quiet meadow';

/** Runs in the page before the app: counts tones started and chimes announced. */
function chimeRecorder() {
  const chimes = [];
  let tones = 0;
  Object.defineProperty(window, '__chimes', { get: () => ({ kinds: chimes.slice(), tones }) });
  window.addEventListener('conclave:chime', (e) => chimes.push(e.detail));
  const Osc = window.OscillatorNode;
  if (Osc) {
    const start = Osc.prototype.start;
    Osc.prototype.start = function (...args) {
      tones++;
      return start.apply(this, args);
    };
  }
}

export async function recordChimes(context) {
  await context.addInitScript(chimeRecorder);
}

/** The chimes a page played so far: { kinds: ['join', ...], tones: N }. */
export async function chimes(page) {
  return page.evaluate(() => window.__chimes ?? { kinds: [], tones: 0 });
}

/** Fills and submits the sign-in form at the page it is on (or opens it). */
export async function signIn(page, baseUrl, email, { open = true } = {}) {
  if (open) await page.goto(`${baseUrl}/account/sign-in`);
  await page.getByTestId('signin-email').fill(email);
  await page.getByTestId('signin-password').fill(PASSWORD);
  await page.getByTestId('signin-submit').click();
}

/**
 * Plans a meeting at /meetings; returns its id.
 * `invitees`: [{ value, role = 'participant', kind = 'email' }].
 */
export async function planMeeting(page, baseUrl, { title, invitees = [], lobby = 'everyone', guests = false }) {
  await page.goto(`${baseUrl}/meetings`);
  await page.getByTestId('meeting-new').click();
  await page.getByTestId('meeting-title-input').fill(title);
  await page.getByTestId(`meeting-lobby-${lobby}`).check();
  if (guests) await page.getByTestId('meeting-guests').check();
  for (const [i, invitee] of invitees.entries()) {
    await page.getByTestId('invitee-add').click();
    const row = page.getByTestId('invitee-row').nth(i);
    await row.getByTestId('invitee-kind').selectOption(invitee.kind ?? 'email');
    await row.getByTestId('invitee-value').fill(invitee.value);
    await row.getByTestId('invitee-role').selectOption(invitee.role ?? 'participant');
  }
  await page.getByTestId('meeting-save').click();
  const error = page.getByTestId('meeting-form-error');
  const item = page.getByTestId('meeting-item').filter({ hasText: title });
  await item.or(error).first().waitFor({ timeout: 15_000 });
  if (await error.isVisible()) throw new Error(`the meeting was not created: ${await error.innerText()}`);
  const id = await item.getAttribute('data-meeting');
  if (!/^mtg_[A-Za-z0-9]{22}$/.test(id ?? '')) throw new Error(`unexpected meeting id ${id}`);
  return id;
}

/** On the pre-join screen: joins with the fake camera and microphone and waits for the room. */
export async function joinFromPrejoin(page, who) {
  const join = page.getByTestId('prejoin-join-button');
  await join.waitFor({ timeout: 20_000 });
  await page.getByTestId('prejoin-video').waitFor({ state: 'visible', timeout: 15_000 });
  await join.click();
  const leave = page.getByTestId('leave-button');
  const error = page.getByTestId('prejoin-error');
  await leave.or(error).first().waitFor({ timeout: 50_000 });
  if (await error.isVisible()) throw new Error(`${who} could not join: ${await error.innerText()}`);
}

/** Opens the invitation page and presses the enter button; returns what followed ('prejoin' or 'lobby'). */
export async function enterFromInvitation(page, baseUrl, id) {
  await page.goto(`${baseUrl}/m/${id}`);
  await page.getByTestId('enter-button').click();
  const prejoin = page.getByTestId('prejoin-join-button');
  const lobby = page.getByTestId('lobby-screen');
  const error = page.getByTestId('enter-error');
  await prejoin.or(lobby).or(error).first().waitFor({ timeout: 20_000 });
  if (await error.isVisible()) throw new Error(`could not enter ${id}: ${await error.innerText()}`);
  return (await lobby.isVisible()) ? 'lobby' : 'prejoin';
}

/** The roster entry of a participant whose display name is `name`. */
export function rosterEntry(page, name) {
  return page.locator(`[data-testid="participant-item"][data-name="${name}"]`);
}

/** Prints what a failed test needs to be understood. */
export function report(server, people) {
  for (const who of people) {
    if (who?.problems?.length) {
      const shown = who.problems.slice(-40).map((line) => (line.length > 400 ? `${line.slice(0, 400)}…` : line));
      console.error(`--- browser ${who.label} ---\n${shown.join('\n')}`);
    }
  }
  if (server) console.error(`--- conclave server output ---\n${server.log()}`);
}
