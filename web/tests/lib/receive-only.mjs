// Joins through the web app with camera and microphone switched off on the
// pre-join screen: a participant that only receives, so that a test's
// browsers spend their CPU on decoding the video under test.

import { submitLanding } from './app.mjs';

export async function joinReceiveOnly(page, baseUrl, { name, room }) {
  await submitLanding(page, baseUrl, { name, room });
  const join = page.getByTestId('prejoin-join-button');
  await join.waitFor({ timeout: 15_000 });
  for (const id of ['prejoin-camera-toggle', 'prejoin-mic-toggle']) {
    const toggle = page.getByTestId(id);
    await toggle.waitFor({ timeout: 15_000 });
    if ((await toggle.getAttribute('aria-pressed')) !== 'false') await toggle.click();
    await page.waitForFunction((testId) => document.querySelector(`[data-testid="${testId}"]`)?.getAttribute('aria-pressed') === 'false', id, {
      timeout: 10_000,
    });
  }
  await join.click();
  const leave = page.getByTestId('leave-button');
  const error = page.getByTestId('prejoin-error');
  await leave.or(error).first().waitFor({ timeout: 50_000 });
  if (await error.isVisible()) throw new Error(`${name} could not join room ${room}: ${await error.innerText()}`);
}
