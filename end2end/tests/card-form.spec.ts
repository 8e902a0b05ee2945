import { test, expect, waitForHydration } from './fixtures';
import {
  FRAME,
  SLOW,
  SUCCESS,
  dropConsoleErrors,
  expectReceived,
  expectNoReload,
  markWindow,
  openForm,
  signUp,
  typeCard,
} from './helpers';

// Bug 1: the panel and its frame survive every list refresh, outage and reconnect.
test('what the customer types survives polls, a live change and a failed fetch, with the stream down', async ({
  page,
  consoleErrors,
}) => {
  test.setTimeout(60_000);
  await signUp(page, 'typist');
  // The live stream is refused, as behind a proxy that drops event streams: the page polls.
  await page.route('**/account/cards/events**', (route) => route.abort());
  await page.reload();
  await waitForHydration(page);
  await markWindow(page);
  const { frame, row } = await openForm(page);
  const number = frame.getByLabel('Card number');

  let polls = 0;
  page.on('request', (r) => {
    if (r.url().endsWith('/api/list_cards')) polls += 1;
  });
  // Human speed: about 2.5 s for the number alone, so polls land in the middle of it.
  await number.pressSequentially('4242 4242 4242 4242', { delay: 130 });
  expect(polls).toBeGreaterThan(0);
  await expect(number).toHaveValue('4242 4242 4242 4242');

  // Another tab starts adding a card: the next poll brings a new row into the list.
  expect((await page.request.post('/api/add_card', { form: {} })).status()).toBe(200);
  await expect(page.getByTestId('card')).toHaveCount(2);
  await expect(number).toHaveValue('4242 4242 4242 4242');

  // The list cannot be fetched for a while.
  await page.route('**/api/list_cards', (route) => route.abort());
  await expect(page.getByTestId('reconnecting')).toContainText('Reconnecting…');
  await frame.getByLabel(/Expiry date/).pressSequentially('12/34', { delay: 110 });
  await expect(number).toHaveValue('4242 4242 4242 4242');
  await page.unroute('**/api/list_cards');
  await expect(page.getByTestId('reconnecting')).toHaveText('');

  await frame.getByLabel('Security code (CVC)').pressSequentially('123', { delay: 110 });
  await frame.getByLabel('Name on card').pressSequentially('Test Customer', { delay: 90 });
  await frame.getByLabel('Postal code').pressSequentially('H2X 1Y4', { delay: 90 });
  await expect(number).toHaveValue('4242 4242 4242 4242');
  await frame.getByRole('button', { name: 'Save card' }).click();
  await expectReceived(frame);
  await expect(row.getByTestId('state')).toHaveText('Active');
  await expectNoReload(page);
  dropConsoleErrors(consoleErrors, /ERR_FAILED/);
});

// Bug 8: an opened form is not a card until the hosted form reports a submission.
test('an untouched form is "Waiting for card details" with Continue and Discard, and Close discards it', async ({
  page,
}) => {
  await signUp(page, 'phantom');
  const first = await openForm(page);
  await expect(first.row.getByTestId('state')).toHaveText('Waiting for card details');
  await page.getByRole('link', { name: 'Close' }).click();
  await expect(page.locator(FRAME)).toHaveCount(0);
  await expect(first.row).toHaveCount(0);
  await expect(page.getByTestId('empty')).toBeVisible();

  // A form left open elsewhere (another tab, a closed window) can be continued or discarded.
  const added = await page.request.post('/api/add_card', { form: {} });
  const id: string = await added.json();
  const row = page.locator(`[data-card-id="${id}"]`);
  await expect(row.getByTestId('state')).toHaveText('Waiting for card details');
  await row.getByRole('link', { name: 'Continue' }).click();
  await expect(page.frameLocator(FRAME).getByLabel('Card number')).toBeVisible();
  await page.getByRole('link', { name: 'Close' }).click();
  await expect(row).toHaveCount(0);

  const again = await page.request.post('/api/add_card', { form: {} });
  const other = page.locator(`[data-card-id="${await again.json()}"]`);
  await other.getByRole('button', { name: /Discard/ }).click();
  await expect(other).toHaveCount(0);
});

test('once the form is submitted the row shows Verifying… with the brand and last four at once', async ({ page }) => {
  await signUp(page, 'verifying');
  const { frame, row } = await openForm(page);
  // The slow test card stays with the bank for 5 seconds.
  await typeCard(frame, SLOW);
  await expect(row.getByTestId('state')).toHaveText('Verifying…');
  await expect(row).toContainText('Visa •••• 3220');
  await expect(row.getByTestId('state')).toHaveText('Active', { timeout: 15_000 });
});

// Bug 7: focus goes to the form when it opens and to the new row when it closes by itself.
test('focus moves into the form on open and to the new row when the form closes itself', async ({ page }) => {
  await signUp(page, 'focus');
  const { frame, row } = await openForm(page);
  await expect(page.locator(FRAME)).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(frame.getByLabel('Card number')).toBeFocused();
  await typeCard(frame, SUCCESS);
  await expect(row.getByTestId('state')).toHaveText('Active');
  await expect(row).toBeFocused();
});

test('closing an untouched form returns focus to Add card', async ({ page }) => {
  await signUp(page, 'closefocus');
  await openForm(page);
  await page.getByRole('link', { name: 'Close' }).click();
  await expect(page.getByRole('button', { name: 'Add card' })).toBeFocused();
});

// Bug 9: the frame is as tall as its content, and the page shows one "Add a card" heading.
test('the frame fits its content with and without errors, under a single heading', async ({ page }) => {
  for (const viewport of [
    { width: 1100, height: 800 },
    { width: 390, height: 844 },
  ]) {
    await page.setViewportSize(viewport);
    await signUp(page, `frame${viewport.width}`);
    const { frame } = await openForm(page);
    const iframe = page.locator(FRAME);
    const fits = async () => {
      const box = (await iframe.boundingBox())!;
      const content = await frame.locator('html').evaluate((el) => el.getBoundingClientRect().height);
      const button = (await frame.getByRole('button', { name: 'Save card' }).boundingBox())!;
      return {
        buttonInside: button.y + button.height <= box.y + box.height,
        emptyBelow: box.height - content,
      };
    };
    await expect.poll(async () => (await fits()).emptyBelow).toBeLessThan(40);
    await frame.getByRole('button', { name: 'Save card' }).click();
    await expect(frame.getByText('Enter the card number.')).toBeVisible();
    await expect.poll(async () => (await fits()).buttonInside).toBe(true);
    await expect.poll(async () => (await fits()).emptyBelow).toBeLessThan(40);
    await expect(page.getByRole('heading', { name: 'Add a card' })).toHaveCount(1);
    await expect(frame.getByRole('heading', { name: 'Add a card' })).toHaveCount(0);
  }
});
