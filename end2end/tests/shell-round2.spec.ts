import { test, expect, expectConsoleError, waitForHydration } from './fixtures';
import { FRAME, openForm, signUp, uniqueEmail } from './helpers';

// Bug 5: the not-found page renders with the same context as every page.
test('an unknown address is always 404 with the signed-in header', async ({ page, consoleErrors }) => {
  await signUp(page, 'lost', 'Lost Customer');
  for (let i = 0; i < 8; i++) {
    const response = await page.goto(`/no/such/page/${i}`);
    expect(response?.status()).toBe(404);
    await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
    await expect(page.getByRole('banner')).toContainText('Lost Customer');
    expectConsoleError(consoleErrors, /status of 404/);
  }
});

// Bug 7: the skip link and client-side navigation move focus.
test('Skip to content moves focus to the main area after hydration', async ({ page }) => {
  await page.goto('/account/cards');
  await waitForHydration(page);
  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', { name: 'Skip to content' })).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.locator('#main')).toBeFocused();
});

test('client-side navigation focuses the new page heading and announces it', async ({ page }) => {
  await page.goto('/');
  await waitForHydration(page);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Account → Saved cards' }).click();
  await expect(page).toHaveURL(/\/account\/cards$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Saved cards' })).toBeFocused();
  await expect(page.getByTestId('route-announcer')).toHaveText('Saved cards');
});

// Bug 9, the smaller ones.
test('a long name without spaces does not scroll the phone page sideways', async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signUp(page, 'longname', 'Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaftschaferswessen');
  await page.getByRole('button', { name: 'Menu' }).click();
  await expect(page.getByRole('banner')).toContainText('Wolfeschlegel');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  expect(overflow).toBeLessThanOrEqual(0);
});

test('the tab title names the page once, and /account/cards/ is the cards page', async ({ page }) => {
  await page.goto('/account/cards');
  await expect(page).toHaveTitle('Saved cards · Platform');
  const response = await page.goto('/account/cards/');
  expect(response?.status()).toBe(200);
  await expect(page.getByRole('heading', { level: 1, name: 'Saved cards' })).toBeVisible();
});

test('opened as localhost, the card form loads in its frame', async ({ page, baseURL }) => {
  const local = baseURL!.replace('127.0.0.1', 'localhost');
  await page.goto(`${local}/sign-up`);
  await waitForHydration(page);
  await page.getByLabel('Name').fill('Local Host');
  await page.getByLabel('Email').fill(uniqueEmail('localhost'));
  await page.getByLabel('Password', { exact: true }).fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/localhost:\d+\/account\/cards$/);
  await waitForHydration(page);
  await openForm(page);
  await expect(page.frameLocator(FRAME).getByRole('button', { name: 'Save card' })).toBeVisible();
});

test('a 200 kB form post is refused with 413', async ({ page }) => {
  await page.goto('/');
  const response = await page.request.post('/api/sign_in', {
    form: { email: 'x'.repeat(200_000), password: 'a long password' },
  });
  expect(response.status()).toBe(413);
});

test('the footer shows a Test mode badge with the sandbox, and no addresses', async ({ page }) => {
  await page.goto('/');
  await waitForHydration(page);
  const footer = page.getByRole('contentinfo');
  await expect(footer.getByTestId('jetpay-mode')).toHaveText('Test mode');
  await expect(footer).not.toContainText('http');
});
