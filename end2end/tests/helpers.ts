import { APIRequestContext, FrameLocator, Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { expect, waitForHydration } from './fixtures';

export const SUCCESS = '4242 4242 4242 4242';
export const MASTERCARD = '5555 5555 5555 4444';
export const AMEX = '3782 822463 10005';
export const DECLINE = '4000 0000 0000 0002';
/** Succeeds after the sandbox's slow processing time (5 s). */
export const SLOW = '4000 0000 0000 3220';
export const FRAME = 'iframe[title="Jetpay secure card form"]';

let counter = 0;
export function uniqueEmail(who: string) {
  counter += 1;
  return `${who}-${Date.now()}-${counter}@example.com`;
}

/** Signs up a new customer through the form and lands on the saved cards page, hydrated. */
export async function signUp(page: Page, who: string, name = `${who} Customer`) {
  const email = uniqueEmail(who);
  await page.goto('/sign-up');
  await waitForHydration(page);
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Saved cards' })).toBeVisible();
  await waitForHydration(page);
  return email;
}

/** Clicks Add card (or another button) and returns the new card's form and row. */
export async function openForm(page: Page, button = 'Add card') {
  const before = new URL(page.url()).searchParams.get('adding');
  await page.getByRole('button', { name: button }).first().click();
  await expect.poll(() => new URL(page.url()).searchParams.get('adding')).not.toBe(before);
  const id = new URL(page.url()).searchParams.get('adding')!;
  const frame = page.frameLocator(FRAME);
  await expect(frame.getByLabel('Card number')).toBeVisible();
  return { id, frame, row: page.locator(`[data-card-id="${id}"]`) };
}

/** Types a card the way a person does: key by key, field by field. */
export async function typeCard(
  frame: FrameLocator,
  number: string,
  { delay = 15, expiry = '12/34', submit = true } = {},
) {
  await frame.getByLabel('Card number').pressSequentially(number, { delay });
  await frame.getByLabel(/Expiry date/).pressSequentially(expiry, { delay });
  await frame.getByLabel('Security code (CVC)').pressSequentially(number.startsWith('3') ? '1234' : '123', { delay });
  await frame.getByLabel('Name on card').pressSequentially('Test Customer', { delay });
  await frame.getByLabel('Postal code').pressSequentially('H2X 1Y4', { delay });
  if (submit) {
    await frame.getByRole('button', { name: 'Save card' }).click();
    await expectReceived(frame);
  }
}

/**
 * Waits for Jetpay's "Card received" page, or for the frame to have closed already: a fast bank
 * can verify the card before the confirmation is seen, and the form then closes itself.
 */
export async function expectReceived(frame: FrameLocator) {
  await expect
    .poll(
      async () =>
        (await frame.owner().count()) === 0 ||
        (await frame.getByRole('heading', { name: 'Card received' }).count()) > 0,
    )
    .toBe(true);
}

/**
 * Adds cards without the page, as another device of the same customer would (setup only): asks
 * for a form, posts the card to Jetpay's form, and waits until the card is active.
 */
export async function addCardsElsewhere(request: APIRequestContext, numbers: string[]) {
  const ids: string[] = [];
  for (const number of numbers) {
    const added = await request.post('/api/add_card', { form: {} });
    expect(added.status()).toBe(200);
    const id: string = await added.json();
    const list = await (await request.post('/api/list_cards')).json();
    const url = list.cards.find((c: any) => c.id === id).form_url;
    const posted = await request.post(url, {
      form: {
        card_number: number,
        expiry: '12/34',
        cvc: number.startsWith('3') ? '1234' : '123',
        name: 'Test Customer',
        postal_code: 'H2X 1Y4',
      },
    });
    expect(posted.status()).toBe(200);
    ids.push(id);
  }
  await expect
    .poll(async () => {
      const list = await (await request.post('/api/list_cards')).json();
      return ids.every((id) => list.cards.find((c: any) => c.id === id)?.state === 'active');
    })
    .toBe(true);
  return ids;
}

/** Fails on any WCAG 2.1 A/AA violation axe finds on the page (and its frames). */
export async function expectAccessible(page: Page, state: string) {
  const results = await new AxeBuilder({ page })
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
    .analyze();
  const found = results.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(' | ')}`,
  );
  expect(found, `accessibility violations: ${state}`).toEqual([]);
}

/** Removes every console error matching `pattern` (expected ones, the test's premise). */
export function dropConsoleErrors(errors: string[], pattern: RegExp) {
  errors.splice(0, errors.length, ...errors.filter((e) => !pattern.test(e)));
}

/** Marks the window so a test can tell that no reload happened. */
export async function markWindow(page: Page) {
  await page.evaluate(() => ((window as any).__noReload = true));
}
export async function expectNoReload(page: Page) {
  expect(await page.evaluate(() => (window as any).__noReload)).toBe(true);
}
