// Steps through the web client as a person would.

/**
 * Opens the landing page, fills in name and room, and submits. With `key`,
 * the page is opened as from a link to an end-to-end encrypted meeting.
 */
export async function submitLanding(page, baseUrl, { name, room, key }) {
  const url = baseUrl + '/' + (key ? `#key=${encodeURIComponent(key)}` : '');
  // A browser just started in a fresh network namespace may still see its
  // interfaces settle and abort the first navigation; try again then.
  for (let attempt = 1; ; attempt++) {
    try {
      await page.goto(url);
      break;
    } catch (err) {
      if (attempt >= 3 || !String(err?.message).includes('ERR_NETWORK_CHANGED')) throw err;
      await page.waitForTimeout(500);
    }
  }
  await page.getByTestId('name-input').fill(name);
  await page.getByTestId('room-input').fill(room);
  await page.getByTestId('join-button').click();
}

/** Landing → pre-join → meeting, with the fake camera and microphone on. */
export async function joinMeeting(page, baseUrl, { name, room, key }) {
  await submitLanding(page, baseUrl, { name, room, key });
  const join = page.getByTestId('prejoin-join-button');
  await join.waitFor({ timeout: 15_000 });
  // The preview shows the fake camera before joining.
  await page.getByTestId('prejoin-video').waitFor({ state: 'visible', timeout: 15_000 });
  await join.click();
  // Either the meeting opens or the pre-join screen reports why it could not.
  const leave = page.getByTestId('leave-button');
  const error = page.getByTestId('prejoin-error');
  await leave.or(error).first().waitFor({ timeout: 50_000 });
  if (await error.isVisible()) {
    throw new Error(`${name} could not join room ${room}: ${await error.innerText()}`);
  }
}

export function participantItem(page, name) {
  return page.locator(`[data-testid="participant-item"][data-name="${name}"]`);
}

export function randomRoom() {
  return `test-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
