// Joins through the web app with a chosen camera and microphone state set
// on the pre-join screen. A participant that only receives lets a test's
// browsers spend their CPU on decoding the media under test.

import { submitLanding } from './app.mjs';

export async function joinWithDevices(page, baseUrl, { name, room, camera, mic, key }) {
  await submitLanding(page, baseUrl, { name, room, key });
  const join = page.getByTestId('prejoin-join-button');
  await join.waitFor({ timeout: 15_000 });
  for (const [id, wanted] of [
    ['prejoin-camera-toggle', camera],
    ['prejoin-mic-toggle', mic],
  ]) {
    const toggle = page.getByTestId(id);
    await toggle.waitFor({ timeout: 15_000 });
    // aria-pressed="false" means the device is off.
    const on = (await toggle.getAttribute('aria-pressed')) !== 'false';
    if (on !== wanted) await toggle.click();
    await page.waitForFunction(
      ({ testId, want }) => (document.querySelector(`[data-testid="${testId}"]`)?.getAttribute('aria-pressed') !== 'false') === want,
      { testId: id, want: wanted },
      { timeout: 10_000 },
    );
  }
  await join.click();
  const leave = page.getByTestId('leave-button');
  const error = page.getByTestId('prejoin-error');
  await leave.or(error).first().waitFor({ timeout: 50_000 });
  if (await error.isVisible()) throw new Error(`${name} could not join room ${room}: ${await error.innerText()}`);
}

export async function joinReceiveOnly(page, baseUrl, { name, room, key }) {
  await joinWithDevices(page, baseUrl, { name, room, camera: false, mic: false, key });
}
